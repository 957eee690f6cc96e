import math

import pytest
import torch

from nst_core import Config, OptimizationError
from nst_core.optim import optimize

from .test_cli import config_of


def _quadratic(target, scale):
    def objective(image):
        loss = scale * torch.sum((image - target) ** 2)
        return loss, {"quad": loss}

    return objective


@pytest.mark.parametrize("smoothing", [0.0, 2.0])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e9])
def test_lbfgs_converges_whatever_the_loss_scale(scale, smoothing):
    torch.manual_seed(0)
    target = torch.rand(1, 3, 8, 8)
    start = torch.zeros_like(target)
    outcome = optimize(start, _quadratic(target, scale), optimizer="lbfgs", iterations=30, learning_rate=0.02, on_step=lambda *a: False,
                       smoothing=smoothing)
    assert torch.allclose(outcome.best_image, target, atol=1e-3)
    assert outcome.steps <= 30


def test_adam_reduces_the_loss_and_keeps_pixels_in_range():
    target = torch.full((1, 3, 4, 4), 1.5)  # out of range: Adam's image is clamped to [0, 1]
    totals = []
    outcome = optimize(
        torch.zeros_like(target), _quadratic(target, 1.0), optimizer="adam", iterations=60, learning_rate=0.1,
        on_step=lambda step, losses, best: totals.append(losses["total"]) or False,
    )
    assert totals[-1] < totals[0] / 2
    assert outcome.best_image.max() <= 1.0


def test_best_image_is_returned_not_the_last():
    planned = [5.0, 2.0, 3.0, 4.0, 6.0]  # the loss is lowest at step 2, then rises
    seen = []

    def objective(image):
        seen.append(image.detach().clone())
        loss = 1e-3 * image.sum() + planned[len(seen) - 1]
        return loss, {"planned": loss}

    outcome = optimize(torch.full((1, 3, 4, 4), 0.5), objective,
                       optimizer="adam", iterations=5, learning_rate=0.1, on_step=lambda *a: False)
    assert outcome.steps == 5 and outcome.best_step == 2
    assert outcome.best_losses["total"] == pytest.approx(2.0 + 1e-3 * seen[1].sum().item())
    assert torch.equal(outcome.best_image, seen[1])
    assert not torch.equal(outcome.best_image, seen[-1])


def test_nan_loss_is_a_clear_error():
    calls = []

    def objective(image):
        calls.append(1)
        loss = image.sum() * (math.nan if len(calls) == 3 else 1.0)
        return loss, {"x": loss}

    with pytest.raises(OptimizationError, match="the loss became nan at step 3"):
        optimize(torch.rand(1, 3, 4, 4), objective, optimizer="adam", iterations=10, learning_rate=0.02, on_step=lambda *a: False)


def test_callback_can_stop_the_run():
    outcome = optimize(
        torch.zeros(1, 3, 4, 4), _quadratic(torch.ones(1, 3, 4, 4), 1.0), optimizer="lbfgs", iterations=100, learning_rate=0.02,
        on_step=lambda step, losses, best: step >= 2,
    )
    assert outcome.cancelled and outcome.steps == 2


def test_smoothing_preconditioner_is_symmetric_positive_definite_and_lifts_broad_changes():
    from nst_core.smoothing import smoothing_preconditioner

    shape = torch.Size((1, 3, 24, 40))
    apply = smoothing_preconditioner(shape, 2.0, device=torch.device("cpu"))
    torch.manual_seed(0)
    v, w = torch.randn(2, shape.numel())
    identity = smoothing_preconditioner(shape, 0.0, device=torch.device("cpu"))  # plain L-BFGS
    assert torch.equal(identity(v), v) and identity(v) is not v
    same = v.clone()
    assert identity(same, out=same) is same and torch.equal(same, v)
    into = w.clone()
    assert torch.equal(apply(w, out=into), apply(w)) and not torch.equal(into, w)  # into out, same result
    apply(into.copy_(w), out=into)
    assert torch.equal(into, apply(w))  # in place
    assert float(v.dot(apply(w))) == pytest.approx(float(w.dot(apply(v))), rel=1e-4)  # symmetric
    assert float(v.dot(apply(v))) > float(v.dot(v))  # P = I + (positive semi-definite)
    broad = torch.ones(shape).reshape(-1)  # a flat change is lifted far more than pixel noise
    noise = torch.randn(shape.numel())
    assert float(broad.dot(apply(broad)) / broad.dot(broad)) > 5 * float(noise.dot(apply(noise)) / noise.dot(noise))


