"""Fast styles: the transformation network, model files and training (tiny networks, tiny images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nst_core import hookimpl
from nst_core.errors import ConfigError, InputError
from nst_core.fast import (
    NetworkShape,
    TrainingSettings,
    TransformNet,
    load_model,
    save_model,
    stylize_fast,
    train,
    training_config,
)
from nst_core.fast.model_file import FORMAT, VERSION

from .conftest import shared_image

TINY = NetworkShape(channels=(4, 8, 8), residual_blocks=1)


def tiny_settings(**changes) -> TrainingSettings:
    values = dict(steps=20, batch_size=2, crop_size=32, style_size=32, learning_rate=0.01, checkpoint_every=0,
                  network=TINY)
    return TrainingSettings(**{**values, **changes})


@pytest.fixture
def photos():
    return [shared_image("tubingen.jpg", 64), shared_image("shipwreck.jpg", 64)]


@pytest.fixture
def style():
    return shared_image("starry_night.jpg", 64)


class Log:
    def __init__(self, cancel_at: int | None = None):
        self.steps, self.totals, self.stages, self.cancel_at = [], [], set(), cancel_at

    @hookimpl
    def nst_progress(self, progress):
        self.steps.append(progress.step)
        self.totals.append(progress.losses["total"])
        self.stages.add(progress.stage)

    @hookimpl
    def nst_should_cancel(self, progress):
        return True if self.cancel_at is not None and progress.step >= self.cancel_at else None


# --- the network -------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(37, 50), (64, 64), (17, 33)])
def test_network_keeps_any_size_and_range(height, width):
    net = TransformNet(TINY).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width))
    assert out.shape == (2, 3, height, width)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_network_upsamples_by_resize_convolution_with_instance_norm():
    net = TransformNet(NetworkShape())
    kinds = {type(m).__name__ for m in net.modules()}
    assert "ConvTranspose2d" not in kinds and {"UpsampleConv", "InstanceNorm2d", "ReflectionPad2d"} <= kinds
    assert all(m.affine for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d))
    assert sum(isinstance(m, torch.nn.Module) and type(m).__name__ == "ResidualBlock" for m in net.modules()) == 5


def test_network_shape_is_checked():
    with pytest.raises(ValueError):
        NetworkShape(channels=(4, 8))
    with pytest.raises(ValueError):
        NetworkShape(channels=(4, 0, 8))


# --- training ------------------------------------------------------------------------------------


def test_loss_falls_and_progress_is_reported(random_weights, tmp_path, style, photos):
    log = Log()
    result = train(style, photos, tmp_path / "m.nst", style_name="starry", settings=tiny_settings(steps=30),
                   plugins=[log])
    assert log.steps == list(range(1, 31)) and log.stages == {"train"}
    assert np.mean(log.totals[-5:]) < 0.8 * np.mean(log.totals[:5]), log.totals
    assert result.steps == 30 and result.steps_run == 30 and not result.cancelled
    assert result.last_loss < result.first_loss
    model = load_model(tmp_path / "m.nst")
    assert model.style_name == "starry" and model.step == 30 and model.shape == TINY
    assert model.metadata["training"]["crop_size"] == 32
    assert model.metadata["config"]["content_layers"] == ["relu2_2"]


def test_save_load_apply_round_trips_to_identical_output(random_weights, tmp_path, style, photos):
    path = tmp_path / "m.nst"
    train(style, photos, path, style_name="starry", settings=tiny_settings(steps=3))
    first = load_model(path)
    again = tmp_path / "copy.nst"
    save_model(again, first.network, metadata=dict(first.metadata))
    second = load_model(again)
    photo = shared_image("the_scream.jpg", 48)
    out_first = stylize_fast(photo, first).image
    out_second = stylize_fast(photo, second).image
    assert out_first.shape == photo.shape
    np.testing.assert_array_equal(out_first, out_second)
    assert not np.allclose(out_first, photo, atol=0.05)  # it does something


def test_model_file_loads_with_weights_only_and_holds_plain_metadata(random_weights, tmp_path, style, photos):
    path = tmp_path / "m.nst"
    train(style, photos, path, style_name="starry", settings=tiny_settings(steps=2))
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT and payload["version"] == VERSION
    meta = payload["metadata"]
    assert meta["network"] == {"channels": [4, 8, 8], "residual_blocks": 1}
    assert isinstance(meta["nst_core_version"], str) and meta["step"] == 2
    assert set(payload["training_state"]) == {"optimizer", "generator"}


def test_resume_continues_the_step_count_and_matches_an_unbroken_run(random_weights, tmp_path, style, photos):
    whole, split = tmp_path / "whole.nst", tmp_path / "split.nst"
    train(style, photos, whole, style_name="s", settings=tiny_settings(steps=8))
    first = Log()
    train(style, photos, split, style_name="s", settings=tiny_settings(steps=5), plugins=[first])
    second = Log()
    result = train(style, photos, split, style_name="s", settings=tiny_settings(steps=8), resume=True,
                   plugins=[second])
    assert first.steps == [1, 2, 3, 4, 5] and second.steps == [6, 7, 8]
    assert result.steps == 8 and result.steps_run == 3
    a, b = load_model(whole), load_model(split)
    assert b.step == 8
    for key, value in a.network.state_dict().items():
        torch.testing.assert_close(value, b.network.state_dict()[key], rtol=1e-4, atol=1e-5)


def test_cancel_writes_a_checkpoint_that_resumes(random_weights, tmp_path, style, photos):
    path = tmp_path / "m.nst"
    result = train(style, photos, path, style_name="s", settings=tiny_settings(steps=10), plugins=[Log(cancel_at=4)])
    assert result.cancelled and result.steps == 4
    assert load_model(path).step == 4
    log = Log()
    train(style, photos, path, style_name="s", settings=tiny_settings(steps=6), resume=True, plugins=[log])
    assert log.steps == [5, 6]


def test_periodic_checkpoints(random_weights, tmp_path, style, photos):
    path = tmp_path / "m.nst"
    seen = []

    class Peek:
        @hookimpl
        def nst_progress(self, progress):
            if path.exists():
                seen.append((progress.step, load_model(path).step))

    train(style, photos, path, style_name="s", settings=tiny_settings(steps=7, checkpoint_every=3), plugins=[Peek()])
    assert (4, 3) in seen and (7, 6) in seen and load_model(path).step == 7


def test_an_existing_model_is_not_overwritten_without_resume(random_weights, tmp_path, style, photos):
    path = tmp_path / "m.nst"
    train(style, photos, path, style_name="s", settings=tiny_settings(steps=2))
    before = path.read_bytes()
    with pytest.raises(InputError, match="set resume to continue"):
        train(style, photos, path, style_name="s", settings=tiny_settings(steps=2))
    assert path.read_bytes() == before


def test_training_settings_are_checked():
    with pytest.raises(ConfigError):
        TrainingSettings(steps=0)
    with pytest.raises(ConfigError):
        TrainingSettings(crop_size=8)
    with pytest.raises(ConfigError):
        TrainingSettings(learning_rate=0)
    assert training_config().model == "vgg16"
