"""The perceptual objective of a run or a training: which network, which loss terms, which layers.

The optimization (:mod:`nst_core.optimization`) and fast-style training
(:mod:`nst_core.fast.training`) minimise the same objective; :func:`build_objective` makes it
for both from a :class:`~nst_core.config.Config` and the registries, so that a third-party
network or loss term takes part in either the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .config import Config
from .errors import ConfigError
from .features import check_layers
from .registry import ExtractorSpec

#: The network of a run that names none and whose weights file does not say (the paper's).
DEFAULT_MODEL = "vgg19"


@dataclass(frozen=True, eq=False)
class Objective:
    """The network and the loss terms of one run (the terms hold that run's targets)."""

    #: The extractor's registered name.
    model: str
    spec: ExtractorSpec
    #: The loss terms that take part, by name (factories that returned ``None`` are left out).
    terms: Mapping[str, Any]

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer a term reads, in network order; the first layer if none reads any (the
        network still needs one to be built)."""
        order = self.spec.layer_names
        read = sorted({name for term in self.terms.values() for name in term.layers}, key=order.index)
        return tuple(read) or (order[0],)

    @property
    def content_target_layers(self) -> tuple[str, ...]:
        """Layers whose content-image features the terms need as targets, in network order."""
        wanted = {name for term in self.terms.values() for name in getattr(term, "content_target_layers", term.layers)}
        return tuple(sorted(wanted, key=self.spec.layer_names.index))

    def build_extractor(self, config: Config, device: torch.device, layers: Sequence[str] | None = None) -> Any:
        """The feature network for ``layers`` (default: :attr:`layers`) on ``device``."""
        return self.spec.build(config=config, layers=list(layers or self.layers), device=device)


def build_objective(config: Config, registries: Any, *, default_model: str = DEFAULT_MODEL) -> Objective:
    """The objective ``config`` asks for: the network (``config.model``, else the weights file's,
    else ``default_model``), its layers checked, and every registered loss term that is on."""
    from .weights import infer_model

    model = config.model or infer_model(config) or default_model
    spec = registries.extractors.get(model)
    check_layers(config.content_layers, spec.layer_names, model=model)
    check_layers(config.style_layers, spec.layer_names, model=model)
    terms = {name: term for name, factory in registries.losses.items() if (term := factory(config)) is not None}
    if not terms:
        raise ConfigError("every loss weight is zero: nothing to optimize")
    return Objective(model=model, spec=spec, terms=terms)
