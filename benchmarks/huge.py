"""Huge images: peak memory, wall time, seams and tiled-vs-whole quality (issue 5's acceptance).

    python -m benchmarks.huge [--quick] [--skip quality|huge]

1. **Huge**: tubingen upscaled to 4000×3000, stylized by the real ``nst-core`` command with
   default settings (output at the photo's size: ``--size 0``); wall time and the process's own
   peak RSS (``VmHWM``).
2. **Quality**: tubingen × starry night at 1024×768, 10 steps, whole and with a memory budget
   (1.5 GiB) that forces tiles; both outputs scored by the fixed fp32 evaluator of
   ``benchmarks/evaluator.py`` (content and mean Gram style distance), at 1024×768.
3. **Seams** (on every tiled output): the mean gradient magnitude of the luminance across the
   tile borders of the last size's grids, against the mean everywhere else; at 1024 px also the
   whole run's output along the same lines, as a control for what the picture has there. The benchmark
   recomputes each grid as the engine made it (same core, halo and offset sequence).

Each run is its own process (``--child``), so its peak RSS is its own. Results go to
``benchmarks/results/huge/`` (``results.json``, outputs, a seam-ratio crop picture).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGES = REPO.parent / "shared" / "images"
WEIGHTS = REPO.parent / "shared" / "weights" / "vgg19-imagenet-features.pth"
OUT = HERE / "results" / "huge"


def child(argv: list[str]) -> int:
    """Run the nst-core CLI in this process; write its own peak RSS to ``argv[0]``."""
    from nst_cli.main import main

    code = main(argv[1:])
    peak = None
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    Path(argv[0]).write_text(json.dumps({"exit_code": code, "own_peak_rss_mb": peak}))
    return code


def run_cli(name: str, args: list[str]) -> dict:
    """One ``nst-core run`` in a child process with JSON progress; its events, time and peak RSS."""
    OUT.mkdir(parents=True, exist_ok=True)
    stats = OUT / f"{name}.stats.json"
    log = OUT / f"{name}.jsonl"
    env = {**os.environ, "NST_CORE_WEIGHTS": str(WEIGHTS),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    began = time.perf_counter()
    with log.open("w") as stdout:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.huge", "--child", str(stats), "run", *args,
                               "--progress", "json"], cwd=REPO, env=env, stdout=stdout, stderr=subprocess.PIPE,
                              text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    done = events[-1]
    steps = [e for e in events if e["event"] == "progress" and not e.get("tiles")]
    result = {
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": json.loads(stats.read_text())["own_peak_rss_mb"],
        "info": done["info"],
        "steps": done["steps"],
        "losses": done["losses"],
        "stage_steps": _stage_steps(steps),
        "notices": [e["message"] for e in events if e["event"] == "notice"],
    }
    print(f"{name}: {result['wall_seconds']} s, peak RSS {result['peak_rss_mb']:.0f} MB, {result['info']['tiling']}, "
          f"stages {result['stage_steps']}", flush=True)
    return result


def _stage_steps(steps: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in steps:
        counts[event["size"]] = counts.get(event["size"], 0) + 1
    return counts


def final_grids(result: dict, hw: tuple[int, int]):
    """The grids the engine used at the last size: one per evaluation (offset sequence)."""
    from nst_core.parts import grid, shifted_offsets

    match = re.match(r"(\d+)px tiles \+ (\d+)px halo", result["info"]["tiling"])
    if not match:
        return []
    core, halo = int(match[1]), int(match[2])
    last_size = f"{hw[1]}x{hw[0]}"
    evaluations = result["stage_steps"].get(last_size, 0)
    offsets = shifted_offsets(core, 16)
    return [grid(hw, core=core, halo=halo, offset=next(offsets), strides={"relu5_1": 16}) for _ in range(evaluations)]


def seam_ratios(image: np.ndarray, grids) -> list[float]:
    """For each grid: mean |luminance step| across its core borders / mean |step| elsewhere."""
    luminance = image[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    dx = np.abs(np.diff(luminance, axis=1))  # between columns c-1 and c at dx[:, c-1]
    dy = np.abs(np.diff(luminance, axis=0))
    ratios = []
    for parts in grids:
        columns = sorted({p.core[2] for p in parts if p.core[2] > 0})
        rows = sorted({p.core[0] for p in parts if p.core[0] > 0})
        col_mask = np.zeros(dx.shape[1], bool)
        col_mask[[c - 1 for c in columns]] = True
        row_mask = np.zeros(dy.shape[0], bool)
        row_mask[[r - 1 for r in rows]] = True
        border = np.concatenate([dx[:, col_mask].ravel(), dy[row_mask, :].ravel()])
        interior = np.concatenate([dx[:, ~col_mask].ravel(), dy[~row_mask, :].ravel()])
        ratios.append(float(border.mean() / interior.mean()))
    return ratios


def load(path: Path) -> np.ndarray:
    from nst_core.image import load_image

    return load_image(path).rgb


def quality(quick: bool) -> dict:
    """Tiled and whole runs at 1024 px, scored by the fixed evaluator."""
    from nst_core.image import long_side_size, resize_to

    from .evaluator import Evaluator

    size, steps = (384, 5) if quick else (1024, 10)
    budget = "300M" if quick else "1.5G"
    content_path, style_path = IMAGES / "tubingen.jpg", IMAGES / "starry_night.jpg"
    common = [str(content_path), str(style_path), "--size", str(size), "-n", str(steps)]
    whole = run_cli("whole", [*common, "-o", str(OUT / "whole.png")])
    tiled = run_cli("tiled", [*common, "-o", str(OUT / "tiled.png"), "--max-memory", budget])
    content, style = load(content_path), load(style_path)
    content = resize_to(content, long_side_size(content.shape[:2], size))
    style = resize_to(style, long_side_size(style.shape[:2], size))
    evaluator = Evaluator(content, style)
    scores = {name: evaluator.score(load(OUT / f"{name}.png")) for name in ("whole", "tiled")}
    scores["photo"] = evaluator.score(content)
    tiled_image = load(OUT / "tiled.png")
    grids = final_grids(tiled, tiled_image.shape[:2])
    ratios = seam_ratios(tiled_image, grids)
    # control: the whole run's output measured along the same lines; at 1024 px a grid has
    # few border pixels, so what the picture has there (roof edges …) moves the ratio by ±20 %
    control = seam_ratios(load(OUT / "whole.png"), grids)
    report = {
        "size": size, "steps": steps, "budget": budget, "whole": whole, "tiled": tiled, "scores": scores,
        "style_ratio": scores["tiled"]["style"] / scores["whole"]["style"],
        "content_ratio": scores["tiled"]["content"] / scores["whole"]["content"],
        "seam_ratios": ratios,
        "seam_ratios_of_whole_output": control,
        "seam_ratios_tiled_over_whole": [t / w for t, w in zip(ratios, control)],
    }
    print(f"quality at {size}: whole {scores['whole']}, tiled {scores['tiled']}; tiled/whole style "
          f"{report['style_ratio']:.3f}, content {report['content_ratio']:.3f}; seams {[round(r, 3) for r in ratios]}, "
          f"whole output on the same lines {[round(r, 3) for r in control]}",
          flush=True)
    return report


def huge(quick: bool) -> dict:
    """The 4000×3000 photo with default settings, at its own size."""
    from nst_core.image import resize_to, save_image

    hw = (750, 1000) if quick else (3000, 4000)
    big = OUT / f"tubingen_{hw[1]}x{hw[0]}.png"
    if not big.is_file():
        save_image(big, resize_to(load(IMAGES / "tubingen.jpg"), hw))
    extra = ["--max-memory", "400M", "-n", "4"] if quick else []
    output = OUT / f"huge_{hw[1]}x{hw[0]}.png"
    result = run_cli("huge", [str(big), str(IMAGES / "starry_night.jpg"), "-o", str(output), "--size", "0", *extra])
    image = load(output)
    result["seam_ratios"] = seam_ratios(image, final_grids(result, hw))
    result["megapixels"] = hw[0] * hw[1] / 1e6
    print(f"huge {hw[1]}x{hw[0]}: seams {[round(r, 3) for r in result['seam_ratios']]}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a minute or two")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: quality, huge")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict = {"torch_threads": __import__("torch").get_num_threads()}
    if "huge" not in skip:
        results["huge"] = huge(args.quick)
        (OUT / "results.json").write_text(json.dumps(results, indent=1))
    if "quality" not in skip:
        results["quality"] = quality(args.quick)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
