"""Small immutable records the engine hands to front ends: plans, progress and results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType({key: float(value) for key, value in mapping.items()})


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What a run is going to do, known before its first step (see ``nst_plan``)."""

    #: The method's name (``optimize``, ``fast`` …).
    method: str
    #: ``(WIDTHxHEIGHT, steps)`` of each size worked at, coarse to fine.
    stages: tuple[tuple[str, int], ...] = ()
    #: Whether a time budget decides the steps (then :attr:`total` is what the plan would take
    #: without it, and progress records carry the budget's own estimate).
    budgeted: bool = False

    @property
    def total(self) -> int:
        """Steps planned in all (0 for a method without steps, such as one network pass)."""
        return sum(steps for _, steps in self.stages)

    @property
    def size(self) -> str:
        """``WIDTHxHEIGHT`` of the result."""
        return self.stages[-1][0] if self.stages else ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this record."""
        return {
            "method": self.method,
            "total": self.total,
            "stages": [{"size": size, "steps": steps} for size, steps in self.stages],
            "budgeted": self.budgeted,
        }


@dataclass(frozen=True, kw_only=True)
class Progress:
    """Where a run stands after one step (one loss evaluation)."""

    #: 1-based number of the step just done.
    step: int
    #: Steps the run will take unless cancelled.
    total: int
    #: Weighted loss of each term by name (``content``, ``style``, ``tv`` …) and their ``total``.
    losses: Mapping[str, float]
    #: Seconds since the run started (set-up included).
    elapsed: float
    #: What the run is doing: ``optimize``.
    stage: str = "optimize"
    #: Which size of a coarse-to-fine run this step was at (1-based), of how many.
    scale: int = 1
    scales: int = 1
    #: ``WIDTHxHEIGHT`` optimized at in this step.
    size: str = ""
    #: Seconds left as the engine estimates them (stage sizes and time budget known);
    #: ``None``: :attr:`eta` extrapolates from the steps done.
    remaining: float | None = None
    #: Within a step of a tiled size: tiles done of the step's ``tiles`` (two passes over the
    #: grid); 0 of 0 for a step's own report and for sizes computed whole.
    tile: int = 0
    tiles: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "losses", _frozen(self.losses))

    @property
    def fraction(self) -> float:
        """Share of the run done, in ``[0, 1]`` (by time where the time left is known)."""
        if self.remaining is not None and self.elapsed + self.remaining > 0:
            return min(1.0, self.elapsed / (self.elapsed + self.remaining))
        return min(1.0, self.step / self.total) if self.total else 1.0

    @property
    def eta(self) -> float | None:
        """Estimated seconds left, or ``None`` before the first step."""
        if self.remaining is not None:
            return self.remaining
        if self.step <= 0:
            return None
        return self.elapsed / self.step * max(0, self.total - self.step)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this record."""
        return {
            "step": self.step,
            "total": self.total,
            "stage": self.stage,
            "scale": self.scale,
            "scales": self.scales,
            "size": self.size,
            "tile": self.tile,
            "tiles": self.tiles,
            "losses": dict(self.losses),
            "elapsed": round(self.elapsed, 3),
            "eta": None if self.eta is None else round(self.eta, 3),
            "fraction": round(self.fraction, 4),
        }


@dataclass(frozen=True, kw_only=True, eq=False)
class Result:
    """The outcome of a run."""

    #: ``H×W×3`` float32 ``numpy`` array in ``[0, 1]``: the best image reached.
    image: Any
    #: Weighted losses of the best image (same keys as :attr:`Progress.losses`).
    losses: Mapping[str, float]
    #: Steps done.
    steps: int
    #: Step at which the best image was reached.
    best_step: int
    #: Seconds the whole run took.
    elapsed: float
    #: ``True`` when a ``nst_should_cancel`` hook stopped the run early.
    cancelled: bool = False
    #: Description of what ran (model, weights source, device, precision).
    info: Mapping[str, str] = field(default_factory=dict)
    #: Alpha channel (``H×W`` float32) put back on the output, if the content had one.
    alpha: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "losses", _frozen(self.losses))
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))
