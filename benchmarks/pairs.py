"""Time to the textbook baseline's quality over many photo–painting pairs (issue 17), in one run.

The benchmark of ``run_benchmark.py`` on one pair, repeated over pairs: for each, the textbook
baseline (``baseline.py``: fp32 L-BFGS, one scale, ``--baseline-evaluations`` evaluations) sets a
target, the final loss of its image under the fixed evaluator (``evaluator.py``); each nst-core
configuration is timed until its image reaches that target (snapshots every step, scored after
the run; each job in its own process, peak RSS its own). Reported per configuration: the
speed-up (baseline seconds / nst-core seconds to the target) of every pair, their **median** and
**worst**, the steps each pair needed, and each run's peak RSS.

The configurations are those ``--candidates`` names, by default ``instant-init``: the presets'
start (the instant result) with ``--steps`` steps. Step counts need no candidates: the steps each
pair needed to reach the target say what a preset must allow.

Photos: tubingen (``../shared/images``) and scikit-image's astronaut, coffee and chelsea;
paintings: starry_night, the_scream, shipwreck. ``--pairs 6`` takes six of the twelve so that
every photo and every painting appears; ``--pairs 12`` takes all.

    python -m benchmarks.pairs                          # 512 px, 6 pairs: ~2 h on 2 AVX2 cores
    python -m benchmarks.pairs --steps 70 --every 2 --only coffee-shipwreck,chelsea-starry_night,tubingen-the_scream
                                                        # half of them (a 512-px baseline is 10-18 min)
    python -m benchmarks.pairs --size 256 --pairs 6     # ~30–40 min
    python -m benchmarks.pairs --size 1024 --pairs 3 --baseline-evaluations 0 --candidates balanced,balanced-ladder
                                                        # no baseline: candidates' time and final loss
                                                        # against the first's; ~80 min on 2 AVX2
                                                        # cores (a full-size step ~20-25 s)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from .batch import make_photos
from .run_benchmark import IMAGES, REPO, describe_machine, run_job, score_snapshots, time_to_reach

PHOTO_NAMES = ("tubingen", "astronaut", "coffee", "chelsea")
PAINTINGS = ("starry_night", "the_scream", "shipwreck")
#: Six pairs in which every photo and every painting appears (the benchmark's own pair last).
SIX = (("astronaut", "the_scream"), ("coffee", "shipwreck"), ("chelsea", "starry_night"),
       ("tubingen", "the_scream"), ("astronaut", "shipwreck"), ("tubingen", "starry_night"))
#: Configurations to compare; ``weights`` goes to the job (``None``: the embedded 8-bit VGG-19).
CANDIDATES = {
    # Config()'s settings: the Python API's default, which starts from the photo
    "default": {},
    "float-vgg19": {"weights": str(REPO.parent / "shared" / "weights" / "vgg19-imagenet-features.pth")},
    "no-tv": {"tv_weight": 0.0},
    "adam": {"optimizer": "adam", "learning_rate": 0.02},
    "coarse-to-fine": {"scales": 2, "coarse_iterations": 100},
    # what the automatic ladder of nst_core.schedule would give 1024x768 if it began above 768 px
    # (DETAIL_SIDE 768): 50 steps at half size, 10 at full; measured at 512 px from the instant
    # start (instant-ladder) and rejected, see the README's "One scale by default"
    "ladder": {"scales": 2, "coarse_iterations": 50, "iterations": 10},
    "fifty": {"iterations": 50},
    # start from the instant method's result instead of the photo: what every preset (and so the
    # command line's default, balanced) does, with --steps steps
    "instant-init": {"init": "instant"},
    # the same without total variation (the evaluator, like the paper, has none)
    "instant-no-tv": {"init": "instant", "tv_weight": 0.0},
    # the presets' start with plain L-BFGS, as before the smoothing preconditioner
    # (nst_core.smoothing) became the default
    "instant-plain": {"init": "instant", "lbfgs_smoothing": 0.0},
    # the presets' start with PyTorch's own convolutions only (auto may pick Winograd's,
    # nst_core.winograd), and with Winograd's always
    "instant-standard": {"init": "instant", "convolution": "standard"},
    "instant-winograd": {"init": "instant", "convolution": "winograd"},
    # the balanced preset (50 steps from the instant result) at full size, and on that ladder
    "balanced": {"iterations": 50, "init": "instant"},
    "balanced-ladder": {"scales": 2, "coarse_iterations": 50, "iterations": 10, "init": "instant"},
    # the instant result refined at half size first: 50 steps there (a quarter of the pixels),
    # then up to 40 at full size, scored along the way
    "instant-ladder": {"scales": 2, "coarse_iterations": 50, "iterations": 40, "init": "instant"},
}


def pairs(count: int) -> list[tuple[str, str]]:
    if count <= len(SIX):
        return list(SIX[:count])
    rest = [(p, s) for p in PHOTO_NAMES for s in PAINTINGS if (p, s) not in SIX]
    return [*SIX, *rest][:count]


def chosen_pairs(args) -> list[tuple[str, str]]:
    """``--only``'s pairs (checked against the photos and paintings), else the first ``--pairs``."""
    if not args.only:
        return pairs(args.pairs)
    chosen = [tuple(item.split("-", 1)) for item in args.only.split(",")]
    for pair in chosen:
        if len(pair) != 2 or pair[0] not in PHOTO_NAMES or pair[1] not in PAINTINGS:
            raise SystemExit(f"--only: {'-'.join(pair)!r} is not PHOTO-PAINTING with a photo of "
                             f"{', '.join(PHOTO_NAMES)} and a painting of {', '.join(PAINTINGS)}")
    return chosen


