"""Which weights a run uses, and loading them: the explicit file, the embedded ones, the cache, torchvision.

:func:`chosen_source` is the one place that knows the order (see the package docstring);
:func:`load_weights` follows it and :func:`weights_sources` shows it.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import WeightsError
from ..message_text import short_reason, show_path
from ..vgg_layout import display_name
from .locations import (
    TORCHVISION,
    WEIGHTS_ENV,
    cached_weights_path,
    check_model,
    checkpoint_path,
    embedded_weights_path,
    explicit_and_origin,
    named_weights,
    torchvision_checkpoint,
    torchvision_weights_enum,
    wants_torchvision,
)
from .state_dict import check_state_dict
from .weights_file import LoadedWeights, read_checked, read_weights_file

__all__ = [
    "EMBEDDED_SOURCE",
    "WeightsSource",
    "chosen_source",
    "infer_model",
    "load_embedded_weights",
    "load_weights",
    "weights_sources",
]

#: ``source`` of embedded weights, e.g. ``embedded VGG-19 (original VGG weights, 8-bit)``.
EMBEDDED_SOURCE = "embedded {pretty} (original VGG weights, 8-bit)"


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


def infer_model(config: Any) -> str | None:
    """The architecture of the explicit weights file, if there is one, else ``None``.

    Reading the file here is not wasted: it stays in memory for :func:`load_weights`.
    """
    path, origin = explicit_and_origin(config)
    if path is None:
        return None
    with _blame_env(origin):
        return read_weights_file(path).model


def load_weights(*, model: str, config: Any) -> LoadedWeights:
    """``model``'s weights: the explicit file, else the embedded ones, else the cache (see the package doc).

    With ``--weights torchvision``: the cache, else torchvision's download (or its cache).
    """
    check_model(model)
    path, origin = explicit_and_origin(config)
    if path is not None:
        with _blame_env(origin):
            loaded = read_weights_file(path)
        if loaded.model != model:
            raise WeightsError(
                f"weights file '{show_path(path)}' holds {display_name(loaded.model)} weights but the model is "
                f"{model}; drop --model or pass a {display_name(model)} file"
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
    missing = f"'{show_path(embedded)}' is missing" if embedded is not None else "cannot be read from a zipped package"
    raise WeightsError(
        f"no {display_name(model)} weights: the embedded file {missing} (reinstall nst-core) and none is in the "
        f"cache ({show_path(cached_weights_path(model).parent)}); pass --weights FILE, or --weights torchvision "
        "to download PyTorch's (0.5 GB)"
    )


def chosen_source(model: str, config: Any = None) -> str:
    """Which source :func:`load_weights` takes for ``model``, judged by which files exist.

    ``explicit``, ``embedded``, ``cache``, ``torchvision``, or ``""`` when there is none. The one
    place that knows the order, so that ``weights list`` always shows what a run really uses.
    """
    if explicit_and_origin(config)[0] is not None:
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
        raise WeightsError(f"no embedded {display_name(model)} weights: nst-core is installed as a zipped package")
    try:
        found, state_dict = read_checked(path)
    except WeightsError as error:
        raise WeightsError(f"{error}; reinstall nst-core, or pass --weights FILE") from None
    if found != model:
        raise WeightsError(f"embedded weights '{show_path(path)}' hold {display_name(found)} weights, not "
                           f"{display_name(model)}; reinstall nst-core")
    return LoadedWeights(model=model, state_dict=state_dict, source=EMBEDDED_SOURCE.format(pretty=display_name(model)),
                         path=path)


def _cached_weights(model: str) -> LoadedWeights | None:
    """``model``'s weights from nst-core's cache, or ``None`` if none are cached."""
    cached = cached_weights_path(model)
    if not cached.is_file():
        return None
    try:
        found, state_dict = read_checked(cached)
    except WeightsError as error:
        raise WeightsError(f"{error}; delete it or replace it with: nst-core weights import FILE") from None
    if found != model:
        raise WeightsError(
            f"cached weights '{show_path(cached)}' hold {display_name(found)} weights, not {display_name(model)}; "
            "delete the file or replace it with: nst-core weights import FILE"
        )
    return LoadedWeights(model=model, state_dict=state_dict, source=f"cache {show_path(cached)}", path=cached)


def weights_sources(model: str, config: Any = None) -> list[WeightsSource]:
    """Every place ``model``'s weights may come from, which of them exist, and which a run would use.

    Nothing is loaded or checked: a file that is there but damaged still shows as present.
    """
    check_model(model)
    pretty = display_name(model)
    named, origin = named_weights(config)
    explicit, _ = explicit_and_origin(config)
    torchvision_asked = named == TORCHVISION
    embedded = embedded_weights_path(model)
    cached = cached_weights_path(model)
    checkpoint = torchvision_checkpoint(model)
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
        WeightsSource(kind="explicit", description=explicit_text, source=f"file {show_path(explicit)}",
                      path=explicit, present=explicit is not None, size_bytes=size(explicit), used=used == "explicit"),
        WeightsSource(kind="embedded", description="the original VGG weights (Simonyan & Zisserman), 8-bit",
                      source=EMBEDDED_SOURCE.format(pretty=pretty), path=embedded, present=has_embedded,
                      size_bytes=size(embedded), used=used == "embedded"),
        WeightsSource(kind="cache", description="imported with: nst-core weights import FILE",
                      source=f"cache {show_path(cached)}", path=cached, present=has_cache, size_bytes=size(cached),
                      used=used == "cache"),
        WeightsSource(kind="torchvision", description="PyTorch's re-trained weights, 0.5 GB download; "
                      "only with --weights torchvision (after the cache)",
                      source=f"torchvision download ({show_path(checkpoint)})", path=checkpoint,
                      present=checkpoint is not None and checkpoint.is_file(), size_bytes=size(checkpoint),
                      used=used == "torchvision"),
    ]


def _torchvision_weights(model: str) -> LoadedWeights:
    url, checkpoint = "", None
    try:
        weights = torchvision_weights_enum(model)
        url = weights.url
        checkpoint = checkpoint_path(url)
        # torch.hub writes "Downloading: …" to stdout even with progress=False, which would corrupt
        # a front end's JSON output: nst-core never prints
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            obj = weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - no network, bad hash, disk full, no torchvision …
        file_name = os.path.basename(urlparse(url).path) if url else "FILE"
        get = f"download {url}" if url else "get torchvision's ImageNet weights file"
        raise WeightsError(
            f"no {display_name(model)} weights from torchvision: none imported into the cache "
            f"({show_path(cached_weights_path(model).parent)}) and the download failed "
            f"({short_reason(error)}); on a machine with internet {get}, then run: nst-core weights import {file_name}"
        ) from None
    found, state_dict = check_state_dict(obj, name=show_path(checkpoint) if checkpoint else url)
    if found != model:  # cannot happen with torchvision's files; a check all the same
        raise WeightsError(f"torchvision's {model} weights ({url}) hold {display_name(found)} weights")
    return LoadedWeights(
        model=model,
        state_dict=state_dict,
        source=f"torchvision download ({show_path(checkpoint)})",
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
