"""Content, Gram style and total-variation losses: functional cores and the built-in loss terms.

Normalization (why the default weights work at any size and for any network scale):

* **Gram matrices** are averages, not sums: ``G = F Fᵀ / (H·W)`` for a ``C×H×W`` activation
  ``F``. A texture has the same Gram matrix at any image size.
* **Content loss** of a layer is the mean squared feature difference divided by the mean squared
  target feature: ``mean((F − P)²) / mean(P²)``, a relative error.
* **Style loss** of a layer is the squared Frobenius distance of the Gram matrices divided by the
  target's: ``‖G − A‖² / ‖A‖²``, also a relative error.

Relative errors do not change when all activations are scaled, so VGG weights with Caffe-scale
activations (losses of 1e8–1e9 in the textbook formulation) and torchvision-scale ones give the
same numbers, and both start near 1 wherever the optimization starts. The weights of the terms
(``Config.content_weight``, ``style_weight``, ``tv_weight``) are therefore plain ratios.
* **Total variation** is the mean squared difference of neighbouring pixels of the ``[0, 1]``
  image, scaled by 100 so that a weight of 1 is a gentle smoothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Collection, Iterator, Mapping, Sequence

import torch
from torch import nn

from .config import Config
from .hookspecs import hookimpl
from .parts import WHOLE, Part

# Guards against a zero target only: small enough not to matter at any activation scale.
_EPS = torch.finfo(torch.float32).tiny


# --- functional cores -----------------------------------------------------------------------------


class _Gram(torch.autograd.Function):
    """``scale · F Fᵀ`` of ``N×C×P`` rows (or ``scale · Fᵀ F`` of ``N×P×C`` positions).

    Its backward is one product, ``dF = scale · (dG + dGᵀ) F``. Autograd's own backward of
    ``bmm(F, Fᵀ)`` computes two products (one per argument), the second transposed, and adds them:
    for the default five style layers at 512×384 on an AMD EPYC (AVX2, fp32) that took 470 ms a
    step against 250 ms this way.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, scale: float, positions_first: bool) -> torch.Tensor:
        ctx.save_for_backward(rows)
        ctx.scale, ctx.positions_first = scale, positions_first
        if positions_first:
            return torch.bmm(rows.transpose(1, 2), rows).mul_(scale)
        return torch.bmm(rows, rows.transpose(1, 2)).mul_(scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (rows,) = ctx.saved_tensors
        symmetric = (grad + grad.transpose(1, 2)) * ctx.scale
        product = torch.bmm(rows, symmetric) if ctx.positions_first else torch.bmm(symmetric, rows)
        return product, None, None


#: Gram matrices taken as the network ran, within :func:`grams_as_computed`: ``id(features) →
#: (features, gram)`` (the features are held so that their id is not reused).
_EARLY_GRAMS: contextvars.ContextVar[dict[int, tuple[torch.Tensor, torch.Tensor]] | None] = contextvars.ContextVar(
    "nst_core_early_grams", default=None
)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``F Fᵀ / (H·W)`` of ``N×C×H×W`` features, shaped ``N×C×C``, in float32.

    Channels-last features are read as they lie (positions × channels, ``Fᵀ F`` of a view):
    flattening them channels-first would copy every feature map, and its backward another
    (a third less time for the Gram term at ``relu1_1``, 512×384, on an AVX2 CPU). Features
    whose Gram matrix was taken as the network computed them get that one.
    """
    early = (_EARLY_GRAMS.get() or {}).get(id(features))
    if early is not None and early[0] is features:
        return early[1]
    n, c, h, w = features.shape
    if c > 1 and not features.is_contiguous() and features.is_contiguous(memory_format=torch.channels_last):
        positions = features.permute(0, 2, 3, 1).reshape(n, h * w, c).float()
        return _Gram.apply(positions, 1.0 / (h * w), True)
    return _Gram.apply(features.reshape(n, c, h * w).float(), 1.0 / (h * w), False)


@contextlib.contextmanager
def grams_as_computed(network: nn.Module, layers: Collection[str]) -> Iterator[None]:
    """Within it, the Gram matrix of each of ``layers`` is taken as ``network`` computes the layer,
    and :func:`gram_matrix` of those features returns it (call the losses within too).

    Autograd runs a node's backward pass in order of creation, latest first, once its gradient
    is there. A Gram matrix taken after the whole forward pass is the latest node of all: its
    backward runs first and its gradient, as large as the features, waits until the network's
    backward pass reaches that layer (for ``relu1_1`` at 512×512, 64 MB held through the whole
    backward pass). Taken right after the layer, it runs just when that gradient is needed.

    ``network`` is a :class:`~nst_core.features.FeatureExtractor` (its ``layer_names`` and
    ``layers``); any other network is left as it is.
    """
    names, modules = getattr(network, "layer_names", ()), getattr(network, "layers", ())
    taken: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []

    def take(module, inputs, output) -> None:
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad:
            with torch.autocast(output.device.type, enabled=False):  # the loss's precision, not the network's
                taken[id(output)] = (output, gram_matrix(output))

    token = _EARLY_GRAMS.set(taken)
    try:
        for name, module in zip(names, modules):
            if name in layers:
                handles.append(module.register_forward_hook(take))
        yield
    finally:
        for handle in handles:
            handle.remove()
        _EARLY_GRAMS.reset(token)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative squared error ``mean((F − P)²) / mean(P²)`` of features against a target."""
    target = target.float()
    return torch.mean((features.float() - target) ** 2) / (torch.mean(target**2) + _EPS)


def style_loss(gram: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Relative squared Frobenius distance ``‖G − A‖² / ‖A‖²`` of Gram matrices."""
    return torch.sum((gram - target_gram) ** 2) / (torch.sum(target_gram**2) + _EPS)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of vertically and horizontally neighbouring pixels, × 100."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    # an image one pixel high (or wide) has no vertical (horizontal) neighbours: that term is 0
    return 100.0 * sum((torch.sum(d**2) / d.numel() for d in (dy, dx) if d.numel()), image.new_zeros(()))


# --- thin modules: the built-in loss terms ---------------------------------------------------------


class ContentLoss(nn.Module):
    """Content term: average of :func:`content_loss` over the content layers.

    Computed from per-part sums of squared errors (:meth:`partial_statistics`), so that a large
    image can be evaluated tile by tile (:mod:`nst_core.tiling`) with the same result as whole.
    """

    def __init__(self, layers: Sequence[str], *, weight: float) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.content_target_layers = self.layers
        self.weight = weight
        self.targets: dict[str, torch.Tensor] = {}
        self._scales: dict[str, torch.Tensor] = {}

    def set_content_targets(self, features: Mapping[str, torch.Tensor]) -> None:
        self.targets = {name: features[name].detach() for name in self.layers}
        # content_loss's denominator, times the element count: mean((F−P)²)/mean(P²) = Σ(F−P)²/ΣP²
        self._scales = {
            name: torch.sum(target.float() ** 2) + target.numel() * _EPS for name, target in self.targets.items()
        }

    def set_style_targets(self, features, blend) -> None:
        pass

    def set_style_statistics(self, statistics, blend) -> None:
        pass

    def partial_style_statistics(self, features, part) -> dict[str, torch.Tensor]:
        """None: a painting has no content error (and may be larger than the content target)."""
        return {}

    def partial_statistics(self, features: Mapping[str, torch.Tensor], part: Part) -> dict[str, torch.Tensor]:
        """Sum of squared feature errors of each layer over ``part``."""
        return {
            name: torch.sum((features[name].float() - part.crop(name, self.targets[name]).float()) ** 2)
            for name in self.layers
        }

    def loss_from_statistics(self, statistics: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([statistics[name] / self._scales[name] for name in self.layers]).mean()

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_from_statistics(self.partial_statistics(features, WHOLE))


class StyleLoss(nn.Module):
    """Style term: weighted average of :func:`style_loss` over the style layers.

    The target Gram matrix of a layer is the blend-weighted average of the style images' Gram
    matrices (several styles mix their textures). Gram matrices are computed from per-part sums
    ``F Fᵀ`` and position counts (:meth:`partial_statistics`), so a large image (or style image)
    can be evaluated tile by tile and still be matched as one texture.
    """

    content_target_layers: tuple[str, ...] = ()

    def __init__(self, layers: Sequence[str], *, weight: float, layer_weights: Sequence[float] | None) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.weight = weight
        #: Layers whose Gram matrices the term takes (see :func:`grams_as_computed`).
        self.gram_layers = self.layers
        raw = torch.tensor(layer_weights if layer_weights is not None else [1.0] * len(layers))
        self.layer_weights = (raw / raw.sum()).tolist()
        self.targets: dict[str, torch.Tensor] = {}

    def set_content_targets(self, features) -> None:
        pass

    def set_style_targets(self, features: Sequence[Mapping[str, torch.Tensor]], blend: Sequence[float]) -> None:
        self.set_style_statistics([self.partial_statistics(f, WHOLE) for f in features], blend)

    def set_style_statistics(self, statistics: Sequence[Mapping[str, torch.Tensor]], blend: Sequence[float]) -> None:
        """Target Gram matrices from each style image's summed :meth:`partial_statistics`."""
        self.targets = {
            name: sum(b * (s[name] / s[f"{name}:positions"]).detach().float() for s, b in zip(statistics, blend))
            for name in self.layers
        }

    def partial_statistics(self, features: Mapping[str, torch.Tensor], part: Part) -> dict[str, torch.Tensor]:
        """``F Fᵀ`` summed over ``part``'s positions, and their count, of each style layer."""
        statistics = {}
        for name in self.layers:
            n, c, h, w = features[name].shape
            statistics[name] = gram_matrix(features[name]) * (h * w)
            statistics[f"{name}:positions"] = torch.tensor(float(h * w))
        return statistics

    def loss_from_statistics(self, statistics: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(
            layer_weight * style_loss(statistics[name] / statistics[f"{name}:positions"], self.targets[name])
            for name, layer_weight in zip(self.layers, self.layer_weights)
        )

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_from_statistics(self.partial_statistics(features, WHOLE))


class TotalVariationLoss(nn.Module):
    """Smoothness term: :func:`total_variation` of the image."""

    layers: tuple[str, ...] = ()

    def __init__(self, *, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def set_content_targets(self, features) -> None:
        pass

    def set_style_targets(self, features, blend) -> None:
        pass

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return total_variation(image)


def _content_term(config: Config) -> ContentLoss | None:
    if config.content_weight == 0 or not config.content_layers:
        return None
    return ContentLoss(config.content_layers, weight=config.content_weight)


def _style_term(config: Config) -> StyleLoss | None:
    if config.style_weight == 0 or not config.style_layers or config.regions:
        return None  # with regions, the guided Gram term of nst_core.regions replaces this one
    return StyleLoss(config.style_layers, weight=config.style_weight, layer_weights=config.style_layer_weights)


def _tv_term(config: Config) -> TotalVariationLoss | None:
    return TotalVariationLoss(weight=config.tv_weight) if config.tv_weight else None


@hookimpl
def nst_register_losses(register) -> None:
    register("content", _content_term)
    register("style", _style_term)
    register("tv", _tv_term)
