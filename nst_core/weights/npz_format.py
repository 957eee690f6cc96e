"""The ``.npz`` weights format, quantized tensors included: reading it, and writing the embedded files.

An ``.npz`` weights file holds the keys of a torchvision ``features`` state dict (``0.weight`` …)
as arrays, read with ``numpy.load(..., allow_pickle=False)``. A quantized tensor is two arrays:
``KEY.codes`` (uint8) and ``KEY.codebook`` (float, ``(256,)`` for the whole tensor or
``(in_channels, 256)``, one row per input channel), dequantized as ``codebook[codes]`` when the
file is read. Members whose names start with ``__`` are metadata: ``__format__`` (the marker
:data:`EMBEDDED_FORMAT`, checked when present) and ``__model__``.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..atomic_file import write_atomically
from ..errors import WeightsError
from ..file_checks import FileProblem, read_head
from ..message_text import short_reason, show_path
from .locations import check_model
from .state_dict import shape_text

__all__ = ["CODEBOOK_SIZE", "CODEBOOK_SUFFIX", "CODES_SUFFIX", "EMBEDDED_FORMAT", "read_npz", "read_npz_arrays",
           "write_embedded_file"]

#: Format marker stored in every file :func:`write_embedded_file` writes.
EMBEDDED_FORMAT = "nst-core-vgg-npz/1"
#: Suffixes of a quantized tensor's two arrays in an ``.npz`` file.
CODES_SUFFIX = ".codes"
CODEBOOK_SUFFIX = ".codebook"
#: Entries of a codebook.
CODEBOOK_SIZE = 256


def read_npz_arrays(path: Path, *, what: str = "weights") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read with ``allow_pickle=False``; only a regular file is opened.

    Anything wrong is a one-line :class:`WeightsError` ``cannot load {what} 'PATH': …`` (no such
    file, a named pipe or device, not an ``.npz`` file, Python objects, corrupt or truncated).
    """
    name = show_path(path)
    refused = f"cannot load {what} '{name}'"
    try:
        magic = read_head(path, 4)
    except FileProblem as problem:
        raise WeightsError(f"{refused}: {problem}") from None
    if magic != b"PK\x03\x04":
        raise WeightsError(f"{refused}: it is not an .npz weights file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise WeightsError(
                f"{refused}: it holds Python objects, not only arrays, and is refused for safety"
            ) from None
        raise WeightsError(f"{refused}: the file is corrupt or truncated") from None
    except MemoryError:
        raise WeightsError(f"{refused}: out of memory while reading it") from None
    except OSError as error:
        if not error.strerror:  # not a failed system call: a malformed archive
            raise WeightsError(f"{refused}: the file is corrupt or truncated") from None
        raise WeightsError(f"{refused}: {short_reason(error)}") from None
    except Exception:  # noqa: BLE001 - zipfile.BadZipFile (bad CRC, no directory), zlib.error, EOFError …
        raise WeightsError(f"{refused}: the file is corrupt or truncated") from None
    strays = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
    if strays:  # numpy hands out other members of the zip archive as bytes
        raise WeightsError(f"{refused}: it is a zip archive but not an .npz weights file "
                           f"(it holds '{show_path(strays[0])}')")
    return arrays


def read_npz(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an ``.npz`` weights file, quantized ones dequantized (see the module doc)."""
    arrays = read_npz_arrays(path)
    where = f"weights file '{show_path(path)}'"
    marker = arrays.pop("__format__", None)
    if marker is not None and not (marker.dtype.kind == "U" and marker.shape == () and str(marker) == EMBEDDED_FORMAT):
        raise WeightsError(f"{where} has an unknown format marker; expected {EMBEDDED_FORMAT!r}")
    for key in [key for key in arrays if key.startswith("__")]:
        del arrays[key]  # other metadata (``__model__``)
    tensors: dict[str, torch.Tensor] = {}
    for key, array in arrays.items():
        if key.endswith(CODEBOOK_SUFFIX):
            if key[: -len(CODEBOOK_SUFFIX)] + CODES_SUFFIX not in arrays:
                raise WeightsError(f"{where} has a codebook '{key}' without its codes")
            continue
        if key.endswith(CODES_SUFFIX):
            base = key[: -len(CODES_SUFFIX)]
            tensors[base] = _dequantize(array, arrays.get(base + CODEBOOK_SUFFIX), f"{where}: '{base}'")
        elif array.dtype not in (np.float16, np.float32, np.float64):
            raise WeightsError(f"{where}: '{key}' holds {array.dtype} values, expected floating point")
        else:
            tensors[key] = torch.from_numpy(np.ascontiguousarray(array))
    return tensors


def _dequantize(codes: np.ndarray, codebook: np.ndarray | None, where: str) -> torch.Tensor:
    """``codebook[codes]``; a 2-D codebook has one row per input channel (``codes``' axis 1)."""
    if codebook is None:
        raise WeightsError(f"{where} has codes but no codebook")
    if codes.dtype != np.uint8:
        raise WeightsError(f"{where} has {codes.dtype} codes, expected uint8")
    if codebook.dtype not in (np.float16, np.float32, np.float64):
        raise WeightsError(f"{where} has a {codebook.dtype} codebook, expected floating point")
    codebook = codebook.astype(np.float32, copy=False)
    if codebook.shape == (CODEBOOK_SIZE,):
        values = codebook[codes]
    elif codes.ndim >= 2 and codebook.shape == (codes.shape[1], CODEBOOK_SIZE):
        rows = np.arange(codes.shape[1]).reshape((1, -1) + (1,) * (codes.ndim - 2))
        values = codebook[rows, codes]
    else:
        raise WeightsError(
            f"{where} has a codebook of shape {shape_text(codebook.shape)}, expected ({CODEBOOK_SIZE},) "
            f"or (input channels, {CODEBOOK_SIZE})"
        )
    return torch.from_numpy(values)


def write_embedded_file(path: str | os.PathLike[str], model: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` (the layout of the module doc) as an ``.npz`` file, byte-for-byte reproducibly.

    A format marker and the model name are added; members are stored (not compressed: the codes of
    a k-means codebook barely compress), in the given order, with fixed timestamps. Written
    atomically (:func:`~nst_core.atomic_file.write_atomically`).
    """
    check_model(model)
    members = {"__format__": np.array(EMBEDDED_FORMAT), "__model__": np.array(model), **arrays}
    write_atomically(Path(os.fspath(path)), lambda handle: _write_members(handle, members))


def _write_members(handle: BinaryIO, members: Mapping[str, np.ndarray]) -> None:
    with zipfile.ZipFile(handle, "w") as archive:
        for key, array in members.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED  # deflate would save 7% and double the load time
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())
