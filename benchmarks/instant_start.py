"""Does the instant start pay? Time to quality of the optimization from the photo and from the
instant method's result, on several photo–painting pairs (issue 16).

For each pair, two runs of the ``balanced`` preset (50 steps at 512 px, embedded VGG-19) in their
own processes: ``--init content`` (today's default) and ``--init instant``. Snapshots of every step
are scored afterwards by the benchmark's fixed evaluator (``evaluator.py``: the paper's objective
on the float VGG-19). Reported per pair and as the median over pairs:

* the quality each start reaches after 0, 15 (``preview``) and 50 (``balanced``) steps;
* the time the instant start takes to reach the content start's final (50-step) quality, as a
  share of the content start's time (target: ≤ 60 % as the median).

    python -m benchmarks.instant_start                 # 4 pairs, 512 px, 50 steps
    python -m benchmarks.instant_start --pairs 6 --size 384
    python -m benchmarks.instant_start --quick         # 2 pairs, 128 px, 8 steps: a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from .run_benchmark import IMAGES, REPO, describe_machine, run_job, score_snapshots, time_to_reach

#: Photos (../shared/images and scikit-image's) and paintings, paired so that every painting
#: meets several photos.
PAIRS = (
    ("tubingen", "starry_night"),
    ("astronaut", "the_scream"),
    ("coffee", "shipwreck"),
    ("chelsea", "starry_night"),
    ("tubingen", "shipwreck"),
    ("astronaut", "starry_night"),
)


def photo_file(name: str, folder: Path) -> Path:
    """A photo as a file: ../shared/images/NAME.jpg, or scikit-image's ``data.NAME()`` saved as PNG."""
    shared = IMAGES / f"{name}.jpg"
    if shared.is_file():
        return shared
    import skimage.data
    from PIL import Image

    path = folder / f"{name}.png"
    if not path.is_file():
        Image.fromarray(getattr(skimage.data, name)()).save(path)
    return path


def quality_at(curve: list[tuple[float, float]], steps: list[int], step: int) -> float:
    """The evaluator's loss of the snapshot taken at ``step`` (the last one before it)."""
    best = curve[0][1]
    for (_, loss), taken in zip(curve, steps):
        if taken <= step:
            best = loss
    return best


def run_pair(photo: str, painting: str, *, size: int, steps: int, out: Path) -> dict:
    from .evaluator import Evaluator
    from .jobs import load_pair

    content_path = photo_file(photo, out)
    style_path = IMAGES / f"{painting}.jpg"
    spec = {"content": str(content_path), "style": str(style_path), "size": size}
    evaluator = Evaluator(*load_pair(spec))
    report: dict = {"pair": f"{photo} x {painting}"}
    curves = {}
    for init in ("content", "instant"):
        job = dict(spec, config={"iterations": steps, "init": init}, every_final=1)
        result = run_job("nst", job, out / f"{photo}-{painting}-{init}")
        curve = score_snapshots(result, out / f"{photo}-{painting}-{init}", evaluator)
        taken = [snap["step"] for snap in result["snapshots"]]
        start = evaluator.score(_start_image(content_path, style_path, size, init))["total"]
        curves[init] = ([(0.0, start)] + curve, [0] + taken)
        report[init] = {
            "seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"],
            "quality": {str(k): quality_at(*curves[init], k) for k in (0, 15, steps)},
        }
    target = report["content"]["quality"][str(steps)]
    reached = time_to_reach(curves["instant"][0], target)
    report["target"] = target
    report["instant_seconds_to_target"] = reached
    report["share_of_content_time"] = None if reached is None else reached / report["content"]["seconds"]
    return report


def _start_image(content: Path, style: Path, size: int, init: str) -> np.ndarray:
    """What each start begins from: the photo, or the instant result (scored at step 0)."""
    from .jobs import load_pair

    photo, painting = load_pair({"content": str(content), "style": str(style), "size": size})
    if init == "content":
        return photo
    from nst_core import Config, stylize

    return stylize(photo, [painting], config=Config(method="instant", size=None)).image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4, help=f"how many pairs (at most {len(PAIRS)})")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="2 pairs, 128 px, 8 steps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "instant_start")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.size, args.steps = 2, 128, 8
    args.out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    print(f"machine: {machine['cpu']} ({machine['capability']}, {machine['threads']} threads)", flush=True)
    reports = []
    for photo, painting in PAIRS[: args.pairs]:
        report = run_pair(photo, painting, size=args.size, steps=args.steps, out=args.out)
        reports.append(report)
        q = {init: report[init]["quality"] for init in ("content", "instant")}
        share = report["share_of_content_time"]
        print(f"{report['pair']:28s} quality at 0/15/{args.steps} steps: photo start "
              f"{'/'.join(f'{v:.3f}' for v in q['content'].values())}, instant start "
              f"{'/'.join(f'{v:.3f}' for v in q['instant'].values())}; instant start reaches the photo "
              f"start's final in {'never' if share is None else f'{100 * share:.0f} %'} of its time "
              f"({report['content']['seconds']:.0f} s)", flush=True)
    shares = [r["share_of_content_time"] for r in reports]
    reached = [s for s in shares if s is not None]
    summary = {
        "machine": machine, "size": args.size, "steps": args.steps, "pairs": reports,
        "median_share": statistics.median([s if s is not None else float("inf") for s in shares]),
        "worst_share": max(shares, key=lambda s: float("inf") if s is None else s),
        "reached": f"{len(reached)} of {len(shares)}",
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    print(f"median share of the photo start's time: {summary['median_share']:.2f} "
          f"(worst {summary['worst_share']}); reached in {summary['reached']} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
