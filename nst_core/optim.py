"""The optimization loop: L-BFGS (strong-Wolfe line search) or Adam, best-so-far, NaN guard.

One *step* is one evaluation of the objective (a forward and backward pass of the network):
that is what costs time, so it is what ``Config.iterations`` counts and what progress reports,
for either optimizer.

L-BFGS uses a strong-Wolfe line search. With a fixed step length, L-BFGS stalls on some image
pairs when the loss has a large scale; the line search, together with the relative losses of
:mod:`nst_core.losses`, makes the default settings work for any image pair, size and network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .config import Config
from .errors import OptimizationError

#: ``objective(image) -> (total loss, {term: weighted loss})``.
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]
#: ``on_step(step, losses, best_image) -> stop?``; ``best_image()`` returns the best image so far.
StepCallback = Callable[[int, Mapping[str, float], Callable[[], torch.Tensor]], bool]

LBFGS_HISTORY = 50


@dataclass(frozen=True)
class Outcome:
    """What :func:`optimize` reached."""

    best_image: torch.Tensor
    best_losses: Mapping[str, float]
    best_step: int
    steps: int
    cancelled: bool


class _Stop(Exception):
    """Raised inside the L-BFGS closure to end the run (step budget reached or cancelled)."""


class _Tracker:
    """Evaluates the objective, counts steps, keeps the best image, reports each step."""

    def __init__(self, objective: Objective, total: int, on_step: StepCallback) -> None:
        self.objective = objective
        self.total = total
        self.on_step = on_step
        self.steps = 0
        self.best_image: torch.Tensor | None = None
        self.best_losses: dict[str, float] = {}
        self.best_total = math.inf
        self.best_step = 0
        self.cancelled = False

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        """Loss at ``image`` with its gradient in ``image.grad``; raises :class:`_Stop` when done."""
        if self.steps >= self.total or self.cancelled:
            raise _Stop
        total, terms = self.objective(image)
        value = float(total.detach())
        if not math.isfinite(value):
            raise OptimizationError(
                f"the loss became {value} at step {self.steps + 1}; "
                "lower the style weight or the learning rate, or use --optimizer lbfgs"
            )
        total.backward()
        self.steps += 1
        losses = {name: float(term.detach()) for name, term in terms.items()}
        losses["total"] = value
        if value < self.best_total:
            self.best_total, self.best_losses, self.best_step = value, losses, self.steps
            self.best_image = image.detach().clone()
        if self.on_step(self.steps, losses, self.best):
            self.cancelled = True
        return total

    def best(self) -> torch.Tensor:
        assert self.best_image is not None
        return self.best_image

    def outcome(self) -> Outcome:
        return Outcome(self.best(), self.best_losses, self.best_step, self.steps, self.cancelled)


def optimize(start: torch.Tensor, objective: Objective, *, config: Config, on_step: StepCallback) -> Outcome:
    """Minimize ``objective`` from ``start`` for ``config.iterations`` steps; return the best image."""
    image = start.detach().clone().requires_grad_(True)
    tracker = _Tracker(objective, config.iterations, on_step)
    if config.optimizer == "lbfgs":
        _run_lbfgs(image, tracker)
    else:
        _run_adam(image, tracker, learning_rate=config.learning_rate)
    return tracker.outcome()


def _run_lbfgs(image: torch.Tensor, tracker: _Tracker) -> None:
    optimizer = torch.optim.LBFGS(
        [image],
        lr=1.0,
        max_iter=tracker.total,
        max_eval=tracker.total * 2,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=LBFGS_HISTORY,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=False)
        return tracker.evaluate(image)

    try:
        while tracker.steps < tracker.total and not tracker.cancelled:
            before = tracker.steps
            optimizer.step(closure)
            if tracker.steps == before:  # converged: nothing more to gain
                break
    except _Stop:
        pass


def _run_adam(image: torch.Tensor, tracker: _Tracker, *, learning_rate: float) -> None:
    """Adam with a cosine learning-rate decay to 5 %, the image kept within [0, 1]."""
    optimizer = torch.optim.Adam([image], lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=tracker.total, eta_min=learning_rate * 0.05
    )
    try:
        while tracker.steps < tracker.total and not tracker.cancelled:
            optimizer.zero_grad(set_to_none=False)
            tracker.evaluate(image)
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                image.clamp_(0.0, 1.0)
    except _Stop:
        pass
