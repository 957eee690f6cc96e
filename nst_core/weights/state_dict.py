"""Checking what a weights file holds: a VGG ``features`` state dict, in any accepted layout.

Accepted layouts: a torchvision ``vgg16().features`` / ``vgg19().features`` state dict (keys
``0.weight`` …), a full torchvision VGG state dict (``features.0.weight`` …; ``classifier.*`` is
dropped), either of them wrapped in ``{"state_dict": …}`` or ``{"model": …}``, and keys prefixed
with ``module.`` (``nn.DataParallel``). The architecture is inferred from the number of
convolutions (13: VGG-16, 16: VGG-19) and every key and shape must match torchvision's
``features`` layout exactly (:func:`nst_core.vgg_layout.vgg_conv_shapes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import WeightsError
from ..vgg_layout import VGG_CONFIGS, display_name, vgg_conv_shapes
from .locations import MODELS

__all__ = ["check_state_dict", "shape_text"]


def check_state_dict(obj: Any, *, name: str) -> tuple[str, dict[str, torch.Tensor]]:
    """Turn what ``torch.load`` returned into ``(model, features state dict)``, or raise.

    ``name`` names the source in messages. The tensors are float32 and contiguous; when the
    input already was, they are the input's own tensors (not copies).
    """
    where = f"weights file '{name}'"
    tensors = _unwrap(obj, where)
    features = _features_part(tensors, where)

    convs = sum(1 for value in features.values() if value.dim() == 4)
    counts = {len([c for c in VGG_CONFIGS[m] if c != "M"]): m for m in MODELS}
    if convs not in counts:
        expected = " or ".join(f"{n} ({display_name(m)})" for n, m in sorted(counts.items()))
        raise WeightsError(f"{where} has {convs} convolution layers; expected {expected}")
    model = counts[convs]
    pretty = display_name(model)
    expected_shapes = vgg_conv_shapes(model)

    for key in sorted(set(features) | set(expected_shapes), key=_key_order):
        if key not in features:
            raise WeightsError(f"{where} lacks '{key}' ({pretty} needs shape {shape_text(expected_shapes[key])})")
        if key not in expected_shapes:
            raise WeightsError(f"{where} has an unexpected tensor '{key}' (not part of {pretty}'s features)")
        got = tuple(features[key].shape)
        if got != expected_shapes[key]:
            raise WeightsError(
                f"{where}: '{key}' has shape {shape_text(got)}, expected {shape_text(expected_shapes[key])} for {pretty}"
            )

    state_dict: dict[str, torch.Tensor] = {}
    for key in expected_shapes:
        tensor = features[key]
        if not tensor.is_floating_point() or tensor.is_quantized or tensor.layout != torch.strided:
            raise WeightsError(f"{where}: '{key}' holds {tensor.dtype} values, expected floating point")
        tensor = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        if not np.isfinite(tensor.numpy()).all():  # numpy's check is several times faster than torch's
            raise WeightsError(f"{where}: '{key}' holds NaN or infinite values; the file is damaged")
        state_dict[key] = tensor
    return model, state_dict


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as a message shows it: ``(64, 3, 3, 3)``."""
    return str(tuple(int(n) for n in shape))


def _unwrap(obj: Any, where: str) -> dict[str, Any]:
    for _ in range(3):  # {"state_dict": {"model": …}} at worst
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{where} holds a {type(obj).__name__}, not a state dict")
        if not obj:
            raise WeightsError(f"{where} holds an empty dict, not a state dict")
        wrapped = [key for key in ("state_dict", "model") if isinstance(obj.get(key), Mapping)]
        if wrapped and not any(isinstance(value, torch.Tensor) for value in obj.values()):
            obj = obj[wrapped[0]]
            continue
        break
    for key, value in obj.items():
        if not isinstance(key, str):
            raise WeightsError(f"{where} has a key that is not a string ({key!r:.40}); not a state dict")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{where}: '{key}' holds a {type(value).__name__}, not a tensor")
    return dict(obj)


def _features_part(tensors: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    if tensors and all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    if not any(key.startswith("features.") for key in tensors):
        return tensors  # already a ``features`` state dict
    features: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.startswith("features."):
            features[key[len("features."):]] = value
        elif not key.startswith("classifier."):
            raise WeightsError(f"{where} has an unexpected tensor '{key}' (not part of a torchvision VGG)")
    return features


def _key_order(key: str) -> tuple[int, int, str]:
    head, _, tail = key.partition(".")
    return (0, int(head), tail) if head.isdigit() else (1, 0, key)
