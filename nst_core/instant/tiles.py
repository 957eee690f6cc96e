"""Large photos within a memory budget: the transformer in tiles, with whole-image statistics.

A whole pass of the transformer holds at most about :data:`PASS_BYTES_PER_PIXEL` bytes per
pixel of feature maps (fp32, peak resident memory measured: 144–156 B at 1024×768 and
2048×1536, 92 B at 4000×3000, where a whole pass grew the process by 1.2 GiB). When that does
not fit the budget, :func:`plan` chooses:

1. a *statistics pass*: the photo shrunk to the largest size that fits the budget, run whole,
   recording every normalized layer's per-channel mean and inverse standard deviation;
2. *tiles* of the photo at full size, each run with those statistics. With fixed statistics
   every output pixel depends only on the input within :data:`~nst_core.instant.transformer.
   RECEPTIVE_RADIUS` pixels, so a tile whose core is surrounded by :data:`HALO` pixels of the
   photo computes its core exactly as a whole pass with the same statistics would: the cores
   are pasted side by side, with nothing to blend and no seam. Tile edges lie on multiples of
   the network's stride (4), so the tiles see the same pixel grid as the whole photo.

The only approximation is that instance normalization uses statistics measured on the shrunk
photo instead of the full one (tests/test_instant_tiles.py measures the difference).
Memory then stays bounded whatever the photo's size: the statistics pass and each tile fit
the budget, and besides them the run holds the padded photo and the result (24 B per pixel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..image import long_side_size, resize_to
from ..parts import grid, largest_outer_side
from .transformer import RECEPTIVE_RADIUS, STRIDE, SpatialStyle, Statistics, StyleParameters, Transformer, transform

#: Working memory of a whole pass, bytes per pixel (fp32; measured 144–156, see the module doc).
PASS_BYTES_PER_PIXEL = 160
#: Pixels of photo around each tile's core: the receptive radius, rounded up to the stride.
HALO = -(-RECEPTIVE_RADIUS // STRIDE) * STRIDE
#: The smallest tile core side (a smaller budget still gets tiles this large).
MIN_CORE = 64
#: The smallest statistics pass (long side) a budget may leave.
MIN_STATISTICS_SIDE = 256
#: ``on_tile(done, total)``, called after each tile; it may raise to stop the run.
TileCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Plan:
    """How one photo goes through the transformer."""

    #: The size the network sees: the photo's, padded up to multiples of the stride.
    padded_hw: tuple[int, int]
    #: ``None``: one whole pass. Else the tile core side in pixels.
    core: int | None
    #: Tile halo in pixels (0 without tiles).
    halo: int
    #: The statistics pass's size (``None`` without tiles).
    statistics_hw: tuple[int, int] | None
    #: Estimated working memory of the largest pass, bytes.
    estimate: int

    @property
    def tiled(self) -> bool:
        return self.core is not None

    def describe(self) -> str:
        """One line for a notice."""
        height, width = self.padded_hw
        if not self.tiled:
            return f"{width}x{height} in one pass ({self.estimate / 2**20:.0f} MiB)"
        sh, sw = self.statistics_hw
        return (f"{width}x{height} in tiles of {self.core} px (+{self.halo} px halo) with normalization "
                f"statistics from a {sw}x{sh} pass ({self.estimate / 2**20:.0f} MiB at most)")


def padded_size(hw: tuple[int, int]) -> tuple[int, int]:
    """``hw`` rounded up to multiples of the stride, at least two strides."""
    return tuple(max(2 * STRIDE, -(-side // STRIDE) * STRIDE) for side in hw)  # type: ignore[return-value]


def plan(hw: tuple[int, int], budget: int, *, bytes_per_pixel: float = PASS_BYTES_PER_PIXEL) -> Plan:
    """Whole pass if ``hw`` fits ``budget`` bytes, else statistics pass + tiles that each fit it."""
    height, width = padded_size(hw)
    whole = int(height * width * bytes_per_pixel)
    if whole <= budget:
        return Plan(padded_hw=(height, width), core=None, halo=0, statistics_hw=None, estimate=whole)
    fitting = budget / bytes_per_pixel  # pixels a pass may have
    scale = min(1.0, math.sqrt(fitting / (height * width)))
    long_side = min(max(height, width), max(MIN_STATISTICS_SIDE, int(max(height, width) * scale)))
    small = long_side_size((height, width), long_side)
    statistics_hw = (max(2 * STRIDE, small[0] // STRIDE * STRIDE), max(2 * STRIDE, small[1] // STRIDE * STRIDE))
    outer = math.isqrt(int(fitting))  # the largest square outer box that fits
    core = STRIDE * ((outer - 2 * HALO) * 2 // 3 // STRIDE)  # cores reach 1.5 × core (parts.cuts)
    core = max(MIN_CORE, core)
    side = largest_outer_side(core, HALO)
    estimate = int(max(side * side, statistics_hw[0] * statistics_hw[1]) * bytes_per_pixel)
    return Plan(padded_hw=(height, width), core=core, halo=HALO, statistics_hw=statistics_hw, estimate=estimate)


def run_tiled(net: Transformer, padded: np.ndarray, style: StyleParameters | SpatialStyle, the_plan: Plan, *,
              dtype: torch.dtype, device: torch.device, on_tile: TileCallback | None = None,
              statistics: Statistics | None = None) -> np.ndarray:
    """The transformer over ``padded`` (``H×W×3``, sides multiples of the stride) in the tiles of
    ``the_plan``, normalized with ``statistics`` (by default those of its statistics pass). A
    :class:`~nst_core.instant.transformer.SpatialStyle` (the photo's size) is cut like the photo:
    each tile gets its box of the masks, the statistics pass the masks resized to its size."""
    height, width = padded.shape[:2]
    out = np.empty((height, width, 3), dtype=np.float32)
    if statistics is None:
        small = style.resized(the_plan.statistics_hw) if isinstance(style, SpatialStyle) else style
        statistics = measure_statistics(net, resize_to(padded, the_plan.statistics_hw), small, dtype=dtype,
                                        device=device)
    parts = grid((height, width), core=the_plan.core, halo=the_plan.halo, offset=(0, 0),
                 strides={"image": 1, "network": STRIDE})
    for done, part in enumerate(parts, start=1):
        top, bottom, left, right = part.outer
        tile_style = style.crop(top, bottom, left, right) if isinstance(style, SpatialStyle) else style
        tile = transform(net, _as_image(padded[top:bottom, left:right], device), tile_style,
                         statistics=statistics, dtype=dtype)
        core_top, core_bottom, core_left, core_right = part.core
        out[core_top:core_bottom, core_left:core_right] = tile[
            core_top - top:core_bottom - top, core_left - left:core_right - left].cpu().numpy()
        del tile
        if on_tile is not None:
            on_tile(done, len(parts))
    return out


def measure_statistics(net: Transformer, image: np.ndarray, style: StyleParameters | SpatialStyle, *,
                       dtype: torch.dtype, device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every normalized layer's statistics on ``image`` (``H×W×3``, sides multiples of the stride), whole."""
    statistics: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    transform(net, _as_image(image, device), style, record=statistics, dtype=dtype)
    return statistics


def _as_image(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """An ``H×W×3`` array as a ``1×3×H×W`` tensor on ``device`` (a view on the CPU)."""
    return torch.from_numpy(array).to(device).permute(2, 0, 1)[None]
