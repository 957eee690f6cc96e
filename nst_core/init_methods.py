"""Start images of the optimization (built-in plugins): the content, noise, a given image, or the
instant method's result.

An init method is called with ``content`` (``1×3×H×W``), ``config`` and ``generator``, and also
with ``styles`` (the style images as ``H×W×3`` arrays, blend weights in ``config.style_blend``)
when its signature names that parameter.
"""

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


def init_from_instant(*, content: torch.Tensor, config: Config, generator: torch.Generator, styles) -> torch.Tensor:
    """Start from the instant method's painting of the content (Ghiasi et al.): the short presets
    reach a given quality in fewer steps from there (see the README's instant section)."""
    from .device import resolve_device
    from .image import to_array, to_tensor
    from .instant.method import instant_vector
    from .instant.stylize import stylize_instant_array

    device = resolve_device(config.device)
    photo = to_array(content)
    vector = instant_vector(photo, styles, config=config, device=device)
    painted = stylize_instant_array(photo, vector, device=device, max_memory=config.max_memory)
    return to_tensor(painted, content.device)


def accepts_styles(init) -> bool:
    """Whether an init method wants the style images (its signature names ``styles``)."""
    import inspect

    try:
        return "styles" in inspect.signature(init).parameters
    except (TypeError, ValueError):
        return False


@hookimpl
def nst_register_init_methods(register) -> None:
    register("content", init_from_content)
    register("noise", init_from_noise)
    register("image", init_from_image)
    register("instant", init_from_instant)
