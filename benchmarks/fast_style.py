"""Fast styles, measured: train a model on scikit-image's photos, score it, time it.

    .venv/bin/python -m benchmarks.fast_style                       # train (or reuse) and measure
    .venv/bin/python -m benchmarks.fast_style --steps 150 --out /tmp/pilot

1. **Training** (skipped when the model file exists and holds ``--steps`` steps): the colour
   photos of ``skimage.data`` (astronaut, coffee, chelsea, rocket, the left motorcycle) are written
   to a temporary folder and :func:`nst_core.fast.train_files` trains on random crops of them
   with the real VGG-16 weights. Wall time, steps/s, threads and the load average before and
   after are recorded (other jobs on the same cores inflate the time).
2. **Quality** on a held-out photo (``tubingen.jpg``, never trained on) with the fixed fp32
   evaluator of :mod:`benchmarks.evaluator` (VGG-19, independent of nst-core's code): the style
   distance (mean relative Gram error, relu1_1…relu5_1) of the model's output against the
   photo's own, and the output's content distance (relative relu4_2 error).
3. **Speed** at 1024×768: :func:`nst_core.fast.stylize_fast` (network, colour method and
   conversions; median of 5 after a warm-up), the network alone, and, measured in the same run
   as a baseline, one optimization step (VGG-19 forward and backward) of the engine at that size.
4. ``docs/images/fast_style.jpg``: photo | style | result.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nst_core import Config, hookimpl
from nst_core.fast import TrainingSettings, load_model, stylize_fast, train_files, training_config
from nst_core.image import load_image, long_side_size, resize_to, save_image, to_tensor
from nst_core.plugins import build_registries, get_plugin_manager

from .evaluator import SHARED, Evaluator

REPO = Path(__file__).resolve().parents[1]
IMAGES = SHARED / "images"
VGG16 = SHARED / "weights" / "vgg16-imagenet-features.pth"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle")


def write_training_photos(folder: Path) -> list[Path]:
    """scikit-image's colour sample photos as PNG files in ``folder``."""
    from skimage import data

    paths = []
    for name in PHOTOS:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image
        path = folder / f"{name}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


