"""Start images of the optimization (built-in plugins): the content, noise, or a given image."""

from __future__ import annotations

import torch

from .config import Config
from .hookspecs import hookimpl


def init_from_content(*, content: torch.Tensor, config: Config, generator: torch.Generator) -> torch.Tensor:
    """Start from the content image: keeps its shapes from the first step (the default)."""
    return content.clone()


def init_from_noise(*, content: torch.Tensor, config: Config, generator: torch.Generator) -> torch.Tensor:
    """Start from uniform noise around mid-grey, drawn from the run's seeded generator."""
    noise = torch.rand(content.shape, generator=generator, dtype=torch.float32)
    return (0.25 + 0.5 * noise).to(content.device)


def init_from_image(*, content: torch.Tensor, config: Config, generator: torch.Generator) -> torch.Tensor:
    """Start from ``Config.init_image``, resized to the output size."""
    from .image import load_image, resize_to, to_tensor

    loaded = load_image(config.init_image)
    rgb = resize_to(loaded.rgb, tuple(content.shape[-2:]))
    return to_tensor(rgb, content.device)


@hookimpl
def nst_register_init_methods(register) -> None:
    register("content", init_from_content)
    register("noise", init_from_noise)
    register("image", init_from_image)
