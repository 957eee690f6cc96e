"""Reading and checking one weights file (``.pth`` or ``.npz``), once per process.

Every ``.pth`` file is loaded with ``torch.load(..., weights_only=True)``
(:func:`nst_core.safe_torch_load.load_tensors_only`: no code in a weights file ever runs), every
``.npz`` file with ``numpy.load(..., allow_pickle=False)``, and checked before use
(:mod:`.state_dict`). Only regular files are opened: a named pipe or a device is refused from
``os.stat`` alone, before anything could block. Anything wrong is a :class:`WeightsError` with a
one-line message that names the file.
"""

from __future__ import annotations

import os
import stat as stat_mode
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import safe_torch_load
from ..errors import WeightsError
from ..file_checks import not_regular
from ..message_text import short_reason, show_path
from .npz_format import read_npz
from .state_dict import check_state_dict

__all__ = ["LoadedWeights", "read_checked", "read_weights_file"]

#: How many checked files :func:`read_weights_file` keeps in memory (a VGG-19 is 80 MB).
_MEMO_SIZE = 4

_memo: OrderedDict[tuple, tuple[str, dict[str, torch.Tensor]]] = OrderedDict()
_memo_lock = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class LoadedWeights:
    """Checked weights, ready for :func:`nst_core.features.build_vgg`.

    ``state_dict`` may be shared with other callers (files are loaded once per process):
    treat it, and its tensors, as read-only.
    """

    #: ``vgg16`` or ``vgg19``, inferred from the tensors.
    model: str
    #: torchvision ``features`` keys (``0.weight`` …), float32 CPU tensors, all finite.
    state_dict: dict[str, torch.Tensor]
    #: Where the weights came from, one line for humans (``file …``, ``cache …``, ``torchvision download (…)``).
    source: str
    #: The file the weights were read from, if known.
    path: Path | None


def read_weights_file(path: str | os.PathLike[str]) -> LoadedWeights:
    """Load and check one weights file (any accepted layout); ``source`` is ``file PATH``.

    A file is read once per process: a second call for an unchanged file (same resolved path,
    size and modification time) returns the same, already checked tensors.
    """
    path = Path(os.fspath(path)).expanduser()
    model, state_dict = read_checked(path)
    return LoadedWeights(model=model, state_dict=state_dict, source=f"file {show_path(path)}", path=path)


def read_checked(path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """``(model, features state dict)`` of the file at ``path``, from memory if it was read before."""
    name = show_path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except FileNotFoundError:
        raise WeightsError(f"cannot load weights '{name}': no such file") from None
    except OSError as error:
        raise WeightsError(f"cannot load weights '{name}': {short_reason(error)}") from None
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    if stat_mode.S_ISDIR(stat.st_mode):
        raise WeightsError(f"cannot load weights '{name}': it is a directory, not a weights file")
    if (irregular := not_regular(stat.st_mode)) is not None:
        raise WeightsError(f"cannot load weights '{name}': {irregular}")
    if stat.st_size == 0:
        raise WeightsError(f"cannot load weights '{name}': the file is empty")
    obj = read_npz(path) if path.suffix.lower() == ".npz" else _read_torch(path, name)
    model, state_dict = check_state_dict(obj, name=name)
    with _memo_lock:
        _memo[key] = (model, state_dict)
        _memo.move_to_end(key)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return model, state_dict


def _read_torch(path: Path, name: str) -> Any:
    """What a ``.pth`` file holds, loaded without running code; failures worded for weights."""
    try:
        return safe_torch_load.load_tensors_only(path)
    except safe_torch_load.TorchFileError as failure:
        raise WeightsError(f"cannot load weights '{name}': {_wording(failure)}") from None


def _wording(failure: safe_torch_load.TorchFileError) -> str:
    if failure.kind == safe_torch_load.PYTHON_OBJECTS:
        named = f" ({failure.detail})" if failure.detail else ""
        return (f"it holds Python objects, not only tensors{named}, and is refused for safety; "
                "save a plain state dict (model.state_dict())")
    if failure.kind == safe_torch_load.OUT_OF_MEMORY:
        return "out of memory while reading it"
    if failure.kind == safe_torch_load.UNREADABLE:
        return failure.detail
    if failure.kind == safe_torch_load.CORRUPT:
        return "the file is corrupt or truncated"
    return "it is not a PyTorch weights file"
