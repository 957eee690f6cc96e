"""Image files in and out, resizing, and conversion between numpy arrays and tensors.

Arrays are ``H×W×3`` (colour) or ``H×W`` (alpha) ``float32`` in ``[0, 1]``; tensors are
``1×3×H×W``. Nothing here prints; every problem a user can cause (a missing, unreadable, corrupt,
truncated or oversized file, an unsupported output type, an output path that is an input) raises
:class:`~nst_core.errors.InputError` with a one-line message naming the file.

Reading
-------
Pillow opens every file first (header only) so that the pixel count is checked against
``max_pixels`` before anything is decoded. Pixels then come from one of three decoders:

* **Pillow** for 8-bit images of every format and mode, and for the deeper ones it reads exactly
  (16-bit PGM as mode ``I``, ``I;16``, ``F``), fully decoded inside the ``try`` (``.load()``) with
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` forced off, so truncated files fail instead of coming back
  half grey.
* **a decoder here** for 16-bit PNGs. Pillow 13 opens a 16-bit RGB/RGBA/gray+alpha PNG as
  mode ``RGB``/``RGBA``/``LA`` and silently keeps only the high byte of every sample (1000/65535
  comes back as 3/255); ``imageio.v3`` (pillow plugin) returns the same 8-bit data.
  ``torchvision.io.decode_png`` does read them exactly, but torchvision 0.29 deprecates its image
  codecs for removal (and warns on every call), so it is not relied on. The decoder here is zlib
  plus numpy: chunk CRCs and the final ``IEND`` are checked, all five filter types and Adam7
  interlacing are supported, and a ``tRNS`` colour becomes alpha. Average and Paeth filtering
  depend on the pixel to the left, so rows using them are undone along anti-diagonals, a whole
  band of rows per numpy step (about 0.3 s per megapixel on one core, at most about 100 MiB of
  work memory) instead of a Python loop per pixel. EXIF orientation comes from the ``eXIf`` chunk.
* **tifffile** for TIFFs with more than 8 bits per sample or floating-point samples (Pillow
  reduces 16-bit colour TIFFs to 8 bits and cannot open float RGB or 16-bit gray+alpha at all).
  Without the optional ``imagecodecs`` package tifffile decodes only uncompressed, Deflate/zlib,
  PackBits, LZMA and Zstd data; for other compressions (notably LZW and JPEG) the file is read by
  Pillow instead, which keeps 16-bit precision for grayscale but not for colour. Installing
  ``imagecodecs`` removes that limitation (tifffile then uses it automatically).

Sample values: 8-bit ÷ 255, 16-bit ÷ 65535, 32-bit integer (Pillow mode ``I``, e.g. 16-bit PGM)
÷ 65535 and clipped, 32-bit unsigned TIFF ÷ (2³²−1). Floating-point images (Pillow mode ``F``,
float TIFF) are taken to hold values in ``[0, 1]`` (the convention of float TIFFs, tifffile and
scikit-image; Pillow's own ``F``→``L`` conversion would instead assume ``0…255``) and are
clipped; they report ``bit_depth=16`` so that saving at the source depth keeps more than 8 bits.
EXIF orientation (PNG ``eXIf``, JPEG, TIFF, WebP) is applied with the same transposes as
``ImageOps.exif_transpose``; a malformed EXIF block is ignored rather than refusing the image.
Multi-frame files give their first frame. No colour management is done (ICC profiles and PNG
gamma are ignored; pixel values are used as stored).

Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is a process-wide global.
``load_image`` changes it only temporarily, under a module lock, and restores it in ``finally``:
it is disabled while the header is read (this module does the check itself, with a message that
gives the size) and set to ``max_pixels`` while decoding (so that Pillow's internal checks on GIF
frames, TIFF tiles etc. still apply), with ``DecompressionBombWarning`` turned into an error.
Another thread using Pillow at that moment (outside this module) would see the changed
settings; loads through this module are serialized by the lock.

Writing
-------
The format follows the suffix (``.png .jpg .jpeg .tif .tiff .webp .bmp``). ``bit_depth=16``
writes 16-bit PNG and TIFF; other formats are 8-bit. Values are clipped to ``[0, 1]`` (NaN → 0)
and rounded. 8-bit PNG, JPEG (quality 95, no chroma subsampling), WebP (lossy, quality 95, alpha
kept) and BMP are written by Pillow; 16-bit PNG by a small encoder here (Pillow cannot write
16-bit colour PNGs; adaptive per-row filtering as libpng does, zlib level 6); TIFF by tifffile
(Deflate with horizontal predictor, unassociated alpha). Files are written atomically: to a
hidden temporary file in the target directory, flushed and fsynced, then ``os.replace``-d onto the
target, which is untouched if anything fails. A symlinked target is written through (the file it
points to is replaced). New files get the usual ``0o666 & ~umask`` permissions.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import ConfigError, InputError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SAVE_SUFFIXES",
    "check_save_path",
    "LoadedImage",
    "load_image",
    "long_side_size",
    "resize_to",
    "save_image",
    "to_array",
    "to_tensor",
]

#: Default pixel limit of :func:`load_image`: Pillow's own decompression-bomb *error* limit,
#: ``2 * Image.MAX_IMAGE_PIXELS`` (Pillow only warns between the two).
DEFAULT_MAX_PIXELS: int = 178_956_970

#: Output suffix → format written by :func:`save_image`.
SAVE_SUFFIXES: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}

_NO_ALPHA_FORMATS = {"JPEG", "BMP"}
_SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = (_PNG_SIGNATURE, b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}

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


# --------------------------------------------------------------------------- messages


def _show(path: Any) -> str:
    """The path in quotes for a one-line message (control characters escaped)."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return f"'{text}'"


