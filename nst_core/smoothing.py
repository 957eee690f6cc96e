"""L-BFGS's smoothing preconditioner: search directions that favour broad changes over pixel noise.

Plain L-BFGS starts every search from the raw gradient scaled by one number. The loss of a style
transfer reacts to broad changes (a region's colour, a stroke's shape) much more slowly per
pixel than to fine ones, so a raw gradient spends most of the first steps on fine detail and
takes many steps to move large areas. Preconditioned L-BFGS (Nocedal & Wright, *Numerical
Optimization*, §7.2) replaces that one number by an operator ``P``, here

    P(v) = v + gain · Σ_σ G_σ v,   σ ∈ 1, 2, 4, 8, 16, 32 pixels,

where ``G_σ`` is a Gaussian blur of each colour channel, the image padded with zeros so that ``P``
is symmetric. ``P`` is positive definite, and it lifts the broad parts of a direction by up to
``1 + 6·gain`` while leaving the finest untouched. The loss being minimised does not change, only the
path to its minimum.

Measured from the instant start (AMD EPYC, 2 cores, AVX2, fp32; the evaluator of
``benchmarks.pairs``): see the README's "Over many pairs".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: Blur widths, in output pixels: the octaves from a pixel to a stroke.
SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)

#: ``precondition(vector, out=None) -> P·vector``, into ``out`` when given (which may be ``vector``).
Preconditioner = Callable[..., torch.Tensor]


def smoothing_preconditioner(shape: torch.Size, gain: float, *, device: torch.device,
                             sigmas: tuple[float, ...] = SIGMAS) -> Preconditioner:
    """``P`` above for flat float32 vectors of images of ``shape`` (``N×C×H×W``); the identity when
    ``gain`` is 0 (plain L-BFGS).

    The blurs are one multiplication in the Fourier domain, by ``1 + gain · Σ_σ exp(-2π²σ²|f|²)``
    (a Gaussian's transform), of the image padded with zeros by 3σ of the widest blur and cropped
    back: the same cost for every σ, and exactly symmetric with eigenvalues ≥ 1. One colour
    channel at a time, so that besides the result it needs only a third of an image's memory
    (twice over), and none for the result when it goes into ``out``.
    """
    if gain <= 0:
        return _identity
    height, width = shape[-2:]
    pad = math.ceil(3 * max(sigmas))
    padded = (_fast_fft_length(height + pad), _fast_fft_length(width + pad))
    fy = torch.fft.fftfreq(padded[0], dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(padded[1], dtype=torch.float64)[None, :]
    frequency2 = fy**2 + fx**2
    multiplier = 1 + gain * sum(torch.exp(-2 * math.pi**2 * sigma**2 * frequency2) for sigma in sigmas)
    multiplier = multiplier.to(device=device, dtype=torch.float32)

    def apply(vector: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        images = vector.view(shape)
        result = torch.empty_like(images) if out is None else out.view(shape)
        for channel in range(shape[1]):  # the channel is read whole before it is written
            spectrum = torch.fft.rfft2(images[:, channel], s=padded).mul_(multiplier)
            result[:, channel] = torch.fft.irfft2(spectrum, s=padded)[..., :height, :width]
        return result.view(-1)

    return apply


def _identity(vector: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    if out is None:
        return vector.clone()
    return out if out is vector else out.copy_(vector)


def _fast_fft_length(length: int) -> int:
    """The smallest ``2^a·3^b·5^c`` at least ``length`` (FFTs of other lengths are slower)."""
    while True:
        rest = length
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return length
        length += 1
