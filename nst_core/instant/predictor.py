"""The style-prediction network: a painting in, a 100-number style vector out.

Ghiasi et al. (2017) predict the conditional instance normalization parameters of the
transformer (:mod:`nst_core.instant.transformer`) from the painting with a pretrained image
classifier followed by a bottleneck. The network whose weights nst-core embeds is Magenta's
distilled, mobile one (``arbitrary_image_stylization_build_mobilenet_model.py``):

    MobileNetV2 (width 1.0) up to its last 1×1 convolution (``layer_19``, 1280 channels)
    · mean over the image · 1×1 convolution 1280 → 100 (``mobilenet_conv``, no activation)

MobileNetV2 (Sandler et al. 2018) is a 3×3 stride-2 convolution to 32 channels, then 17
*inverted residual* blocks, each a 1×1 expansion to ``t`` times the channels, a 3×3 depthwise
convolution, and a 1×1 linear projection, with a skip connection where input and output have
the same shape; every convolution but the projections is followed by ReLU6. Batch
normalization is folded into the convolutions' weights and biases. Padding follows
TensorFlow's ``SAME`` rule (for a stride-2 convolution on an even side: none before, one pixel
after), so the weights see what they were trained on.

The input is an RGB painting in ``[0, 1]`` at 256×256 (:data:`STYLE_SIDE`); the scaling to
MobileNet's ``[-1, 1]`` is folded into the first convolution.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import ops

#: Side of the square painting the network sees.
STYLE_SIDE = 256
#: Length of a style vector.
STYLE_DIM = 100


@dataclass(frozen=True)
class InvertedResidual:
    """One MobileNetV2 block: expansion factor, output channels, stride."""

    expansion: int
    out_channels: int
    stride: int


#: MobileNetV2's blocks (``V2_DEF`` of TF-slim), named ``expanded_conv``, ``expanded_conv_1`` …
MOBILENET_V2_BLOCKS = (
    InvertedResidual(1, 16, 1),
    InvertedResidual(6, 24, 2), InvertedResidual(6, 24, 1),
    InvertedResidual(6, 32, 2), InvertedResidual(6, 32, 1), InvertedResidual(6, 32, 1),
    InvertedResidual(6, 64, 2), InvertedResidual(6, 64, 1), InvertedResidual(6, 64, 1), InvertedResidual(6, 64, 1),
    InvertedResidual(6, 96, 1), InvertedResidual(6, 96, 1), InvertedResidual(6, 96, 1),
    InvertedResidual(6, 160, 2), InvertedResidual(6, 160, 1), InvertedResidual(6, 160, 1),
    InvertedResidual(6, 320, 1),
)
#: Channels of the first convolution and of the last 1×1 convolution (``Conv_1``).
STEM_CHANNELS = 32
FEATURE_CHANNELS = 1280


def same_padding(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero padding as TensorFlow's ``SAME``: output side ``ceil(side / stride)``, the odd pixel after.

    Written into a new channels-last buffer whose border strips alone are zeroed (``F.pad``
    fills the whole buffer first: half the predictor's time went there).
    """
    (top, bottom), (left, right) = (_same_pads(side, kernel, stride) for side in x.shape[-2:])
    if not (top or bottom or left or right):
        return x
    height, width = x.shape[-2:]
    buffer = torch.empty((*x.shape[:2], top + height + bottom, left + width + right), dtype=x.dtype,
                         device=x.device, memory_format=torch.channels_last)
    buffer[..., top:top + height, left:left + width] = x
    for rows in (slice(0, top), slice(top + height, None)):
        buffer[..., rows, :] = 0
    for columns in (slice(0, left), slice(left + width, None)):
        buffer[..., top:top + height, columns] = 0
    return buffer


