"""The benchmark's fixed quality evaluator, written plainly and independent of nst-core's code.

Quality is the paper's objective (Gatys et al. 2016) on VGG-19 with average pooling, evaluated
in float32 at the evaluation size: content error at ``relu4_2`` plus five times the mean Gram
error over ``relu1_1 … relu5_1``. Errors are relative (‖ΔF‖²/‖P‖², ‖ΔG‖²/‖A‖²) so the number
does not depend on the network's activation scale. Lower is better; the content image itself
scores 5 × (its style error), a pure texture scores high on content.

The evaluator is also the baseline's objective (``baseline.py``), so the baseline optimizes
exactly what it is scored by: the comparison cannot favour nst-core's own loss terms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_WEIGHT, STYLE_WEIGHT = 1.0, 5.0
VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights" / "vgg19-imagenet-features.pth"


def vgg19_to_relu5_1(weights: Path = WEIGHTS) -> tuple[nn.Sequential, list[str]]:
    """torchvision's ``vgg19().features`` up to ``relu5_1``, average pooling, and its layer names."""
    layers, names, channels, block, conv = [], [], 3, 1, 0
    for item in VGG19:
        if item == "M":
            layers.append(nn.AvgPool2d(2, 2))
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            channels = item
    net = nn.Sequential(*layers)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    cut = names.index("relu5_1") + 1
    net = net[:cut].eval().requires_grad_(False)
    return net, names[:cut]


def gram(features: torch.Tensor) -> torch.Tensor:
    _, c, h, w = features.shape
    flat = features.reshape(c, h * w)
    return flat @ flat.T / (h * w)


class Evaluator:
    """Scores images of one content/style pair at one size (float32, CPU or CUDA)."""

    def __init__(self, content: np.ndarray, style: np.ndarray, *, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.net, self.names = vgg19_to_relu5_1()
        self.net.to(self.device)
        self.hw = content.shape[:2]
        with torch.no_grad():
            self.content_target = self.features(self.tensor(content))[CONTENT_LAYER]
            style_features = self.features(self.tensor(style))
            self.gram_targets = {name: gram(style_features[name]) for name in STYLE_LAYERS}

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None].contiguous().to(self.device)

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - MEAN.to(image.device)) / STD.to(image.device)
        out = {}
        for name, layer in zip(self.names, self.net):
            x = layer(x)
            if name == CONTENT_LAYER or name in STYLE_LAYERS:
                out[name] = x
        return out

    def objective(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(content error, mean style error)`` of a ``1×3×H×W`` tensor, differentiable."""
        features = self.features(image)
        target = self.content_target
        content = ((features[CONTENT_LAYER] - target) ** 2).mean() / (target**2).mean()
        style = sum(
            ((gram(features[n]) - self.gram_targets[n]) ** 2).sum() / (self.gram_targets[n] ** 2).sum()
            for n in STYLE_LAYERS
        ) / len(STYLE_LAYERS)
        return content, style

    def score(self, image: np.ndarray) -> dict[str, float]:
        """The evaluator's loss of an ``H×W×3`` array in [0, 1] (resized to the evaluation size)."""
        tensor = self.tensor(np.clip(image, 0.0, 1.0))
        if tuple(tensor.shape[-2:]) != tuple(self.hw):
            tensor = F.interpolate(tensor, size=tuple(self.hw), mode="bicubic", align_corners=False).clamp(0, 1)
        with torch.no_grad():
            content, style = self.objective(tensor)
        content, style = float(content), float(style)
        return {"content": content, "style": style, "total": CONTENT_WEIGHT * content + STYLE_WEIGHT * style}
