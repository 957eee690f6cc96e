"""Where fast-style models are found: the models folders, filled through a registration hook.

nst-core registers its cache's ``models`` folder (``$NST_CORE_CACHE_DIR/models``, by default
``~/.cache/nst-core/models``) as ``user``; a plugin adds folders with
:func:`~nst_core.hookspecs.nst_register_fast_model_folders`. Front ends list what the folders
hold with :func:`list_models` and resolve a ``--fast-model`` value with :func:`find_model`.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

from ..errors import InputError
from ..hookspecs import hookimpl
from .model_file import SUFFIX, FastModelInfo, read_info


def default_models_folder() -> Path:
    """nst-core's own models folder: ``<cache>/models`` (see :func:`nst_core.weights.cache_dir`)."""
    from ..weights import cache_dir

    return cache_dir() / "models"


class _DefaultModelsFolder(os.PathLike):
    """:func:`default_models_folder` as a path object that looks the cache up when it is used, so
    that the registries can be built once and still follow ``$NST_CORE_CACHE_DIR``."""

    def __fspath__(self) -> str:
        return os.fspath(default_models_folder())

    def __repr__(self) -> str:
        return f"<models folder {self.__fspath__()!r}>"


def model_folders() -> list[Path]:
    """Every registered models folder, in registration order (built-in first)."""
    from ..plugins import shared_registries

    return [Path(folder) for _, folder in shared_registries().model_folders.items()]


def list_models() -> list[FastModelInfo]:
    """The ``*.nst`` files of every models folder (missing folders are skipped), by name."""
    found: list[FastModelInfo] = []
    for folder in model_folders():
        if folder.is_dir():
            found += [read_info(path) for path in sorted(folder.glob(f"*{SUFFIX}")) if path.is_file()]
    return found


def find_model(name_or_path: str | PathLike) -> Path:
    """A model file's path: ``name_or_path`` itself if it is a file, else ``NAME.nst`` in a models folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if "/" not in text and "\\" not in text:
        stem = path.stem if path.suffix == SUFFIX else text
        for folder in model_folders():
            candidate = folder / f"{stem}{SUFFIX}"
            if candidate.is_file():
                return candidate
    if path.is_dir():
        raise InputError(f"fast model '{text}' is a folder, not a model file")
    folders = ", ".join(str(folder) for folder in model_folders())
    raise InputError(f"no fast model '{text}': not a file, nor a {SUFFIX} file in the models folders ({folders})")


@hookimpl
def nst_register_fast_model_folders(register) -> None:
    register("user", _DefaultModelsFolder())
