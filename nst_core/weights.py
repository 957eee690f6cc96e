"""Finding, checking, caching and importing VGG-16 / VGG-19 weights.

Where a run's weights come from (:func:`load_weights`), first match wins:

1. an explicit file: ``Config.weights``, else ``$NST_CORE_WEIGHTS`` (:func:`explicit_weights_path`);
2. nst-core's cache, ``cached_weights_path(model)`` (filled by :func:`import_weights`, that is
   ``nst-core weights import FILE``);
3. torchvision's official ImageNet weights, through torchvision's own download machinery and its
   cache (``$TORCH_HOME/hub/checkpoints``): a file downloaded before is used without network.

Every file is loaded with ``torch.load(..., weights_only=True)`` (no code in a weights file ever
runs) and checked before use: its architecture is inferred from the number of convolutions
(13: VGG-16, 16: VGG-19) and every key and shape must match torchvision's ``features`` layout
exactly (:func:`nst_core.features.vgg_conv_shapes`). Anything wrong is a :class:`WeightsError`
with a one-line message that names the file.

Accepted layouts: a torchvision ``vgg16().features`` / ``vgg19().features`` state dict (keys
``0.weight`` …), a full torchvision VGG state dict (``features.0.weight`` …; ``classifier.*`` is
dropped), either of them wrapped in ``{"state_dict": …}`` or ``{"model": …}``, and keys prefixed
with ``module.`` (``nn.DataParallel``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from .errors import ConfigError, WeightsError
from .features import VGG_CONFIGS, vgg_conv_shapes

#: Environment variable naming an explicit weights file (used when ``Config.weights`` is unset).
WEIGHTS_ENV = "NST_CORE_WEIGHTS"
#: Environment variable that overrides the cache root (see :func:`cache_dir`).
CACHE_ENV = "NST_CORE_CACHE_DIR"

#: Models this module has weights for.
MODELS = tuple(VGG_CONFIGS)

#: torchvision's weights enum (in ``torchvision.models``) for each model.
_TORCHVISION_ENUMS = {"vgg16": "VGG16_Weights", "vgg19": "VGG19_Weights"}

#: How many checked files :func:`read_weights_file` keeps in memory (a VGG-19 is 80 MB).
_MEMO_SIZE = 4


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


@dataclass(frozen=True, kw_only=True)
class LoadedWeightsInfo:
    """A weights file in the cache, as :func:`list_cached_weights` sees it (not loaded)."""

    model: str
    path: Path
    size_bytes: int


# --------------------------------------------------------------------------------------------
# Paths


def cache_dir() -> Path:
    """nst-core's cache root.

    ``$NST_CORE_CACHE_DIR``; else on Windows ``%LOCALAPPDATA%\\nst-core``; else
    ``$XDG_CACHE_HOME/nst-core``; else ``~/.cache/nst-core``.
    """
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA", "").strip()
        if local:
            return Path(local) / "nst-core"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
        return Path(xdg) / "nst-core"
    return Path.home() / ".cache" / "nst-core"


def cached_weights_path(model: str) -> Path:
    """Where :func:`import_weights` puts ``model``'s weights: ``cache_dir()/weights/{model}.pth``."""
    _check_model(model)
    return cache_dir() / "weights" / f"{model}.pth"


def explicit_weights_path(config: Any) -> Path | None:
    """The weights file a user named: ``config.weights``, else ``$NST_CORE_WEIGHTS``, else ``None``.

    The file is not checked here; :func:`read_weights_file` does that.
    """
    path, _origin = _explicit(config)
    return path


