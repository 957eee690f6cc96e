"""The layout of VGG-16 and VGG-19: layer tables, layer names, weight shapes, input statistics.

Plain data about the networks, shared by the layers (:mod:`nst_core.features`) and the weights
that fill them (:mod:`nst_core.weights`), so that neither needs the other. The tables mirror
torchvision's ``models/vgg.py`` (configurations "D" and "E"), so a torchvision
``vgg16().features`` state dict fits as it is: its keys are the module indices here. Layer names
follow the paper: ``conv{block}_{n}``, ``relu{block}_{n}``, ``pool{block}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "VGG_CONFIGS", "display_name", "vgg_conv_shapes", "vgg_layer_names"]

#: Output channels of each convolution, ``"M"`` for a pooling layer (torchvision's cfgs D and E).
VGG_CONFIGS: Mapping[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}

#: ImageNet statistics of torchvision's input convention (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_layer_names(model: str) -> tuple[str, ...]:
    """Every layer name of ``model`` in network order (index ``i`` is torchvision's module ``i``)."""
    names: list[str] = []
    block, conv = 1, 0
    for item in VGG_CONFIGS[model]:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return tuple(names)


def vgg_conv_shapes(model: str) -> dict[str, tuple[int, ...]]:
    """State-dict key → tensor shape of every convolution of ``model`` (torchvision layout)."""
    shapes: dict[str, tuple[int, ...]] = {}
    index, channels = 0, 3
    for item in VGG_CONFIGS[model]:
        if item == "M":
            index += 1
            continue
        shapes[f"{index}.weight"] = (int(item), channels, 3, 3)
        shapes[f"{index}.bias"] = (int(item),)
        index, channels = index + 2, int(item)
    return shapes


def display_name(model: str) -> str:
    """``vgg19`` → ``VGG-19`` (other names unchanged)."""
    match = re.fullmatch(r"vgg(\d+)", model)
    return f"VGG-{match.group(1)}" if match else model
