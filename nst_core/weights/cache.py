"""nst-core's weights cache: importing a checked weights file into it, and listing what it holds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic_file import write_atomically
from ..errors import WeightsError
from ..message_text import short_reason, show_path
from .locations import MODELS, cache_dir, cached_weights_path
from .weights_file import LoadedWeights, read_checked

__all__ = ["LoadedWeightsInfo", "import_weights", "list_cached_weights"]


@dataclass(frozen=True, kw_only=True)
class LoadedWeightsInfo:
    """A weights file in the cache, as :func:`list_cached_weights` sees it (not loaded)."""

    model: str
    path: Path
    size_bytes: int


def import_weights(path: str | os.PathLike[str]) -> LoadedWeights:
    """Check a weights file and store it in the cache as ``cached_weights_path(model)``.

    What is stored is the checked ``features`` state dict (float32; a full VGG's classifier is
    left out), written atomically (:func:`~nst_core.atomic_file.write_atomically`), so the cached
    file is always either the old one or the complete new one. Returns the cached copy, loaded
    (``source`` ``cache …``).
    """
    source = Path(os.fspath(path)).expanduser()
    model, state_dict = read_checked(source)
    target = cached_weights_path(model)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsError(f"cannot write to the weights cache '{show_path(folder)}': {short_reason(error)}") from None
    # clone(): save each tensor alone, never a larger storage it may be a view of
    features = {key: value.clone() for key, value in state_dict.items()}
    try:
        write_atomically(target, lambda stream: torch.save(features, stream))
    except Exception as error:  # noqa: BLE001 - OSError, or whatever torch.save raises
        raise WeightsError(f"cannot write '{show_path(target)}': {short_reason(error)}") from None
    found, cached = read_checked(target)
    return LoadedWeights(model=found, state_dict=cached, source=f"cache {show_path(target)}", path=target)


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