def _detail(exc: BaseException) -> str:
    """The first line of an exception's message, shortened, or its type name."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not text:
        return type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _corrupt(name: str, exc: BaseException | None = None) -> InputError:
    detail = f" ({_detail(exc)})" if exc is not None else ""
    return InputError(f"cannot read image {name}: file is truncated or corrupt{detail}")


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise InputError(f"cannot read image {name}: it has no pixels ({width}×{height})")
    pixels = width * height
    if pixels > max_pixels:
        raise InputError(
            f"image {name} is {width}×{height} = {pixels / 1e6:.1f} megapixels, "
            f"above the limit of {max_pixels / 1e6:.1f} megapixels"
        )


# --------------------------------------------------------------------------- loading


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


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file; see the module docstring for formats, modes and bit depths.

    :param max_pixels: refuse images with more pixels than this (checked from the header,
        before decoding).
    :raises InputError: missing, unreadable, not an image, truncated or corrupt, too large.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, not {max_pixels!r}")
    file = Path(path)
    name = _show(path)
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
            raise _corrupt(name, exc) from None
    rgb, alpha = _orient(raw.color, raw.alpha, raw.orientation)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    return LoadedImage(
        rgb=np.ascontiguousarray(rgb, dtype=np.float32),
        alpha=None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32),
        bit_depth=raw.bit_depth,
        grayscale=raw.grayscale,
        path=file,
    )


@dataclass
class _Raw:
    color: np.ndarray  # H×W or H×W×3 float32 in [0, 1]
    alpha: np.ndarray | None
    bit_depth: int
    grayscale: bool
    orientation: int = 1


def _read_head(file: Path, name: str) -> bytes:
    """The first bytes of the file, turning file-system errors into InputError."""
    try:
        if file.is_dir():
            raise InputError(f"cannot read image {name}: it is a directory")
        with open(file, "rb") as handle:
            return handle.read(64)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"cannot read image {name}: no such file") from None
    except PermissionError:
        raise InputError(f"cannot read image {name}: permission denied") from None
    except IsADirectoryError:
        raise InputError(f"cannot read image {name}: it is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read image {name}: {exc.strerror or _detail(exc)}") from None


def _decode(file: Path, name: str, head: bytes, max_pixels: int) -> _Raw:
    is_tiff = head[:4] in _TIFF_MAGICS
    Image.MAX_IMAGE_PIXELS = None  # the size is checked below, with a better message
    try:
        im = Image.open(file)
    except UnidentifiedImageError:
        if is_tiff:  # e.g. float RGB or 16-bit gray+alpha TIFF, which Pillow cannot open
            Image.MAX_IMAGE_PIXELS = max_pixels
            return _decode_tiff(file, name, max_pixels, fallback=None)
        if head.startswith(_SIGNATURES) or head[8:12] == b"WEBP":
            raise _corrupt(name) from None  # a known format that Pillow could not make sense of
        raise
    with im:
        _check_pixels(name, im.width, im.height, max_pixels)
        Image.MAX_IMAGE_PIXELS = max_pixels
        if im.format == "PNG" and _png_bit_depth(head) == 16:
            return _decode_png16(file, im)
        if im.format == "TIFF" and _tiff_is_deep(im):
            return _decode_tiff(file, name, max_pixels, fallback=im)
        return _decode_pillow(im, name)


def _png_bit_depth(head: bytes) -> int | None:
    if head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR" or len(head) < 26:
        return None
    return head[24]


def _orientation_of(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: ignore it rather than refuse the picture
        return 1
    return value if 1 <= value <= 8 else 1


def _orientation_of_exif(data: bytes) -> int:
    try:
        exif = Image.Exif()
        exif.load(data)
        value = int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: ignore it rather than refuse the picture
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(color: np.ndarray, alpha: np.ndarray | None, orientation: int):
    return _apply_orientation(color, orientation), (
        None if alpha is None else _apply_orientation(alpha, orientation)
    )


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
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


def _u8(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.uint8).astype(np.float32) / np.float32(255)


def _decode_pillow(im: Image.Image, name: str) -> _Raw:
    """Fully decode frame 0 of a Pillow image into float arrays."""
    im.load()
    orientation = _orientation_of(im)
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
                f"cannot read image {name}: unsupported colour mode {mode} ({_detail(exc)})"
            ) from None
        arr = _u8(converted)
        if wants_alpha:
            color, alpha = arr[:, :, :3], arr[:, :, 3]
        else:
            color = arr
        if grayscale:
            color = color[:, :, 0]
    return _Raw(color, alpha, bit_depth, grayscale, orientation)


def _decode_png16(file: Path, im: Image.Image) -> _Raw:
    """A 16-bit PNG (gray, gray+alpha, RGB, RGBA; interlaced or not) decoded here."""
    chunks = _png_chunks(file.read_bytes())
    width, height, depth, colour_type, compression, filter_method, interlace = chunks.header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour_type)
    if depth != 16 or channels is None or compression or filter_method or interlace > 1:
        raise ValueError("invalid PNG header")
    if (width, height) != im.size:
        raise ValueError("inconsistent PNG header")
    bpp = 2 * channels
    passes = []
    for x0, y0, dx, dy in _ADAM7 if interlace else [(0, 0, 1, 1)]:
        pass_width, pass_height = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if pass_width > 0 and pass_height > 0:
            passes.append((x0, y0, dx, dy, pass_width, pass_height))
    expected = sum(ph * (1 + pw * bpp) for *_, pw, ph in passes)
    inflater = zlib.decompressobj()
    data = inflater.decompress(b"".join(chunks.idat), expected + 1)
    if len(data) > expected:
        raise ValueError("PNG image data is too long")
    if len(data) < expected or not inflater.eof:
        raise ValueError("PNG image data ends early")
    samples = np.empty((height, width, channels), np.uint16)
    offset = 0
    for x0, y0, dx, dy, pass_width, pass_height in passes:
        size = pass_height * (1 + pass_width * bpp)
        lines = np.frombuffer(data, np.uint8, size, offset).reshape(pass_height, -1)
        offset += size
        rows = _png_unfilter(lines, bpp)
        samples[y0::dy, x0::dx] = rows.view(">u2").reshape(pass_height, pass_width, channels)

    values = samples.astype(np.float32) / np.float32(65535)
    grayscale = channels in (1, 2)
    color = values[:, :, 0] if grayscale else values[:, :, :3]
    alpha = values[:, :, -1] if channels in (2, 4) else None
    if alpha is None and chunks.trns is not None and len(chunks.trns) == 2 * channels:
        key = np.frombuffer(chunks.trns, ">u2").astype(np.uint16)  # the transparent colour
        alpha = np.any(samples != key, axis=2).astype(np.float32)
    orientation = 1
    if chunks.exif is not None:
        orientation = _orientation_of_exif(chunks.exif)
    return _Raw(color, alpha, 16, grayscale, orientation)


#: Adam7 passes: first column, first row, column step, row step.
_ADAM7 = [
    (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)
]


@dataclass
class _PngChunks:
    header: tuple[int, ...]
    idat: list[bytes]
    trns: bytes | None
    exif: bytes | None


def _png_chunks(data: bytes) -> _PngChunks:
    """Split a PNG into the chunks needed here, checking every CRC and the final IEND."""
    if data[:8] != _PNG_SIGNATURE:
        raise ValueError("not a PNG file")
    header: tuple[int, ...] | None = None
    idat: list[bytes] = []
    trns = exif = None
    pos = 8
    while True:
        if pos + 12 > len(data):
            raise ValueError("PNG file ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("PNG file ends inside a chunk")
        body = data[pos + 8 : end - 4]
        if zlib.crc32(kind + body) != int.from_bytes(data[end - 4 : end], "big"):
            raise ValueError(f"bad checksum in PNG chunk {kind.decode('latin-1')!r}")
        if kind == b"IHDR" and length == 13:
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"tRNS":
            trns = body
        elif kind == b"eXIf":
            exif = body
        elif kind == b"IEND":
            break
        elif not kind[0] & 0x20 and kind != b"PLTE":
            raise ValueError(f"unknown critical PNG chunk {kind.decode('latin-1')!r}")
        pos = end
    if header is None or not idat:
        raise ValueError("PNG file without IHDR or IDAT")
    return _PngChunks(header, idat, trns, exif)


def _png_unfilter(lines: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG filtering of ``height × (1 + rowbytes)`` bytes; returns ``height × rowbytes``.

    Bands of rows filtered with None, Sub or Up only are undone row by row with numpy. Average and
    Paeth depend on the pixel to the left, above and above-left, so a Python loop along the row
    would be needed; instead bands with them are processed along anti-diagonals
    (:func:`_png_unfilter_band`), all rows of the band at once.
    """
    height, rowbytes = lines.shape[0], lines.shape[1] - 1
    types = lines[:, 0]
    if types.max() > 4:
        raise ValueError("invalid PNG filter type")
    filtered = lines[:, 1:]
    width = rowbytes // bpp
    out = np.empty((height, rowbytes), np.uint8)
    prior = np.zeros(rowbytes, np.uint8)
    band = _png_band_rows(width, bpp)
    for y0 in range(0, height, band):
        y1 = min(height, y0 + band)
        band_types = types[y0:y1]
        if band_types.max() <= 2:
            for y in range(y0, y1):
                kind = band_types[y - y0]
                row = filtered[y]
                if kind == 1:
                    row = np.cumsum(row.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
                elif kind == 2:
                    row = row + prior
                out[y] = row
                prior = out[y]
        else:
            _png_unfilter_band(filtered[y0:y1], band_types, prior, bpp, out[y0:y1])
            prior = out[y1 - 1]
    return out


def _png_band_rows(width: int, bpp: int) -> int:
    """Rows per band so that each work array of :func:`_png_unfilter_band` is about 32 MiB."""
    budget = (1 << 24) / bpp  # int16 elements
    rows = int((-(width + 1) + math.sqrt((width + 1) ** 2 + 4 * budget)) / 2)
    return max(32, rows)


def _png_unfilter_band(
    filtered: np.ndarray, types: np.ndarray, prior: np.ndarray, bpp: int, out: np.ndarray
) -> None:
    """Unfilter a band of rows along anti-diagonals of pixels.

    Pixel ``x`` of row ``j`` needs ``(j, x-1)``, ``(j-1, x)`` and ``(j-1, x-1)``, all on the two
    previous diagonals, so one diagonal (one pixel of every row) is computed per numpy step.
    ``recon[c, j]`` holds pixel ``x = c - j - 1`` of row ``j`` (row 0 is the prior row); entries
    off the image stay zero, which is what the filters assume left of the first pixel.
    """
    rows = filtered.shape[0]
    width = filtered.shape[1] // bpp
    diagonals = rows + width + 1
    row_index = np.arange(rows + 1)[:, None]
    diagonal_index = row_index + np.arange(width)[None, :] + 1
    recon = np.zeros((diagonals, rows + 1, bpp), np.int16)
    recon[diagonal_index[0], 0] = prior.reshape(width, bpp)
    skewed = np.zeros((diagonals, rows + 1, bpp), np.int16)
    skewed[diagonal_index[1:], row_index[1:]] = filtered.reshape(rows, width, bpp)
    kinds = np.concatenate([[0], types])
    weights = [(kinds == k).astype(np.int16)[:, None] for k in range(5)]
    present = [bool(w.any()) for w in weights]
    for c in range(2, diagonals):
        lo, hi = max(1, c - width), min(rows, c - 1) + 1
        a = recon[c - 1, lo:hi]  # left
        b = recon[c - 1, lo - 1 : hi - 1]  # above
        value = skewed[c, lo:hi].copy()
        if present[1]:
            value += a * weights[1][lo:hi]
        if present[2]:
            value += b * weights[2][lo:hi]
        if present[3]:
            value += ((a + b) >> 1) * weights[3][lo:hi]
        if present[4]:
            d = recon[c - 2, lo - 1 : hi - 1]  # above left
            pa, pb, pc = np.abs(b - d), np.abs(a - d), np.abs(a + b - 2 * d)
            value += np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, d)) * weights[4][lo:hi]
        np.bitwise_and(value, 255, out=recon[c, lo:hi])
    out[:] = recon[diagonal_index[1:], row_index[1:]].reshape(rows, width * bpp)


