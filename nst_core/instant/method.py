"""The ``instant`` method: any painting's style in one pass (Ghiasi et al. 2017).

Registered as the method ``instant`` (:mod:`nst_core.methods`)::

    stylize(photo, [painting], config=Config(method="instant", style_strength=0.8))

The paintings' style vectors (kept per process, by the painting's pixels, so a preview that only
changes the strength or the colours does not predict them again) are blended with
``Config.style_blend``, moved towards the photo's own vector by ``Config.style_strength``, and
the transformer paints the photo at ``Config.size`` (``None``: its own size), in tiles above
``Config.max_memory``. Colour modes act on the result, as for fast styles (``-post`` variants).

With ``Config.regions`` each painting region's vector (strength applied) is mixed per pixel by
the regions' masks (:func:`~nst_core.instant.stylize_instant_regions`); regions that keep the
photo are painted with the others' mix, then the photo is put back by their soft masks, after
the colour mode too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import numpy as np
import torch

from ..color import result_color_method
from ..config import Config
from ..device import check_precision, resolve_device
from ..image import long_side_size, resize_to
from ..kept import Kept
from ..plugins import RunContext
from ..records import Plan, Progress, Result
from .stylize import (composite_kept, mix_vectors, style_vector, stylize_instant_array, stylize_instant_regions,
                      with_strength)

#: Style vectors kept per process (a 100-number vector each).
VECTORS_KEPT = 64

_vectors: Kept[torch.Tensor] = Kept(VECTORS_KEPT)


class _Stop(Exception):
    """Raised between tiles when the run is cancelled."""


class InstantMethod:
    """The registered ``instant`` method (see :class:`nst_core.registry.Method`)."""

    description = "any painting's style in one network pass (Ghiasi et al. 2017): about a second"
    uses_styles = True
    #: Paints at the photo's own size unless a size is asked for (front ends' default).
    full_size = True
    #: Paints ``Config.regions`` by mixing the regions' style vectors per pixel
    #: (:func:`~nst_core.instant.stylize_instant_regions`); a region's weight plays no part.
    supports_regions = True

    def run(self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config, run: RunContext) -> Result:
        device = resolve_device(config.device)
        check_precision(config.precision, device)
        color = result_color_method(config.preserve_color, run.registries.color_methods)
        out_hw = long_side_size(content.shape[:2], config.size)
        size = f"{out_hw[1]}x{out_hw[0]}"
        run.hook.nst_plan(plan=Plan(method="instant", stages=((size, 0),)))
        content = resize_to(content, out_hw)
        content_for_run, _, color_state = color.prepare(content, [], config=config)
        if getattr(color_state, "notice", None):
            run.hook.nst_notice(message=color_state.notice)
        regions = instant_regions(content_for_run, styles, config=config, device=device) if config.regions else None
        vector = None if regions else instant_vector(content_for_run, styles, config=config, device=device)

        cancelled = False

        def on_tile(done: int, tiles: int) -> None:
            nonlocal cancelled
            progress = Progress(step=0, total=0, losses={}, elapsed=time.perf_counter() - run.started,
                                stage="instant", size=size, tile=done, tiles=tiles)
            run.hook.nst_progress(progress=progress)
            if run.cancelled(progress):
                cancelled = True
                raise _Stop

        try:
            if regions:
                painted = stylize_instant_regions(content_for_run, regions, device=device, precision=config.precision,
                                                  max_memory=config.max_memory, on_tile=on_tile)
            else:
                painted = stylize_instant_array(content_for_run, vector, device=device, precision=config.precision,
                                                max_memory=config.max_memory, on_tile=on_tile)
        except _Stop:
            painted = content_for_run  # stopped between tiles: nothing painted yet is whole
        image = np.clip(color.finish(painted, content, color_state, config=config), 0.0, 1.0)
        if regions:  # kept regions are the photo itself, whatever the colour mode did
            image = composite_kept(image, content, regions)
        return Result(
            image=image, losses={}, steps=0, best_step=0, elapsed=time.perf_counter() - run.started,
            cancelled=cancelled,
            info={
                "method": "instant",
                "device": str(device),
                "precision": "fp32" if config.precision == "auto" else config.precision,
                "size": size,
                "style_strength": f"{config.style_strength:g}",
            },
        )


def instant_vector(content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config,
                   device: torch.device) -> torch.Tensor:
    """The style vector a run paints ``content`` with: the styles' vectors blended by
    ``config.style_blend``, moved towards the photo's own by ``config.style_strength``."""
    vector = mix_vectors([cached_vector(style, device) for style in styles], config.style_blend)
    if config.style_strength < 1.0:
        vector = with_strength(vector, cached_vector(content, device), config.style_strength)
    return vector


def instant_regions(content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config,
                    device: torch.device) -> list[tuple[torch.Tensor | None, np.ndarray]]:
    """``config.regions`` as the ``(vector, mask)`` pairs of
    :func:`~nst_core.instant.stylize_instant_regions` at ``content``'s size: each painting's
    vector moved towards the photo's by ``config.style_strength``, ``None`` where the photo is
    kept; masks as :func:`nst_core.regions.stage_masks` makes them (the uncovered rest included)."""
    from ..regions import stage_masks

    photo = cached_vector(content, device) if config.style_strength < 1.0 else None
    pairs = []
    for mask, style, _ in stage_masks(config.regions, content.shape[:2]):
        vector = None
        if style is not None:
            vector = cached_vector(styles[style], device)
            vector = with_strength(vector, photo, config.style_strength) if photo is not None else vector
        pairs.append((vector, mask))
    return pairs


def cached_vector(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """:func:`~nst_core.instant.style_vector` of ``image``, computed once per process for the same pixels."""
    values = np.ascontiguousarray(image, dtype=np.float32)
    key = (hashlib.sha1(values.view(np.uint8)).hexdigest(), values.shape, str(device))
    return _vectors.get(key, lambda: style_vector(values, device=device))
