"""Batch throughput in this process and on a local Dask cluster (issue 18).

8 photos (tubingen and scikit-image's photos, flipped for variety) at 512 px, for each method
(``instant``; ``fast`` with a small model trained here; ``optimize`` with the ``preview`` preset,
15 steps), run three ways:

* in this process with 2 PyTorch threads (:class:`nst_core.batch.InProcess`);
* on a LocalCluster of 1 worker × 2 threads;
* on a LocalCluster of 2 workers × 1 thread.

Reported: images per minute, the time to start the cluster (workers' imports included), the
per-job overhead of going through Dask (its batch time less the in-process time, per job), and
from them an estimate for N machines like this one: ``N × throughput(2 workers)`` once the
cluster runs, plus its start-up. Every arm first runs the whole batch once untimed (imports,
networks, and oneDNN's per-shape kernels: an arm warmed on fewer jobs than it times pays for
those inside its timing). Then come ``--repeats`` rounds in which every arm runs the batch once,
each round in another order (all clusters are up throughout), so that the host's busy spells fall
on every arm alike; reported are each arm's median and spread, and the ratio round by round. The
optimization runs ``--optimize-photos`` photos.

    python -m benchmarks.batch                       # all three methods
    python -m benchmarks.batch --methods instant     # a quick one
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .run_benchmark import IMAGES, REPO, describe_machine

PHOTOS = ("tubingen", "astronaut", "coffee", "chelsea")


def make_photos(folder: Path, count: int = 8) -> list[Path]:
    """``count`` photos as PNG files: the shared and scikit-image photos and their mirror images."""
    import skimage.data
    from PIL import Image

    images = []
    for name in PHOTOS:
        shared = IMAGES / f"{name}.jpg"
        images.append(np.asarray(Image.open(shared).convert("RGB")) if shared.is_file() else getattr(skimage.data, name)())
    paths = []
    for number in range(count):
        image = images[number % len(images)]
        if number >= len(images):
            image = image[:, ::-1]
        path = folder / f"photo{number}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        paths.append(path)
    return paths


def train_small_model(folder: Path, photos: list[Path]) -> Path:
    """A small fast-style model (the throughput, not the look, is measured)."""
    from nst_core.fast import NetworkShape, TrainingSettings, train_files

    path = folder / "starry.nst"
    train_files(IMAGES / "starry_night.jpg", photos[0].parent, path,
                settings=TrainingSettings(steps=10, batch_size=1, crop_size=64, style_size=128,
                                          network=NetworkShape()))
    return path


def jobs_for(method: str, photos: list[Path], out: Path, model: Path | None) -> list:
    from nst_core import Config
    from nst_core.batch import Job
    from nst_core.config import PRESETS

    settings = {"optimize": dict(PRESETS["preview"]), "instant": {"method": "instant"},
                "fast": {"method": "fast", "fast_model": str(model)}}[method]
    config = Config(size=512, **settings)
    styles = () if method == "fast" else (IMAGES / "starry_night.jpg",)
    out.mkdir(parents=True, exist_ok=True)
    return [Job(content=p, output=out / p.name, styles=styles, config=config, index=i, count=len(photos))
            for i, p in enumerate(photos, 1)]


ARMS = (("in-process x2", None), ("1 worker x2", dict(workers=1, threads_per_worker=2)),
        ("2 workers x1", dict(workers=2, threads_per_worker=1)))


def measure(method: str, photos: list[Path], folder: Path, model: Path | None, repeats: int) -> dict:
    """Every arm's executor is started first; then the arms take turns, each round in another
    order, so that a busy spell of the shared host slows all of them, not the one that ran then."""
    import torch

    from nst_core.batch import InProcess, run_batch
    from nst_core.cluster import DaskExecutor

    torch.set_num_threads(2)
    with contextlib.ExitStack() as stack:
        arms = {}
        for name, make in ARMS:
            jobs = jobs_for(method, photos, folder / method / name.replace(" ", "_"), model)
            executor = InProcess() if make is None else stack.enter_context(DaskExecutor(**make))
            arms[name] = (executor, jobs, getattr(executor, "start_seconds", 0.0))
        for executor, jobs, _ in arms.values():
            # every arm runs the whole batch once untimed: imports, networks, the painting's
            # vector, and each photo size's first pass (oneDNN builds its kernels per shape)
            run_batch(jobs, executor=executor)
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        names = list(arms)
        for round_ in range(repeats):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                executor, jobs, _ = arms[name]
                began = time.perf_counter()
                summary = run_batch(jobs, executor=executor)
                seconds[name].append(time.perf_counter() - began)
                assert summary.count("done") == len(jobs), [o.message() for o in summary.outcomes]
    report = {}
    for name, (_, jobs, start) in arms.items():
        median = statistics.median(seconds[name])
        report[name] = {"seconds": seconds[name], "median_seconds": median,
                        "images_per_minute": 60 * len(jobs) / median, "cluster_start_seconds": start}
        spread = f"{60 * len(jobs) / max(seconds[name]):.1f}-{60 * len(jobs) / min(seconds[name]):.1f}"
        print(f"{method:9s} {name:14s} {median:7.1f} s  {report[name]['images_per_minute']:6.2f} images/min"
              f" (runs: {spread})" + (f"  (cluster start {start:.1f} s)" if start else ""), flush=True)
    base = report["in-process x2"]
    report["overhead_per_job_seconds"] = (report["1 worker x2"]["median_seconds"] - base["median_seconds"]) / len(photos)
    report["two_workers_vs_in_process"] = report["2 workers x1"]["images_per_minute"] / base["images_per_minute"]
    # the same ratio round by round (each round's arms ran minutes apart at most)
    report["two_workers_vs_in_process_by_round"] = [
        in_process / two for in_process, two in zip(seconds["in-process x2"], seconds["2 workers x1"])]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="instant,fast,optimize")
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--optimize-photos", type=int, default=2, help="optimize: fewer photos (~25 s each)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of timed batches (every arm once a round)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "batch")
    args = parser.parse_args(argv)
    machine = describe_machine()
    print(f"machine: {machine['cpu']} ({machine['capability']}, {machine['cores']} cores)", flush=True)
    results = {"machine": machine}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        photos_folder = folder / "photos"
        photos_folder.mkdir()
        photos = make_photos(photos_folder, args.photos)
        methods = args.methods.split(",")
        model = train_small_model(folder, photos) if "fast" in methods else None
        for method in methods:
            chosen = photos[: args.optimize_photos] if method == "optimize" else photos
            report = measure(method, chosen, folder, model, args.repeats)
            rounds = ", ".join(f"{ratio:.2f}" for ratio in report["two_workers_vs_in_process_by_round"])
            results[method] = report
            print(f"{method:9s} per-job overhead through Dask {report['overhead_per_job_seconds']:+.2f} s; "
                  f"2 workers give {report['two_workers_vs_in_process']:.2f}x the in-process throughput; "
                  f"N such machines: about N x {report['2 workers x1']['images_per_minute']:.1f} images/min "
                  f"after a {report['2 workers x1']['cluster_start_seconds']:.0f}-s start; 2 workers / in-process "
                  f"round by round: {rounds}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
