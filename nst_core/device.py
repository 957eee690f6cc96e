"""Where networks run and in which precision: the device by name, and autocast for a precision.

Every method and the fast-style trainer use these, so ``Config.device`` and
``Config.precision`` mean the same everywhere.
"""

from __future__ import annotations

import contextlib

import torch

from . import winograd
from .errors import ConfigError, setting


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; a named CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device 'cuda' asked for, but PyTorch sees no CUDA GPU; set {setting('device')} to cpu")
    return device


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision that cannot work on ``device``.

    fp16 autocast on a CPU makes the network's gradients overflow: every run ended in "the loss
    became nan at step 1". bf16 has fp32's range and works everywhere (slowly where the CPU has
    no bf16 hardware; ``auto`` only picks it where it is fast).
    """
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"{setting('precision')} fp16 works only on a CUDA GPU (on a {device.type} its gradients overflow); "
            "use bf16, fp32 or auto"
        )


def check_convolution(convolution: str, device: torch.device) -> None:
    """Refuse Winograd convolutions where NNPACK cannot run them (not a CPU, or a PyTorch built
    without NNPACK)."""
    if convolution == "winograd" and not winograd.available(device):
        where = "this PyTorch has no NNPACK" if device.type == "cpu" else f"not on a {device.type}"
        raise ConfigError(f"{setting('convolution')} winograd runs only on a CPU with NNPACK ({where}); use standard or auto")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` (``bf16`` or ``fp16``) on ``device``; a no-op for fp32 (and ``auto``,
    which a run resolves to a real precision before it computes anything)."""
    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
