"""What plugins register, and the registries that hold it.

The registration hooks in :mod:`nst_core.hookspecs` receive :meth:`Registry.register`; the
protocols below say what each kind of registered thing must provide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from .errors import ConfigError, PluginError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .config import Config
    from .plugins import RunContext
    from .records import Result

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class ExtractorSpec:
    """A feature extractor: its layer names in network order and how to build it."""

    #: Every layer name the extractor can return, in the order the network computes them.
    layer_names: tuple[str, ...]
    #: ``build(*, config, layers, device)`` → ``torch.nn.Module`` mapping a ``1×3×H×W`` image in
    #: ``[0, 1]`` to ``{layer: activation}`` for ``layers``; frozen, in eval mode.
    build: Callable[..., Any]
    #: One line for ``--help`` and ``weights list``.
    description: str = ""


@runtime_checkable
class LossTerm(Protocol):
    """One term of the total loss, made for one run by a registered factory."""

    #: Multiplier of this term in the total loss.
    weight: float
    #: Feature layers the term reads (may be empty, e.g. for total variation).
    layers: tuple[str, ...]

    def set_content_targets(self, features: Mapping[str, torch.Tensor]) -> None:
        """Take what the term needs from the content image's features."""

    def set_style_targets(
        self, features: Sequence[Mapping[str, torch.Tensor]], blend: Sequence[float]
    ) -> None:
        """Take what the term needs from each style image's features (blend weights sum to 1)."""

    def __call__(self, image: torch.Tensor, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The unweighted loss (a scalar tensor) of ``image`` with its ``features``."""


@runtime_checkable
class TileableLossTerm(LossTerm, Protocol):
    """A loss term that an image too large for memory can be evaluated for in tiles.

    Its loss must be a function of statistics that add up over disjoint parts of the feature
    maps (see :mod:`nst_core.tiling`); the built-in content and style terms are such terms. A
    term that reads features without these methods works on images that fit in memory whole.

    Two optional methods (any term): ``set_image_size(hw)``, called with the image's
    ``(height, width)`` before each size's targets are set (the regions' masks are resized
    there), and ``partial_style_statistics(features, part)``, a painting's statistics when they
    differ from the output's (used when a painting is summed in tiles; default
    ``partial_statistics``). See :mod:`nst_core.regions`.
    """

    #: Layers whose whole-image content features :meth:`set_content_targets` needs; when tiling,
    #: only these are assembled (a whole map of ``relu1_1`` would cost 256 bytes per pixel).
    content_target_layers: tuple[str, ...]

    def partial_statistics(
        self, features: Mapping[str, torch.Tensor], part: Any
    ) -> dict[str, torch.Tensor]:
        """Statistics of the part of the image that ``features`` cover, which add up over parts.

        ``part`` is a :class:`nst_core.parts.Part` or :data:`nst_core.parts.WHOLE`; its
        ``crop(layer, whole_map)`` gives the part's region of a whole-image map (a target).
        """

    def loss_from_statistics(self, statistics: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The unweighted loss from statistics summed over all parts (differentiable)."""

    def set_style_statistics(
        self, statistics: Sequence[Mapping[str, torch.Tensor]], blend: Sequence[float]
    ) -> None:
        """Take the style targets from each style image's summed statistics."""


@runtime_checkable
class ColorMethod(Protocol):
    """A colour-preservation method. Images are ``H×W×3`` float32 arrays in ``[0, 1]``."""

    #: One line for ``--help``.
    description: str

    def prepare(
        self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:
        """Images to optimize with, plus any state :meth:`finish` needs.

        If the state has a ``notice`` attribute that is a non-empty string, the engine passes it
        to the ``nst_notice`` hook once per run.
        """

    def finish(self, output: np.ndarray, content: np.ndarray, state: Any, *, config: Config) -> np.ndarray:
        """The final image from the optimized one (``content`` at the output's size)."""


@runtime_checkable
class Method(Protocol):
    """A way to paint a photo: the optimization, a trained fast style, a plugin's network …

    A method object lives as long as the process and is shared by every run: what it loads
    (networks, weights) it may keep between runs, keyed by what the settings ask for, so that
    a batch worker or a preview server pays for loading once.
    """

    #: One line for ``--help``.
    description: str
    #: Whether the method paints with style images (else with something the config names,
    #: such as ``Config.fast_model``); front ends then ask for style images or not.
    uses_styles: bool
    #: Optional, default ``False``: whether front ends should paint at the photo's own size when
    #: no size is asked for (one-pass methods: their time grows gently with the size).
    full_size: bool
    #: Optional, default ``False``: whether the method starts from ``Config.init``'s image and
    #: minimises the registered loss terms (the ``optimize`` method). The video frame loop then
    #: passes the previous frame, warped, as the start and adds a temporal loss term; for other
    #: methods it blends the warped previous frame into the result (:mod:`nst_core.video`).
    warm_start: bool

    def run(
        self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config, run: RunContext
    ) -> Result:
        """Paint ``content`` (``H×W×3`` float32 in ``[0, 1]``) and return the result.

        ``styles`` are the style images (empty for a method that does not use them). Report
        through ``run.hook`` (``nst_plan`` first, then ``nst_progress``, ``nst_notice`` …; the
        engine calls ``nst_result``), and stop early when ``run.cancelled()`` says so.
        """


class Registry(Generic[T]):
    """Things of one kind by name, filled by a registration hook."""

    def __init__(self, kind: str, check: Callable[[Any], bool], expected: str) -> None:
        self.kind = kind
        self._check = check
        self._expected = expected
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> None:
        """Add ``item`` under ``name``; a plugin calls this from its registration hook."""
        if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
            raise PluginError(f"{self.kind} name must be a word such as 'my_method', got {name!r}")
        if name in self._items:
            raise PluginError(f"two plugins register a {self.kind} named {name!r}")
        if not self._check(item):
            raise PluginError(f"{self.kind} {name!r} is not {self._expected}: got {type(item).__name__}")
        self._items[name] = item

    def get(self, name: str) -> T:
        """The item called ``name``; a :class:`ConfigError` listing the choices if there is none."""
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
