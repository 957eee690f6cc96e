"""3×3 convolutions by Winograd's transform (NNPACK, bundled with PyTorch's CPU builds).

A 3×3 convolution computed on 6×6 output tiles in Winograd's transformed domain needs about a
fifth of the multiplications of the direct method. PyTorch's CPU convolutions (oneDNN) compute
it directly; PyTorch also ships NNPACK, whose Winograd kernels run on AVX2 but which PyTorch uses
only in a few cases and never for the input gradient. On AMD EPYC with AVX2 (2 cores, fp32),
VGG-19's convolutions at 512×384 take 0.4–0.6× the time in NNPACK, except on images under about
32×32 px (VGG's last block on a small image), where the transform costs more than it saves.

The input gradient of a stride-1, padding-1 3×3 convolution is itself such a convolution, of the
output gradient with the kernel transposed and flipped, so NNPACK serves the backward pass too.
The weights must be frozen (nst-core never trains its feature extractor): there is no weight
gradient here. Results differ from the direct method by rounding only (about 1e-4 relative, in
fp32); the engine measures both and keeps this one only where it is clearly faster
(:mod:`nst_core.precision`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv2d_input

from .frozen_layers import frozen_layer

#: Outputs with fewer pixels than this use the direct method: there NNPACK's transforms cost more
#: than they save (AMD EPYC, AVX2, VGG's 256 and 512 channels: 0.85–0.9× at 24×32 px, 1.35–1.5×
#: at 32×40 and 32×48, 2.2× at 48×64).
MIN_PIXELS = 1024

#: Convolutions with fewer output channels than this use the direct method: NNPACK computed the
#: input gradient of VGG's first layer (64 → 3 channels) 1.1–2.3× slower than oneDNN.
MIN_CHANNELS = 8


def available(device: torch.device) -> bool:
    """Whether NNPACK can run convolutions on ``device`` (a CPU with a PyTorch built with it).

    Asking also initializes NNPACK, which its convolutions need first.
    """
    return device.type == "cpu" and bool(torch.backends.nnpack.is_available())


def flipped_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The kernel whose convolution is ``weight``'s transpose: in and out channels swapped, flipped."""
    return weight.transpose(0, 1).flip(2, 3).contiguous()


#: NNPACK keeps its largest call's workspace (the transformed input and output tiles: 3.6× the
#: output of VGG's 64-channel layers) for as long as the thread lives. A call that would need more
#: than this is computed in bands of rows, each copied in and out. At 512×512 VGG's first block
#: then runs in two bands, each as large as the second block's whole call, and the workspace is
#: halved: 170 → 90 MB of RSS, one such call measured alone. Whole steps were no slower (AMD EPYC,
#: AVX2; 1024×768: 6.8–7.8 s against 7.8–8.6 s, peak RSS 0.5 GB lower), though a banded call alone
#: is (``conv1_2`` forward at 512×384: 131 against 113 ms).
MAX_WORKSPACE = 128 << 20
#: Output rows of NNPACK's Winograd tiles (6×6 outputs from 8×8 inputs): bands are multiples.
_TILE = 6