def _tiff_is_deep(im: Image.Image) -> bool:
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


def _decode_tiff(file: Path, name: str, max_pixels: int, fallback: Image.Image | None) -> _Raw:
    """A deep TIFF via tifffile; Pillow (``fallback``) when tifffile lacks the codec."""
    import tifffile

    try:
        with tifffile.TiffFile(file) as tif:
            page = tif.pages.first
            _check_pixels(name, int(page.imagewidth), int(page.imagelength), max_pixels)
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
        raise _corrupt(name, exc) from None

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
        raise _corrupt(name)
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
    return _Raw(color[:, :, 0] if grayscale else color, alpha, bit_depth, grayscale, orientation)


def _pillow_fallback(im: Image.Image, name: str) -> _Raw:
    """A deep TIFF read by Pillow (colour at 8-bit precision); still reports a 16-bit source."""
    raw = _decode_pillow(im, name)
    raw.bit_depth = 16
    return raw


def _tiff_unsupported(name: str, fallback: Image.Image | None, what: str) -> _Raw:
    if fallback is not None:
        return _pillow_fallback(fallback, name)
    raise InputError(f"cannot read image {name}: unsupported TIFF {what}")


def _check_tiff_complete(file: Path, page: Any, name: str) -> None:
    """tifffile may pad short strips; refuse a file that ends before its image data does."""
    size = file.stat().st_size
    offsets = page.dataoffsets
    counts = page.databytecounts
    if not offsets or len(offsets) != len(counts):
        raise _corrupt(name)
    end = max(int(o) + int(c) for o, c in zip(offsets, counts))
    if end > size:
        raise _corrupt(name)


