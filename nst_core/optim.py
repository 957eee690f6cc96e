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
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch.optim.lbfgs import _strong_wolfe  # a plain function: no torch._dynamo import

from .errors import OptimizationError, setting
from .smoothing import Preconditioner, smoothing_preconditioner

#: ``objective(image) -> (total loss, {term: weighted loss})``.
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]
#: ``on_step(step, losses, best_image) -> stop?``; ``best_image()`` returns the best image so far.
StepCallback = Callable[[int, Mapping[str, float], Callable[[], torch.Tensor]], bool]

LBFGS_HISTORY = 50
#: L-BFGS's correction pairs are kept in this precision (:class:`_HalfVector`), half of fp32's
#: memory: at 1024×768 a pair is 19 MB in fp32, and the 40 steps of the default preset keep 30–40.
#: Loss after 40 steps at 256 px, the 6 pairs of ``benchmarks.pairs``, against fp32 pairs (AMD
#: EPYC): 0.9997–1.004×, median 1.0003×; bf16 (also scaled) instead: 0.998–1.0036×.
HISTORY_DTYPE = torch.float16
#: Largest pixel change of L-BFGS's first trial step (pixels in [0, 1]). Measured on
#: tubingen × starry night at 256 px, total loss after 10/30 steps: 1.40/0.964 with torch's
#: 1/‖g‖₁ rule, 1.28/0.959 (0.05), 1.20/0.953 (0.2), 1.18/0.951 (0.5), 1.24/0.960 (1.0).
FIRST_MOVE = 0.5


@dataclass(frozen=True)
class Outcome:
    """What :func:`optimize` reached."""

    best_image: torch.Tensor
    best_losses: Mapping[str, float]
    best_step: int
    steps: int
    cancelled: bool


class _HalfVector:
    """A flat vector kept in :data:`HISTORY_DTYPE`, divided by its largest magnitude (fp16's range
    holds neither a gradient's tiny changes nor every loss scale's unscaled)."""

    __slots__ = ("values", "scale")

    def __init__(self, vector: torch.Tensor) -> None:
        self.scale = float(vector.abs().max()) or 1.0
        self.values = (vector / self.scale).to(HISTORY_DTYPE)

    def restored(self, dtype: torch.dtype) -> torch.Tensor:
        return self.values.to(dtype) * self.scale

    def dot(self, other: torch.Tensor) -> float:
        return float(self.values.to(other.dtype).dot(other)) * self.scale

    def add_to(self, target: torch.Tensor, alpha: float) -> None:
        """``target += alpha · self``, in place."""
        target.add_(self.values.to(target.dtype), alpha=alpha * self.scale)


class StopOptimization(Exception):
    """Raised inside an evaluation to end the run now (steps used up, cancelled, out of time).

    An objective may raise it too, e.g. between the tiles of a long evaluation; the best image
    of the steps completed is kept.
    """


class _Tracker:
    """Evaluates the objective, counts steps, keeps the best image, reports each step."""

    def __init__(self, objective: Objective, total: int, on_step: StepCallback, *, advice: str) -> None:
        self.objective = objective
        #: What to try when the loss stops being finite (it depends on the optimizer).
        self.advice = advice
        self.total = total
        self.on_step = on_step
        self.steps = 0
        self.best_image: torch.Tensor | None = None
        self.best_losses: dict[str, float] = {}
        self.best_total = math.inf
        self.best_step = 0
        self.cancelled = False

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        """Loss at ``image`` with its gradient in ``image.grad``; raises :class:`StopOptimization` when done."""
        if self.steps >= self.total or self.cancelled:
            raise StopOptimization
        total, terms = self.objective(image)
        value = float(total.detach())
        if not math.isfinite(value):
            raise OptimizationError(f"the loss became {value} at step {self.steps + 1}; {self.advice}")
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

    def outcome(self, start: torch.Tensor) -> Outcome:
        """What was reached; the start image if no step was completed."""
        best = self.best_image if self.best_image is not None else start.detach().clone()
        return Outcome(best, self.best_losses, self.best_step, self.steps, self.cancelled)


def optimize(
    start: torch.Tensor,
    objective: Objective,
    *,
    optimizer: str,
    iterations: int,
    learning_rate: float,
    on_step: StepCallback,
    horizon: int | None = None,
    history: int = LBFGS_HISTORY,
    smoothing: float = 0.0,
) -> Outcome:
    """Minimize ``objective`` from ``start`` for ``iterations`` steps; return the best image.

    ``optimizer`` is ``lbfgs`` or ``adam`` (``learning_rate`` is Adam's). The run also ends
    when ``on_step`` returns ``True`` (cancelled, or out of time) or L-BFGS converges.
    ``horizon`` is the step count Adam's learning rate decays over (default ``iterations``);
    ``history`` the number of L-BFGS correction pairs kept (each holds two image-sized vectors in fp16);
    ``smoothing`` the gain of L-BFGS's preconditioner (:mod:`nst_core.smoothing`; 0: none).
    """
    image = start.detach().clone().requires_grad_(True)
    lower = f"lower {setting('style_weight')}"
    advice = (f"{lower} or {setting('learning_rate')}, or set {setting('optimizer')} to lbfgs"
              if optimizer == "adam" else f"{lower}, or start from another image ({setting('init')})")
    tracker = _Tracker(objective, iterations, on_step, advice=advice)
    if optimizer == "lbfgs":
        precondition = smoothing_preconditioner(image.shape, smoothing, device=image.device)
        _run_lbfgs(image, tracker, history_size=history, precondition=precondition)
    else:
        _run_adam(image, tracker, learning_rate=learning_rate, horizon=horizon or iterations)
    return tracker.outcome(start)


