"""Fast-style model files (``.nst``): a transformation network's weights plus plain metadata.

A model file is what ``torch.save`` writes for a dict of only tensors and plain values, so it
loads with ``torch.load(..., weights_only=True)`` (no pickled code runs)::

    {
        "format": "nst-core fast style",
        "version": 1,
        "weights": {name: tensor},            # TransformNet.state_dict()
        "metadata": {
            "style_name": str,
            "network": {"channels": [c1, c2, c3], "residual_blocks": n},
            "step": int,                      # training steps done
            "losses": {name: float},          # last logged training losses
            "config": {...},                  # the loss settings (plain Config fields)
            "training": {...},                # TrainingSettings fields
            "nst_core_version": str, "torch_version": str, "created": ISO time,
        },
        "training_state": {...} | absent,     # optimizer and RNG state, for --resume
    }

:func:`load_model` checks everything (format, version, keys, shapes, metadata types) before
building the network and raises a one-line :class:`~nst_core.errors.InputError` for any file
that is not a valid model: only regular files are opened (a named pipe or a device is refused
from ``os.stat`` alone), and a file holding Python objects is refused for safety
(:mod:`nst_core.safe_torch_load`). :func:`save_model` writes atomically
(:func:`nst_core.atomic_file.write_atomically`; new files get ``0o666 & ~umask``, as images do)
and never onto one of the ``protect`` paths.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from .. import safe_torch_load
from ..atomic_file import write_atomically
from ..errors import InputError
from ..file_checks import FileProblem, folder_problem, is_protected, name_problem, read_head
from ..message_text import quote_path
from .network import NetworkShape, TransformNet

FORMAT = "nst-core fast style"
#: Version of the file layout; files of a newer version are refused with a clear message.
VERSION = 1
#: Suffix of model files (others load too; the models folders list only these).
SUFFIX = ".nst"


@dataclass(frozen=True, kw_only=True, eq=False)
class FastModel:
    """A loaded model: the network (eval mode, CPU) and what its file says about it."""

    network: TransformNet
    style_name: str
    shape: NetworkShape
    #: Training steps done.
    step: int
    #: The file's ``metadata`` dict (plain values).
    metadata: Mapping[str, Any]
    #: Optimizer and RNG state for resuming training; ``None`` when the file has none.
    training_state: Mapping[str, Any] | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        """``style name (N steps)`` for lists and notices."""
        return f"{self.style_name} ({self.step} steps)"


@dataclass(frozen=True, kw_only=True)
class FastModelInfo:
    """What a models-folder listing shows of one model file (see :func:`nst_core.fast.list_models`)."""

    name: str
    path: Path
    style_name: str = ""
    step: int = 0
    #: Why the file cannot be used, or ``None`` when it loads.
    problem: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def save_model(
    path: str | PathLike,
    network: TransformNet,
    *,
    metadata: Mapping[str, Any],
    training_state: Mapping[str, Any] | None = None,
    protect: Iterable[str | PathLike] = (),
) -> Path:
    """Write a model file atomically; ``metadata`` must hold ``style_name`` and ``step``."""
    target = Path(path)
    name = quote_path(target)
    if (problem := name_problem(target)) is not None:
        raise InputError(f"cannot save model {name}: {problem}")
    if is_protected(target, protect):
        raise InputError(f"refusing to overwrite input file {name}; choose another model path")
    if (problem := folder_problem(target)) is not None:
        raise InputError(f"cannot save model {name}: {problem}")
    from .. import __version__

    full_metadata = {
        **dict(metadata),
        "network": network.shape.as_dict(),
        "nst_core_version": str(__version__),
        "torch_version": str(torch.__version__),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "weights": {key: value.detach().to("cpu", torch.float32).contiguous()
                    for key, value in network.state_dict().items()},
        "metadata": full_metadata,
    }
    if training_state is not None:
        payload["training_state"] = dict(training_state)
    try:
        write_atomically(target, lambda handle: torch.save(payload, handle))
    except OSError as error:
        raise InputError(f"cannot save model {name}: {error.strerror or error}") from None
    return target


def load_model(path: str | PathLike, *, device: torch.device | str = "cpu") -> FastModel:
    """Read and check a model file and build its network (eval mode, no gradients).

    :raises InputError: missing or unreadable file, not a PyTorch file, refused by
        ``weights_only`` loading, wrong format or version, missing or mis-shaped tensors,
        bad metadata.
    """
    file = Path(path)
    name = quote_path(file)
    payload = _read(file, name)
    metadata, weights = _check_payload(payload, name)
    try:
        shape = NetworkShape.from_dict(metadata["network"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"cannot load model {name}: bad network description ({error})") from None
    network = TransformNet(shape)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise InputError(f"cannot load model {name}: its weights do not fit its network ({what})")
    for key, tensor in expected.items():
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise InputError(
                f"cannot load model {name}: weight {key} is {tuple(weights[key].shape)}, "
                f"its network needs {tuple(tensor.shape)}"
            )
        if not torch.isfinite(weights[key]).all():
            raise InputError(f"cannot load model {name}: weight {key} holds NaN or infinite values")
    network.load_state_dict({key: value.float() for key, value in weights.items()})
    network.requires_grad_(False).eval().to(device)
    state = payload.get("training_state")
    return FastModel(
        network=network,
        style_name=metadata["style_name"],
        shape=shape,
        step=metadata["step"],
        metadata=metadata,
        training_state=state if isinstance(state, dict) else None,
        path=file,
    )


def read_info(path: str | PathLike) -> FastModelInfo:
    """A model file's name and metadata for a listing; a bad file gives ``problem``, not an error."""
    file = Path(path)
    try:
        model = load_model(file)
    except InputError as error:
        return FastModelInfo(name=file.stem, path=file, problem=str(error))
    return FastModelInfo(name=file.stem, path=file, style_name=model.style_name, step=model.step,
                         metadata=model.metadata)


