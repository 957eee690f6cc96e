"""A style per region: Gatys et al., *Controlling Perceptual Factors in Neural Style Transfer*
(CVPR 2017), guided Gram matrices, as a loss term registered like any plugin's.

Each region (:class:`nst_core.masks.Region`) has a soft mask ``m`` in ``[0, 1]``. At each style
layer the mask is brought to the layer's resolution the way the network brings the image there:
average pooling by the layer's stride (a *guide*, :func:`layer_guide`). The region's guided Gram
matrix is the mask-weighted average of the feature outer products,

    ``G_r = Σ_p m_p F_p F_pᵀ / Σ_p m_p``,

matched to the Gram matrix of the region's own painting with the relative error of
:func:`nst_core.losses.style_loss`, and weighted by the region's share of the positions
``Σ m / N``, so that a pixel feels the same pull as in a one-painting run, whatever its region's
size. All regions are optimized at once; where soft masks overlap, a pixel's features count in
both Gram matrices in proportion to its mask values, and the styles blend across the border.

A region whose painting is ``None`` keeps the photo: no style, and a masked content term
``Σ m (F − P)² / Σ P²`` with :data:`KEEP_CONTENT_BOOST` times the content weight (the plain
content term still applies everywhere). Pixels that no mask covers form such a region
(``1 − min(1, Σ masks)``), unless a region with mask ``None`` gives them a painting.

Every statistic (``Σ m F Fᵀ``, ``Σ m``, the position count, ``Σ m (F − P)²``) adds up over
disjoint parts of the feature maps, and a guide pooled by the layer's stride is cut by a tile's
core exactly as the feature map is, so the term tiles exactly (:mod:`nst_core.tiling`). The
guides are made again at each size of a coarse-to-fine run (:meth:`RegionLoss.set_image_size`).
With regions the plain style term is off (:func:`nst_core.losses._style_term`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import Config
from .errors import ConfigError, setting
from .hookspecs import hookimpl
from .losses import StyleLoss, style_loss
from .masks import Region
from .parts import WHOLE, Part

#: Content weight of a region that keeps the photo, relative to ``Config.content_weight``
#: (on top of the plain content term). Measured: see ``benchmarks/regions.py`` and the README.
KEEP_CONTENT_BOOST = 10.0
#: Guards divisions by an empty region's mass only.
_TINY = 1e-12


# --- functional cores -----------------------------------------------------------------------------


def stage_masks(regions: Sequence[Region], hw: tuple[int, int]) -> list[tuple[np.ndarray, int | None, float]]:
    """Each region's mask at ``hw`` with its painting and weight, the uncovered rest included.

    The rest (``1 − min(1, Σ masks)``) goes to the region with mask ``None`` if there is one,
    else it keeps the photo (painting ``None``); an empty rest is left out.
    """
    from .image import resize_to

    given = [(resize_to(region.mask.array(), hw), region) for region in regions if region.mask is not None]
    covered = np.minimum(1.0, sum(mask for mask, _ in given))
    rest_region = next((region for region in regions if region.mask is None), Region(mask=None, style=None))
    masks = [(mask, region.style, region.weight) for mask, region in given]
    rest = np.clip(1.0 - covered, 0.0, 1.0).astype(np.float32)
    rest[rest < 2 / 255] = 0.0  # masks that add up to 1 in 8 bits may leave 1/255 here and there
    if float(rest.max()) > 0.0:
        masks.append((rest, rest_region.style, rest_region.weight))
    return masks


def layer_guide(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """A ``1×1×H×W`` mask at a layer of ``stride``: averaged over ``stride × stride`` blocks, the
    way the network's pooling takes the image there (``H // stride`` rows)."""
    return F.avg_pool2d(mask, stride, stride) if stride > 1 else mask


