"""Image arrays and tensors: sizes, resizing, and conversion between numpy arrays and tensors.

Arrays are ``H×W×3`` (colour) or ``H×W`` (alpha) ``float32`` in ``[0, 1]``; tensors are
``1×3×H×W``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["long_side_size", "resize_to", "to_array", "to_tensor"]

def long_side_size(shape_hw: tuple[int, int], long_side: int | None) -> tuple[int, int]:
    """``(h, w)`` scaled so that ``max(h, w) == long_side``, aspect kept, each side ≥ 1.

    ``None`` returns the size unchanged.
    """
    height, width = int(shape_hw[0]), int(shape_hw[1])
    if long_side is None:
        return height, width
    if isinstance(long_side, bool) or int(long_side) != long_side or long_side < 1:
        raise ConfigError(f"image size must be a positive whole number of pixels, not {long_side!r}")
    long_side = int(long_side)
    if height >= width:
        return long_side, max(1, round(width * long_side / height))
    return max(1, round(height * long_side / width)), long_side


def resize_to(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``H×W×C`` or ``H×W`` float image to ``size`` = ``(height, width)``.

    Bicubic, antialiased when shrinking (``torch.nn.functional.interpolate``), result clipped to
    ``[0, 1]``, float32. The same size returns a float32 copy.
    """
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, not {size!r}")
    values = np.asarray(array, dtype=np.float32)
    if values.ndim not in (2, 3):
        raise ValueError(f"expected an H×W or H×W×C array, not of shape {values.shape}")
    if values.shape[:2] == (height, width):
        return values.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    tensor = tensor[None, None] if values.ndim == 2 else tensor.permute(2, 0, 1)[None]
    with torch.no_grad():
        out = torch.nn.functional.interpolate(
            tensor, size=(height, width), mode="bicubic", antialias=True, align_corners=False
        ).clamp_(0.0, 1.0)
    out = out[0, 0] if values.ndim == 2 else out[0].permute(1, 2, 0)
    return np.ascontiguousarray(out.numpy())


def to_tensor(array: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """``H×W×3`` array → contiguous ``1×3×H×W`` float32 tensor (a copy) on ``device``."""
    values = np.asarray(array, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"expected an H×W×C array, not of shape {values.shape}")
    tensor = torch.from_numpy(np.array(values.transpose(2, 0, 1), order="C", copy=True))[None]
    if device is not None:
        tensor = tensor.to(device)
    return tensor.contiguous()


def to_array(tensor: torch.Tensor) -> np.ndarray:
    """``1×3×H×W`` (or ``3×H×W``) tensor → ``H×W×3`` float32 numpy array in [0, 1], on the CPU."""
    values = tensor.detach()
    if values.ndim == 4:
        if values.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, not of shape {tuple(values.shape)}")
        values = values[0]
    if values.ndim != 3:
        raise ValueError(f"expected a 1×C×H×W tensor, not of shape {tuple(values.shape)}")
    values = values.to(device="cpu", dtype=torch.float32).clamp(0.0, 1.0)
    return np.ascontiguousarray(values.permute(1, 2, 0).numpy())
