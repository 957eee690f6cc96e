"""TIFF files with more than 8 bits per sample or floating-point samples, read and written with tifffile.

Reading: Pillow reduces 16-bit colour TIFFs to 8 bits and cannot open float RGB or 16-bit
gray+alpha at all, so such files are read with tifffile. Without the optional ``imagecodecs``
package tifffile decodes only uncompressed, Deflate/zlib, PackBits, LZMA and Zstd data; for other
compressions (notably LZW and JPEG) the file is read by Pillow instead, which keeps 16-bit
precision for grayscale but not for colour. Installing ``imagecodecs`` removes that limitation
(tifffile then uses it automatically).

Writing: Deflate with horizontal predictor, unassociated alpha, 8 or 16 bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from ..errors import InputError
from .decoded import DecodedPixels, check_pixel_count, corrupt_error
from .pillow_decode import decode_pillow

__all__ = ["TIFF_MAGICS", "decode_tiff", "save_tiff", "tiff_is_deep"]

#: How TIFF files begin (little and big endian, classic and BigTIFF).
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def tiff_is_deep(im: Image.Image) -> bool:
    """True for TIFFs Pillow would read with less than their precision (>8 bits or float)."""
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258, 1)
    bits = max(bits) if isinstance(bits, (tuple, list)) else bits
    fmt = tags.get(339, 1)
    fmt = max(fmt) if isinstance(fmt, (tuple, list)) else fmt
    if bits > 8 or fmt == 3:
        # Pillow's 16-bit grayscale mode I;16 is exact, but tifffile is needed for
        # gray+alpha, colour and float; it is used for all of them, for uniformity.
        return True
    return False


def decode_tiff(file: Path, name: str, max_pixels: int, fallback: Image.Image | None) -> DecodedPixels:
    """A deep TIFF via tifffile; Pillow (``fallback``) when tifffile lacks the codec."""
    import tifffile

    try:
        with tifffile.TiffFile(file) as tif:
            page = tif.pages.first
            check_pixel_count(name, int(page.imagewidth), int(page.imagelength), max_pixels)
            _check_tiff_complete(file, page, name)
            samples = page.asarray()
            orientation = 1
            tag = page.tags.get(274)
            if tag is not None and isinstance(tag.value, int) and 1 <= tag.value <= 8:
                orientation = int(tag.value)
            photometric = int(page.photometric)
            extrasamples = tuple(int(x) for x in page.extrasamples)
            axes = page.axes
    except (InputError, MemoryError):
        raise
    except Exception as exc:
        # e.g. KeyError "<COMPRESSION.LZW: 5> requires the 'imagecodecs' package"
        if fallback is not None:
            return _pillow_fallback(fallback, name)
        if "imagecodecs" in str(exc):
            raise InputError(
                f"cannot read image {name}: its TIFF compression needs the 'imagecodecs' package"
            ) from None
        raise corrupt_error(name, exc) from None

    if axes == "SYX":
        samples = np.moveaxis(samples, 0, -1)
    elif axes == "YX":
        samples = samples[:, :, None]
    elif axes != "YXS":
        return _tiff_unsupported(name, fallback, f"sample layout {axes}")
    if photometric not in (0, 1, 2):  # MINISWHITE, MINISBLACK, RGB
        return _tiff_unsupported(name, fallback, f"photometric interpretation {photometric}")

    dtype = samples.dtype
    if dtype.kind == "f":
        finite = np.nan_to_num(samples.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        values = np.clip(finite, 0.0, 1.0)
    elif dtype.kind == "u" or dtype == np.bool_:
        top = 1.0 if dtype == np.bool_ else float(np.iinfo(dtype).max)
        wide = np.float64 if dtype.itemsize > 2 else np.float32
        values = (samples.astype(wide) / top).astype(np.float32)
    elif dtype.kind == "i":
        values = np.clip(samples.astype(np.float32) / np.float32(np.iinfo(dtype).max), 0, 1)
    else:
        return _tiff_unsupported(name, fallback, f"sample type {dtype}")
    bit_depth = 8 if dtype.itemsize == 1 and dtype.kind != "f" else 16

    colour_samples = 3 if photometric == 2 else 1
    if values.shape[2] < colour_samples:
        raise corrupt_error(name)
    color = values[:, :, :colour_samples]
    if photometric == 0:
        color = 1.0 - color
    alpha = None
    if extrasamples and extrasamples[0] in (1, 2) and values.shape[2] > colour_samples:
        alpha = values[:, :, colour_samples]
        if extrasamples[0] == 1:  # associated (premultiplied) alpha
            safe = np.where(alpha > 0, alpha, 1.0)[:, :, None]
            color = np.clip(color / safe, 0.0, 1.0) * (alpha > 0)[:, :, None]
    grayscale = colour_samples == 1
    return DecodedPixels(color[:, :, 0] if grayscale else color, alpha, bit_depth, grayscale, orientation)


def _pillow_fallback(im: Image.Image, name: str) -> DecodedPixels:
    """A deep TIFF read by Pillow (colour at 8-bit precision); still reports a 16-bit source."""
    raw = decode_pillow(im, name)
    raw.bit_depth = 16
    return raw


def _tiff_unsupported(name: str, fallback: Image.Image | None, what: str) -> DecodedPixels:
    if fallback is not None:
        return _pillow_fallback(fallback, name)
    raise InputError(f"cannot read image {name}: unsupported TIFF {what}")


def _check_tiff_complete(file: Path, page: Any, name: str) -> None:
    """tifffile may pad short strips; refuse a file that ends before its image data does."""
    size = file.stat().st_size
    offsets = page.dataoffsets
    counts = page.databytecounts
    if not offsets or len(offsets) != len(counts):
        raise corrupt_error(name)
    end = max(int(o) + int(c) for o, c in zip(offsets, counts))
    if end > size:
        raise corrupt_error(name)


def save_tiff(handle: BinaryIO, pixels: np.ndarray) -> None:
    """Write ``H×W×3`` or ``H×W×4`` ``uint8``/``uint16`` pixels as an RGB(A) TIFF."""
    import tifffile

    tifffile.imwrite(
        handle,
        pixels,
        photometric="rgb",
        planarconfig="contig",
        extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None,
        compression="zlib",
        predictor=True,
        metadata=None,
    )
