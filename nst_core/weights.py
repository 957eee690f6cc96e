"""Finding, checking, caching and importing VGG-16 / VGG-19 weights.

Where a run's weights come from (:func:`load_weights`), first match wins:

1. an explicit file: ``Config.weights``, else ``$NST_CORE_WEIGHTS`` (:func:`explicit_weights_path`);
2. the weights embedded in the package (:func:`embedded_weights_path`): the original VGG weights
   of Simonyan & Zisserman, 8-bit quantized, in ``nst_core/data`` — so a fresh install works with
   no network and no weights file;
3. nst-core's cache, ``cached_weights_path(model)`` (filled by :func:`import_weights`, that is
   ``nst-core weights import FILE``), used when the embedded file is missing from an installation.

``Config.weights == "torchvision"`` (or ``$NST_CORE_WEIGHTS=torchvision``) asks for PyTorch's
re-trained ImageNet weights instead: the file imported into nst-core's cache if there is one,
else torchvision's own download machinery and cache (``$TORCH_HOME/hub/checkpoints``; a file
downloaded before is used without network). Nothing is ever downloaded unless asked for this way.

Every ``.pth`` file is loaded with ``torch.load(..., weights_only=True)`` (no code in a weights
file ever runs), every ``.npz`` file with ``numpy.load(..., allow_pickle=False)``, and checked
before use: its architecture is inferred from the number of convolutions (13: VGG-16, 16:
VGG-19) and every key and shape must match torchvision's ``features`` layout exactly
(:func:`nst_core.features.vgg_conv_shapes`). Anything wrong is a :class:`WeightsError` with a
one-line message that names the file.

Accepted layouts: a torchvision ``vgg16().features`` / ``vgg19().features`` state dict (keys
``0.weight`` …), a full torchvision VGG state dict (``features.0.weight`` …; ``classifier.*`` is
dropped), either of them wrapped in ``{"state_dict": …}`` or ``{"model": …}``, and keys prefixed
with ``module.`` (``nn.DataParallel``). An ``.npz`` file holds the same keys as arrays, and a
quantized tensor as two arrays (see :func:`write_embedded_file`): ``KEY.codes`` (uint8) and
``KEY.codebook`` (float, ``(256,)`` for the whole tensor or ``(in_channels, 256)``, one row per
input channel), dequantized as ``codebook[codes]`` when the file is read.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
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

#: ``Config.weights`` / ``$NST_CORE_WEIGHTS`` value that asks for torchvision's weights, not a file.
TORCHVISION = "torchvision"

#: The embedded weights files, in ``nst_core/data`` (made by ``scripts/make_embedded_weights.py``).
EMBEDDED_FILES = {"vgg16": "vgg16-imagenet-8bit.npz", "vgg19": "vgg19-imagenet-8bit.npz"}
#: ``source`` of embedded weights, e.g. ``embedded VGG-19 (original VGG weights, 8-bit)``.
EMBEDDED_SOURCE = "embedded {pretty} (original VGG weights, 8-bit)"
#: Format marker stored in every file :func:`write_embedded_file` writes.
EMBEDDED_FORMAT = "nst-core-vgg-npz/1"
#: Suffixes of a quantized tensor's two arrays in an ``.npz`` file.
CODES_SUFFIX = ".codes"
CODEBOOK_SUFFIX = ".codebook"
#: Entries of a codebook.
CODEBOOK_SIZE = 256


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


def embedded_weights_path(model: str) -> Path | None:
    """Where ``model``'s embedded weights file is installed (``nst_core/data/…``), whether or not it is there.

    ``None`` when the package is not installed as plain files (e.g. imported from a zip archive).
    """
    _check_model(model)
    from importlib.resources import files

    resource = files("nst_core") / "data" / EMBEDDED_FILES[model]
    return Path(os.fspath(resource)) if isinstance(resource, os.PathLike) else None


def explicit_weights_path(config: Any) -> Path | None:
    """The weights file a user named: ``config.weights``, else ``$NST_CORE_WEIGHTS``, else ``None``.

    ``None`` too when the name is ``torchvision`` (:func:`wants_torchvision`). The file is not
    checked here; :func:`read_weights_file` does that.
    """
    path, _origin = _explicit(config)
    return path


def wants_torchvision(config: Any) -> bool:
    """Whether the run asks for torchvision's weights: ``--weights torchvision`` (or the variable)."""
    return _named(config)[0] == TORCHVISION