def _explicit(config: Any) -> tuple[Path | None, str]:
    named = getattr(config, "weights", None) if config is not None else None
    if named:
        return Path(os.fspath(named)).expanduser(), "weights"
    from_env = os.environ.get(WEIGHTS_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser(), "env"
    return None, ""


# --------------------------------------------------------------------------------------------
# Reading and checking one file

_memo: OrderedDict[tuple, tuple[str, dict[str, torch.Tensor]]] = OrderedDict()
_memo_lock = threading.Lock()


def read_weights_file(path: str | os.PathLike[str]) -> LoadedWeights:
    """Load and check one weights file (any accepted layout); ``source`` is ``file PATH``.

    A file is read once per process: a second call for an unchanged file (same resolved path,
    size and modification time) returns the same, already checked tensors.
    """
    path = Path(os.fspath(path)).expanduser()
    model, state_dict = _read_checked(path)
    return LoadedWeights(model=model, state_dict=state_dict, source=f"file {_show(path)}", path=path)


def _read_checked(path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    name = _show(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except FileNotFoundError:
        raise WeightsError(f"cannot load weights '{name}': no such file") from None
    except OSError as error:
        raise WeightsError(f"cannot load weights '{name}': {_reason(error)}") from None
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    if path.is_dir():
        raise WeightsError(f"cannot load weights '{name}': it is a directory, not a weights file")
    if stat.st_size == 0:
        raise WeightsError(f"cannot load weights '{name}': the file is empty")
    obj = _torch_load(path, name)
    model, state_dict = check_state_dict(obj, name=name)
    with _memo_lock:
        _memo[key] = (model, state_dict)
        _memo.move_to_end(key)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return model, state_dict


def _torch_load(path: Path, name: str) -> Any:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise WeightsError(f"cannot load weights '{name}': {_reason(error)}") from None
    # torch.save writes a zip archive; files from PyTorch < 1.6 are a bare pickle (protocol 2).
    looks_like_torch = magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x80")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many kinds; none may escape
        text = str(error)
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if looks_like_torch and refused and not _cut_inside(path, refused.group(1).rsplit(".", 1)[-1]):
            raise WeightsError(
                f"cannot load weights '{name}': it holds Python objects, not only tensors "
                f"({refused.group(1)}), and is refused for safety; save a plain state dict "
                "(model.state_dict())"
            ) from None
        if isinstance(error, MemoryError):
            raise WeightsError(f"cannot load weights '{name}': out of memory while reading it") from None
        if isinstance(error, OSError):
            raise WeightsError(f"cannot load weights '{name}': {_reason(error)}") from None
        if looks_like_torch:
            raise WeightsError(f"cannot load weights '{name}': the file is corrupt or truncated") from None
        raise WeightsError(f"cannot load weights '{name}': it is not a PyTorch weights file") from None


def _cut_inside(path: Path, name: str) -> bool:
    """Whether the file ends inside ``name`` (a pickle cut there is truncated, not unsafe).

    Reading a ``GLOBAL`` opcode at the end of a truncated pickle yields the name less its last
    character, so the file's last ``len(name) + 1`` bytes are the name and one byte that is not
    the newline that would end it.
    """
    expected = name.encode("utf-8", "replace")
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - len(expected) - 1))
            tail = handle.read()
    except OSError:
        return False
    return len(tail) == len(expected) + 1 and tail.startswith(expected) and not tail.endswith(b"\n")


def check_state_dict(obj: Any, *, name: str) -> tuple[str, dict[str, torch.Tensor]]:
    """Turn what ``torch.load`` returned into ``(model, features state dict)``, or raise.

    ``name`` names the source in messages. The tensors are float32 and contiguous; when the
    input already was, they are the input's own tensors (not copies).
    """
    where = f"weights file '{name}'"
    tensors = _unwrap(obj, where)
    features = _features_part(tensors, where)

    convs = sum(1 for value in features.values() if value.dim() == 4)
    counts = {len([c for c in VGG_CONFIGS[m] if c != "M"]): m for m in MODELS}
    if convs not in counts:
        expected = " or ".join(f"{n} ({_pretty(m)})" for n, m in sorted(counts.items()))
        raise WeightsError(f"{where} has {convs} convolution layers; expected {expected}")
    model = counts[convs]
    expected_shapes = vgg_conv_shapes(model)

    for key in sorted(set(features) | set(expected_shapes), key=_key_order):
        if key not in features:
            raise WeightsError(f"{where} lacks '{key}' ({_pretty(model)} needs shape {_shape(expected_shapes[key])})")
        if key not in expected_shapes:
            raise WeightsError(f"{where} has an unexpected tensor '{key}' (not part of {_pretty(model)}'s features)")
        got = tuple(features[key].shape)
        if got != expected_shapes[key]:
            raise WeightsError(
                f"{where}: '{key}' has shape {_shape(got)}, expected {_shape(expected_shapes[key])} for {_pretty(model)}"
            )

    state_dict: dict[str, torch.Tensor] = {}
    for key in expected_shapes:
        tensor = features[key]
        if not tensor.is_floating_point() or tensor.is_quantized or tensor.layout != torch.strided:
            raise WeightsError(f"{where}: '{key}' holds {tensor.dtype} values, expected floating point")
        tensor = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        if not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{where}: '{key}' holds NaN or infinite values; the file is damaged")
        state_dict[key] = tensor
    return model, state_dict


def _unwrap(obj: Any, where: str) -> dict[str, Any]:
    for _ in range(3):  # {"state_dict": {"model": …}} at worst
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{where} holds a {_type_name(obj)}, not a state dict")
        if not obj:
            raise WeightsError(f"{where} holds an empty dict, not a state dict")
        wrapped = [key for key in ("state_dict", "model") if isinstance(obj.get(key), Mapping)]
        if wrapped and not any(isinstance(value, torch.Tensor) for value in obj.values()):
            obj = obj[wrapped[0]]
            continue
        break
    for key, value in obj.items():
        if not isinstance(key, str):
            raise WeightsError(f"{where} has a key that is not a string ({key!r:.40}); not a state dict")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{where}: '{key}' holds a {_type_name(value)}, not a tensor")
    return dict(obj)


def _features_part(tensors: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    if tensors and all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    if not any(key.startswith("features.") for key in tensors):
        return tensors  # already a ``features`` state dict
    features: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.startswith("features."):
            features[key[len("features."):]] = value
        elif not key.startswith("classifier."):
            raise WeightsError(f"{where} has an unexpected tensor '{key}' (not part of a torchvision VGG)")
    return features


# --------------------------------------------------------------------------------------------
# Resolution


def infer_model(config: Any) -> str | None:
    """The architecture of the explicit weights file, if there is one, else ``None``.

    Reading the file here is not wasted: it stays in memory for :func:`load_weights`.
    """
    path, origin = _explicit(config)
    if path is None:
        return None
    with _blame_env(origin):
        return read_weights_file(path).model


def load_weights(*, model: str, config: Any) -> LoadedWeights:
    """``model``'s weights from the explicit file, else the cache, else torchvision (see module doc)."""
    _check_model(model)
    path, origin = _explicit(config)
    if path is not None:
        with _blame_env(origin):
            loaded = read_weights_file(path)
        if loaded.model != model:
            raise WeightsError(
                f"weights file '{_show(path)}' holds {_pretty(loaded.model)} weights but the model is {model}; "
                f"drop --model or pass a {_pretty(model)} file"
            )
        return loaded

    cached = cached_weights_path(model)
    if cached.is_file():
        try:
            found, state_dict = _read_checked(cached)
        except WeightsError as error:
            raise WeightsError(f"{error}; delete it or replace it with: nst-core weights import FILE") from None
        if found != model:
            raise WeightsError(
                f"cached weights '{_show(cached)}' hold {_pretty(found)} weights, not {_pretty(model)}; "
                "delete the file or replace it with: nst-core weights import FILE"
            )
        return LoadedWeights(model=model, state_dict=state_dict, source=f"cache {_show(cached)}", path=cached)

    return _torchvision_weights(model)


def _torchvision_weights(model: str) -> LoadedWeights:
    url, checkpoint = "", None
    try:
        import torchvision.models

        weights = getattr(torchvision.models, _TORCHVISION_ENUMS[model]).IMAGENET1K_V1
        url = weights.url
        checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        # torch.hub writes "Downloading: …" to stdout even with progress=False, which would corrupt
        # a front end's JSON output: nst-core never prints
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            obj = weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - no network, bad hash, disk full, no torchvision …
        file_name = os.path.basename(urlparse(url).path) if url else "FILE"
        get = f"download {url}" if url else "get torchvision's ImageNet weights file"
        raise WeightsError(
            f"no {_pretty(model)} weights: no --weights file, none in the cache "
            f"({_show(cached_weights_path(model).parent)}) and the download from torchvision failed "
            f"({_reason(error)}); on a machine with internet {get}, then run: nst-core weights import {file_name}"
        ) from None
    found, state_dict = check_state_dict(obj, name=_show(checkpoint) if checkpoint else url)
    if found != model:  # cannot happen with torchvision's files; a check all the same
        raise WeightsError(f"torchvision's {model} weights ({url}) hold {_pretty(found)} weights")
    return LoadedWeights(
        model=model,
        state_dict=state_dict,
        source=f"torchvision download ({_show(checkpoint)})",
        path=checkpoint if checkpoint is not None and checkpoint.is_file() else None,
    )


@contextlib.contextmanager
def _blame_env(origin: str) -> Iterator[None]:
    """Add "(named by $NST_CORE_WEIGHTS)" to errors about a file the environment named."""
    try:
        yield
    except WeightsError as error:
        if origin != "env":
            raise
        raise WeightsError(f"{error} (named by ${WEIGHTS_ENV})") from None


# --------------------------------------------------------------------------------------------
# The cache


def import_weights(path: str | os.PathLike[str]) -> LoadedWeights:
    """Check a weights file and store it in the cache as ``cached_weights_path(model)``.

    What is stored is the checked ``features`` state dict (float32; a full VGG's classifier is
    left out). It is written to a temporary file in the cache folder and moved into place with
    :func:`os.replace`, so the cached file is always either the old one or the complete new one.
    Returns the cached copy, loaded (``source`` ``cache …``).
    """
    source = Path(os.fspath(path)).expanduser()
    model, state_dict = _read_checked(source)
    target = cached_weights_path(model)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{model}.", suffix=".tmp")
    except OSError as error:
        raise WeightsError(f"cannot write to the weights cache '{_show(folder)}': {_reason(error)}") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            # clone(): save each tensor alone, never a larger storage it may be a view of
            torch.save({key: value.clone() for key, value in state_dict.items()}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException as error:
        try:
            temp.unlink()
        except OSError:
            pass
        if isinstance(error, Exception):
            raise WeightsError(f"cannot write '{_show(target)}': {_reason(error)}") from None
        raise
    found, cached = _read_checked(target)
    return LoadedWeights(model=found, state_dict=cached, source=f"cache {_show(target)}", path=target)


def list_cached_weights() -> list[LoadedWeightsInfo]:
    """The cached weights files (``vgg16.pth``, ``vgg19.pth``) that look valid, without loading them.

    "Look valid": a non-empty regular file that is a zip archive, as ``torch.save`` writes.
    """
    folder = cache_dir() / "weights"
    found: list[LoadedWeightsInfo] = []
    for model in MODELS:
        path = folder / f"{model}.pth"
        try:
            if not path.is_file():
                continue
            size = path.stat().st_size
            with open(path, "rb") as handle:
                magic = handle.read(4)
        except OSError:
            continue
        if size > 0 and magic == b"PK\x03\x04":
            found.append(LoadedWeightsInfo(model=model, path=path, size_bytes=size))
    return found


# --------------------------------------------------------------------------------------------
# Helpers


def _check_model(model: str) -> None:
    if model not in VGG_CONFIGS:
        raise ConfigError(f"no weights known for model {model!r}; nst-core's weights are for {', '.join(MODELS)}")


def _pretty(model: str) -> str:
    """``vgg19`` → ``VGG-19``."""
    match = re.fullmatch(r"vgg(\d+)", model)
    return f"VGG-{match.group(1)}" if match else model


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(n) for n in shape))


def _key_order(key: str) -> tuple[int, int, str]:
    head, _, tail = key.partition(".")
    return (0, int(head), tail) if head.isdigit() else (1, 0, key)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _show(path: Any) -> str:
    """A path on one line (control characters escaped)."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _reason(error: BaseException) -> str:
    """A short, one-line reason for an exception."""
    reason = getattr(error, "reason", None)  # urllib.error.URLError
    if isinstance(error, OSError) and error.strerror and not reason:
        text = error.strerror
    elif reason is not None and not isinstance(reason, str):
        text = str(getattr(reason, "strerror", None) or reason)
    else:
        text = str(reason or error)
    text = " ".join(text.split())
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if not text:
        text = type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