def run_pair(photo: Path, painting: Path, args, out: Path) -> dict:
    from .evaluator import Evaluator
    from .jobs import load_pair

    spec = {"content": str(photo), "style": str(painting), "size": args.size, "device": "cpu"}
    evaluator = Evaluator(*load_pair(spec), device="cpu")
    if args.baseline_evaluations:
        baseline = _reused_baseline(spec, args, out / "baseline") or run_job(
            "baseline", {**spec, "evaluations": args.baseline_evaluations}, out / "baseline")
        target = baseline["score"]["total"]
        row = {"baseline_seconds": baseline["seconds"], "baseline_peak_rss_mb": baseline["peak_rss_mb"],
               "target": target, "nst": {}}
        spec["every_final"] = args.every
    else:  # candidates against each other: final scores and times only (no snapshots but the last)
        baseline, target, row = {"seconds": float("nan")}, -float("inf"), {"target": None, "nst": {}}
        spec["every_final"] = spec["every_coarse"] = 10**6
    for name in args.candidates.split(","):
        config = {"memory_format": "auto", "iterations": args.steps, **CANDIDATES[name]}
        weights = config.pop("weights", None)
        result = run_job("nst", {**spec, "weights": weights, "config": config}, out / name)
        curve = score_snapshots(result, out / name, evaluator)
        reach = time_to_reach(curve, target)
        steps = next((snap["step"] for snap, (_, loss) in zip(result["snapshots"], curve) if loss <= target), None)
        row["nst"][name] = {"seconds_to_target": reach, "steps_to_target": steps,
                            "speedup": baseline["seconds"] / reach if reach else None,
                            "final_score": curve[-1][1], "seconds": result["seconds"],
                            "peak_rss_mb": result["peak_rss_mb"], "info": result["info"]}
    return row


def _reused_baseline(spec: dict, args, out: Path) -> dict | None:
    """The baseline a run with the same pair, size and evaluations left in ``out`` (``--reuse``)."""
    done = out / "result.json"
    if not args.reuse or not done.is_file():
        return None

    def same(spec: dict) -> dict:  # the photos are made afresh in a temporary folder, the same each time
        return {**spec, "content": Path(spec["content"]).name}

    if same(json.loads((out / "spec.json").read_text())) != same({**spec, "evaluations": args.baseline_evaluations}):
        return None
    result = json.loads(done.read_text())
    result["peak_rss_mb"] = result.get("own_peak_rss_mb")
    return result


