"""ReLU and 2×2 average pooling that keep for the backward pass only what it reads.

An optimization step differentiates a frozen network with respect to its input. PyTorch's
layers keep more than that needs: average pooling keeps its input, though its backward reads
only the input's shape, and a ReLU keeps its output. A convolution after the ReLU keeps the same
tensor as its input, so in a network of PyTorch's convolutions that costs nothing more; but
Winograd's convolutions (:mod:`nst_core.winograd`) keep only their weights, and then a ReLU whose
output no loss reads is held only to say where it was positive. A mask says that in one byte a
value instead of four. In VGG-19 up to ``relu5_1`` with the default loss layers, that is 160 of
the 290 feature channels (counted at full size) that a step keeps: 94 MB less at 512×384.

:func:`nst_core.winograd.with_winograd` swaps these in together with the convolutions. A ReLU whose
output a loss keeps anyway (:class:`OutputKeptReLU`) is left as it is: its own backward reads that
output, so a mask would only add a byte a value and a slower backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


class _ReLUKeepingMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(x)
            out = torch.relu_(x)
        else:
            out = torch.relu(x)
        # as bytes: multiplying by a uint8 tensor ran 1.1-2x as fast as by a bool one and 2-5x as fast
        # as masked_fill or where (AMD EPYC, AVX2); PyTorch's own ReLU backward, which reads the
        # float output, took 0.6-0.8x as long
        ctx.save_for_backward((out > 0).view(torch.uint8))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (positive,) = ctx.saved_tensors
        return grad * positive, None


class _AveragePool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.input_hw = tuple(x.shape[-2:])
        return F.avg_pool2d(x, 2, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        height, width = ctx.input_hw
        spread = F.interpolate(grad * 0.25, scale_factor=2.0, mode="nearest")
        if spread.shape[-2:] != (height, width):  # an odd side: its last row or column was not pooled
            spread = F.pad(spread, (0, width - spread.shape[-1], 0, height - spread.shape[-2]))
        return spread


def relu_keeping_mask(x: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """``relu(x)`` whose backward keeps a one-byte mask, not the output."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return torch.relu_(x) if inplace else torch.relu(x)
    return _ReLUKeepingMask.apply(x, inplace)


def average_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``avg_pool2d(x, 2, 2)`` whose backward keeps the input's shape, not the input."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return F.avg_pool2d(x, 2, 2)
    return _AveragePool2x2.apply(x)


class OutputKeptReLU(nn.ReLU):
    """An ``nn.ReLU`` whose output a loss reads and keeps; :func:`frozen_layer` leaves it alone.

    PyTorch's ReLU keeps its output for its backward, which costs nothing more when that output
    is held anyway. Its backward (``threshold_backward``) took 0.6-0.8× as long as the mask's
    (AMD EPYC, AVX2), and it needs no mask: at 1024×768 the default loss layers' ReLUs would
    have kept ~100 MB of masks.
    """


class MaskReLU(nn.Module):
    """``nn.ReLU`` computed by :func:`relu_keeping_mask`."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu_keeping_mask(x, inplace=self.inplace)


class AveragePool2x2(nn.Module):
    """``nn.AvgPool2d(2, 2)`` computed by :func:`average_pool_2x2`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return average_pool_2x2(x)


def is_average_pool_2x2(layer: nn.Module) -> bool:
    """Whether ``layer`` is an ``nn.AvgPool2d`` that :class:`AveragePool2x2` computes the same."""
    if type(layer) is not nn.AvgPool2d:
        return False
    pairs = [(v, v) if isinstance(v, int) else tuple(v) for v in (layer.kernel_size, layer.stride or layer.kernel_size)]
    padding = layer.padding if isinstance(layer.padding, int) else max(layer.padding)
    return (pairs == [(2, 2), (2, 2)] and padding == 0 and not layer.ceil_mode
            and layer.divisor_override is None)


def frozen_layer(layer: nn.Module) -> nn.Module:
    """``layer``'s replacement that keeps less for backward, or ``layer`` itself if it has none."""
    if type(layer) is nn.ReLU:
        return MaskReLU(inplace=layer.inplace)
    if is_average_pool_2x2(layer):
        return AveragePool2x2()
    return layer
