"""What an optimization step costs against its network (issue 17), in one run on this machine.

For each size (256, 512 and 1024 px long side, 4:3) and each precision, memory layout and
convolution method this machine offers (fp32 contiguous and channels_last; fp32 with Winograd's
convolutions where NNPACK runs, :mod:`nst_core.winograd`; bf16 too where
:func:`nst_core.precision.fast_bf16` says bf16 is fast), three figures:

* **bare**: the network alone, VGG-19 with the real float weights, forward to ``relu5_1`` and the
  gradient of one scalar with respect to the input image (weights frozen), in that precision,
  layout and convolution method: what a step cannot go below;
* **step**: an nst-core step as the engine runs it (:func:`nst_core.stylize`, the default
  objective: content, five Gram terms, total variation, L-BFGS), timed between successive
  progress events, so L-BFGS's own work and every copy and addition count;
* **conv share**: the fraction of a step's CPU time spent in convolutions, forward and backward
  (self time of every operator, profiled over steps 2… of one more run that is not timed).

Bare and step alternate, ``--repeats`` times each, and each figure is the median (the spread,
min–max, is printed beside it): the host is shared, so only ratios measured side by side mean
anything. The target is ``step / bare ≤ 1.3`` at 512 px. The last column is each step against
the fp32 contiguous standard step of the same size (medians of the same run).

    python -m benchmarks.step_cost                    # 256, 512, 1024 (~10 min on 2 AVX2 cores)
    python -m benchmarks.step_cost --sizes 256,512 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# nst_core before torch, as the command imports them: it sets PyTorch's allocator up (huge pages,
# nst_core.malloc) before PyTorch loads; imported after, the steps would run without it
from nst_core import Config, hookimpl, stylize, winograd  # isort: skip

import numpy as np
import torch

from nst_core.device import autocast

from .evaluator import SHARED
from .run_benchmark import IMAGES, REPO, describe_machine

WEIGHTS = SHARED / "weights" / "vgg19-imagenet-features.pth"
CONV_OPS = ("convolution", "conv2d", "mkldnn_convolution", "_convolution")


class StepClock:
    """A run plugin that notes when each step ends and profiles steps ``2…`` (after targets)."""

    def __init__(self, profile: bool) -> None:
        self.ends: list[float] = []
        self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profile else None

    @hookimpl
    def nst_progress(self, progress) -> None:
        self.ends.append(time.perf_counter())
        if self.profiler is not None and progress.step == 1:
            self.profiler.start()

    def step_seconds(self) -> float:
        return statistics.median(np.diff(self.ends))

    def conv_share(self) -> float | None:
        if self.profiler is None:
            return None
        self.profiler.stop()
        events = self.profiler.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        conv = sum(e.self_cpu_time_total for e in events if any(op in e.key for op in CONV_OPS))
        return conv / total if total else None


def photo_and_painting(size: int) -> tuple[np.ndarray, np.ndarray]:
    from nst_core.image import load_image, long_side_size, resize_to

    photo = load_image(IMAGES / "tubingen.jpg").rgb
    painting = load_image(IMAGES / "starry_night.jpg").rgb
    photo = resize_to(photo, long_side_size(photo.shape[:2], size))
    return photo, painting


def engine_step(photo, painting, size: int, variant: tuple[str, str, str], steps: int, profile: bool):
    clock = StepClock(profile)
    precision, layout, convolution = variant
    config = Config(size=size, iterations=steps, precision=precision, memory_format=layout,
                    convolution=convolution, weights=str(WEIGHTS), model="vgg19")
    stylize(photo, [painting], config=config, plugins=[clock])
    return clock.step_seconds(), clock.conv_share()


def bare_network(size_hw: tuple[int, int], variant: tuple[str, str, str]):
    """``step()`` → seconds of one forward to relu5_1 and input gradient, in this precision, layout
    and convolution method."""
    from nst_core.plugins import shared_registries

    config = Config(weights=str(WEIGHTS), model="vgg19")
    extractor = shared_registries().extractors.get("vgg19").build(config=config, layers=["relu5_1"], device=torch.device("cpu"))
    precision, layout, convolution = variant
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    extractor = extractor.to(memory_format=memory_format)
    if convolution == "winograd":
        extractor = winograd.with_winograd(extractor)
    image = torch.rand((1, 3, *size_hw), generator=torch.Generator().manual_seed(0))

    def step() -> float:
        began = time.perf_counter()
        point = image.contiguous(memory_format=memory_format).requires_grad_(True)
        with autocast(precision, torch.device("cpu")):
            features = extractor(point)["relu5_1"]
        features.float().square().mean().backward()
        return time.perf_counter() - began

    step()  # warm-up: oneDNN picks its kernels
    return step


def variants(machine: dict) -> list[tuple[str, str, str]]:
    found = [("fp32", "contiguous", "standard"), ("fp32", "channels_last", "standard")]
    if winograd.available(torch.device("cpu")):
        found.append(("fp32", "contiguous", "winograd"))
    if machine["fast_bf16"]:
        found += [("bf16", "contiguous", "standard"), ("bf16", "channels_last", "standard")]
    return found


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def measure(size: int, variant: tuple[str, str, str], repeats: int, steps: int) -> dict:
    photo, painting = photo_and_painting(size)
    hw = photo.shape[:2]
    bare = bare_network(hw, variant)
    bare_times, step_times, ratios = [], [], []
    for _ in range(repeats):
        b = statistics.median(bare() for _ in range(3))
        s, _share = engine_step(photo, painting, size, variant, steps, profile=False)
        bare_times.append(b)
        step_times.append(s)
        ratios.append(s / b)
    # the profiler slows what it watches: its run is not timed
    share = engine_step(photo, painting, size, variant, min(steps, 4), profile=True)[1]
    precision, layout, convolution = variant
    return {
        "size": f"{hw[1]}x{hw[0]}", "precision": precision, "layout": layout, "convolution": convolution,
        "bare_s": bare_times, "step_s": step_times, "ratio": ratios,
        "conv_share": share,
    }


def table(rows: list[dict]) -> str:
    lines = [f"{'size':>9}  {'precision':9} {'layout':13} {'conv':9} {'bare s':>20} {'step s':>20} "
             f"{'step/bare':>18} {'conv share':>10} {'vs standard':>11}"]
    standard = {r["size"]: statistics.median(r["step_s"]) for r in rows
                if (r["precision"], r["layout"], r["convolution"]) == ("fp32", "contiguous", "standard")}
    for r in rows:
        share = f"{r['conv_share']:.0%}" if r["conv_share"] is not None else "-"
        against = f"{statistics.median(r['step_s']) / standard[r['size']]:.2f}x" if r["size"] in standard else "-"
        lines.append(f"{r['size']:>9}  {r['precision']:9} {r['layout']:13} {r['convolution']:9} {spread(r['bare_s']):>20} "
                     f"{spread(r['step_s']):>20} {spread(r['ratio']):>18} {share:>10} {against:>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="engine steps per timing (the first is not timed)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "step_cost")
    args = parser.parse_args(argv)
    machine = describe_machine()
    print(f"machine: {machine['cpu']} ({', '.join(machine['flags'])}), {machine['threads']} threads, "
          f"fast bf16: {machine['fast_bf16']}", flush=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for variant in variants(machine):
            steps = args.steps if size <= 512 else max(3, args.steps // 2)
            rows.append(measure(size, variant, args.repeats, steps))
            print(table(rows).splitlines()[-1], flush=True)
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
