"""Reading image files: :func:`load_image`, with its checks and limits.

Pillow opens every file first (header only) so that the pixel count is checked against
``max_pixels`` before anything is decoded. Pixels then come from one of three decoders:
:mod:`.pillow_decode` (8-bit images of every format and mode, and the deeper modes Pillow reads
exactly), :mod:`.png16` (16-bit PNGs, which Pillow reduces to 8 bits) and :mod:`.tiff` (TIFFs
with more than 8 bits per sample or float samples). EXIF orientation is then applied
(:mod:`.orientation`). No colour management is done (ICC profiles and PNG gamma are ignored;
pixel values are used as stored). Only regular files are opened: a named pipe, socket or device is refused
from ``os.stat`` alone, before anything could block.

Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is a process-wide global.
``load_image`` changes it only temporarily, under a module lock, and restores it in ``finally``:
it is disabled while the header is read (this module does the check itself, with a message that
gives the size) and set to ``max_pixels`` while decoding (so that Pillow's internal checks on GIF
frames, TIFF tiles etc. still apply), with ``DecompressionBombWarning`` turned into an error.
Another thread using Pillow at that moment (outside this module) would see the changed
settings; loads through this module are serialized by the lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import InputError
from ..file_checks import FileProblem, read_head
from ..message_text import quote_path
from .decoded import DecodedPixels, check_pixel_count, corrupt_error
from .orientation import orient
from .pillow_decode import decode_pillow
from .png16 import PNG_SIGNATURE, decode_png16, png_bit_depth
from .tiff import TIFF_MAGICS, decode_tiff, tiff_is_deep

__all__ = ["DEFAULT_MAX_PIXELS", "LoadedImage", "load_image"]

#: Default pixel limit of :func:`load_image`: Pillow's own decompression-bomb *error* limit,
#: ``2 * Image.MAX_IMAGE_PIXELS`` (Pillow only warns between the two).
DEFAULT_MAX_PIXELS: int = 178_956_970

_SIGNATURES = (PNG_SIGNATURE, b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_PILLOW_LOCK = threading.RLock()


@dataclass(frozen=True, kw_only=True, eq=False)
class LoadedImage:
    """A decoded image file."""

    #: ``H×W×3`` float32 in ``[0, 1]``; grayscale sources are replicated to three channels.
    rgb: np.ndarray
    #: ``H×W`` float32 in ``[0, 1]``, or ``None`` when the file has no alpha or transparency.
    alpha: np.ndarray | None
    #: Bits per channel of the source: 8, or 16 for 16-bit (and float / 32-bit) sources.
    bit_depth: int
    #: ``True`` when the source had no colour (1-bit, L, LA, 16-bit gray, gray TIFF/PNG).
    grayscale: bool
    #: The file it was read from.
    path: Path | None


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file; see the package docstring for formats, modes and bit depths.

    :param max_pixels: refuse images with more pixels than this (checked from the header,
        before decoding).
    :raises InputError: missing, unreadable, not an image, truncated or corrupt, too large.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, not {max_pixels!r}")
    file = Path(path)
    name = quote_path(path)
    head = _read_head(file, name)
    with _pillow_guard():
        try:
            raw = _decode(file, name, head, max_pixels)
        except InputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(
                f"image {name} is too large to decode safely "
                f"(above the limit of {max_pixels / 1e6:.1f} megapixels)"
            ) from None
        except MemoryError:
            raise InputError(f"cannot read image {name}: not enough memory to decode it") from None
        except UnidentifiedImageError:
            raise InputError(
                f"cannot read image {name}: not an image, or not in a supported format"
            ) from None
        except Exception as exc:  # Pillow, tifffile and libpng raise many types for bad data
            raise corrupt_error(name, exc) from None
    rgb, alpha = orient(raw.color, raw.alpha, raw.orientation)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    return LoadedImage(
        rgb=np.ascontiguousarray(rgb, dtype=np.float32),
        alpha=None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32),
        bit_depth=raw.bit_depth,
        grayscale=raw.grayscale,
        path=file,
    )


@contextlib.contextmanager
def _pillow_guard() -> Iterator[None]:
    """Serialize loads; no truncated images; bomb warnings are errors; restore Pillow globals."""
    with _PILLOW_LOCK:
        saved_max = Image.MAX_IMAGE_PIXELS
        saved_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved_max
            ImageFile.LOAD_TRUNCATED_IMAGES = saved_truncated


def _read_head(file: Path, name: str) -> bytes:
    """The first bytes of the file; file-system errors become InputError.

    Only a regular file is opened (a named pipe would block until written to, a device might
    never end; see :func:`nst_core.file_checks.read_head`).
    """
    try:
        return read_head(file, 64)
    except FileProblem as problem:
        raise InputError(f"cannot read image {name}: {problem}") from None


def _decode(file: Path, name: str, head: bytes, max_pixels: int) -> DecodedPixels:
    is_tiff = head[:4] in TIFF_MAGICS
    Image.MAX_IMAGE_PIXELS = None  # the size is checked below, with a better message
    try:
        im = Image.open(file)
    except UnidentifiedImageError:
        if is_tiff:  # e.g. float RGB or 16-bit gray+alpha TIFF, which Pillow cannot open
            Image.MAX_IMAGE_PIXELS = max_pixels
            return decode_tiff(file, name, max_pixels, fallback=None)
        if head.startswith(_SIGNATURES) or head[8:12] == b"WEBP":
            raise corrupt_error(name) from None  # a known format that Pillow could not make sense of
        raise
    with im:
        check_pixel_count(name, im.width, im.height, max_pixels)
        Image.MAX_IMAGE_PIXELS = max_pixels
        if im.format == "PNG" and png_bit_depth(head) == 16:
            return decode_png16(file, im)
        if im.format == "TIFF" and tiff_is_deep(im):
            return decode_tiff(file, name, max_pixels, fallback=im)
        return decode_pillow(im, name)
