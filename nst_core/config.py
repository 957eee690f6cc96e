"""The one frozen, keyword-only dataclass that holds every setting of a run.

Values are checked when a :class:`Config` is made (types, ranges, choices known here). Names
that depend on what plugins registered (models, layers, colour and init methods) are checked by
the engine against the registries, so that a third-party name is as valid as a built-in one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import ConfigError, setting
from .masks import Region, check_regions

#: The paper's layers (Gatys et al. 2016): content ``relu4_2``, style ``relu1_1`` … ``relu5_1``.
DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

POOLINGS = ("avg", "max")
OPTIMIZERS = ("lbfgs", "adam")
#: ``auto`` picks bf16 only where the hardware has fast bf16 and a probe confirms it (see
#: :mod:`nst_core.precision`).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
#: How 3×3 convolutions are computed: ``auto`` (measured), PyTorch's ``standard`` kernels, or
#: ``winograd`` (NNPACK's Winograd transform: CPU, float32; see :mod:`nst_core.winograd`).
CONVOLUTIONS = ("auto", "standard", "winograd")
#: How colour methods match one image's colours to another's (see :mod:`nst_core.color`).
COLOR_MATCHES = ("chol", "pca", "sym", "histogram")
#: The smallest memory budget a run accepts (bytes).
MIN_MEMORY = 16 * 2**20
#: The largest seed: PyTorch's generators take 64-bit seeds, and a run adds its stage number.
MAX_SEED = 2**63 - 1
#: The longest time budget (a year, in seconds): beyond it a budget means nothing.
MAX_TIME_BUDGET = 365 * 24 * 3600.0
#: The longest output side (a 179-megapixel image, the input limit, is about 15 500 px square).
MAX_SIDE = 65_535


@dataclass(frozen=True, kw_only=True)
class Config:
    """Every setting of one style-transfer run.

    Loss weights are dimensionless: each content and style layer's loss is divided by the size
    of its target (see :mod:`nst_core.losses`), so the same weights mean the same at any image
    size and for any network's activation scale.
    """

    # --- method -------------------------------------------------------------------------------
    #: How to paint: ``optimize`` (Gatys et al.'s optimization, the default), ``fast`` (a trained
    #: fast-style model, :attr:`fast_model`) or a plugin's method (``nst_register_methods``).
    method: str = "optimize"
    #: The ``fast`` method's model: a ``.nst`` file, or the name of one in the models folders.
    fast_model: str | None = None

    # --- size -----------------------------------------------------------------------------
    #: Long side of the output in pixels; ``None`` keeps the content image's size.
    size: int | None = 512
    #: Style image long side relative to the output's long side.
    style_scale: float = 1.0

    # --- network ----------------------------------------------------------------------------
    #: Feature extractor name (``vgg16``, ``vgg19`` or a plugin's); ``None``: the weights
    #: file's architecture, else ``vgg19`` (the paper's network).
    model: str | None = None
    #: Weights file, or ``"torchvision"`` (PyTorch's weights: nst-core's cache, else a download);
    #: ``None``: ``$NST_CORE_WEIGHTS``, then the embedded weights, then the cache.
    weights: str | None = None
    pooling: str = "avg"

    # --- losses -------------------------------------------------------------------------------
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    #: Relative weight of each style layer (same length as ``style_layers``); ``None``: equal.
    style_layer_weights: tuple[float, ...] | None = None
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 0.1
    #: Blend weights of several style images (same length as the styles); ``None``: equal.
    style_blend: tuple[float, ...] | None = None
    #: The ``instant`` method's strength: 0 paints the photo in its own style (the network's
    #: rendering of the photo, not the photo itself), 1 in the painting's, in between a mix of the
    #: two style vectors (Ghiasi et al.).
    style_strength: float = 1.0
    #: A style per region (Gatys et al. 2017, guided Gram matrices): each
    #: :class:`~nst_core.masks.Region` gives its mask a painting (an index into the styles) or
    #: keeps the photo there; pixels no mask covers keep the photo unless a region with mask
    #: ``None`` (the rest) gives them a painting. Replaces the plain style loss (see
    #: :mod:`nst_core.regions`). Empty: one style everywhere.
    regions: tuple[Region, ...] = ()

    # --- optimization ----------------------------------------------------------------------------
    optimizer: str = "lbfgs"
    #: Steps at the output size; a step is one loss evaluation (one forward and backward pass).
    iterations: int = 50
    #: Sizes optimized at, coarse to fine, each twice the previous side and ending at ``size``
    #: (1: the output size only). See :mod:`nst_core.schedule`.
    scales: int = 1
    #: Steps at each size before the last.
    coarse_iterations: int = 100
    #: Seconds the whole run may take: each size then runs for an equal share of the time left
    #: instead of a step count, and a small budget adds coarser sizes (see
    #: :mod:`nst_core.schedule`). ``None``: no limit.
    time_budget: float | None = None
    #: Adam's initial learning rate, in units of the [0, 1] pixel range.
    learning_rate: float = 0.02
    #: How strongly L-BFGS's search directions favour broad changes over fine ones: the gain of
    #: its smoothing preconditioner (:mod:`nst_core.smoothing`). The loss is the same, only the
    #: path to it changes. 0: plain L-BFGS.
    lbfgs_smoothing: float = 4.0
    #: Start image: ``content``, ``noise``, ``image`` (needs ``init_image``) or a plugin's.
    init: str = "content"
    init_image: str | None = None
    seed: int = 0

    # --- colour -----------------------------------------------------------------------------------
    #: Colour-preservation method (``none`` or a registered method).
    preserve_color: str = "none"
    #: How ``histogram`` and ``histogram-post`` match colours: a linear transfer of mean and
    #: covariance (``chol``, ``pca``, ``sym``) or per-channel ``histogram`` matching.
    color_match: str = "sym"
    #: 0 keeps the style's colours, 1 preserves the photo's fully (see :mod:`nst_core.color`).
    color_strength: float = 1.0

    # --- hardware ---------------------------------------------------------------------------------
    #: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:1`` …
    device: str = "auto"
    #: Network precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast; the image and
    #: losses stay float32).
    precision: str = "auto"
    #: Network memory layout: ``auto`` (measured), ``contiguous`` or ``channels_last``.
    memory_format: str = "auto"
    #: 3×3 convolutions: ``auto`` (measured), ``standard`` or ``winograd`` (CPU, fp32 only).
    convolution: str = "auto"
    #: Bytes of memory the run's work may use (RAM on a CPU, GPU memory on CUDA), besides PyTorch
    #: and the network (about 0.7 GB on a CPU); a size that does not fit is computed in tiles
    #: (see :mod:`nst_core.tiling`). ``None``: half the memory available when the run starts,
    #: on a CPU at most 4.5 GiB. A large image's long run keeps the memory its steps free for the
    #: next step (faster) only where this leaves room for it (:data:`nst_core.optimization.HEAP_MEMORY_SLACK`).
    max_memory: int | None = None

    # --- reporting -------------------------------------------------------------------------------
    #: Report the current best image through ``nst_intermediate`` every N steps (0: never).
    save_every: int = 0

    #: Settings for third-party plugins, by name; nst-core itself never reads them.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ConfigError(f"{setting('method')} must be a name such as 'optimize' or 'fast', got {self.method!r}")
        if self.fast_model is not None:
            if not isinstance(self.fast_model, (str, os.PathLike)) or not os.fspath(self.fast_model):
                raise ConfigError(f"{setting('fast_model')} must be a model file or name, got {self.fast_model!r}")
            object.__setattr__(self, "fast_model", os.fspath(self.fast_model))
        if self.method == "fast" and self.fast_model is None:
            raise ConfigError(f"{setting('method')} fast needs {setting('fast_model')} (a .nst model file, or a model's name)")
        _check_int("size", self.size, minimum=16, maximum=MAX_SIDE, optional=True)
        _check_float("style_scale", self.style_scale, minimum=0.05, maximum=8.0)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("memory_format", self.memory_format, MEMORY_FORMATS)
        _check_choice("convolution", self.convolution, CONVOLUTIONS)
        if self.convolution == "winograd" and self.precision in ("bf16", "fp16"):
            raise ConfigError(f"{setting('convolution')} winograd runs in fp32 only, not {setting('precision')} {self.precision}")
        _check_int("scales", self.scales, minimum=1)
        _check_int("max_memory", self.max_memory, minimum=MIN_MEMORY, optional=True)
        _check_int("coarse_iterations", self.coarse_iterations, minimum=1)
        if self.time_budget is not None:
            _check_float("time_budget", self.time_budget, minimum=0.1, maximum=MAX_TIME_BUDGET)
        _check_choice("color_match", self.color_match, COLOR_MATCHES)
        _check_float("color_strength", self.color_strength, minimum=0.0, maximum=1.0)
        _check_float("style_strength", self.style_strength, minimum=0.0, maximum=1.0)
        for name in ("content_weight", "style_weight", "tv_weight"):
            _check_float(name, getattr(self, name), minimum=0.0)
        _check_float("learning_rate", self.learning_rate, minimum=1e-8, maximum=10.0)
        _check_float("lbfgs_smoothing", self.lbfgs_smoothing, minimum=0.0, maximum=100.0)
        _check_int("iterations", self.iterations, minimum=1)
        _check_int("save_every", self.save_every, minimum=0)
        _check_int("seed", self.seed, minimum=0, maximum=MAX_SEED)
        for name in ("content_layers", "style_layers"):
            layers = _as_tuple(name, getattr(self, name))
            if not all(isinstance(layer, str) and layer for layer in layers):
                raise ConfigError(f"{setting(name)} must be layer names, got {layers!r}")
            if len(set(layers)) != len(layers):
                raise ConfigError(f"{setting(name)} lists a layer twice: {', '.join(layers)}")
            object.__setattr__(self, name, layers)
        if not self.content_layers and not self.style_layers:
            raise ConfigError("at least one content or style layer is needed")
        if self.style_layer_weights is not None:
            weights = _check_weights("style_layer_weights", self.style_layer_weights)
            if len(weights) != len(self.style_layers):
                raise ConfigError(
                    f"{setting('style_layer_weights')} has {len(weights)} values for "
                    f"{len(self.style_layers)} style layers"
                )
            object.__setattr__(self, "style_layer_weights", weights)
        if self.style_blend is not None:
            object.__setattr__(self, "style_blend", _check_weights("style_blend", self.style_blend))
        object.__setattr__(self, "regions", check_regions(self.regions))
        if self.regions and self.style_blend is not None:
            raise ConfigError(f"{setting('style_blend')} and {setting('regions')} do not mix: each region has one painting")
        if self.init == "image" and not self.init_image:
            raise ConfigError(f"{setting('init')} image needs {setting('init_image')} (a path to the start image)")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"{setting('device')} must be a name such as 'cpu' or 'cuda', got {self.device!r}")
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name, as plain values (``extra`` a dict): ``Config(**config.as_dict())``
        is the same config."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["extra"] = dict(self.extra)
        return values

    def __reduce__(self) -> tuple:
        # pickled field by field (``extra`` is a read-only mapping, which pickle cannot copy),
        # so a config travels to other processes (batch workers) and is checked again there
        return (_config_from_fields, (self.as_dict(),))


def _config_from_fields(fields: dict[str, Any]) -> Config:
    return Config(**fields)


def _as_tuple(name: str, value: Any) -> tuple:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{setting(name)} must be a sequence, got {value!r}")
    return tuple(value)


def _check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{setting(name)} must be a whole number, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{setting(name)} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{setting(name)} must be at most {maximum}, got {value}")


def _check_float(name: str, value: Any, *, minimum: float, maximum: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{setting(name)} must be a finite number, got {value!r}")
    if not minimum <= value <= maximum:
        bounds = f"at least {minimum}" if maximum == math.inf else f"between {minimum} and {maximum:g}"
        raise ConfigError(f"{setting(name)} must be {bounds}, got {value}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{setting(name)} must be one of {', '.join(choices)}; got {value!r}")


def _check_weights(name: str, values: Any) -> tuple[float, ...]:
    weights = _as_tuple(name, values)
    for value in weights:
        _check_float(name, value, minimum=0.0)
    if not weights or sum(weights) <= 0:
        raise ConfigError(f"{setting(name)} must hold at least one positive value, got {weights!r}")
    return tuple(float(w) for w in weights)


#: Speed/quality presets: the settings each changes from :class:`Config`'s defaults. Chosen by
#: measuring time to quality (see ``benchmarks/`` and the README). Every preset starts from the
#: instant result: after 15 steps the paper's objective was 28-35 % lower than from the photo on 3
#: of 4 pairs and equal on the fourth (benchmarks/instant_start.py); over 6 pairs at 256 px
#: (benchmarks/pairs.py) it reached the textbook baseline's quality sooner on every pair.
#: ``Config()`` itself still starts from the photo (the engine's API is not the command's preset).
#: ``balanced`` takes 40 steps, chosen from the median of 6 pairs at 512 px (benchmarks/pairs.py,
#: stop 28's run): the median pair reaches the textbook baseline's 300-evaluation quality after 37
#: steps. 40 steps end 2.7-3.7 % above 50 steps' loss on every pair (the issue allows 10 %) and
#: take a fifth less time (README, "Glue, stop 30").
PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "preview": MappingProxyType({"iterations": 15, "init": "instant"}),
    "balanced": MappingProxyType({"iterations": 40, "init": "instant"}),
    "best": MappingProxyType({"iterations": 150, "init": "instant"}),
})
DEFAULT_PRESET = "balanced"


def preset_config(preset: str, **settings: Any) -> Config:
    """A :class:`Config` from a preset's settings, overridden by ``settings``."""
    _check_choice("preset", preset, tuple(PRESETS))
    return Config(**{**PRESETS[preset], **settings})


def describe_preset(preset: str) -> str:
    """``preset``'s plan in words, e.g. ``3 sizes, 100 steps each then 60 at full size``."""
    config = Config(**PRESETS[preset])
    start = " from the instant result" if config.init == "instant" else ""
    if config.scales == 1:
        return f"{config.iterations} steps at full size{start}"
    return (
        f"{config.scales} sizes, {config.coarse_iterations} steps at each smaller one, "
        f"{config.iterations} at full size{start}"
    )
