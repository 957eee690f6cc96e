"""The instant method's functions on arrays: style vectors, mixes, strength, any size, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nst_core import instant
from nst_core.errors import ConfigError, InputError
from nst_core.instant import stylize
from nst_core.instant.transformer import transform


def _smooth(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random picture (an upsampled 6×6 colour field)."""
    field = torch.from_numpy(np.random.default_rng(seed).random((1, 3, 6, 6), dtype=np.float32))
    image = torch.nn.functional.interpolate(field, size=(height, width), mode="bicubic", align_corners=False)
    return image[0].permute(1, 2, 0).clamp(0, 1).numpy()


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return _smooth(300, 200, seed=1)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _smooth(96, 128, seed=2)


def test_style_vector(painting):
    vector = instant.style_vector(painting)
    assert vector.shape == (instant.STYLE_DIM,) and vector.dtype == torch.float32 and vector.device.type == "cpu"
    assert torch.equal(vector, instant.style_vector(painting))
    # the central square is what counts: the same square in a wider frame gives the same vector
    square = painting[50:250]
    framed = np.concatenate([np.zeros((200, 40, 3), np.float32), square, np.ones((200, 40, 3), np.float32)], axis=1)
    assert torch.allclose(instant.style_vector(framed), instant.style_vector(square), atol=1e-5)


@pytest.mark.parametrize("bad", [np.zeros((10, 10)), np.zeros((10, 10, 4)), np.zeros((0, 5, 3)),
                                 np.full((8, 8, 3), np.nan)])
def test_bad_images_are_input_errors(bad, painting):
    with pytest.raises(InputError):
        instant.style_vector(bad)
    with pytest.raises(InputError):
        instant.stylize_instant_array(bad, instant.style_vector(painting))


def test_mix_vectors():
    a, b = torch.zeros(100), torch.ones(100)
    assert torch.allclose(instant.mix_vectors([a, b]), torch.full((100,), 0.5))
    assert torch.allclose(instant.mix_vectors([a, b], [3, 1]), torch.full((100,), 0.25))
    assert torch.allclose(instant.mix_vectors([b]), b)
    for weights in ([1], [-1, 2], [0, 0], [float("nan"), 1]):
        with pytest.raises(ConfigError):
            instant.mix_vectors([a, b], weights)
    with pytest.raises(ConfigError):
        instant.mix_vectors([])
    with pytest.raises(ConfigError):
        instant.mix_vectors([torch.zeros(99)])


def test_strength_goes_from_the_photos_style_to_the_paintings(painting, photo):
    style, own = instant.style_vector(painting), instant.style_vector(photo)
    assert torch.allclose(instant.with_strength(style, own, 1.0), style)
    assert torch.allclose(instant.with_strength(style, own, 0.0), own)
    assert torch.allclose(instant.with_strength(style, own, 0.25), 0.75 * own + 0.25 * style, atol=1e-6)
    for strength in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError):
            instant.with_strength(style, own, strength)
    # strength 0 keeps the photo closer than strength 1 does
    near = instant.stylize_instant_array(photo, instant.with_strength(style, own, 0.0))
    far = instant.stylize_instant_array(photo, style)
    assert np.abs(near - photo).mean() < np.abs(far - photo).mean()


@pytest.mark.parametrize("hw", [(96, 128), (37, 53), (3, 5), (1, 1), (130, 9)])
def test_output_has_the_photos_size(painting, hw):
    photo = _smooth(*hw, seed=4)
    out = instant.stylize_instant_array(photo, instant.style_vector(painting))
    assert out.shape == (*hw, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()


def test_runs_at_the_photos_size_not_scaled(painting, photo):
    """Its own size: the result at 96×128 is not the 48×64 result scaled up."""
    vector = instant.style_vector(painting)
    full = instant.stylize_instant_array(photo, vector)
    half = instant.stylize_instant_array(photo[::2, ::2], vector)
    upscaled = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)
    assert np.abs(full - upscaled).mean() > 0.02


def test_precisions(monkeypatch, painting, photo):
    cpu = torch.device("cpu")
    assert instant.compute_dtype("fp32", cpu) == torch.float32
    assert instant.compute_dtype("auto", cpu) == torch.float32
    with pytest.raises(ConfigError, match="fp16"):
        instant.compute_dtype("fp16", cpu)
    with pytest.raises(ConfigError):
        instant.compute_dtype("int8", cpu)
    monkeypatch.setattr(stylize, "fast_bf16", lambda device: (False, "CPU has no AMX or AVX512-BF16"))
    with pytest.raises(ConfigError, match="slow"):
        instant.stylize_instant_array(photo, instant.style_vector(painting), precision="bf16")
    monkeypatch.setattr(stylize, "fast_bf16", lambda device: (True, "CPU has amx_bf16"))
    assert instant.compute_dtype("bf16", cpu) == torch.bfloat16


def test_bf16_computes_the_same_picture(painting):
    """The bf16 path (run here on a small image, slowly where the CPU lacks bf16) stays close to fp32."""
    net = instant.load_transformer()
    photo = torch.from_numpy(_smooth(48, 64, seed=5)).permute(2, 0, 1)[None]
    style = net.style_parameters(instant.style_vector(painting))
    with torch.inference_mode():
        full = transform(net, photo, style)
        half = transform(net, photo, style, dtype=torch.bfloat16)
    assert half.dtype == torch.float32
    assert (half - full).abs().mean() < 0.02


def test_a_bad_budget_is_a_config_error(painting, photo):
    with pytest.raises(ConfigError):
        instant.stylize_instant_array(photo, instant.style_vector(painting), max_memory=0)


def test_load_networks_is_cheap_the_second_time():
    instant.load_networks()
    assert instant.load_predictor() is instant.load_predictor("cpu")
    assert instant.load_transformer() is instant.load_transformer(torch.device("cpu"))
