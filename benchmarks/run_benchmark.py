"""nst-core's speed and quality benchmark: one command, one machine, ratios measured in one run.

    python -m benchmarks.run_benchmark            # the full run (~30–40 min on 2 AVX2 cores)
    python -m benchmarks.run_benchmark --quick    # a small smoke run (~2 min)

It prints the machine (CPU model and flags), then:

1. **speed**: ms per step (forward + input gradient of VGG-19 to relu5_1) at 256, 512 and 1024 px
   in fp32 and, where the hardware has fast bf16, bf16; achieved GFLOP/s and its ratio to this
   machine's 3×3-convolution peak measured in the same run;
2. **time to quality**: the textbook baseline (``baseline.py``: one scale, fp32, L-BFGS, 300
   evaluations at 512 px, the paper's layers) gives a loss under the fixed evaluator
   (``evaluator.py``); nst-core's default path is timed until it reaches that loss;
3. **a real peer**: pastiche 1.6.0 (``pip install .[bench]``) at its defaults with a step count
   that fits, timed and scored by the same evaluator; nst-core's time to reach that score;
4. peak RSS of every run (each runs in its own process).

Results go to ``--out`` (default ``benchmarks/results/``): ``results.json``, ``curves.png``
(evaluator loss against seconds) and the final images. Nothing here is a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGES = REPO.parent / "shared" / "images"


# --- machine ----------------------------------------------------------------------------------


def describe_machine() -> dict:
    import torch

    from nst_core.precision import cpu_flags, cpu_model, fast_bf16

    interesting = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
    fast, evidence = fast_bf16(torch.device("cpu"))
    return {
        "cpu": cpu_model(),
        "flags": sorted(set(interesting) & cpu_flags()),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "fast_bf16": fast,
        "bf16_evidence": evidence,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# --- 1. speed ------------------------------------------------------------------------------------


def conv_flops(hw: tuple[int, int], cfg, last_conv: int) -> float:
    """Multiply-adds ×2 of the forward pass through the first ``last_conv`` convolutions."""
    h, w = hw
    channels, flops, convs = 3, 0.0, 0
    for item in cfg:
        if item == "M":
            h, w = h // 2, w // 2
            continue
        flops += 2.0 * h * w * channels * item * 9
        channels, convs = item, convs + 1
        if convs == last_conv:
            break
    return flops


def conv_peak(device: str, dtype) -> float:
    """GFLOP/s of one 3×3, 256→256-channel convolution at 96×96 (forward, channels_last), best of 5."""
    import torch

    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device).requires_grad_(False)
    x = torch.rand(1, 256, 96, 96, device=device)
    conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    flops = 2.0 * 96 * 96 * 256 * 256 * 9
    best = float("inf")
    autocast = torch.autocast(device_type=device, dtype=dtype) if dtype is not None else None
    for _ in range(6):
        began = time.perf_counter()
        with torch.no_grad(), (autocast or torch.autocast(device_type=device, enabled=False)):
            conv(x)
        best = min(best, time.perf_counter() - began)
    return flops / best / 1e9


def measure_speed(sizes, machine: dict, device: str = "cpu") -> list[dict]:
    import torch

    from nst_core.config import DEFAULT_STYLE_LAYERS
    from nst_core.features import VGG_CONFIGS, build_vgg_layers, vgg_layer_names, FeatureExtractor
    from nst_core.precision import time_step

    names = vgg_layer_names("vgg19")
    layers = [*DEFAULT_STYLE_LAYERS, "relu4_2"]
    extractor = FeatureExtractor(build_vgg_layers("vgg19"), names, layers).to(device)
    precisions = ["fp32"] + (["bf16"] if machine["fast_bf16"] or machine["cuda"] else [])
    rows = []
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else None
        peak = conv_peak(device, dtype)
        for layout in ("contiguous", "channels_last"):
            memory = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            net = extractor.to(memory_format=memory)
            for side in sizes:
                hw = (side * 3 // 4, side)
                image = torch.rand(1, 3, *hw, device=device).contiguous(memory_format=memory)

                def step():
                    point = image.detach().requires_grad_(True)
                    with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
                        features = net(point)
                    sum(f.float().square().mean() for f in features.values()).backward()

                seconds = time_step(step, repeats=2 if side <= 512 else 1)
                flops = 2 * conv_flops(hw, VGG_CONFIGS["vgg19"], 13)  # forward + input gradient
                rows.append({"precision": precision, "layout": layout, "size": f"{hw[1]}x{hw[0]}",
                             "ms_per_step": 1000 * seconds, "gflops": flops / seconds / 1e9,
                             "conv_peak_gflops": peak, "share_of_peak": flops / seconds / 1e9 / peak})
                print(f"  {precision:5} {layout:13} {hw[1]}x{hw[0]:<5} {1000 * seconds:8.0f} ms/step "
                      f"{flops / seconds / 1e9:6.0f} GFLOP/s ({flops / seconds / 1e9 / peak:.0%} of conv peak "
                      f"{peak:.0f})", flush=True)
        extractor.to(memory_format=torch.contiguous_format)
    return rows


# --- 2–4. runs in their own processes ---------------------------------------------------------------


def run_job(kind: str, spec: dict, out: Path) -> dict:
    """Run ``benchmarks.jobs`` in a child process; add its wall time and peak RSS."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    began = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.jobs", kind, str(spec_path), str(out)],
                             cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    stderr = child.stderr.read()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{kind} job failed ({child.returncode}): {stderr[-2000:]}")
    result = json.loads((out / "result.json").read_text())
    result["wall_seconds"] = time.perf_counter() - began
    # the child's own VmHWM; wait4's ru_maxrss would include this (big) parent's RSS at fork
    result["peak_rss_mb"] = result.get("own_peak_rss_mb") or usage.ru_maxrss / 1024
    return result


