"""VGG-16 / VGG-19 feature extractors with named layers, cut after the deepest layer needed.

The layer tables, names and weight shapes are in :mod:`nst_core.vgg_layout` (re-exported here);
layer names follow the paper: ``conv{block}_{n}``, ``relu{block}_{n}``, ``pool{block}``. A
torchvision ``vgg16().features`` state dict loads as it is: its keys are the module indices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .config import Config
from .errors import ConfigError
from .frozen_layers import OutputKeptReLU
from .hookspecs import hookimpl
from .registry import ExtractorSpec
from .vgg_layout import IMAGENET_MEAN, IMAGENET_STD, VGG_CONFIGS, vgg_conv_shapes, vgg_layer_names
from .weights import load_weights

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG_CONFIGS",
    "FeatureExtractor",
    "build_vgg",
    "build_vgg_layers",
    "check_layers",
    "nst_register_feature_extractors",
    "vgg_conv_shapes",
    "vgg_layer_names",
]


def check_layers(requested: Sequence[str], available: Sequence[str], *, model: str) -> None:
    """Raise a :class:`ConfigError` listing the valid names if a requested layer is unknown."""
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise ConfigError(
            f"unknown layer {', '.join(map(repr, unknown))} for {model}; "
            f"valid layers: {', '.join(available)}"
        )


class FeatureExtractor(nn.Module):
    """A frozen network that returns the activations of chosen layers by name.

    The network is cut after the deepest requested layer: no work is spent on layers that no
    loss reads. Input is a ``N×3×H×W`` RGB tensor in ``[0, 1]``; ImageNet normalization happens
    inside.
    """

    def __init__(
        self,
        layers: nn.Sequential,
        layer_names: Sequence[str],
        requested: Sequence[str],
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        check_layers(requested, layer_names, model="this network")
        last = max(layer_names.index(name) for name in requested)
        self.requested = frozenset(requested)
        self.layers = _relus_for_losses(layers[: last + 1], layer_names, self.requested)
        self.layer_names = tuple(layer_names[: last + 1])
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - self.mean) / self.std
        features: dict[str, torch.Tensor] = {}
        for name, layer in zip(self.layer_names, self.layers):
            x = layer(x)
            if name in self.requested:
                features[name] = x
        return features


def _relus_for_losses(layers: nn.Sequential, layer_names: Sequence[str], requested: frozenset[str]) -> nn.Sequential:
    """``layers`` with each ReLU in place where no loss reads its input, and marked
    :class:`~nst_core.frozen_layers.OutputKeptReLU` where a loss reads its output.

    A ReLU's backward reads its output only, and a convolution's backward does not read its
    output, so the pre-activation need not be kept: one feature-sized buffer less to allocate,
    fill and free per ReLU, forward. A ReLU whose input is requested (``conv1_1`` read by a
    loss) keeps a new output. A ReLU whose output is requested keeps PyTorch's backward, which
    reads the output the loss keeps anyway, when other ReLUs are swapped for ones that keep a
    mask (:func:`nst_core.frozen_layers.frozen_layer`). The modules passed in are not changed.
    """
    changed = nn.Sequential(*layers)
    for index, layer in enumerate(changed):
        if type(layer) is not nn.ReLU:
            continue
        inplace = layer.inplace or bool(index and layer_names[index - 1] not in requested)
        changed[index] = OutputKeptReLU(inplace=inplace) if layer_names[index] in requested else nn.ReLU(inplace=inplace)
    return changed


def build_vgg_layers(model: str, *, pooling: str = "avg") -> nn.Sequential:
    """The uninitialised layers of torchvision's ``vgg16().features`` / ``vgg19().features``.

    ReLUs are not in place, so a conv layer and its ReLU can both be read; ``pooling='avg'``
    puts average pooling where VGG has max pooling, as Gatys et al. recommend.
    """
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG_CONFIGS[model]:
        if item == "M":
            layers.append(nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers)


def build_vgg(
    model: str,
    state_dict: Mapping[str, torch.Tensor],
    *,
    layers: Sequence[str],
    pooling: str = "avg",
) -> FeatureExtractor:
    """A :class:`FeatureExtractor` for ``model`` with ``state_dict`` (torchvision ``features`` keys)."""
    names = vgg_layer_names(model)
    check_layers(layers, names, model=model)
    sequential = build_vgg_layers(model, pooling=pooling)
    last = max(names.index(name) for name in layers)
    needed = {key: value for key, value in state_dict.items() if int(key.split(".")[0]) <= last}
    sequential[: last + 1].load_state_dict(needed, strict=True)
    return FeatureExtractor(sequential, names, layers)


def _vgg_spec(model: str, description: str) -> ExtractorSpec:
    def build(*, config: Config, layers: Sequence[str], device: torch.device) -> FeatureExtractor:
        loaded = load_weights(model=model, config=config)
        extractor = build_vgg(model, loaded.state_dict, layers=layers, pooling=config.pooling)
        extractor.source = loaded.source
        return extractor.to(device)

    return ExtractorSpec(layer_names=vgg_layer_names(model), build=build, description=description)


@hookimpl
def nst_register_feature_extractors(register) -> None:
    register("vgg16", _vgg_spec("vgg16", "VGG-16, 13 convolutions (Simonyan & Zisserman 2014)"))
    register("vgg19", _vgg_spec("vgg19", "VGG-19, 16 convolutions, the network of Gatys et al."))
