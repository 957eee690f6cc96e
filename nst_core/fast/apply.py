"""The ``fast`` method: a trained fast-style model's one forward pass, then the colour method.

Registered as the method ``fast`` (:mod:`nst_core.methods`): ``nst_core.stylize(content,
config=Config(method="fast", fast_model="starry_night"))``. :func:`stylize_fast` and
:func:`stylize_fast_files` are shortcuts that also take an already loaded :class:`FastModel`.
Models are loaded once per process and kept (a few, by file and modification time), so a batch
or a preview server pays the load once.

Colour preservation is applied to the network's result: ``luminance`` and ``histogram`` run as
their ``-post`` variants (the result's luminance with the photo's chroma; the result's colours
matched to the photo's), because a trained network has no style image to recolour beforehand.

The whole image goes through the network at once: instance normalization uses the statistics of
the whole image, so processing tiles separately would change each tile's look. Memory grows with
the image (about 0.3 KB per pixel in fp32).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..color import result_color_method
from ..config import Config
from ..device import autocast, check_precision, resolve_device
from ..errors import InputError
from ..hookspecs import hookimpl
from ..kept import Kept
from ..image import long_side_size, resize_to, to_array, to_tensor
from ..plugins import RunContext, open_run
from ..records import Plan, Result
from .model_file import FastModel, load_model

#: Loaded models kept per process (by file, modification time and device).
MODELS_KEPT = 4

_models: Kept[FastModel] = Kept(MODELS_KEPT)


class FastMethod:
    """The registered ``fast`` method (see :class:`nst_core.registry.Method`)."""

    description = "a trained fast-style model (Config.fast_model): one network pass, about a second"
    uses_styles = False
    #: Paints at the photo's own size unless a size is asked for (front ends' default).
    full_size = True

    def inputs(self, config: Config) -> list[Path]:
        """The model file (protected from overwriting)."""
        from .folders import find_model

        return [find_model(config.fast_model)] if config.fast_model else []

    def run(self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config, run: RunContext) -> Result:
        if not config.fast_model:
            raise InputError("the fast method needs a model: set fast_model to a .nst file or a model's name")
        return apply_model(content, cached_model(config.fast_model, resolve_device(config.device)),
                           config=config, run=run)


def cached_model(name_or_path: str | PathLike, device: torch.device) -> FastModel:
    """The model ``name_or_path`` names (see :func:`nst_core.fast.find_model`), loaded once per
    process and file version."""
    from .folders import find_model

    path = find_model(name_or_path)
    try:
        stat = path.stat()
    except OSError:
        return load_model(path, device=device)  # load_model says what is wrong, in one line
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(device))
    return _models.get(key, lambda: load_model(path, device=device))


def apply_model(content: np.ndarray, model: FastModel, *, config: Config, run: RunContext) -> Result:
    """One pass of ``model`` over ``content`` (``H×W×3`` float32 in ``[0, 1]``) at ``config.size``
    (``None``: the photo's size), with the colour method applied to the result."""
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    color = result_color_method(config.preserve_color, run.registries.color_methods)
    network = model.network.to(device)
    out_hw = long_side_size(content.shape[:2], config.size)
    run.hook.nst_plan(plan=Plan(method="fast", stages=((f"{out_hw[1]}x{out_hw[0]}", 0),)))
    content = resize_to(content, out_hw)
    content_for_run, _, color_state = color.prepare(content, [], config=config)
    if getattr(color_state, "notice", None):
        run.hook.nst_notice(message=color_state.notice)
    with torch.inference_mode(), autocast(config.precision, device):
        output = network(to_tensor(content_for_run, device)).float()
    array = np.clip(color.finish(to_array(output), content, color_state, config=config), 0.0, 1.0)
    return Result(
        image=array, losses={}, steps=0, best_step=0, elapsed=time.perf_counter() - run.started,
        info={
            "method": "fast",
            "fast_model": str(model.path or model.style_name),
            "style": model.style_name,
            "device": str(device),
            "precision": config.precision if config.precision in ("bf16", "fp16") else "fp32",
            "size": f"{out_hw[1]}x{out_hw[0]}",
        },
    )


def stylize_fast(
    content: np.ndarray,
    model: FastModel | str | PathLike,
    *,
    config: Config | None = None,
    plugins: Iterable[Any] = (),
) -> Result:
    """Stylize ``content`` with a trained fast-style model.

    :param content: ``H×W×3`` float array in ``[0, 1]``.
    :param model: a loaded :class:`FastModel`, or a model file's path or name (see
        :func:`nst_core.fast.find_model`).
    :param config: ``size`` (long side; ``None`` keeps the photo's size), the colour settings
        (``preserve_color``, ``color_match``, ``color_strength``), ``device`` and ``precision``
        (``bf16``/``fp16`` autocast when asked for; ``auto`` is fp32) are used.
    :return: the stylized image (``steps`` is 0: there is no optimization).
    """
    from ..engine import _stylize

    config = _fast_config(config, model)
    run = open_run([*plugins, _GivenModel(model)] if isinstance(model, FastModel) else plugins)
    return _stylize(content, [], config, run)


def stylize_fast_files(
    content_path: str | PathLike,
    model: FastModel | str | PathLike,
    output_path: str | PathLike,
    *,
    config: Config | None = None,
    plugins: Iterable[Any] = (),
) -> Result:
    """Stylize an image file with a fast-style model and write the result atomically."""
    from ..engine import stylize_files

    config = _fast_config(config, model)
    extra = [_GivenModel(model)] if isinstance(model, FastModel) else []
    return stylize_files(content_path, [], output_path, config=config, plugins=[*plugins, *extra])


def _fast_config(config: Config | None, model: FastModel | str | PathLike) -> Config:
    name = model.path or model.style_name if isinstance(model, FastModel) else model
    return (config or Config(size=None)).replace(method=_GivenModel.NAME if isinstance(model, FastModel) else "fast",
                                                 fast_model=str(name))


class _GivenModel:
    """A run-only plugin: the ``fast`` method with an already loaded model (``stylize_fast(…, model)``)."""

    NAME = "fast_given"

    def __init__(self, model: FastModel) -> None:
        self.method = _LoadedModelMethod(model)

    @hookimpl
    def nst_register_methods(self, register) -> None:
        register(self.NAME, self.method)


class _LoadedModelMethod(FastMethod):
    def __init__(self, model: FastModel) -> None:
        self.model = model

    def inputs(self, config: Config) -> list[Path]:
        return [self.model.path] if self.model.path else []

    def run(self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config, run: RunContext) -> Result:
        return apply_model(content, self.model, config=config, run=run)