def score_snapshots(result: dict, out: Path, evaluator) -> list[tuple[float, float]]:
    """``(seconds, evaluator loss)`` of each snapshot an nst-core job saved."""
    curve = []
    for snap in result["snapshots"]:
        image = np.load(out / snap["path"]).astype(np.float32)
        curve.append((snap["seconds"], evaluator.score(image)["total"]))
    return curve


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first time at which the curve is at or below ``target`` (``None``: never)."""
    for seconds, loss in curve:
        if loss <= target:
            return seconds
    return None


def save_image(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def plot(curves: dict[str, list[tuple[float, float]]], marks: dict[str, float], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(8, 5), dpi=110)
    for label, curve in curves.items():
        if curve:
            xs, ys = zip(*curve)
            axes.plot(xs, ys, marker="." if len(curve) < 40 else None, label=label)
    for label, value in marks.items():
        axes.axhline(value, linestyle=":", color="grey")
        axes.text(0.01, value, label, transform=axes.get_yaxis_transform(), va="bottom", fontsize=8, color="grey")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("seconds (set-up included)")
    axes.set_ylabel("evaluator loss (lower is better)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", default=str(IMAGES / "tubingen.jpg"))
    parser.add_argument("--style", default=str(IMAGES / "starry_night.jpg"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--baseline-evaluations", type=int, default=300)
    parser.add_argument("--pastiche-steps", type=int, default=100,
                        help="pastiche's steps (its default, 1000, takes about an hour at 512 px on 2 cores)")
    parser.add_argument("--speed-sizes", default="256,512,1024")
    parser.add_argument("--variants", default="coarse-to-fine,adam",
                        help="extra nst-core curves for the plot: coarse-to-fine, adam (comma-separated, or none)")
    parser.add_argument("--skip", default="", help="parts to skip: speed, peer (comma-separated)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a small smoke run: 128 px, few steps")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.baseline_evaluations, args.pastiche_steps = 128, 20, 10
        args.speed_sizes, args.variants = "128", "none"
    skip = set(filter(None, args.skip.split(",")))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from benchmarks.evaluator import Evaluator
    from benchmarks.jobs import load_pair

    report: dict = {"machine": describe_machine(), "size": args.size, "content": args.content, "style": args.style}
    machine = report["machine"]
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['flags'])}, "
          f"torch {machine['torch']} ({machine['capability']}); bf16: {machine['bf16_evidence']}", flush=True)

    if "speed" not in skip:
        print("1. speed (VGG-19 to relu5_1, one step = forward + input gradient)", flush=True)
        report["speed"] = measure_speed([int(s) for s in args.speed_sizes.split(",")], machine, args.device)

    content, style = load_pair({"content": args.content, "style": args.style, "size": args.size})
    evaluator = Evaluator(content, style, device=args.device)
    pair = {"content": args.content, "style": args.style, "size": args.size, "device": args.device}
    report["content_image_score"] = evaluator.score(content)

    print(f"2. time to quality at {args.size} px", flush=True)
    baseline = run_job("baseline", {**pair, "evaluations": args.baseline_evaluations}, out / "baseline")
    baseline_curve = [(t, loss) for t, loss in baseline["curve"]]
    baseline_score = baseline["score"]["total"]
    save_image(out / "baseline.png", np.load(out / "baseline" / "final.npy").astype(np.float32))
    report["baseline"] = {k: baseline[k] for k in ("seconds", "evaluations", "score", "wall_seconds", "peak_rss_mb")}
    print(f"  baseline: {baseline['evaluations']} evaluations in {baseline['seconds']:.1f} s, loss "
          f"{baseline_score:.4f}, peak RSS {baseline['peak_rss_mb']:.0f} MB", flush=True)

    variants = {"nst-core default": {}}
    for name in filter(lambda v: v != "none", args.variants.split(",")):
        variants[f"nst-core {name}"] = {"coarse-to-fine": {"scales": 2, "coarse_iterations": 100, "iterations": 40},
                                        "adam": {"optimizer": "adam", "learning_rate": 0.02}}[name]
    # the baseline's curve is its own loss, of the unclipped image; its saved (clipped) image
    # scores higher: the "baseline's final loss" line
    curves = {f"baseline (L-BFGS, 1 scale, {args.baseline_evaluations} evaluations; own loss, unclipped)": baseline_curve}
    report["nst"] = {}
    for label, changes in variants.items():
        run_dir = out / label.replace(" ", "-")
        result = run_job("nst", {**pair, "config": {"memory_format": "auto", **changes}}, run_dir)
        curve = score_snapshots(result, run_dir, evaluator)
        curves[label] = curve
        final = curve[-1][1]
        reach = time_to_reach(curve, baseline_score)
        save_image(out / f"{run_dir.name}.png", np.load(run_dir / "final.npy").astype(np.float32))
        report["nst"][label] = {"config": changes, "seconds": result["seconds"],
                                "startup_seconds": result["startup_seconds"], "steps": result["steps"],
                                "info": result["info"], "final_score": final, "peak_rss_mb": result["peak_rss_mb"],
                                "seconds_to_baseline": reach, "curve": curve}
        speedup = f"{baseline['seconds'] / reach:.1f}x faster" if reach else "never reached"
        print(f"  {label}: {result['steps']} steps in {result['seconds']:.1f} s, loss {final:.4f}; baseline's loss "
              f"reached at {reach if reach is None else round(reach, 1)} s ({speedup}); peak RSS "
              f"{result['peak_rss_mb']:.0f} MB", flush=True)

    marks = {"baseline's final loss": baseline_score}
    if "peer" not in skip:
        from benchmarks.peer_pastiche import pastiche_available, run_pastiche

        version = pastiche_available()
        if version is None:
            print("3. peer: pastiche is not installed (pip install .[bench]); skipped", flush=True)
        else:
            print(f"3. peer: pastiche {version}, {args.pastiche_steps} steps", flush=True)
            peer = run_pastiche(Path(args.content), Path(args.style), out / "pastiche.png", size=args.size,
                                steps=args.pastiche_steps, device=args.device)
            from nst_core.image import load_image

            peer_score = evaluator.score(load_image(peer.output).rgb)["total"]
            default_curve = curves["nst-core default"]
            reach = time_to_reach(default_curve, peer_score)
            if reach is not None:  # counted like pastiche's wall time: from the process's start
                reach += report["nst"]["nst-core default"]["startup_seconds"]
            report["pastiche"] = {"version": version, "steps": args.pastiche_steps, "seconds": peer.seconds,
                                  "peak_rss_mb": peer.peak_rss_mb, "score": peer_score, "defaults": peer.defaults,
                                  "nst_seconds_to_its_score": reach}
            curves[f"pastiche {version} ({args.pastiche_steps} steps, final)"] = [(peer.seconds, peer_score)]
            marks["pastiche's loss"] = peer_score
            speedup = f"{peer.seconds / reach:.1f}x faster" if reach else "never reached"
            print(f"  pastiche: {peer.seconds:.1f} s, loss {peer_score:.4f}, peak RSS {peer.peak_rss_mb:.0f} MB; "
                  f"nst-core default reaches it at {reach if reach is None else round(reach, 1)} s ({speedup})",
                  flush=True)

    title = f"{Path(args.content).name} x {Path(args.style).name}, {args.size} px, {machine['cpu']}"
    if plot(curves, marks, out / "curves.png", title):
        print(f"plot: {out / 'curves.png'}")
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
