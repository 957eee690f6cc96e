"""Applying a fast-style model: one forward pass, then the colour method on the result.

:func:`stylize_fast` works on arrays (every front end calls it); :func:`stylize_fast_files`
adds file input and output around it the way :func:`nst_core.stylize_files` does (alpha kept
aside and put back, bit depth kept, output checked before any work, inputs never overwritten).

Colour preservation is applied to the network's result: ``luminance`` and ``histogram`` run as
their ``-post`` variants (the result's luminance with the photo's chroma; the result's colours
matched to the photo's), because a trained network has no style image to recolour beforehand.

The whole image goes through the network at once: instance normalization uses the statistics of
the whole image, so processing tiles separately would change each tile's look. Memory grows with
the image (about 0.3 KB per pixel in fp32).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..engine import resolve_device, save_result
from ..errors import InputError
from ..image import check_save_path, load_image, long_side_size, resize_to, to_array, to_tensor
from ..plugins import build_registries, get_plugin_manager, plugins_registered
from ..records import Result
from .model_file import FastModel, load_model


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
    started = time.perf_counter()
    config = config or Config(size=None)
    content = np.asarray(content, dtype=np.float32)
    if content.ndim != 3 or content.shape[2] != 3 or min(content.shape[:2]) < 1:
        raise InputError(f"content image must be H×W×3 RGB, got shape {content.shape}")
    pm = get_plugin_manager()
    with plugins_registered(pm, plugins):
        hook = pm.hook
        color = result_color_method(config.preserve_color, build_registries(pm))
        device = resolve_device(config.device)
        if not isinstance(model, FastModel):
            from .folders import find_model

            model = load_model(find_model(model), device=device)
        network = model.network.to(device)
        out_hw = long_side_size(content.shape[:2], config.size)
        content = resize_to(content, out_hw)
        content_for_run, _, color_state = color.prepare(content, [], config=config)
        if getattr(color_state, "notice", None):
            hook.nst_notice(message=color_state.notice)
        with torch.inference_mode(), _autocast_for(config.precision, device):
            output = network(to_tensor(content_for_run, device)).float()
        array = np.clip(color.finish(to_array(output), content, color_state, config=config), 0.0, 1.0)
        result = Result(
            image=array, losses={}, steps=0, best_step=0, elapsed=time.perf_counter() - started,
            info={
                "method": "fast",
                "fast_model": str(model.path or model.style_name),
                "style": model.style_name,
                "device": str(device),
                "precision": config.precision if config.precision in ("bf16", "fp16") else "fp32",
                "size": f"{out_hw[1]}x{out_hw[0]}",
            },
        )
        hook.nst_result(result=result)
        return result


def stylize_fast_files(
    content_path: str | PathLike,
    model: FastModel | str | PathLike,
    output_path: str | PathLike,
    *,
    config: Config | None = None,
    plugins: Iterable[Any] = (),
) -> Result:
    """Stylize an image file with a fast-style model and write the result atomically."""
    config = config or Config(size=None)
    model_path = model.path if isinstance(model, FastModel) else None
    inputs = [Path(content_path)] + ([model_path] if model_path else [])
    content = load_image(content_path)
    check_save_path(output_path, with_alpha=content.alpha is not None, protect=inputs)
    result = stylize_fast(content.rgb, model, config=config, plugins=plugins)
    return save_result(output_path, result, content, protect=inputs)


def result_color_method(name: str, registries: Any) -> Any:
    """The colour method that works on a finished result: ``NAME-post`` where registered."""
    methods = registries.color_methods
    post = f"{name}-post"
    return methods.get(post if not name.endswith("-post") and post in methods else name)


def _autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
