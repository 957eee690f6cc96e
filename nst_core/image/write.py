"""Writing image files: :func:`save_image`, and :func:`check_save_path` to check an output before a run.

The format follows the suffix (``.png .jpg .jpeg .tif .tiff .webp .bmp``). ``bit_depth=16``
writes 16-bit PNG and TIFF; other formats are 8-bit. Values are clipped to ``[0, 1]`` (NaN → 0)
and rounded. 8-bit PNG, JPEG (quality 95, no chroma subsampling), WebP (lossy, quality 95, alpha
kept) and BMP are written by Pillow; 16-bit PNG by :mod:`.png16`; TIFF by :mod:`.tiff`
(tifffile). Files are written atomically (:func:`nst_core.atomic_file.write_atomically`): to a
hidden temporary file in the target directory, flushed and fsynced, then ``os.replace``-d onto the
target, which is untouched if anything fails. A symlinked target is written through (the file it
points to is replaced). New files get the usual ``0o666 & ~umask`` permissions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..atomic_file import write_atomically
from ..errors import InputError
from ..file_checks import folder_problem, is_protected, name_problem
from ..message_text import first_line, quote_path
from .png16 import encode_png16
from .tiff import save_tiff

__all__ = ["SAVE_SUFFIXES", "check_save_path", "save_image"]

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


def check_save_path(
    path: str | os.PathLike[str],
    *,
    with_alpha: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> tuple[str, Path]:
    """Whether :func:`save_image` can write ``path``: its Pillow format and the file to write.

    The file is a symlink's target, so that the link survives. Raises :class:`InputError` for an
    unsupported suffix, transparency in a format without alpha, a file name longer than the file
    system allows, a path that is one of ``protect`` (the run's inputs), a missing or unwritable
    folder, or a folder as the path. Cheap and without side effects, so a run checks its output
    this way before doing any work.
    """
    out = Path(path)
    name = quote_path(path)
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
    if (problem := name_problem(out)) is not None:  # before any call on the path could fail on it
        raise InputError(f"cannot save {name}: {problem}")
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    if is_protected(target, protect):
        raise InputError(f"refusing to overwrite input file {name}; choose another output path")
    if (problem := folder_problem(target)) is not None:
        raise InputError(f"cannot save {name}: {problem}")
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
    name = quote_path(path)
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
        write_atomically(target, lambda handle: _ENCODERS[fmt](handle, pixels))
    except OSError as exc:
        if isinstance(exc, PermissionError):
            reason = "permission denied"
        else:
            reason = exc.strerror or first_line(exc)
        raise InputError(f"cannot save {name}: {reason}") from None
    return out


def _quantize(values: np.ndarray, depth: int) -> np.ndarray:
    top = 65535 if depth == 16 else 255
    clean = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    scaled = np.round(np.clip(clean, 0.0, 1.0) * np.float32(top))
    return scaled.astype(np.uint16 if depth == 16 else np.uint8)


def _save_png(handle: BinaryIO, pixels: np.ndarray) -> None:
    if pixels.dtype == np.uint16:
        encode_png16(handle, pixels)
    else:
        Image.fromarray(pixels).save(handle, format="PNG", compress_level=6)


def _save_jpeg(handle: BinaryIO, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(handle, format="JPEG", quality=95, subsampling=0)


def _save_webp(handle: BinaryIO, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(handle, format="WEBP", quality=95)


def _save_bmp(handle: BinaryIO, pixels: np.ndarray) -> None:
    Image.fromarray(pixels).save(handle, format="BMP")


_ENCODERS = {
    "PNG": _save_png,
    "JPEG": _save_jpeg,
    "WEBP": _save_webp,
    "BMP": _save_bmp,
    "TIFF": save_tiff,
}
