"""EXIF orientation: reading the tag, and turning decoded pixels upright.

The orientation (PNG ``eXIf``, JPEG, TIFF, WebP) is applied with the same transposes as
``ImageOps.exif_transpose``; a malformed EXIF block is ignored rather than refusing the image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

__all__ = ["EXIF_ORIENTATION", "apply_orientation", "orient", "orientation_of", "orientation_of_exif"]

#: The EXIF tag of the orientation.
EXIF_ORIENTATION = 0x0112


def orientation_of(im: Image.Image) -> int:
    """The EXIF orientation (1…8) of an image Pillow opened; 1 when it has none or a malformed one."""
    return _orientation(im.getexif)


def orientation_of_exif(data: bytes) -> int:
    """The orientation in a raw EXIF block (a PNG ``eXIf`` chunk); 1 when there is none or it is malformed."""

    def parsed() -> Image.Exif:
        exif = Image.Exif()
        exif.load(data)
        return exif

    return _orientation(parsed)


def _orientation(exif: Callable[[], Image.Exif]) -> int:
    try:
        value = int(exif().get(EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: ignore it rather than refuse the picture
        return 1
    return value if 1 <= value <= 8 else 1


def orient(color: np.ndarray, alpha: np.ndarray | None, orientation: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour and alpha turned upright for EXIF ``orientation``."""
    return apply_orientation(color, orientation), (
        None if alpha is None else apply_orientation(alpha, orientation)
    )


def apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Transpose ``a`` (H×W or H×W×C) like ``ImageOps.exif_transpose`` for EXIF ``orientation``."""
    swap = (1, 0) + tuple(range(2, a.ndim))
    if orientation == 2:  # FLIP_LEFT_RIGHT
        return a[:, ::-1]
    if orientation == 3:  # ROTATE_180
        return a[::-1, ::-1]
    if orientation == 4:  # FLIP_TOP_BOTTOM
        return a[::-1]
    if orientation == 5:  # TRANSPOSE
        return a.transpose(swap)
    if orientation == 6:  # ROTATE_270 (90° clockwise)
        return a[::-1].transpose(swap)
    if orientation == 7:  # TRANSVERSE
        return a[::-1, ::-1].transpose(swap)
    if orientation == 8:  # ROTATE_90 (90° counter-clockwise)
        return a[:, ::-1].transpose(swap)
    return a