def _run_lbfgs(image: torch.Tensor, tracker: _Tracker, *, history_size: int,
               precondition: Preconditioner) -> None:
    """L-BFGS (two-loop recursion) with PyTorch's strong-Wolfe line search, on the flat image.

    ``precondition`` is the initial inverse-Hessian guess up to scale (a symmetric positive
    definite operator on flat images; the identity for plain L-BFGS).

    Written here rather than using ``torch.optim.LBFGS`` because constructing any
    ``torch.optim`` optimizer imports ``torch._dynamo``, which costs as much as importing torch
    itself (2–3 s per run) and buys nothing here.
    """
    shape = image.shape

    def evaluate(flat: torch.Tensor) -> tuple[float, torch.Tensor]:
        point = flat.view(shape).detach().requires_grad_(True)
        loss = tracker.evaluate(point)
        return float(loss.detach()), point.grad.reshape(-1)

    def along(start: torch.Tensor, step: float, direction: torch.Tensor) -> tuple[float, torch.Tensor]:
        return evaluate(start + step * direction)

    history: deque[tuple[_HalfVector, _HalfVector, float]] = deque(maxlen=max(1, history_size))
    h_diag = 1.0
    try:
        x = image.detach().reshape(-1).clone()
        loss, grad = evaluate(x)
        direction = precondition(grad).neg_()
        # first step: the largest pixel change FIRST_MOVE (in [0, 1] pixel units), whatever the
        # loss scale; torch's rule (1/‖g‖₁) is so short on a whole image that the line search
        # spends the first 5–6 evaluations only growing it
        step = FIRST_MOVE / max(float(direction.abs().max()), 1e-30)
        while True:
            slope = float(grad.dot(direction))
            if slope > -1e-20:  # not a descent direction any more: converged
                break
            new_loss, new_grad, step, _ = _strong_wolfe(along, x, step, direction, loss, grad, slope)
            move = direction * step
            x = x + move
            change = new_grad - grad
            kept_change, kept_move = _HalfVector(change), _HalfVector(move)
            # the curvature of the pair as kept, so that every stored pair keeps H positive definite
            curvature = kept_change.dot(kept_move.restored(change.dtype))
            if curvature > 1e-10:
                history.append((kept_change, kept_move, 1.0 / curvature))
                h_diag = curvature / float(change.dot(precondition(change)))
            del change, move
            loss, grad = new_loss, new_grad
            direction = _two_loop(grad, history, h_diag, precondition)
            step = 1.0
    except StopOptimization:
        pass


def _two_loop(grad: torch.Tensor, history, h_diag: float, precondition: Preconditioner) -> torch.Tensor:
    """The L-BFGS search direction ``-H·grad`` from the stored (y, s, 1/yᵀs) pairs of
    :class:`_HalfVector`, starting from ``H₀ = h_diag · precondition``."""
    q = grad.neg()
    alphas = []
    for change, move, rho in reversed(history):
        alpha = move.dot(q) * rho
        change.add_to(q, -alpha)
        alphas.append(alpha)
    r = precondition(q, out=q).mul_(h_diag)
    for (change, move, rho), alpha in zip(history, reversed(alphas)):
        beta = change.dot(r) * rho
        move.add_to(r, alpha - beta)
    return r


def _run_adam(image: torch.Tensor, tracker: _Tracker, *, learning_rate: float, horizon: int) -> None:
    """Adam with a cosine learning-rate decay to 5 % over ``horizon`` steps, the image kept in [0, 1]."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    floor = learning_rate * 0.05
    x = image.detach().clone()
    mean = torch.zeros_like(x)
    square = torch.zeros_like(x)
    try:
        for k in range(1, tracker.total + 1):
            point = x.requires_grad_(True)
            tracker.evaluate(point)
            grad = point.grad
            x = point.detach()
            progress = min(1.0, (k - 1) / horizon)
            rate = floor + (learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * progress))
            mean.mul_(beta1).add_(grad, alpha=1 - beta1)
            square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            corrected = mean / (1 - beta1**k)
            scale = (square / (1 - beta2**k)).sqrt_().add_(eps)
            x.addcdiv_(corrected, scale, value=-rate).clamp_(0.0, 1.0)
    except StopOptimization:
        pass