class Log:
    """Prints a line every ``every`` steps; Ctrl-C stops training after a checkpoint (then measures)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.stop = False
        signal.signal(signal.SIGINT, self._request_stop)

    def _request_stop(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    @hookimpl
    def nst_should_cancel(self, progress) -> bool | None:
        return True if self.stop else None

    @hookimpl
    def nst_progress(self, progress) -> None:
        if progress.step % self.every == 0:
            losses = " ".join(f"{k} {v:.3f}" for k, v in progress.losses.items())
            print(f"step {progress.step}/{progress.total} {losses} {progress.elapsed:.0f} s", flush=True)

    @hookimpl
    def nst_notice(self, message: str) -> None:
        print(message, flush=True)


def train_model(model_path: Path, style_path: Path, args) -> dict:
    load_before = os.getloadavg()
    settings = TrainingSettings(steps=args.steps, batch_size=args.batch, crop_size=args.crop,
                                style_size=args.style_size, learning_rate=args.learning_rate,
                                checkpoint_every=100)
    config = training_config(weights=str(VGG16), style_weight=args.style_weight, tv_weight=args.tv_weight,
                             device="cpu")
    resume = model_path.exists()
    with tempfile.TemporaryDirectory() as folder:
        write_training_photos(Path(folder))
        began = time.perf_counter()
        log = Log(25)
        result = train_files(style_path, folder, model_path, config=config, settings=settings, resume=resume,
                             plugins=[log])
        wall = time.perf_counter() - began
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return {
        "stopped_early": result.cancelled,
        "steps": result.steps, "steps_this_run": result.steps_run, "wall_seconds": round(wall, 1),
        "steps_per_second": float(result.info["steps_per_second"]), "threads": torch.get_num_threads(),
        "batch": args.batch, "crop": args.crop, "style_size": args.style_size, "style_weight": args.style_weight,
        "tv_weight": args.tv_weight, "learning_rate": args.learning_rate, "photos": list(PHOTOS),
        "first_loss": round(result.first_loss, 4), "last_loss": round(result.last_loss, 4),
        "resumed": resume, "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def median_seconds(call, repeats: int = 5) -> float:
    call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def optimization_step_seconds(photo: np.ndarray) -> float:
    """One engine optimization step at the photo's size: VGG-19 to relu5_1, forward and backward."""
    config = Config(weights=str(SHARED / "weights" / "vgg19-imagenet-features.pth"), device="cpu")
    spec = build_registries(get_plugin_manager()).extractors.get("vgg19")
    layers = sorted({*config.content_layers, *config.style_layers}, key=spec.layer_names.index)
    extractor = spec.build(config=config, layers=layers, device=torch.device("cpu"))
    image = to_tensor(photo)

    def step() -> None:
        point = image.clone().requires_grad_(True)
        features = extractor(point)
        sum(f.square().mean() for f in features.values()).backward()

    return median_seconds(step, repeats=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="starry_night.jpg")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--style-size", type=int, default=512)
    parser.add_argument("--style-weight", type=float, default=training_config().style_weight)
    parser.add_argument("--tv-weight", type=float, default=training_config().tv_weight)
    parser.add_argument("--learning-rate", type=float, default=TrainingSettings().learning_rate)
    parser.add_argument("--eval-size", type=int, default=512)
    parser.add_argument("--model", type=Path, help="model file (default: OUT/STYLE.nst)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fast_style")
    parser.add_argument("--picture", type=Path, default=REPO / "docs" / "images" / "fast_style.jpg")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    style_path = IMAGES / args.style
    model_path = args.model or args.out / f"{style_path.stem}.nst"
    report: dict = {"style": args.style, "model": str(model_path)}

    existing = load_model(model_path).step if model_path.exists() else 0
    previous = args.out / "results.json"
    earlier = json.loads(previous.read_text()).get("training_runs", []) if previous.exists() and existing else []
    if existing < args.steps:
        earlier.append(train_model(model_path, style_path, args))
    else:
        print(f"{model_path} holds {existing} steps: not training")
    report["training_runs"] = earlier  # one entry per (resumed) training run of this model
    model = load_model(model_path)

    photo_full = load_image(IMAGES / "tubingen.jpg").rgb
    style_full = load_image(style_path).rgb
    photo = resize_to(photo_full, long_side_size(photo_full.shape[:2], args.eval_size))
    style = resize_to(style_full, long_side_size(style_full.shape[:2], args.eval_size))
    evaluator = Evaluator(photo, style)
    output = stylize_fast(photo, model, config=Config(size=None, device="cpu")).image
    own, stylized = evaluator.score(photo), evaluator.score(output)
    report["quality"] = {
        "eval_size": f"{photo.shape[1]}x{photo.shape[0]}",
        "photo_style_distance": round(own["style"], 4),
        "output_style_distance": round(stylized["style"], 4),
        "style_ratio": round(stylized["style"] / own["style"], 3),
        "output_content_distance": round(stylized["content"], 4),
    }
    for mode in ("luminance", "histogram"):
        recoloured = stylize_fast(photo, model, config=Config(size=None, device="cpu", preserve_color=mode)).image
        score = evaluator.score(recoloured)
        report["quality"][f"{mode}_style_distance"] = round(score["style"], 4)
        report["quality"][f"{mode}_content_distance"] = round(score["content"], 4)
    print(json.dumps(report["quality"], indent=1), flush=True)

    big = resize_to(photo_full, (768, 1024))
    config = Config(size=None, device="cpu")
    apply_seconds = median_seconds(lambda: stylize_fast(big, model, config=config))
    tensor = to_tensor(big)

    def network_only() -> None:
        with torch.inference_mode():
            model.network(tensor)

    network_seconds = median_seconds(network_only)
    step_seconds = optimization_step_seconds(big)
    report["speed"] = {
        "size": "1024x768", "threads": torch.get_num_threads(),
        "apply_seconds_median": round(apply_seconds, 3), "network_seconds_median": round(network_seconds, 3),
        "optimization_step_seconds": round(step_seconds, 3),
        "apply_over_one_step": round(apply_seconds / step_seconds, 3),
        "network": model.metadata["network"], "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report["speed"], indent=1), flush=True)

    height = 384
    tiles = [photo, style, output]
    row = np.concatenate([resize_to(t, (height, round(t.shape[1] * height / t.shape[0]))) for t in tiles], axis=1)
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    save_image(args.picture, row)
    save_image(args.out / "tubingen_fast.png", output)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out / 'results.json'} and {args.picture}")


if __name__ == "__main__":
    main()
