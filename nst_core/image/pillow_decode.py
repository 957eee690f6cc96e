"""Decoding with Pillow: 8-bit images of every format and mode, and the deeper modes Pillow reads exactly.

Pillow decodes 8-bit images and the deeper ones it reads exactly (16-bit PGM as mode ``I``,
``I;16``, ``F``), fully inside the caller's ``try`` (``.load()``), with
``ImageFile.LOAD_TRUNCATED_IMAGES`` forced off by :func:`nst_core.image.read.load_image`, so
truncated files fail instead of coming back half grey. Multi-frame files give their first frame;
a CIELab TIFF is converted to sRGB.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import InputError
from ..message_text import first_line
from .decoded import DecodedPixels
from .orientation import orientation_of

__all__ = ["decode_pillow"]

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def _u8(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.uint8).astype(np.float32) / np.float32(255)


def decode_pillow(im: Image.Image, name: str) -> DecodedPixels:
    """Fully decode frame 0 of a Pillow image into float arrays."""
    im.load()
    orientation = orientation_of(im)
    mode = im.mode
    has_trns = "transparency" in im.info
    bit_depth, grayscale = 8, False
    alpha: np.ndarray | None = None
    if mode == "1":
        color, grayscale = _u8(im.convert("L")), True
    elif mode in ("L", "LA", "La") and not (mode == "L" and has_trns):
        la = im.convert("LA") if mode != "L" else im
        grayscale = True
        if mode == "L":
            color = _u8(la)
        else:
            arr = _u8(la)
            color, alpha = arr[:, :, 0], arr[:, :, 1]
    elif mode.startswith("I;16"):
        color, bit_depth, grayscale = np.asarray(im).astype(np.float32) / np.float32(65535), 16, True
        if has_trns:
            alpha = (np.asarray(im) != im.info["transparency"]).astype(np.float32)
    elif mode == "I":
        arr = np.asarray(im).astype(np.float64) / 65535.0
        color, bit_depth, grayscale = np.clip(arr, 0.0, 1.0).astype(np.float32), 16, True
    elif mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        color, bit_depth, grayscale = np.clip(arr, 0.0, 1.0), 16, True
    else:
        grayscale = mode in ("L", "LA", "La")  # L with a tRNS colour lands here
        wants_alpha = has_trns or mode in _ALPHA_MODES
        if mode == "P" and im.palette is not None and im.palette.mode == "RGBA":
            wants_alpha = True
        try:
            if mode == "LAB":  # CIELab TIFF: a real colour conversion, not a band copy
                from PIL import ImageCms

                lab_to_srgb = ImageCms.buildTransform(
                    ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
                )
                converted = ImageCms.applyTransform(im, lab_to_srgb)
            else:
                converted = im.convert("RGBA" if wants_alpha else "RGB")
        except Exception as exc:  # ValueError, ImageCms.PyCMSError, ...
            raise InputError(
                f"cannot read image {name}: unsupported colour mode {mode} ({first_line(exc)})"
            ) from None
        arr = _u8(converted)
        if wants_alpha:
            color, alpha = arr[:, :, :3], arr[:, :, 3]
        else:
            color = arr
        if grayscale:
            color = color[:, :, 0]
    return DecodedPixels(color, alpha, bit_depth, grayscale, orientation)