def fit_guide(guide: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``guide`` cut or edge-padded to ``hw`` (a feature map of an image padded to the network's
    smallest side is larger than the pooled mask)."""
    guide = guide[..., : hw[0], : hw[1]]
    pad_h, pad_w = hw[0] - guide.shape[-2], hw[1] - guide.shape[-1]
    if pad_h > 0 or pad_w > 0:
        guide = F.pad(guide, (0, max(0, pad_w), 0, max(0, pad_h)), mode="replicate")
    return guide


def guided_gram_sums(features: torch.Tensor, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Σ m F Fᵀ`` (``C×C``) and ``Σ m`` of ``1×C×H×W`` features under a ``1×1×H×W`` guide, in
    float32; only the guide's nonzero bounding box is computed."""
    c = features.shape[1]
    rows = torch.nonzero(guide[0, 0].amax(dim=1) > 0)
    cols = torch.nonzero(guide[0, 0].amax(dim=0) > 0)
    if rows.numel() == 0:
        return features.new_zeros((c, c), dtype=torch.float32), guide.new_zeros((), dtype=torch.float32)
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    flat = features[0, :, top:bottom, left:right].reshape(c, -1).float()
    weights = guide[0, 0, top:bottom, left:right].reshape(1, -1).float()
    return (flat * weights) @ flat.T, weights.sum()


def stride_of(image_hw: tuple[int, int], map_hw: tuple[int, int]) -> int:
    """The stride that takes an ``image_hw`` image to a layer's ``map_hw`` (a power of two)."""
    for k in range(12):
        stride = 2**k
        if (image_hw[0] // stride, image_hw[1] // stride) == tuple(map_hw):
            return stride
    return 2 ** max(0, round(math.log2(max(1.0, image_hw[0] / max(1, map_hw[0])))))


# --- the loss term --------------------------------------------------------------------------------


class RegionLoss(nn.Module):
    """Guided Gram style loss per painted region, and the masked content loss of kept regions.

    Its weight is 1: the style part is weighted by ``Config.style_weight``, the kept-content part
    by ``Config.content_weight × KEEP_CONTENT_BOOST``, each region by its own weight. Besides the
    :class:`~nst_core.registry.TileableLossTerm` methods it has ``set_image_size`` (called by the
    optimization before each size's targets) and ``partial_style_statistics`` (a painting's own,
    unguided statistics, for paintings summed in tiles).
    """

    weight = 1.0

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.regions = config.regions
        self.style_layers = tuple(config.style_layers) if config.style_weight else ()
        # the uncovered rest may keep the photo, which is known per size: the content layers are
        # read whenever the content weighs (a plain run reads them anyway)
        self.content_layers = tuple(config.content_layers) if config.content_weight > 0 else ()
        self.content_target_layers = self.content_layers
        self.layers = tuple(dict.fromkeys((*self.style_layers, *self.content_layers)))
        self.style_weight = config.style_weight
        self.keep_weight = config.content_weight * KEEP_CONTENT_BOOST
        self._plain = StyleLoss(self.style_layers, weight=1.0, layer_weights=config.style_layer_weights)
        self.layer_weights = self._plain.layer_weights
        self.image_hw: tuple[int, int] | None = None
        self._masks: list[tuple[torch.Tensor, int | None, float]] = []
        self._guides: dict[tuple[int, str, int], torch.Tensor] = {}
        self.content_targets: dict[str, torch.Tensor] = {}
        self._content_scales: dict[str, torch.Tensor] = {}
        self.style_targets: dict[int, dict[str, torch.Tensor]] = {}

    # --- targets ---------------------------------------------------------------------------

    def set_image_size(self, hw: tuple[int, int]) -> None:
        """Masks (and, lazily, their guides) for an ``hw`` image."""
        self.image_hw = (int(hw[0]), int(hw[1]))
        self._masks = [(torch.from_numpy(mask)[None, None], style, weight)
                       for mask, style, weight in stage_masks(self.regions, self.image_hw)]
        self._guides = {}

    def set_content_targets(self, features: Mapping[str, torch.Tensor]) -> None:
        self.content_targets = {name: features[name].detach() for name in self.content_layers}
        self._content_scales = {name: torch.sum(t.float() ** 2) + t.numel() * _TINY
                                for name, t in self.content_targets.items()}
        if self.image_hw is None:  # called without set_image_size: the size from the features
            name = next(iter(features))
            self.set_image_size(tuple(features[name].shape[-2:]))

    def set_style_targets(self, features: Sequence[Mapping[str, torch.Tensor]], blend: Sequence[float]) -> None:
        self.set_style_statistics([self.partial_style_statistics(f, WHOLE) for f in features], blend)

    def set_style_statistics(self, statistics: Sequence[Mapping[str, torch.Tensor]], blend: Sequence[float]) -> None:
        """Each painting's Gram matrices (the blend does not apply: a region has one painting)."""
        self.style_targets = {
            index: {name: (s[name] / s[f"{name}:positions"]).detach().float() for name in self.style_layers}
            for index, s in enumerate(statistics)
        }

    def partial_style_statistics(self, features: Mapping[str, torch.Tensor], part: Part) -> dict[str, torch.Tensor]:
        """A painting's plain ``F Fᵀ`` sums and position counts (as :class:`StyleLoss`)."""
        return self._plain.partial_statistics(features, part)

    # --- statistics and loss ---------------------------------------------------------------

    def _guide(self, number: int, name: str, stride: int) -> torch.Tensor:
        key = (number, name, stride)
        if key not in self._guides:
            self._guides[key] = layer_guide(self._masks[number][0], stride)
        return self._guides[key]

    def _part_guide(self, number: int, name: str, feature: torch.Tensor, part: Part) -> torch.Tensor:
        hw = tuple(feature.shape[-2:])
        if isinstance(part, Part):
            guide = part.crop(name, self._guide(number, name, part.strides[name]))
        else:
            assert self.image_hw is not None
            guide = self._guide(number, name, stride_of(self.image_hw, hw))
        return fit_guide(guide, hw).to(feature.device)

    def partial_statistics(self, features: Mapping[str, torch.Tensor], part: Part) -> dict[str, torch.Tensor]:
        """Per painted region and style layer ``Σ m F Fᵀ`` and ``Σ m``; per layer the position
        count; per kept region and content layer ``Σ m (F − P)²``."""
        statistics: dict[str, torch.Tensor] = {}
        for name in self.style_layers:
            feature = features[name]
            statistics[f"{name}:positions"] = torch.tensor(float(feature.shape[-2] * feature.shape[-1]))
            for number, (_, style, _) in enumerate(self._masks):
                if style is None:
                    continue
                gram, mass = guided_gram_sums(feature, self._part_guide(number, name, feature, part))
                statistics[f"{name}:{number}:gram"] = gram
                statistics[f"{name}:{number}:mass"] = mass
        for name in self.content_layers:
            feature = features[name]
            for number, (_, style, _) in enumerate(self._masks):
                if style is not None:
                    continue
                guide = self._part_guide(number, name, feature, part)
                target = part.crop(name, self.content_targets[name])
                statistics[f"{name}:{number}:kept"] = torch.sum(guide * (feature.float() - target.float()) ** 2)
        return statistics

    def loss_from_statistics(self, statistics: Mapping[str, torch.Tensor]) -> torch.Tensor:
        style_part: torch.Tensor = torch.zeros(())
        kept_part: torch.Tensor = torch.zeros(())
        for number, (_, style, weight) in enumerate(self._masks):
            if style is not None:
                for name, layer_weight in zip(self.style_layers, self.layer_weights):
                    mass = statistics[f"{name}:{number}:mass"]
                    share = mass / statistics[f"{name}:positions"]
                    gram = statistics[f"{name}:{number}:gram"] / torch.clamp(mass, min=_TINY)
                    target = self.style_targets[style][name]
                    style_part = style_part + weight * layer_weight * share * style_loss(gram, target)
            elif self.content_layers:
                errors = [statistics[f"{name}:{number}:kept"] / self._content_scales[name]
                          for name in self.content_layers]
                kept_part = kept_part + weight * torch.stack(errors).mean()
        return self.style_weight * style_part + self.keep_weight * kept_part

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_from_statistics(self.partial_statistics(features, WHOLE))


def check_region_styles(regions: Sequence[Region], styles: int) -> None:
    """Raise a :class:`ConfigError` if a region names a painting that is not among ``styles``."""
    for region in regions:
        if region.style is not None and region.style >= styles:
            name = f" ({region.label})" if region.label else ""
            raise ConfigError(f"a region{name} asks for painting {region.style + 1}, but there "
                              f"{'is' if styles == 1 else 'are'} {styles}; see {setting('regions')}")


def _region_term(config: Config) -> RegionLoss | None:
    if not config.regions or (config.style_weight == 0 and config.content_weight == 0):
        return None
    return RegionLoss(config)


@hookimpl
def nst_register_losses(register) -> None:
    register("regions", _region_term)
