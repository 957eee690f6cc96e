"""Regions as job data: a mask, the painting it gets (or none) and a weight.

A :class:`Region` holds its mask as an array, not a file path: a :class:`~nst_core.config.Config`
with regions then pickles whole to batch workers on other machines, and its mask bytes count in a
batch's identity (:mod:`nst_core.batch_manifest` hashes ``Config.as_dict()``, where a mask shows
as its digest). Masks are stored as 8-bit values (steps of 1/255, finer than any soft border),
read-only, so a config stays immutable and small. :func:`load_mask` reads a mask file; the
loss term that uses the regions is in :mod:`nst_core.regions`.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, InputError, setting

#: Luminance of an RGB mask (ITU-R BT.601, as PIL's ``convert("L")``).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Mask:
    """An immutable soft mask: ``H×W`` values in ``[0, 1]``, equal to another by content."""

    __slots__ = ("_values", "digest")

    def __init__(self, values: Any) -> None:
        array = np.asarray(values)
        if array.dtype == np.uint8:
            stored = array
        else:
            floats = np.asarray(array, dtype=np.float32)
            if floats.ndim == 2 and not np.all(np.isfinite(floats)):
                raise ConfigError("a region's mask holds values that are not finite numbers")
            stored = np.round(np.clip(floats, 0.0, 1.0) * 255.0).astype(np.uint8)
        if stored.ndim != 2 or min(stored.shape) < 1:
            raise ConfigError(f"a region's mask must be an H×W array of values 0…1, got shape {array.shape}")
        stored = np.ascontiguousarray(stored)
        stored.setflags(write=False)
        self._values = stored
        self.digest = hashlib.sha256(repr(stored.shape).encode() + stored.tobytes()).hexdigest()[:16]

    @property
    def shape(self) -> tuple[int, int]:
        return self._values.shape  # type: ignore[return-value]

    def array(self) -> np.ndarray:
        """The mask as ``H×W`` float32 values in ``[0, 1]`` (a new array)."""
        return self._values.astype(np.float32) / 255.0

    def total(self) -> float:
        """The mask's sum, in pixels fully covered."""
        return float(self._values.sum(dtype=np.int64)) / 255.0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mask) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        height, width = self.shape
        return f"Mask({width}x{height}, sha256:{self.digest})"

    def __reduce__(self) -> tuple:
        return (Mask, (self._values,))


@dataclass(frozen=True, kw_only=True)
class Region:
    """Where one painting goes.

    :param mask: ``H×W`` values in ``[0, 1]`` at any resolution (resized to the photo's), or
        ``None`` for *the rest*: ``1 − min(1, Σ other masks)``, the pixels no other region covers.
    :param style: index of the painting in the run's style images, or ``None`` to keep the photo
        there (content only, with :data:`nst_core.regions.KEEP_CONTENT_BOOST` times the content
        weight).
    :param weight: multiplies the region's style (or, for ``style=None``, kept-content) loss.
    :param label: how messages and progress events name the region (e.g. its mask file); not
        part of the region's identity.
    """

    mask: Mask | None
    style: int | None
    weight: float = 1.0
    label: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mask is not None and not isinstance(self.mask, Mask):
            object.__setattr__(self, "mask", Mask(self.mask))
        if self.style is not None and (isinstance(self.style, bool) or not isinstance(self.style, int)
                                       or self.style < 0):
            raise ConfigError(f"a region's style must be a painting's index (0, 1 …) or None, got {self.style!r}")
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"a region's weight must be a finite number ≥ 0, got {weight!r}")
        object.__setattr__(self, "weight", float(weight))
        if self.mask is not None and self.mask.total() == 0:
            raise ConfigError("a region's mask is all zero: it covers no pixel")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, style: int | None, weight: float = 1.0) -> Region:
        """A region whose mask is read from an image file (see :func:`load_mask`)."""
        return cls(mask=load_mask(path), style=style, weight=weight, label=os.fspath(path))


def check_regions(regions: Any) -> tuple[Region, ...]:
    """``Config.regions`` as a tuple of :class:`Region`, checked (at most one rest region)."""
    if isinstance(regions, (str, bytes)) or not hasattr(regions, "__iter__"):
        raise ConfigError(f"{setting('regions')} must be a sequence of Region, got {regions!r}")
    regions = tuple(regions)
    for region in regions:
        if not isinstance(region, Region):
            raise ConfigError(f"{setting('regions')} must hold nst_core.Region values, got {region!r}")
    if sum(region.mask is None for region in regions) > 1:
        raise ConfigError(f"{setting('regions')} has more than one rest region (mask None)")
    if regions and all(region.mask is None for region in regions):
        raise ConfigError(f"{setting('regions')} needs at least one region with a mask")
    return regions


def load_mask(path: str | os.PathLike[str]) -> Mask:
    """A mask from an image file: a PNG's alpha when it has a varying one, else the grey level
    (an RGB image's luminance). Raises a one-line :class:`InputError` for an unreadable file or
    an all-zero mask."""
    from .image import load_image
    from .message_text import quote_path

    loaded = load_image(path)
    if loaded.alpha is not None and float(loaded.alpha.min()) < 1.0:
        values = loaded.alpha
    elif loaded.grayscale:
        values = loaded.rgb[..., 0]
    else:
        values = loaded.rgb @ _LUMA
    mask = Mask(values)
    if mask.total() == 0:
        raise InputError(f"mask {quote_path(path)} is all zero (black or fully transparent): it covers no pixel")
    return mask
