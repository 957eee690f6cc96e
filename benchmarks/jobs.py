"""One measured job per process, so that each run's peak RSS is its own.

``python -m benchmarks.jobs baseline|nst SPEC.json OUTDIR`` runs one job and writes
``OUTDIR/result.json`` (seconds, curve) and snapshots of the image as it improves
(``OUTDIR/snap_*.npy``, float16), which the parent scores with the evaluator afterwards.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before numpy and torch are imported: start-up counts for peers

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from nst_core import hookimpl  # noqa: E402


def load_pair(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """The content and style arrays at the benchmark size, as nst-core resizes them."""
    from nst_core.image import load_image, long_side_size, resize_to

    content = load_image(spec["content"]).rgb
    style = load_image(spec["style"]).rgb
    content = resize_to(content, long_side_size(content.shape[:2], spec["size"]))
    style = resize_to(style, long_side_size(style.shape[:2], spec["size"]))
    return content, style


def job_baseline(spec: dict, out: Path) -> dict:
    from .baseline import run_baseline
    from .evaluator import Evaluator

    content, style = load_pair(spec)
    evaluator = Evaluator(content, style, device=spec.get("device", "cpu"))
    result = run_baseline(evaluator, content, evaluations=spec["evaluations"])
    np.save(out / "final.npy", result.pop("image").astype(np.float16))
    return result


class Snapshots:
    """An nst-core plugin that saves the best image at chosen steps, its own time not counted."""

    def __init__(self, out: Path, every_coarse: int, every_final: int) -> None:
        self.out = out
        self.every_coarse = every_coarse
        self.every_final = every_final
        self.overhead = 0.0
        self.taken: list[dict] = []

    @hookimpl
    def nst_intermediate(self, image, progress) -> None:
        began = time.perf_counter()
        every = self.every_final if progress.scale == progress.scales else self.every_coarse
        if progress.step % every == 0:
            path = self.out / f"snap_{progress.step:05d}.npy"
            np.save(path, image.astype(np.float16))
            self.taken.append({"step": progress.step, "seconds": progress.elapsed - self.overhead,
                               "scale": progress.scale, "size": progress.size, "path": path.name,
                               "loss": progress.losses["total"]})
        self.overhead += time.perf_counter() - began


def job_nst(spec: dict, out: Path) -> dict:
    from nst_core import Config, stylize

    content, style = load_pair(spec)
    snapshots = Snapshots(out, spec.get("every_coarse", 10), spec.get("every_final", 1))
    config = Config(size=spec["size"], save_every=1, weights=spec.get("weights"), **spec.get("config", {}))
    began = time.perf_counter()
    result = stylize(content, [style], config=config, plugins=[snapshots])
    seconds = time.perf_counter() - began - snapshots.overhead
    np.save(out / "final.npy", result.image.astype(np.float16))
    snapshots.taken.append({"step": result.steps, "seconds": seconds, "scale": 0, "size": "final",
                            "path": "final.npy", "loss": result.losses.get("total", float("nan"))})
    return {"seconds": seconds, "startup_seconds": began - STARTED, "steps": result.steps, "info": dict(result.info), "snapshots": snapshots.taken,
            "snapshot_overhead": snapshots.overhead}


def own_peak_rss_mb() -> float | None:
    """This process's own peak RSS (``VmHWM``), in MB.

    Not ``getrusage``/``wait4``: on Linux a child's ``ru_maxrss`` also counts the parent's RSS
    at the time of the fork, which for the benchmark (a parent holding VGG-19 and big
    activations) is larger than most jobs' own peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(argv: list[str]) -> int:
    kind, spec_path, out = argv
    spec = json.loads(Path(spec_path).read_text())
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"baseline": job_baseline, "nst": job_nst}[kind](spec, out_dir)
    result["own_peak_rss_mb"] = own_peak_rss_mb()
    (out_dir / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