def _read(file: Path, name: str) -> Any:
    try:
        magic = read_head(file, 4)
    except FileProblem as problem:
        raise InputError(f"cannot load model {name}: {problem}") from None
    try:
        if magic.startswith(b"PK\x03\x04"):
            return safe_torch_load.load_tensors_only(file)
        safe_torch_load.refuse_python_objects(file)
    except safe_torch_load.TorchFileError as failure:
        raise InputError(f"cannot load model {name}: {_wording(failure)}") from None
    raise InputError(f"cannot load model {name}: not a fast-style model file (train one with 'nst-core train')")


def _wording(failure: safe_torch_load.TorchFileError) -> str:
    if failure.kind == safe_torch_load.PYTHON_OBJECTS:
        return "it holds Python objects, not only tensors and plain values, and is refused for safety"
    if failure.kind == safe_torch_load.OUT_OF_MEMORY:
        return "out of memory while reading it"
    return "the file is corrupt or truncated"


def _check_payload(payload: Any, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(
            f"cannot load model {name}: not a fast-style model file (it may be VGG weights; "
            "train a model with 'nst-core train')"
        )
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"cannot load model {name}: it has no valid format version")
    if version > VERSION:
        raise InputError(
            f"cannot load model {name}: it is format version {version}, this nst-core reads up to "
            f"{VERSION}; update nst-core"
        )
    if version < 1:
        raise InputError(f"cannot load model {name}: unknown format version {version}")
    metadata, weights = payload.get("metadata"), payload.get("weights")
    if not isinstance(metadata, dict) or not isinstance(weights, dict):
        raise InputError(f"cannot load model {name}: it lacks its weights or metadata")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) and v.is_floating_point()
               for k, v in weights.items()):
        raise InputError(f"cannot load model {name}: its weights are not all float tensors")
    if not isinstance(metadata.get("style_name"), str) or not isinstance(metadata.get("network"), dict):
        raise InputError(f"cannot load model {name}: its metadata lacks the style name or network")
    step = metadata.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise InputError(f"cannot load model {name}: its metadata has no valid step count")
    return metadata, weights