def comparison(rows: list[dict], name: str, reference: str) -> str:
    """``name`` against ``reference`` without a baseline: median and worst ratios of time and score."""
    times = [r["nst"][name]["seconds"] / r["nst"][reference]["seconds"] for r in rows]
    scores = [r["nst"][name]["final_score"] / r["nst"][reference]["final_score"] for r in rows]
    return (f"{name:15} time {statistics.median(times):.2f}× {reference}'s (max {max(times):.2f}×), "
            f"final loss {statistics.median(scores):.2f}× (worst {max(scores):.2f}×)")


def summary(rows: list[dict], name: str) -> str:
    speedups = [r["nst"][name]["speedup"] for r in rows]
    reached = [s for s in speedups if s is not None]
    steps = [r["nst"][name]["steps_to_target"] for r in rows if r["nst"][name]["steps_to_target"] is not None]
    never = len(speedups) - len(reached)
    median = statistics.median([s or 0.0 for s in speedups])  # a pair that never reaches counts as 0×
    worst = min(s or 0.0 for s in speedups)
    return (f"{name:15} median {median:.1f}×, worst {worst:.1f}×"
            + (f" ({never} pair(s) never reached the target)" if never else "")
            + (f"; steps to the target: median {statistics.median(steps):.0f}, max {max(steps)}" if steps else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--only", default="", help="comma-separated PHOTO-PAINTING pairs to run instead, "
                        "e.g. coffee-shipwreck,tubingen-the_scream (a 512-px baseline costs 10-18 min)")
    parser.add_argument("--baseline-evaluations", type=int, default=300)
    parser.add_argument("--steps", type=int, default=100, help="nst-core's steps (enough to reach every target)")
    parser.add_argument("--every", type=int, default=1, help="score nst-core's image every N steps")
    parser.add_argument("--reuse", action="store_true", help="reuse baselines a run left in --out (same spec)")
    parser.add_argument("--candidates", default="instant-init", help=f"comma-separated, of: {', '.join(CANDIDATES)}")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "pairs")
    args = parser.parse_args(argv)
    chosen = chosen_pairs(args)  # a bad --only stops here, before any work
    machine = describe_machine()
    print(f"machine: {machine['cpu']} ({', '.join(machine['flags'])}), {machine['threads']} threads; "
          f"{args.size} px, baseline {args.baseline_evaluations} evaluations", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        photos = dict(zip(PHOTO_NAMES, make_photos(Path(folder), len(PHOTO_NAMES))))
        for photo, painting in chosen:
            row = run_pair(photos[photo], IMAGES / f"{painting}.jpg", args, args.out / f"{photo}-{painting}")
            rows.append({"photo": photo, "painting": painting, **row})
            if not args.baseline_evaluations:
                cells = ", ".join(f"{name} {r['seconds']:.0f} s, loss {r['final_score']:.3f}" for name, r in row["nst"].items())
                print(f"{photo:>9} × {painting:12}: {cells}", flush=True)
                continue
            cells = ", ".join(
                f"{name} {r['speedup']:.1f}× ({r['steps_to_target']} steps)" if r["speedup"] else f"{name} never"
                for name, r in row["nst"].items())
            print(f"{photo:>9} × {painting:12}: baseline {row['baseline_seconds']:.0f} s → {cells}", flush=True)
    names = args.candidates.split(",")
    for name in names:
        print(comparison(rows, name, names[0]) if not args.baseline_evaluations else summary(rows, name))
    (args.out / "results.json").write_text(json.dumps({"machine": machine, "args": vars(args), "rows": rows},
                                                      indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
