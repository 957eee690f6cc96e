"""The front door: paint a photo with whichever method the config names, from arrays or files.

:func:`stylize` works on arrays and is what every front end calls; :func:`stylize_files` adds
file input and output around it (alpha kept aside and put back, atomic writes, inputs never
overwritten). Both pick the method by ``Config.method`` from the registered methods
(:mod:`nst_core.methods`: ``optimize``, ``fast`` and plugins'), give the run its own hook relay
(:func:`nst_core.plugins.open_run`), and report through the run hooks of
:mod:`nst_core.hookspecs`. Neither prints.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .device import resolve_device
from .errors import InputError, setting
from .image import check_save_path, load_image, resize_to, save_image
from .optimization import upscale
from .plugins import RunContext, open_run
from .records import Result

__all__ = ["resolve_device", "save_result", "stylize", "stylize_files", "upscale"]


def stylize(
    content: np.ndarray,
    styles: Sequence[np.ndarray] = (),
    *,
    config: Config | None = None,
    plugins: Iterable[Any] = (),
) -> Result:
    """Paint ``content`` in the style of ``styles`` (or of ``config.fast_model`` …).

    :param content: ``H×W×3`` float array in ``[0, 1]``.
    :param styles: one or more ``H×W×3`` float arrays in ``[0, 1]``, for methods that paint with
        style images (``optimize``); none for the others (``fast``).
    :param config: every setting, the method included; ``Config()`` when omitted.
    :param plugins: objects with hook implementations (progress listeners, cancel checks, parts)
        that take part in this run only.
    :return: the best image reached, its losses and what ran.
    """
    run = open_run(plugins)
    return _stylize(content, styles, config or Config(), run)


def _stylize(content: Any, styles: Sequence[Any], config: Config, run: RunContext) -> Result:
    method = run.registries.methods.get(config.method)
    content = _check_array("content", content)
    styles = [_check_array(f"style {i + 1}", s) for i, s in enumerate(styles)]
    if method.uses_styles and not styles:
        raise InputError("at least one style image is needed")
    if not method.uses_styles and styles:
        raise InputError(f"the {config.method} method paints without style images; give none, or choose another "
                         f"{setting('method')}")
    if config.regions:
        from .regions import check_region_styles

        if not getattr(method, "supports_regions", False):
            raise InputError(f"the {config.method} method paints one style everywhere; for a style per region "
                             f"(a painting per mask) use {setting('method')} optimize or instant")
        check_region_styles(config.regions, len(styles))
    result = method.run(content, styles, config=config, run=run)
    run.hook.nst_result(result=result)
    return result


def stylize_files(
    content_path: str | PathLike,
    style_paths: Sequence[str | PathLike] = (),
    output_path: str | PathLike = "",
    *,
    config: Config | None = None,
    plugins: Iterable[Any] = (),
) -> Result:
    """Stylize image files and write the result to ``output_path`` atomically.

    The content's alpha channel is kept aside and put back on the output (resized); a 16-bit
    content image gives a 16-bit output where the format allows. The output is written even when
    the run is cancelled (the best image so far); it may never be one of the input files (the
    content, the styles, or a file the method reads, such as a fast-style model).
    """
    config = config or Config()
    started = time.perf_counter()
    run = open_run(plugins, started=started)
    method = run.registries.methods.get(config.method)
    reads = getattr(method, "inputs", None)
    inputs = [Path(content_path), *map(Path, style_paths), *(Path(p) for p in (reads(config) if reads else ()))]
    content = load_image(content_path)
    # fail before minutes of work, not after; save_image checks the same again when it writes
    check_save_path(output_path, with_alpha=content.alpha is not None, protect=inputs)
    styles = [load_image(path).rgb for path in style_paths]
    result = _stylize(content.rgb, styles, config, run)
    return save_result(output_path, result, content, protect=inputs)


def save_result(output_path: str | PathLike, result: Result, content, *, protect: Sequence[Path]) -> Result:
    """Write ``result`` with ``content``'s alpha (resized) and bit depth, atomically; the result
    with its alpha. ``content`` is the :class:`nst_core.image.LoadedImage` it was made from."""
    alpha = None
    if content.alpha is not None:
        alpha = np.clip(resize_to(content.alpha, result.image.shape[:2]), 0.0, 1.0)
    save_image(output_path, result.image, alpha=alpha, bit_depth=content.bit_depth, protect=protect)
    return dataclasses.replace(result, alpha=alpha)


def _check_array(name: str, array: Any) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise InputError(f"{name} image must be H×W×3 RGB, got shape {array.shape}")
    return array.astype(np.float32, copy=False)