def workspace_bytes(shape: torch.Size | tuple[int, ...], out_channels: int) -> int:
    """An upper bound of NNPACK's workspace for a 3×3 convolution of an ``N×C×H×W`` input: 8×8
    transformed tiles of every input and output channel."""
    n, in_channels, height, width = shape
    tiles = -(-height // _TILE) * -(-width // _TILE)
    return n * tiles * 64 * 4 * (in_channels + out_channels)


def _nnpack(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """NNPACK's 3×3 convolution (padding 1), in bands of rows if it needs more than
    :data:`MAX_WORKSPACE`."""
    height = image.shape[2]
    bands = -(-workspace_bytes(image.shape, weight.shape[0]) // MAX_WORKSPACE)
    if bands <= 1 or height < 2 * _TILE:
        return torch._nnpack_spatial_convolution(image.contiguous(), weight, bias, [1, 1])
    rows = -(-height // (bands * _TILE)) * _TILE
    out = image.new_empty((image.shape[0], weight.shape[0], height, image.shape[3]))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        # the band and the rows on either side; NNPACK pads all sides alike, so the image's own
        # top and bottom get their row of zeros here
        band = image[:, :, max(0, top - 1):bottom + 1]
        if top == 0 or bottom == height:
            band = F.pad(band, (0, 0, int(top == 0), int(bottom == height)))
        out[:, :, top:bottom] = torch._nnpack_spatial_convolution(band.contiguous(), weight, bias, [0, 1])
    return out


def _nnpack_pays(image: torch.Tensor, out_channels: int) -> bool:
    return image.shape[-2] * image.shape[-1] >= MIN_PIXELS and out_channels >= MIN_CHANNELS


class _WinogradConv(torch.autograd.Function):
    """A frozen 3×3 convolution that keeps only its weights for the backward pass (PyTorch's
    keeps its input too, for a weight gradient nobody asks for)."""

    @staticmethod
    def forward(ctx, image, weight, bias):
        ctx.save_for_backward(weight)
        if not _nnpack_pays(image, weight.shape[0]):
            return F.conv2d(image, weight, bias, padding=1)
        torch._nnpack_available()  # NNPACK must be initialized (once per process) before it computes
        return _nnpack(image, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        (weight,) = ctx.saved_tensors
        if not _nnpack_pays(grad, weight.shape[1]):  # small maps; the first layer's 3 colours
            image_shape = (grad.shape[0], weight.shape[1], *grad.shape[2:])
            return conv2d_input(image_shape, weight, grad, padding=1), None, None
        # flipped on the fly: a kept copy of every kernel would cost as much memory as the
        # network's weights (52 MB for VGG-19 to relu5_1), the copy a few ms a step
        flipped = flipped_kernel(weight)
        return _nnpack(grad, flipped, None), None, None


def conv3x3(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d(image, weight, bias, padding=1)`` by Winograd's transform where it pays.

    Small images use PyTorch's convolution (see :data:`MIN_PIXELS`), still keeping only the
    weights. Weights that need a gradient, autocast, and anything but float32 on a CPU get
    ``F.conv2d`` itself.
    """
    if (image.device.type != "cpu" or image.dtype != torch.float32 or weight.dtype != torch.float32
            or weight.requires_grad or torch.is_autocast_enabled("cpu")):
        return F.conv2d(image, weight, bias, padding=1)
    return _WinogradConv.apply(image, weight, bias)


class WinogradConv2d(nn.Module):
    """A frozen 3×3, stride-1, padding-1 ``nn.Conv2d`` computed by :func:`conv3x3`."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not convertible(conv):
            raise ValueError(f"not a 3x3, stride-1, padding-1 convolution: {conv}")
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return conv3x3(image, self.weight, self.bias)


def convertible(layer: nn.Module) -> bool:
    """Whether ``layer`` is a convolution :class:`WinogradConv2d` computes the same."""
    return (isinstance(layer, nn.Conv2d) and layer.kernel_size == (3, 3) and layer.stride == (1, 1)
            and layer.padding == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
            and layer.padding_mode == "zeros")


def with_winograd(module: nn.Module) -> nn.Module:
    """``module`` with every convertible convolution in it computed by Winograd's transform.

    Its ReLUs and 2×2 average pools are swapped too, for ones that keep only what their backward
    reads (:mod:`nst_core.frozen_layers`): with these convolutions, which keep only their
    weights, nothing else holds a ReLU's output unless a loss reads it.

    A shallow copy that shares the weights and buffers; ``module`` itself is unchanged. Works on
    any network (a plugin's feature extractor too), since it only replaces submodules.
    """
    if convertible(module):
        return WinogradConv2d(module)
    if (swapped := frozen_layer(module)) is not module:
        return swapped
    changed = {name: with_winograd(child) for name, child in module.named_children()}
    if all(changed[name] is child for name, child in module.named_children()):
        return module
    converted = copy.copy(module)
    converted._modules = dict(module._modules)
    converted._modules.update(changed)
    return converted