# --------------------------------------------------------------------------- saving


def check_save_path(
    path: str | os.PathLike[str],
    *,
    with_alpha: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> tuple[str, Path]:
    """Whether :func:`save_image` can write ``path``: its Pillow format and the file to write.

    The file is a symlink's target, so that the link survives. Raises :class:`InputError` for an
    unsupported suffix, transparency in a format without alpha, a path that is one of ``protect``
    (the run's inputs), a missing folder or a folder as the path. Cheap and without side effects,
    so a run checks its output this way before doing any work.
    """
    out = Path(path)
    name = _show(path)
    suffix = out.suffix.lower()
    fmt = SAVE_SUFFIXES.get(suffix)
    if fmt is None:
        supported = ", ".join(sorted(SAVE_SUFFIXES))
        what = f"unsupported file type '{suffix}'" if suffix else "the file name has no extension"
        raise InputError(f"cannot save {name}: {what}; use one of {supported}")
    if with_alpha and fmt in _NO_ALPHA_FORMATS:
        raise InputError(
            f"cannot save {name} with transparency: {fmt} has no alpha channel; use .png, .tif or .webp"
        )
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    for item in protect:
        if item is not None and same_file(target, Path(item)):
            raise InputError(f"refusing to overwrite input file {name}; choose another output path")
    directory = target.parent
    if not directory.is_dir():
        raise InputError(f"cannot save {name}: directory {_show(directory)} does not exist")
    if target.is_dir():
        raise InputError(f"cannot save {name}: it is a directory")
    return fmt, target


def save_image(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``rgb`` (``H×W×3`` float in ``[0, 1]``) and optional ``alpha`` (``H×W``) atomically.

    :param bit_depth: 8, or 16 for 16-bit PNG and TIFF (other formats are always 8-bit).
    :param protect: paths that must not be overwritten (the run's input files).
    :returns: ``path`` as a :class:`~pathlib.Path`.
    :raises InputError: unsupported suffix, alpha for JPEG/BMP, output is a protected input,
        missing directory, or the file cannot be written.
    """
    out = Path(path)
    name = _show(path)
    fmt, target = check_save_path(out, with_alpha=alpha is not None, protect=protect)
    if bit_depth not in (8, 16):
        raise InputError(f"cannot save {name}: bit depth must be 8 or 16, not {bit_depth!r}")
    colour = np.asarray(rgb)
    if colour.ndim != 3 or colour.shape[2] != 3 or colour.shape[0] < 1 or colour.shape[1] < 1:
        raise ValueError(f"rgb must be an H×W×3 array, not of shape {colour.shape}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != colour.shape[:2]:
            raise ValueError(f"alpha must be {colour.shape[:2]}, not {alpha.shape}")
    limit = _MAX_SIDE.get(fmt)
    if limit is not None and max(colour.shape[:2]) > limit:
        raise InputError(
            f"cannot save {name}: {fmt} images can be at most {limit} pixels on a side; use .png"
        )

    depth = bit_depth if fmt in _SIXTEEN_BIT_FORMATS else 8
    pixels = _quantize(colour, depth)
    if alpha is not None:
        pixels = np.concatenate([pixels, _quantize(alpha, depth)[:, :, None]], axis=2)
    try:
        _write_atomically(target, lambda f: _ENCODERS[fmt](f, pixels))
    except OSError as exc:
        if isinstance(exc, PermissionError):
            reason = "permission denied"
        else:
            reason = exc.strerror or _detail(exc)
        raise InputError(f"cannot save {name}: {reason}") from None
    return out


def _quantize(values: np.ndarray, depth: int) -> np.ndarray:
    top = 65535 if depth == 16 else 255
    clean = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    scaled = np.round(np.clip(clean, 0.0, 1.0) * np.float32(top))
    return scaled.astype(np.uint16 if depth == 16 else np.uint8)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (hard links and symlinks too), existing or not."""
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    real_a = os.path.normcase(os.path.realpath(a))
    real_b = os.path.normcase(os.path.realpath(b))
    return real_a == real_b


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: the classic (not thread-safe) read-and-restore
    os.umask(mask)
    return mask


def _write_atomically(target: Path, write) -> None:
    """Write via a temporary file in the same directory and ``os.replace`` it onto ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix="." + target.name + ".", suffix=".tmp")
    os.close(fd)  # reopened by name: tifffile wants a file object whose ``name`` is a path
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError, AttributeError):  # make the rename durable (POSIX)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _save_png(handle: BinaryIO, pixels: np.ndarray) -> None:
    if pixels.dtype == np.uint16:
        _encode_png16(handle, pixels)
    else:
        Image.fromarray(pixels).save(handle, format="PNG", compress_level=6)


def _save_jpeg(handle: BinaryIO, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(handle, format="JPEG", quality=95, subsampling=0)


def _save_webp(handle: BinaryIO, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(handle, format="WEBP", quality=95)


def _save_bmp(handle: BinaryIO, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(handle, format="BMP")


def _save_tiff(handle: BinaryIO, pixels: np.ndarray) -> None:
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


_ENCODERS = {
    "PNG": _save_png,
    "JPEG": _save_jpeg,
    "WEBP": _save_webp,
    "BMP": _save_bmp,
    "TIFF": _save_tiff,
}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_filter_rows(block: np.ndarray, previous: np.ndarray, bpp: int, only: int | None) -> np.ndarray:
    """PNG-filter rows of bytes (``n×rowbytes``); each output row starts with its filter type.

    With ``only`` every row uses that filter; otherwise each row gets the filter with the smallest
    sum of absolute (signed) bytes, libpng's heuristic.
    """
    x = block.astype(np.int16)
    up = np.concatenate([previous[None, :], block[:-1]]).astype(np.int16)
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)
    upleft[:, bpp:] = up[:, :-bpp]
    estimate = left + up - upleft
    pa, pb, pc = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    candidates = np.stack([x, x - left, x - up, x - (left + up) // 2, x - paeth]).astype(np.uint8)
    if only is None:
        cost = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)
        choice = np.argmin(cost, axis=0)
    else:
        choice = np.full(x.shape[0], only)
    rows = candidates[choice, np.arange(x.shape[0])]
    return np.concatenate([choice.astype(np.uint8)[:, None], rows], axis=1)


def _encode_png16(handle: BinaryIO, pixels: np.ndarray, *, filter_type: int | None = None) -> None:
    """Write an ``H×W×3`` or ``H×W×4`` ``uint16`` array as a 16-bit RGB(A) PNG."""
    height, width, channels = pixels.shape
    colour_type = {3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(pixels.astype(">u2")).view(np.uint8).reshape(height, -1)
    bpp = 2 * channels
    handle.write(_PNG_SIGNATURE)
    handle.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)))
    compressor = zlib.compressobj(6)
    pending = bytearray()
    step = max(1, (1 << 20) // max(1, rows.shape[1]))
    for start in range(0, height, step):
        previous = rows[start - 1] if start else np.zeros(rows.shape[1], np.uint8)
        filtered = _png_filter_rows(rows[start : start + step], previous, bpp, filter_type)
        pending += compressor.compress(filtered.tobytes())
        if len(pending) >= 1 << 20:
            handle.write(_png_chunk(b"IDAT", bytes(pending)))
            pending.clear()
    pending += compressor.flush()
    handle.write(_png_chunk(b"IDAT", bytes(pending)))
    handle.write(_png_chunk(b"IEND", b""))


# --------------------------------------------------------------------------- arrays


def long_side_size(shape_hw: tuple[int, int], long_side: int | None) -> tuple[int, int]:
    """``(h, w)`` scaled so that ``max(h, w) == long_side``, aspect kept, each side ≥ 1.

    ``None`` returns the size unchanged.
    """
    height, width = int(shape_hw[0]), int(shape_hw[1])
    if long_side is None:
        return height, width
    if isinstance(long_side, bool) or int(long_side) != long_side or long_side < 1:
        raise ConfigError(f"image size must be a positive whole number of pixels, not {long_side!r}")
    long_side = int(long_side)
    if height >= width:
        return long_side, max(1, round(width * long_side / height))
    return max(1, round(height * long_side / width)), long_side


def resize_to(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``H×W×C`` or ``H×W`` float image to ``size`` = ``(height, width)``.

    Bicubic, antialiased when shrinking (``torch.nn.functional.interpolate``), result clipped to
    ``[0, 1]``, float32. The same size returns a float32 copy.
    """
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, not {size!r}")
    values = np.asarray(array, dtype=np.float32)
    if values.ndim not in (2, 3):
        raise ValueError(f"expected an H×W or H×W×C array, not of shape {values.shape}")
    if values.shape[:2] == (height, width):
        return values.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    tensor = tensor[None, None] if values.ndim == 2 else tensor.permute(2, 0, 1)[None]
    with torch.no_grad():
        out = torch.nn.functional.interpolate(
            tensor, size=(height, width), mode="bicubic", antialias=True, align_corners=False
        ).clamp_(0.0, 1.0)
    out = out[0, 0] if values.ndim == 2 else out[0].permute(1, 2, 0)
    return np.ascontiguousarray(out.numpy())


def to_tensor(array: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """``H×W×3`` array → contiguous ``1×3×H×W`` float32 tensor (a copy) on ``device``."""
    values = np.asarray(array, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"expected an H×W×C array, not of shape {values.shape}")
    tensor = torch.from_numpy(np.array(values.transpose(2, 0, 1), order="C", copy=True))[None]
    if device is not None:
        tensor = tensor.to(device)
    return tensor.contiguous()


def to_array(tensor: torch.Tensor) -> np.ndarray:
    """``1×3×H×W`` (or ``3×H×W``) tensor → ``H×W×3`` float32 numpy array in [0, 1], on the CPU."""
    values = tensor.detach()
    if values.ndim == 4:
        if values.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, not of shape {tuple(values.shape)}")
        values = values[0]
    if values.ndim != 3:
        raise ValueError(f"expected a 1×C×H×W tensor, not of shape {tuple(values.shape)}")
    values = values.to(device="cpu", dtype=torch.float32).clamp(0.0, 1.0)
    return np.ascontiguousarray(values.permute(1, 2, 0).numpy())
