"""A style per region (issue 19): does each region take its own painting, does a "none" region
keep the photo, and what do regions cost?

    .venv/bin/python -m benchmarks.regions            # 3 pairs at 256 px, 50 steps (~15 min on 2 busy cores)
    .venv/bin/python -m benchmarks.regions --quick    # 1 pair at 128 px, 10 steps: a smoke run
    .venv/bin/python -m benchmarks.regions --picture-only   # redraw docs/images/regions.jpg

For each held-out pair (a photo and two paintings A and B; none of them was used to tune the
regions' code, whose tests use synthetic stripes and dots), with soft left/right masks (the left
half, a linear ramp over the middle 10 % of the width, and its complement), three runs of the
same size and steps (the default ``balanced`` settings, the embedded VGG-19), in this order:

* **one painting**: ``Config()`` with A everywhere (the time reference);
* **two regions**: A on the left mask, B on the right one;
* **a kept region**: A on the left, ``none`` (keep the photo) on the right.

Scored with the instant benchmark's scorer (:class:`benchmarks.instant.Scorer`: the evaluator's
relative distances on the float VGG-16, independent of the engine's network) on each region's
interior (the ramp left out), cropped from the output and from the photo:

* *style distance* of a region to a painting: mean over relu1_1…relu5_1 of
  ‖G(out)−G(painting)‖²/‖G(painting)‖², divided by the same for the photo's crop (the photo
  scores 1.0). Target: the distance to the region's own painting ≤ 0.6 × the distance to the
  other painting. The raw (undivided) distances are reported too;
* *content distance* of the kept region: ‖F(out)−F(photo)‖²/‖F(photo)‖² at relu4_2 on the crop,
  divided by the same for the painting resized to the crop (the painting scores 1.0). Target
  ≤ 0.1. The raw relative error is reported too;
* *time*: the two-region run's time ÷ the one-painting run's, measured in the same process one
  after the other (after a warm-up), as wall time and as the process's CPU time (on a host that
  other jobs share, wall times of runs a minute apart differ by up to 2× for the same work; CPU
  time much less). ``--timing`` measures only this, more carefully: ``--repeats`` alternating
  pairs of runs (one painting, then two regions, then the other order) of the same size and
  steps, median of the ratios. Target ≤ 1.3.

Results: ``benchmarks/out/regions/results.json`` and ``docs/images/regions.jpg`` (the first
pair: photo, the two masks, the two-region result, the kept-region result).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from nst_core import Config, Region, stylize
from nst_core.image import load_image, long_side_size, resize_to, save_image

from .instant import Scorer, vgg16_to_relu5_1
from .instant_start import photo_file
from .run_benchmark import IMAGES, REPO, describe_machine

OUT = REPO / "benchmarks" / "out" / "regions"
PICTURE = REPO / "docs" / "images" / "regions.jpg"
#: (photo, painting A on the left, painting B on the right).
PAIRS = (
    ("tubingen", "starry_night", "the_scream"),
    ("astronaut", "the_scream", "shipwreck"),
    ("coffee", "shipwreck", "starry_night"),
)
#: The soft border: a linear ramp over this fraction of the width, centred.
RAMP = 0.10
OWN_OVER_OTHER = 0.6
KEPT_CONTENT = 0.1
TIME_RATIO = 1.3


def left_mask(hw: tuple[int, int]) -> np.ndarray:
    """1 on the left, 0 on the right, a linear ramp over :data:`RAMP` of the width in the middle."""
    height, width = hw
    ramp = RAMP * width
    columns = np.arange(width) + 0.5
    return np.clip((width / 2 + ramp / 2 - columns) / ramp, 0, 1)[None].repeat(height, 0).astype(np.float32)


def interiors(width: int) -> dict[str, slice]:
    """Each region's columns without the ramp."""
    ramp = int(np.ceil(RAMP * width / 2))
    return {"left": slice(0, width // 2 - ramp), "right": slice(width // 2 + ramp, width)}


def timed(photo: np.ndarray, paintings: list[np.ndarray], config: Config) -> tuple[np.ndarray, float, float]:
    """The result, its wall time and the process's CPU time (every thread)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = stylize(photo, paintings, config=config)
    return result.image, time.perf_counter() - started, time.process_time() - cpu


def timing(size: int, steps: int, repeats: int, folder: Path) -> dict:
    """Alternating one-painting and two-region runs of the first pair: ratios of wall and CPU time."""
    photo_name, a_name, b_name = PAIRS[0]
    photo = load_image(photo_file(photo_name, folder)).rgb
    photo = resize_to(photo, long_side_size(photo.shape[:2], size))
    paintings = [load_image(IMAGES / f"{name}.jpg").rgb for name in (a_name, b_name)]
    left = left_mask(photo.shape[:2])
    one = Config(size=size, iterations=steps)
    two = one.replace(regions=(Region(mask=left, style=0), Region(mask=1 - left, style=1)))
    runs = []
    for repeat in range(repeats):
        order = [("one", one), ("two", two)] if repeat % 2 == 0 else [("two", two), ("one", one)]
        times = {}
        for name, config in order:
            _, wall, cpu = timed(photo, paintings if name == "two" else paintings[:1], config)
            times[name] = {"wall": wall, "cpu": cpu}
        runs.append(times)
        print(json.dumps(times), flush=True)
    wall = [run["two"]["wall"] / run["one"]["wall"] for run in runs]
    cpu = [run["two"]["cpu"] / run["one"]["cpu"] for run in runs]
    return {"size": f"{photo.shape[1]}x{photo.shape[0]}", "steps": steps, "runs": runs,
            "wall_ratio_median": float(np.median(wall)), "cpu_ratio_median": float(np.median(cpu)),
            "wall_ratios": wall, "cpu_ratios": cpu}


def run_pair(names: tuple[str, str, str], size: int, steps: int, vgg16, folder: Path) -> dict:
    photo_name, a_name, b_name = names
    photo = load_image(photo_file(photo_name, folder)).rgb
    photo = resize_to(photo, long_side_size(photo.shape[:2], size))
    paintings = [load_image(IMAGES / f"{name}.jpg").rgb for name in (a_name, b_name)]
    hw = photo.shape[:2]
    left = left_mask(hw)
    base = Config(size=size, iterations=steps)
    one, one_seconds, one_cpu = timed(photo, paintings[:1], base)
    two, two_seconds, two_cpu = timed(photo, paintings, base.replace(
        regions=(Region(mask=left, style=0), Region(mask=1 - left, style=1))))
    kept, kept_seconds, kept_cpu = timed(photo, paintings[:1], base.replace(
        regions=(Region(mask=left, style=0), Region(mask=1 - left, style=None))))
    for name, image in (("one", one), ("two", two), ("kept", kept)):
        save_image(OUT / f"{photo_name}_{name}.png", image)

    columns = interiors(hw[1])
    crop = {side: photo[:, cols] for side, cols in columns.items()}
    regions = {}
    for side, own, other in (("left", 0, 1), ("right", 1, 0)):
        out = two[:, columns[side]]
        scores = {}
        for label, index in (("own", own), ("other", other)):
            scorer = Scorer(crop[side], resize_to(paintings[index], long_side_size(paintings[index].shape[:2], size)),
                            vgg16)
            scores[label] = scorer.distances(out)
        regions[side] = {
            "painting": (a_name, b_name)[own],
            "style_own": scores["own"]["style"], "style_other": scores["other"]["style"],
            "style_own_raw": scores["own"]["style_raw"], "style_other_raw": scores["other"]["style_raw"],
            "ratio": scores["own"]["style"] / scores["other"]["style"],
            "ratio_raw": scores["own"]["style_raw"] / scores["other"]["style_raw"],
        }
    painting_a = resize_to(paintings[0], long_side_size(paintings[0].shape[:2], size))
    kept_scores = Scorer(crop["right"], painting_a, vgg16).distances(kept[:, columns["right"]])
    painted_scores = Scorer(crop["left"], painting_a, vgg16).distances(kept[:, columns["left"]])
    return {
        "photo": photo_name, "a": a_name, "b": b_name, "size": f"{hw[1]}x{hw[0]}", "steps": steps,
        "regions": regions,
        "kept": {"content": kept_scores["content"], "content_raw": kept_scores["content_raw"],
                 "painted_side_style_to_a": painted_scores["style"]},
        "seconds": {"one": one_seconds, "two": two_seconds, "kept": kept_seconds},
        "cpu_seconds": {"one": one_cpu, "two": two_cpu, "kept": kept_cpu},
        "time_ratio": two_seconds / one_seconds,
        "cpu_time_ratio": two_cpu / one_cpu,
        "kept_time_ratio": kept_seconds / one_seconds,
    }


def targets(rows: list[dict]) -> dict:
    ratios = [region["ratio"] for row in rows for region in row["regions"].values()]
    contents = [row["kept"]["content"] for row in rows]
    times = [row.get("cpu_time_ratio", row["time_ratio"]) for row in rows]
    return {
        "style_own_over_other": {"worst": max(ratios), "target": OWN_OVER_OTHER, "met": max(ratios) <= OWN_OVER_OTHER},
        "kept_content_distance": {"worst": max(contents), "target": KEPT_CONTENT, "met": max(contents) <= KEPT_CONTENT},
        "time_two_over_one": {"median": float(np.median(times)), "worst": max(times), "target": TIME_RATIO,
                              "met": float(np.median(times)) <= TIME_RATIO},
    }


def picture(row: dict, path: Path = PICTURE, height: int = 192) -> Path:
    """Photo | mask A | mask B | two regions | A and a kept region, one row."""
    photo = np.asarray(Image.open(OUT / f"{row['photo']}_photo.png").convert("RGB"), dtype=np.float32) / 255
    left = left_mask(photo.shape[:2])
    panels = [photo, np.repeat(left[..., None], 3, 2), np.repeat(1 - left[..., None], 3, 2)]
    panels += [np.asarray(Image.open(OUT / f"{row['photo']}_{name}.png").convert("RGB"), dtype=np.float32) / 255
               for name in ("two", "kept")]
    width = round(photo.shape[1] * height / photo.shape[0])
    gap = np.full((height, 6, 3), 0.5, np.float32)  # grey: the masks are white at their ends
    strip = []
    for panel in panels:
        strip += [resize_to(panel, (height, width)), gap]
    image = (np.concatenate(strip[:-1], axis=1) * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=88)
    return path


def table(rows: list[dict]) -> str:
    lines = ["| photo | left: A | right: B | style own / other, left (raw) | right (raw) | kept region's content "
             "distance (raw) | time two regions / one painting |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        left, right = row["regions"]["left"], row["regions"]["right"]
        lines.append(
            f"| {row['photo']} {row['size']} | {row['a']} | {row['b']} | {left['ratio']:.2f} ({left['ratio_raw']:.2f}) "
            f"| {right['ratio']:.2f} ({right['ratio_raw']:.2f}) | {row['kept']['content']:.3f} "
            f"({row['kept']['content_raw']:.3f}) | {row['seconds']['two']:.1f} s / {row['seconds']['one']:.1f} s = "
            f"{row['time_ratio']:.2f} (CPU time: {row.get('cpu_time_ratio', float('nan')):.2f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    parser.add_argument("--quick", action="store_true", help="1 pair, 128 px, 10 steps")
    parser.add_argument("--picture-only", action="store_true")
    parser.add_argument("--timing", action="store_true", help="only the time ratio, --repeats alternating pairs")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.picture_only:
        rows = json.loads((OUT / "results.json").read_text())["pairs"]
        print(picture(rows[0]))
        return 0
    if args.quick:
        args.size, args.steps, args.pairs = 128, 10, 1
    if args.timing:
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as folder:
            warm = load_image(photo_file(PAIRS[0][0], Path(folder))).rgb
            stylize(warm, [warm], config=Config(size=64, iterations=2))
            result = timing(args.size, args.steps, args.repeats, Path(folder))
        result["load_average"] = {"before": load_before, "after": os.getloadavg()}
        result["machine"] = describe_machine()
        (OUT / "timing.json").write_text(json.dumps(result, indent=1))
        print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "machine")}, indent=1))
        return 0
    vgg16 = vgg16_to_relu5_1()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        # warm-up: the weights and the layout probe, once per process, outside the timings
        warm = load_image(photo_file(PAIRS[0][0], Path(folder))).rgb
        stylize(warm, [warm], config=Config(size=64, iterations=2))
        rows = []
        for names in PAIRS[: args.pairs]:
            row = run_pair(names, args.size, args.steps, vgg16, Path(folder))
            photo = load_image(photo_file(names[0], Path(folder))).rgb
            save_image(OUT / f"{names[0]}_photo.png", resize_to(photo, long_side_size(photo.shape[:2], args.size)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    results = {"machine": describe_machine(), "load_average": {"before": load_before, "after": os.getloadavg()},
               "pairs": rows, "targets": targets(rows)}
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print(table(rows))
    print(json.dumps(results["targets"], indent=1))
    print(json.dumps(results["load_average"]))
    print(picture(rows[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
