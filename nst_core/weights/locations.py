"""Where weights files are: the file a user names, the embedded files, nst-core's cache, torchvision's.

Only paths and names here; nothing is read. ``Config.weights`` (else ``$NST_CORE_WEIGHTS``)
names an explicit file, or ``torchvision`` for PyTorch's re-trained weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from ..errors import ConfigError
from ..vgg_layout import VGG_CONFIGS

__all__ = [
    "CACHE_ENV",
    "EMBEDDED_FILES",
    "MODELS",
    "TORCHVISION",
    "WEIGHTS_ENV",
    "cache_dir",
    "cached_weights_path",
    "check_model",
    "checkpoint_path",
    "embedded_weights_path",
    "explicit_and_origin",
    "explicit_weights_path",
    "named_weights",
    "torchvision_checkpoint",
    "torchvision_weights_enum",
    "wants_torchvision",
]

#: Environment variable naming an explicit weights file (used when ``Config.weights`` is unset).
WEIGHTS_ENV = "NST_CORE_WEIGHTS"
#: Environment variable that overrides the cache root (see :func:`cache_dir`).
CACHE_ENV = "NST_CORE_CACHE_DIR"

#: Models nst-core has weights for.
MODELS = tuple(VGG_CONFIGS)

#: ``Config.weights`` / ``$NST_CORE_WEIGHTS`` value that asks for torchvision's weights, not a file.
TORCHVISION = "torchvision"

#: The embedded weights files, in ``nst_core/data`` (made by ``scripts/make_embedded_weights.py``).
EMBEDDED_FILES = {"vgg16": "vgg16-imagenet-8bit.npz", "vgg19": "vgg19-imagenet-8bit.npz"}

#: torchvision's weights enum (in ``torchvision.models``) for each model.
TORCHVISION_ENUMS = {"vgg16": "VGG16_Weights", "vgg19": "VGG19_Weights"}


def check_model(model: str) -> None:
    """Raise a :class:`ConfigError` for a model nst-core has no weights for."""
    if model not in VGG_CONFIGS:
        raise ConfigError(f"no weights known for model {model!r}; nst-core's weights are for {', '.join(MODELS)}")


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
    """Where :func:`~nst_core.weights.import_weights` puts ``model``'s weights: ``cache_dir()/weights/{model}.pth``."""
    check_model(model)
    return cache_dir() / "weights" / f"{model}.pth"


def embedded_weights_path(model: str) -> Path | None:
    """Where ``model``'s embedded weights file is installed (``nst_core/data/…``), whether or not it is there.

    ``None`` when the package is not installed as plain files (e.g. imported from a zip archive).
    """
    check_model(model)
    from importlib.resources import files

    resource = files("nst_core") / "data" / EMBEDDED_FILES[model]
    return Path(os.fspath(resource)) if isinstance(resource, os.PathLike) else None


def explicit_weights_path(config: Any) -> Path | None:
    """The weights file a user named: ``config.weights``, else ``$NST_CORE_WEIGHTS``, else ``None``.

    ``None`` too when the name is ``torchvision`` (:func:`wants_torchvision`). The file is not
    checked here; :func:`~nst_core.weights.read_weights_file` does that.
    """
    path, _origin = explicit_and_origin(config)
    return path


def wants_torchvision(config: Any) -> bool:
    """Whether the run asks for torchvision's weights: ``--weights torchvision`` (or the variable)."""
    return named_weights(config)[0] == TORCHVISION


def named_weights(config: Any) -> tuple[str | None, str]:
    """What ``config.weights``, else ``$NST_CORE_WEIGHTS`` names, and which of them named it.

    The second item is ``"weights"``, ``"env"``, or ``""`` when nothing is named.
    """
    named = getattr(config, "weights", None) if config is not None else None
    if named:
        return os.fspath(named), "weights"
    from_env = os.environ.get(WEIGHTS_ENV, "").strip()
    if from_env:
        return from_env, "env"
    return None, ""


def explicit_and_origin(config: Any) -> tuple[Path | None, str]:
    """:func:`explicit_weights_path` and which of ``weights`` / ``env`` named it."""
    named, origin = named_weights(config)
    if named is None or named == TORCHVISION:
        return None, origin
    return Path(named).expanduser(), origin


def torchvision_weights_enum(model: str) -> Any:
    """torchvision's ``VGG16_Weights.IMAGENET1K_V1`` (or VGG-19's); raises without torchvision."""
    import torchvision.models

    return getattr(torchvision.models, TORCHVISION_ENUMS[model]).IMAGENET1K_V1


def checkpoint_path(url: str) -> Path:
    """Where torchvision's download machinery keeps the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def torchvision_checkpoint(model: str) -> Path | None:
    """Where torchvision keeps ``model``'s downloaded weights, or ``None`` without torchvision."""
    try:
        return checkpoint_path(torchvision_weights_enum(model).url)
    except Exception:  # noqa: BLE001 - no or a broken torchvision: nothing to show
        return None