def _named(config: Any) -> tuple[str | None, str]:
    """What ``config.weights``, else ``$NST_CORE_WEIGHTS`` names, and which of them named it."""
    named = getattr(config, "weights", None) if config is not None else None
    if named:
        return os.fspath(named), "weights"
    from_env = os.environ.get(WEIGHTS_ENV, "").strip()
    if from_env:
        return from_env, "env"
    return None, ""


def _explicit(config: Any) -> tuple[Path | None, str]:
    named, origin = _named(config)
    if named is None or named == TORCHVISION:
        return None, origin
    return Path(named).expanduser(), origin


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
    obj = _npz_load(path, name) if path.suffix.lower() == ".npz" else _torch_load(path, name)
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


def _npz_load(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of an ``.npz`` weights file, quantized ones dequantized (see the module doc)."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise WeightsError(f"cannot load weights '{name}': {_reason(error)}") from None
    if magic != b"PK\x03\x04":
        raise WeightsError(f"cannot load weights '{name}': it is not an .npz weights file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise WeightsError(
                f"cannot load weights '{name}': it holds Python objects, not only arrays, and is refused for safety"
            ) from None
        raise WeightsError(f"cannot load weights '{name}': the file is corrupt or truncated") from None
    except MemoryError:
        raise WeightsError(f"cannot load weights '{name}': out of memory while reading it") from None
    except OSError as error:
        if not error.strerror:  # not a failed system call: a malformed archive
            raise WeightsError(f"cannot load weights '{name}': the file is corrupt or truncated") from None
        raise WeightsError(f"cannot load weights '{name}': {_reason(error)}") from None
    except Exception:  # noqa: BLE001 - zipfile.BadZipFile (bad CRC, no directory), zlib.error, EOFError …
        raise WeightsError(f"cannot load weights '{name}': the file is corrupt or truncated") from None

    where = f"weights file '{name}'"
    strays = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
    if strays:  # numpy hands out other members of the zip archive as bytes
        raise WeightsError(f"cannot load weights '{name}': it is a zip archive but not an .npz weights file "
                           f"(it holds '{_show(strays[0])}')")
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
            f"{where} has a codebook of shape {_shape(codebook.shape)}, expected ({CODEBOOK_SIZE},) "
            f"or (input channels, {CODEBOOK_SIZE})"
        )
    return torch.from_numpy(values)


