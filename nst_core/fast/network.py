"""The image-transformation network of Johnson, Alahi & Fei-Fei, *Perceptual Losses for
Real-Time Style Transfer and Super-Resolution* (ECCV 2016), slimmed for CPUs.

Layout (``c1, c2, c3`` = :attr:`NetworkShape.channels`)::

    9×9 conv 3→c1 · 3×3 conv stride 2 c1→c2 · 3×3 conv stride 2 c2→c3
    · N residual blocks (two 3×3 convs c3→c3)
    · ×2 upsample + 3×3 conv c3→c2 · ×2 upsample + 3×3 conv c2→c1 · 9×9 conv c1→3 · sigmoid

Every convolution but the last is followed by instance normalization with learned scale and
shift (Ulyanov et al. 2016) and a ReLU (none after a residual block's second convolution).
Padding is by reflection, so borders carry no dark frame. Upsampling is *resize-convolution*
(nearest-neighbour ×2, then a stride-1 convolution; Odena et al. 2016) instead of transposed
convolution, which leaves checkerboard artefacts. The output goes through a sigmoid, so it is an
RGB image in ``[0, 1]`` whatever the weights.

Johnson's network has 32/64/128 channels and 5 residual blocks: about 120 GFLOP for a 1024×768
photo, ~1.5 s on a GPU of 2016 but several seconds on a small CPU. The default here
(:data:`DEFAULT_SHAPE`) is narrower; the shape is stored in each model file, so any width loads.
Any input size works, down to one pixel: the network pads (edge pixels repeated) to a multiple of
4 of at least :data:`MIN_SIDE` and crops back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


#: The smallest side the layers work on: the 9×9 convolutions' reflection padding needs more
#: than 4 pixels, at full size and (after two stride-2 convolutions) for the 3×3 ones at a quarter.
MIN_SIDE = 16


@dataclass(frozen=True, kw_only=True)
class NetworkShape:
    """The hyper-parameters that fix a network's tensors' shapes (stored in model files)."""

    #: Channels at full, half and quarter resolution.
    channels: tuple[int, int, int] = (16, 32, 64)
    #: Residual blocks at quarter resolution.
    residual_blocks: int = 5

    def __post_init__(self) -> None:
        channels = tuple(int(c) for c in self.channels)
        if len(channels) != 3 or min(channels) < 1:
            raise ValueError(f"channels must be three positive numbers, got {self.channels!r}")
        if int(self.residual_blocks) < 0:
            raise ValueError(f"residual_blocks must be 0 or more, got {self.residual_blocks!r}")
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "residual_blocks", int(self.residual_blocks))

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists and ints) for a model file's metadata."""
        return {"channels": list(self.channels), "residual_blocks": self.residual_blocks}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NetworkShape:
        return cls(channels=tuple(values["channels"]), residual_blocks=values["residual_blocks"])


#: The network nst-core trains unless told otherwise; see the README's "Fast styles" for its
#: speed at 1024×768 on a 2-core CPU.
DEFAULT_SHAPE = NetworkShape()


class ConvLayer(nn.Sequential):
    """Reflection padding and a convolution, then (optionally) instance norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int, stride: int = 1,
                 norm: bool = True, relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(kernel // 2),
            nn.Conv2d(in_channels, out_channels, kernel, stride=stride),
        ]
        if norm:
            layers.append(nn.InstanceNorm2d(out_channels, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))``, both convolutions 3×3 with instance norm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, kernel=3),
            ConvLayer(channels, channels, kernel=3, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Module):
    """Resize-convolution: nearest-neighbour ×2, then a 3×3 :class:`ConvLayer`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvLayer(in_channels, out_channels, kernel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TransformNet(nn.Module):
    """Maps an ``N×3×H×W`` RGB batch in ``[0, 1]`` to a stylized batch of the same size."""

    def __init__(self, shape: NetworkShape = DEFAULT_SHAPE) -> None:
        super().__init__()
        self.shape = shape
        c1, c2, c3 = shape.channels
        self.encoder = nn.Sequential(
            ConvLayer(3, c1, kernel=9),
            ConvLayer(c1, c2, kernel=3, stride=2),
            ConvLayer(c2, c3, kernel=3, stride=2),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(c3) for _ in range(shape.residual_blocks)))
        self.decoder = nn.Sequential(
            UpsampleConv(c3, c2),
            UpsampleConv(c2, c1),
            ConvLayer(c1, 3, kernel=9, norm=False, relu=False),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        # stride 4 down and ×4 up: pad to a multiple of 4 (and to MIN_SIDE), crop back afterwards
        pad_h, pad_w = max(-height % 4, MIN_SIDE - height), max(-width % 4, MIN_SIDE - width)
        x = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image
        x = self.decoder(self.residuals(self.encoder(x)))
        return torch.sigmoid(x[..., :height, :width])
