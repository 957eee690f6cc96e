"""Where the parts of a large image lie: the geometry of tiled evaluation.

A large image is evaluated as overlapping *tiles*. Each tile is an *outer* box of pixels fed to
the network; only its *core* counts: the cores of a grid partition the image, and so do their
feature-map regions, because core edges lie on multiples of the network's largest stride. The
margin around a core (the *halo*) gives the core's features the image around them, so that
they come out (nearly) as in a whole-image pass.

Loss terms see a :class:`Part` (or :data:`WHOLE`) and use :meth:`Part.crop` to take the part's
region of a whole-image map, such as the content target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

#: ``(top, bottom, left, right)`` in pixels, bottom and right exclusive.
Box = tuple[int, int, int, int]


class Whole:
    """The whole image as one part: :meth:`crop` returns a map as it is."""

    def crop(self, name: str, whole_map: torch.Tensor) -> torch.Tensor:
        return whole_map

    def __repr__(self) -> str:
        return "WHOLE"


WHOLE = Whole()


@dataclass(frozen=True)
class Part:
    """One tile: its core (the pixels it accounts for) and outer box (the pixels it reads)."""

    core: Box
    outer: Box
    #: Stride of each layer's feature map relative to the image (1, 2, 4, 8, 16 for VGG).
    strides: Mapping[str, int]

    def crop(self, name: str, whole_map: torch.Tensor) -> torch.Tensor:
        """The core's region of a whole-image feature map of layer ``name``."""
        stride = self.strides[name]
        top, bottom, left, right = self.core
        return whole_map[..., top // stride : bottom // stride, left // stride : right // stride]

    def core_of(self, name: str, tile_map: torch.Tensor) -> torch.Tensor:
        """The core's region of a feature map computed from the outer box."""
        stride = self.strides[name]
        top, bottom, left, right = self.core
        dy, dx = self.outer[0] // stride, self.outer[2] // stride
        return tile_map[..., top // stride - dy : bottom // stride - dy, left // stride - dx : right // stride - dx]

    def outer_of(self, image: torch.Tensor) -> torch.Tensor:
        """The outer box's pixels of a whole ``N×C×H×W`` image."""
        top, bottom, left, right = self.outer
        return image[..., top:bottom, left:right]

    @property
    def core_pixels(self) -> int:
        top, bottom, left, right = self.core
        return (bottom - top) * (right - left)

    @property
    def outer_pixels(self) -> int:
        top, bottom, left, right = self.outer
        return (bottom - top) * (right - left)


def cuts(length: int, core: int, offset: int) -> list[int]:
    """Where cores end along one side: every ``core`` pixels from ``offset``, then ``length``.

    A cut closer than ``core / 2`` to either end is left out, so every core is between half and
    one and a half times ``core`` long (or the whole side); moving ``offset`` moves the seams.
    """
    if length <= core:
        return [length]
    first = offset % core
    inner = [c for c in range(first, length, core) if core // 2 <= c <= length - core // 2]
    return [*inner, length]


def grid(hw: tuple[int, int], *, core: int, halo: int, offset: tuple[int, int], strides: Mapping[str, int]) -> list[Part]:
    """Tiles covering an ``hw`` image, row by row; ``core``, ``halo`` and ``offset`` are multiples
    of the largest stride, so that cores partition every feature map exactly."""
    align = max(strides.values(), default=1)
    for name, value in (("core", core), ("halo", halo), ("offset", offset[0]), ("offset", offset[1])):
        if value % align:
            raise ValueError(f"tile {name} {value} is not a multiple of the network's stride {align}")
    height, width = hw
    parts = []
    row_start = 0
    for bottom in cuts(height, core, offset[0]):
        col_start = 0
        for right in cuts(width, core, offset[1]):
            core_box = (row_start, bottom, col_start, right)
            outer = (max(0, row_start - halo), min(height, bottom + halo), max(0, col_start - halo), min(width, right + halo))
            parts.append(Part(core=core_box, outer=outer, strides=strides))
            col_start = right
        row_start = bottom
    return parts


def largest_outer_side(core: int, halo: int) -> int:
    """The longest side an outer box of a grid with this ``core`` and ``halo`` can have."""
    return core + core // 2 + 2 * halo


def shifted_offsets(core: int, align: int):
    """An endless sequence of grid offsets that moves the seams to new places each time.

    Offsets follow the golden-ratio sequence (rounded to ``align``), whose points spread evenly
    over the tile without repeating soon.
    """
    golden = (math.sqrt(5) - 1) / 2
    k = 0
    while True:
        fy, fx = (k * golden) % 1.0, (k * golden * golden + 0.5) % 1.0
        yield (round(fy * core / align) * align % core, round(fx * core / align) * align % core)
        k += 1