def _same_pads(side: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((-(-side // stride) - 1) * stride + kernel - side, 0)
    return total // 2, total - total // 2


class InvertedResidualBlock(nn.Module):
    """Expansion (1×1, ReLU6; absent when ``expansion`` is 1), depthwise 3×3 (ReLU6), projection (1×1)."""

    def __init__(self, in_channels: int, spec: InvertedResidual) -> None:
        super().__init__()
        hidden = in_channels * spec.expansion
        self.expand = nn.Conv2d(in_channels, hidden, 1) if spec.expansion != 1 else None
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride=spec.stride, groups=hidden)
        self.project = nn.Conv2d(hidden, spec.out_channels, 1)
        self.skip = spec.stride == 1 and in_channels == spec.out_channels


class StylePredictor(nn.Module):
    """``N×3×256×256`` paintings in ``[0, 1]`` → ``N×100`` style vectors.

    State dict keys: ``stem.*`` (TF ``MobilenetV2/Conv``), ``blocks.{i}.{expand,depthwise,project}.*``
    (``MobilenetV2/expanded_conv[_i]/…``), ``last_conv.*`` (``MobilenetV2/Conv_1``) and
    ``bottleneck.*`` (``mobilenet_conv/Conv``, a 1×1 convolution kept as a linear layer).
    The module holds the weights; :func:`predict` computes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2)
        blocks, channels = [], STEM_CHANNELS
        for spec in MOBILENET_V2_BLOCKS:
            blocks.append(InvertedResidualBlock(channels, spec))
            channels = spec.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.last_conv = nn.Conv2d(channels, FEATURE_CHANNELS, 1)
        self.bottleneck = nn.Linear(FEATURE_CHANNELS, STYLE_DIM)
        self._kernels: dict[tuple, dict[nn.Module, torch.Tensor]] = {}

    def forward(self, paintings: torch.Tensor) -> torch.Tensor:
        """:func:`predict` with this network's weights."""
        return predict(self, paintings)

    def kernels(self, dtype: torch.dtype) -> dict[nn.Module, torch.Tensor]:
        """Each convolution's weight in ``dtype`` and channels-last layout, made once per dtype."""
        key = (dtype, self.stem.weight.device, tuple(p._version for p in self.parameters()))
        if key not in self._kernels:
            self._kernels = {key: {
                module: module.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
                for module in self.modules() if isinstance(module, nn.Conv2d)
            }}
        return self._kernels[key]


def predict(net: StylePredictor, paintings: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Style vectors (``N×100``, float32) of ``N×3×256×256`` paintings in ``[0, 1]``."""
    kernels = net.kernels(dtype)

    def conv(x: torch.Tensor, layer: nn.Conv2d, **kwargs) -> torch.Tensor:
        stride, kernel = layer.stride[0], layer.kernel_size[0]
        if stride > 1:  # TensorFlow's SAME padding is uneven here: pad first
            x, padding = same_padding(x, kernel, stride), 0
        else:
            padding = kernel // 2
        return ops.conv(x, kernels[layer], layer.bias.to(dtype), stride=stride, padding=padding,
                        groups=layer.groups, **kwargs)

    h = conv(paintings.to(dtype).contiguous(memory_format=torch.channels_last), net.stem, activation="relu6")
    for block in net.blocks:
        inner = conv(h, block.expand, activation="relu6") if block.expand is not None else h
        inner = conv(inner, block.depthwise, activation="relu6")
        h = conv(inner, block.project, add=h if block.skip else None)
    features = conv(h, net.last_conv, activation="relu6").mean(dim=(2, 3), dtype=torch.float32)
    return F.linear(features, net.bottleneck.weight.float(), net.bottleneck.bias.float())


def tensorflow_scopes() -> Iterator[tuple[str, str]]:
    """``(state dict prefix, TensorFlow scope)`` of every layer of :class:`StylePredictor`."""
    yield "stem", "MobilenetV2/Conv"
    for index, spec in enumerate(MOBILENET_V2_BLOCKS):
        scope = "MobilenetV2/expanded_conv" + (f"_{index}" if index else "")
        parts = ("depthwise", "project") if spec.expansion == 1 else ("expand", "depthwise", "project")
        for part in parts:
            yield f"blocks.{index}.{part}", f"{scope}/{part}"
    yield "last_conv", "MobilenetV2/Conv_1"
    yield "bottleneck", "mobilenet_conv/Conv"