def write_embedded_file(path: str | os.PathLike[str], model: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` (``.npz`` layout of the module doc) as an ``.npz`` file, byte-for-byte reproducibly.

    A format marker and the model name are added; members are stored (not compressed: the codes of
    a k-means codebook barely compress), in the given order, with fixed timestamps. Written to a
    temporary file beside ``path`` and moved into place.
    """
    _check_model(model)
    path = Path(os.fspath(path))
    members = {"__format__": np.array(EMBEDDED_FORMAT), "__model__": np.array(model), **arrays}
    temp = path.with_name(f".{path.name}.tmp")
    try:
        with zipfile.ZipFile(temp, "w") as archive:
            for key, array in members.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(array, order="C"), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED  # deflate would save 7% and double the load time
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


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
        if not np.isfinite(tensor.numpy()).all():  # numpy's check is several times faster than torch's
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
    """``model``'s weights: the explicit file, else the embedded ones, else the cache (see module doc).

    With ``--weights torchvision``: the cache, else torchvision's download (or its cache).
    """
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

    chosen = chosen_source(model, config)
    if chosen == "embedded":
        return load_embedded_weights(model)
    if chosen == "torchvision":
        return _torchvision_weights(model)
    if chosen == "cache" and (cached := _cached_weights(model)) is not None:
        return cached
    embedded = embedded_weights_path(model)
    missing = f"'{_show(embedded)}' is missing" if embedded is not None else "cannot be read from a zipped package"
    raise WeightsError(
        f"no {_pretty(model)} weights: the embedded file {missing} (reinstall nst-core) and none is in the cache "
        f"({_show(cached_weights_path(model).parent)}); pass --weights FILE, or --weights torchvision to download "
        "PyTorch's (0.5 GB)"
    )


def chosen_source(model: str, config: Any = None) -> str:
    """Which source :func:`load_weights` takes for ``model``, judged by which files exist.

    ``explicit``, ``embedded``, ``cache``, ``torchvision``, or ``""`` when there is none. The one
    place that knows the order, so that ``weights list`` always shows what a run really uses.
    """
    if _explicit(config)[0] is not None:
        return "explicit"
    has_cache = cached_weights_path(model).is_file()
    if wants_torchvision(config):
        return "cache" if has_cache else "torchvision"
    embedded = embedded_weights_path(model)
    if embedded is not None and embedded.exists():
        return "embedded"
    return "cache" if has_cache else ""


def load_embedded_weights(model: str) -> LoadedWeights:
    """``model``'s embedded weights (the original VGG weights, 8-bit), dequantized and checked.

    ``source`` is ``embedded VGG-19 (original VGG weights, 8-bit)`` (or VGG-16). Read once per process.
    """
    path = embedded_weights_path(model)
    if path is None:
        raise WeightsError(f"no embedded {_pretty(model)} weights: nst-core is installed as a zipped package")
    try:
        found, state_dict = _read_checked(path)
    except WeightsError as error:
        raise WeightsError(f"{error}; reinstall nst-core, or pass --weights FILE") from None
    if found != model:
        raise WeightsError(f"embedded weights '{_show(path)}' hold {_pretty(found)} weights, not {_pretty(model)}; "
                           "reinstall nst-core")
    return LoadedWeights(model=model, state_dict=state_dict, source=EMBEDDED_SOURCE.format(pretty=_pretty(model)),
                         path=path)


def _cached_weights(model: str) -> LoadedWeights | None:
    """``model``'s weights from nst-core's cache, or ``None`` if none are cached."""
    cached = cached_weights_path(model)
    if not cached.is_file():
        return None
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


@dataclass(frozen=True, kw_only=True)
class WeightsSource:
    """One place a run's weights may come from, as :func:`weights_sources` sees it (nothing is loaded)."""

    #: ``explicit``, ``embedded``, ``cache`` or ``torchvision``, in the order of :func:`load_weights`.
    kind: str
    #: One line for humans.
    description: str
    #: What :attr:`LoadedWeights.source` would be.
    source: str
    #: The file, if the place has one (torchvision: its cached download).
    path: Path | None
    #: Whether the file is there (torchvision: downloaded before; explicit: named).
    present: bool
    size_bytes: int | None
    #: Whether :func:`load_weights` would take this one for the given config.
    used: bool


def weights_sources(model: str, config: Any = None) -> list[WeightsSource]:
    """Every place ``model``'s weights may come from, which of them exist, and which a run would use.

    Nothing is loaded or checked: a file that is there but damaged still shows as present.
    """
    _check_model(model)
    pretty = _pretty(model)
    named, origin = _named(config)
    explicit, _ = _explicit(config)
    torchvision_asked = named == TORCHVISION
    embedded = embedded_weights_path(model)
    cached = cached_weights_path(model)
    checkpoint = _torchvision_checkpoint(model)
    via = f"${WEIGHTS_ENV}" if origin == "env" else "--weights"

    def size(path: Path | None) -> int | None:
        try:
            return path.stat().st_size if path is not None and path.is_file() else None
        except OSError:
            return None

    has_embedded = embedded is not None and embedded.exists()
    has_cache = cached.is_file()
    used = chosen_source(model, config)
    if torchvision_asked:
        explicit_text = f"{via} torchvision: PyTorch's weights, not a file"
    elif explicit is not None:
        explicit_text = f"named by {via}"
    else:
        explicit_text = f"none (--weights PATH or ${WEIGHTS_ENV})"
    return [
        WeightsSource(kind="explicit", description=explicit_text, source=f"file {_show(explicit)}",
                      path=explicit, present=explicit is not None, size_bytes=size(explicit), used=used == "explicit"),
        WeightsSource(kind="embedded", description="the original VGG weights (Simonyan & Zisserman), 8-bit",
                      source=EMBEDDED_SOURCE.format(pretty=pretty), path=embedded, present=has_embedded,
                      size_bytes=size(embedded), used=used == "embedded"),
        WeightsSource(kind="cache", description="imported with: nst-core weights import FILE",
                      source=f"cache {_show(cached)}", path=cached, present=has_cache, size_bytes=size(cached),
                      used=used == "cache"),
        WeightsSource(kind="torchvision", description="PyTorch's re-trained weights, 0.5 GB download; "
                      "only with --weights torchvision (after the cache)",
                      source=f"torchvision download ({_show(checkpoint)})", path=checkpoint,
                      present=checkpoint is not None and checkpoint.is_file(), size_bytes=size(checkpoint),
                      used=used == "torchvision"),
    ]


def _torchvision_checkpoint(model: str) -> Path | None:
    """Where torchvision keeps ``model``'s downloaded weights, or ``None`` without torchvision."""
    try:
        import torchvision.models

        url = getattr(torchvision.models, _TORCHVISION_ENUMS[model]).IMAGENET1K_V1.url
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    except Exception:  # noqa: BLE001 - no or a broken torchvision: nothing to show
        return None


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
            f"no {_pretty(model)} weights from torchvision: none imported into the cache "
            f"({_show(cached_weights_path(model).parent)}) and the download failed "
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
