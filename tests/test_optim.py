import math

import pytest
import torch

from nst_core import OptimizationError
from nst_core.optim import optimize


def _quadratic(target, scale):
    def objective(image):
        loss = scale * torch.sum((image - target) ** 2)
        return loss, {"quad": loss}

    return objective


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e9])
def test_lbfgs_converges_whatever_the_loss_scale(scale):
    torch.manual_seed(0)
    target = torch.rand(1, 3, 8, 8)
    start = torch.zeros_like(target)
    outcome = optimize(start, _quadratic(target, scale), optimizer="lbfgs", iterations=30, learning_rate=0.02, on_step=lambda *a: False)
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