def _edge_loss(target):
    """A loss that, like a style loss, feels fine detail strongly and broad areas weakly: the image
    differences' squared sum, plus a little of the plain squared error."""
    def objective(image):
        error = image - target
        loss = (error.diff(dim=-1) ** 2).sum() + (error.diff(dim=-2) ** 2).sum() + 1e-3 * (error**2).sum()
        return loss, {"edges": loss}

    return objective


def test_smoothing_reaches_a_lower_loss_where_broad_changes_are_felt_weakly():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 32, 32)
    finals = {}
    for gain in (0.0, 2.0):
        totals = []
        optimize(torch.zeros_like(target), _edge_loss(target), optimizer="lbfgs", iterations=15, learning_rate=0.02,
                 on_step=lambda step, losses, best: totals.append(losses["total"]) or False, smoothing=gain)
        finals[gain] = min(totals)
    assert finals[2.0] < 0.85 * finals[0.0], finals  # measured: 0.76×


def test_the_command_line_sets_the_smoothing():
    assert config_of().lbfgs_smoothing == Config().lbfgs_smoothing > 0  # every preset keeps the default
    assert config_of("--lbfgs-smoothing", "0").lbfgs_smoothing == 0.0
    assert config_of("--preset", "best", "--lbfgs-smoothing", "8").lbfgs_smoothing == 8.0


@pytest.mark.parametrize("magnitude", [1e-12, 1.0, 1e12])
def test_lbfgs_history_keeps_vectors_in_half_precision_at_any_magnitude(magnitude):
    from nst_core.optim import _HalfVector

    torch.manual_seed(0)
    vector, other = torch.randn(10_000) * magnitude, torch.randn(10_000)
    kept = _HalfVector(vector)
    assert kept.values.dtype == torch.float16 and kept.values.numel() == vector.numel()  # half of fp32's bytes
    assert (kept.restored(torch.float32) - vector).abs().max() <= vector.abs().max() * 2**-11
    assert kept.dot(other) == pytest.approx(float(vector.dot(other)), rel=1e-3)
    target = torch.zeros(10_000)
    kept.add_to(target, 2.0)
    assert torch.allclose(target, 2 * vector, rtol=0, atol=float(vector.abs().max()) * 2**-10)


def test_lbfgs_with_its_half_precision_history_does_as_well_as_with_a_float32_one(monkeypatch):
    from nst_core import optim

    torch.manual_seed(0)
    target = torch.rand(1, 3, 8, 8)
    curvature = torch.logspace(0, 3, target.numel()).reshape(target.shape)  # condition number 10³

    def objective(image):
        loss = torch.sum(curvature * (image - target) ** 2)
        return loss, {"quad": loss}

    errors = {}
    for dtype in (torch.float16, torch.float32):
        monkeypatch.setattr(optim, "HISTORY_DTYPE", dtype)
        outcome = optimize(torch.zeros_like(target), objective, optimizer="lbfgs", iterations=80, learning_rate=0.02,
                           on_step=lambda *a: False)
        errors[dtype] = float((outcome.best_image - target).abs().max())
    assert errors[torch.float32] < 0.1  # 0.6 from the start
    assert errors[torch.float16] <= 1.5 * errors[torch.float32]
