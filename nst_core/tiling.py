"""The loss of a large image, computed tile by tile but as if the image were whole.

The loss terms' values are functions of statistics that add up over disjoint parts of the
feature maps (sums of squared content errors; Gram sums ``F Fᵀ`` and position counts; see
:class:`nst_core.registry.TileableLossTerm`). One evaluation therefore takes two passes over the
tiles of a :func:`nst_core.parts.grid`:

1. without gradients, sum every term's statistics over the tiles' cores, and compute the loss
   and its gradient with respect to the summed statistics;
2. for each tile again, back-propagate ``Σ ∂L/∂S · S_tile`` through the network: by the chain
   rule these add up to the whole image's gradient.

Every tile thus pulls toward the one style target of the whole image (tiles agree in style),
content errors are measured against the whole image's content features, and no blending is
needed: the cores partition the image. What differs from a whole-image pass is only the
features within a receptive field of a core's edge, computed from the halo instead of the whole
image; the grid moves at every evaluation (:func:`nst_core.parts.shifted_offsets`) so that this
small error never stays in one place and no seam forms.

Terms that read no features (total variation) are evaluated on the whole image directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from .errors import ConfigError, setting
from .parts import Part, grid, shifted_offsets

#: ``network(image) -> {layer: features}`` (layout and precision already applied).
Network = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
#: ``on_tile(done, total)``, called after each tile; it may raise to stop the evaluation.
TileCallback = Callable[[int, int], None]


def check_tileable(terms: Mapping[str, Any]) -> None:
    """Raise a :class:`ConfigError` if a term that reads features cannot be tiled."""
    for name, term in terms.items():
        if term.layers and not all(
            hasattr(term, attr) for attr in ("partial_statistics", "loss_from_statistics", "set_style_statistics")
        ):
            raise ConfigError(
                f"the loss term {name!r} cannot be computed in tiles, and this image does not fit the "
                f"memory budget whole; raise {setting('max_memory')} or lower {setting('size')}"
            )


class TiledEvaluator:
    """Targets and objective of one stage, computed over tiles of ``core`` pixels plus ``halo``."""

    def __init__(
        self,
        network: Network,
        *,
        core: int,
        halo: int,
        strides: Mapping[str, int],
        on_tile: TileCallback | None = None,
    ) -> None:
        self.network = network
        self.core = core
        self.halo = halo
        self.strides = dict(strides)
        self.align = max(self.strides.values(), default=1)
        self.on_tile = on_tile or (lambda done, total: None)
        self._offsets = shifted_offsets(core, self.align)
        self.grids_used: list[list[Part]] = []

    def parts(self, hw: tuple[int, int], *, shift: bool = True) -> list[Part]:
        """The tiles of an ``hw`` image; each call with ``shift`` moves the seams."""
        offset = next(self._offsets) if shift else (0, 0)
        return grid(hw, core=self.core, halo=self.halo, offset=offset, strides=self.strides)

    # --- targets ---------------------------------------------------------------------------

    def whole_maps(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """The whole image's feature maps of ``layers``, assembled from the tiles' cores."""
        layers = tuple(layers)
        maps: dict[str, torch.Tensor] = {}
        parts = self.parts(tuple(image.shape[-2:]), shift=False)
        with torch.no_grad():
            for part in parts:
                features = self.network(part.outer_of(image))
                for name in layers:
                    core = part.core_of(name, features[name])
                    if name not in maps:
                        stride = self.strides[name]
                        height, width = image.shape[-2] // stride, image.shape[-1] // stride
                        maps[name] = core.new_zeros((*core.shape[:-2], height, width))
                    part.crop(name, maps[name]).copy_(core)
        return maps

    def summed_statistics(self, image: torch.Tensor, terms: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        """Each feature term's statistics of a style image, summed over the tiles (no gradients).

        A term's ``partial_style_statistics`` is used where it has one (a term whose statistics
        of the output differ from those of a painting, such as :mod:`nst_core.regions`' guided
        ones), else its ``partial_statistics``."""
        parts = self.parts(tuple(image.shape[-2:]), shift=False)
        return self._sum(image, parts, {name: term for name, term in terms.items() if term.layers}, report=None,
                         style=True)

    # --- objective -------------------------------------------------------------------------

    def objective(self, terms: Mapping[str, Any]):
        """``objective(point) -> (total, {term: weighted loss})`` for :func:`nst_core.optim.optimize`.

        ``total.backward()`` puts the whole image's gradient into ``point.grad``.
        """
        feature_terms = {name: term for name, term in terms.items() if term.layers}
        image_terms = {name: term for name, term in terms.items() if not term.layers}

        def objective(point: torch.Tensor):
            image = point.clamp(0.0, 1.0)
            pixels = image.detach()
            parts = self.parts(tuple(pixels.shape[-2:]))
            self.grids_used.append(parts)
            count = 2 * len(parts)
            report = lambda done: self.on_tile(done, count)  # noqa: E731

            # pass 1: statistics summed over the tiles, the loss, and ∂loss/∂statistics
            totals = self._sum(pixels, parts, feature_terms, report=report)
            leaves = {
                name: {key: value.detach().requires_grad_(True) for key, value in stats.items()}
                for name, stats in totals.items()
            }
            losses: dict[str, torch.Tensor] = {}
            with torch.enable_grad():
                for name, term in feature_terms.items():
                    losses[name] = term.weight * term.loss_from_statistics(leaves[name])
                if losses:
                    sum(losses.values()).backward()
            slopes = {
                name: {key: leaf.grad.float() for key, leaf in stats.items() if leaf.grad is not None}
                for name, stats in leaves.items()
            }

            # pass 2: each tile's share of the gradient, through the chain rule
            gradient = torch.zeros_like(pixels)
            for index, part in enumerate(parts):
                tile = part.outer_of(pixels).clone().requires_grad_(True)
                with torch.enable_grad():
                    features = self.network(tile)
                    cores = {name: part.core_of(name, f) for name, f in features.items()}
                    surrogate = tile.new_zeros(())
                    for name, term in feature_terms.items():
                        for key, value in term.partial_statistics(cores, part).items():
                            slope = slopes[name].get(key)
                            if slope is not None and value.requires_grad:
                                surrogate = surrogate + torch.sum(slope * value.float())
                    if surrogate.requires_grad:
                        surrogate.backward()
                        part.outer_of(gradient).add_(tile.grad)
                del features, cores, surrogate, tile
                report(len(parts) + index + 1)

            values = {name: loss.detach() for name, loss in losses.items()}
            total = sum(values.values(), pixels.new_zeros(()))
            # the whole image's gradient enters autograd through a term whose value is zero
            total = total + torch.sum(image * gradient) - torch.sum(image.detach() * gradient)
            for name, term in image_terms.items():
                loss = term.weight * term(image, {})
                values[name] = loss.detach()
                total = total + loss
            return total, values

        return objective

    def _sum(self, image, parts: list[Part], terms: Mapping[str, Any], report,
             style: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        totals: dict[str, dict[str, torch.Tensor]] = {name: {} for name in terms}
        with torch.no_grad():
            for index, part in enumerate(parts):
                features = self.network(part.outer_of(image))
                cores = {name: part.core_of(name, f) for name, f in features.items()}
                for name, term in terms.items():
                    statistics = term.partial_statistics
                    if style:
                        statistics = getattr(term, "partial_style_statistics", statistics)
                    for key, value in statistics(cores, part).items():
                        value = value.double()
                        totals[name][key] = totals[name][key] + value if key in totals[name] else value
                del features, cores
                if report is not None:
                    report(index + 1)
        return totals
