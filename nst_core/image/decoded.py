"""What every decoder returns, and how decoders report a file they cannot use.

Decoders (:mod:`.pillow_decode`, :mod:`.png16`, :mod:`.tiff`) return :class:`DecodedPixels`
before EXIF orientation is applied. Sample values: 8-bit ÷ 255, 16-bit ÷ 65535, 32-bit integer
(Pillow mode ``I``, e.g. 16-bit PGM) ÷ 65535 and clipped, 32-bit unsigned TIFF ÷ (2³²−1).
Floating-point images (Pillow mode ``F``, float TIFF) are taken to hold values in ``[0, 1]``
(the convention of float TIFFs, tifffile and scikit-image; Pillow's own ``F``→``L`` conversion
would instead assume ``0…255``) and are clipped; they report ``bit_depth=16`` so that saving at
the source depth keeps more than 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..message_text import first_line

__all__ = ["DecodedPixels", "check_pixel_count", "corrupt_error"]


@dataclass
class DecodedPixels:
    """Decoded samples of frame 0, and how to turn them upright."""

    color: np.ndarray  # H×W or H×W×3 float32 in [0, 1]
    alpha: np.ndarray | None
    bit_depth: int
    grayscale: bool
    orientation: int = 1


def corrupt_error(name: str, exc: BaseException | None = None) -> InputError:
    """The error for a file that is truncated or corrupt; ``name`` is the quoted path."""
    detail = f" ({first_line(exc)})" if exc is not None else ""
    return InputError(f"cannot read image {name}: file is truncated or corrupt{detail}")


def check_pixel_count(name: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse an image without pixels or with more than ``max_pixels`` (from its header)."""
    if width < 1 or height < 1:
        raise InputError(f"cannot read image {name}: it has no pixels ({width}×{height})")
    pixels = width * height
    if pixels > max_pixels:
        raise InputError(
            f"image {name} is {width}×{height} = {pixels / 1e6:.1f} megapixels, "
            f"above the limit of {max_pixels / 1e6:.1f} megapixels"
        )
