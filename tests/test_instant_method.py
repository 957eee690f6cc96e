"""The instant method in the engine and the command line: any painting, one pass, every control."""

import json

import numpy as np
import pytest
from PIL import Image

from nst_core import Config, ConfigError, InputError, hookimpl, stylize, stylize_files
from nst_core.instant import method as instant_method

from .conftest import shared_image
from .test_cli import one_line_error, run_cli
from .test_plugins import Recorder


@pytest.fixture(scope="module")
def photo():
    return shared_image("tubingen.jpg", 96)


@pytest.fixture(scope="module")
def paintings():
    return shared_image("starry_night.jpg", 96), shared_image("the_scream.jpg", 96)


def _distance(a, b):
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_instant_paints_at_the_photos_size_and_reports_a_plan(photo, paintings):
    recorder = Recorder()
    result = stylize(photo, [paintings[0]], config=Config(method="instant", size=None), plugins=[recorder])
    assert result.image.shape == photo.shape and result.image.dtype == np.float32
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert result.info["method"] == "instant" and result.steps == 0 and not result.cancelled
    assert recorder.results == [result]
    assert _distance(result.image, photo) > 0.05  # it painted something


def test_strength_goes_from_the_photos_own_style_to_the_paintings(photo, paintings):
    results = {s: stylize(photo, [paintings[0]], config=Config(method="instant", size=None, style_strength=s)).image
               for s in (0.0, 0.25, 0.5, 0.75, 1.0)}
    # each step of strength moves the result steadily towards the full style
    distances = [_distance(results[s], results[1.0]) for s in (0.0, 0.25, 0.5, 0.75)]
    assert distances == sorted(distances, reverse=True) and distances[-1] > 0.0
    # and 0 is the photo painted in its own style: nearer the photo than the full style is
    assert _distance(results[0.0], photo) < _distance(results[1.0], photo)


def test_several_paintings_blend(photo, paintings):
    def run(blend):
        return stylize(photo, list(paintings), config=Config(method="instant", size=None, style_blend=blend)).image

    starry, scream = run((1.0, 0.0)), run((0.0, 1.0))
    alone = stylize(photo, [paintings[0]], config=Config(method="instant", size=None)).image
    assert _distance(starry, alone) < 1e-6
    half = run((1.0, 1.0))
    assert 0.0 < _distance(half, starry) and 0.0 < _distance(half, scream)
    with pytest.raises(ConfigError, match="style_blend"):
        run((1.0, 1.0, 1.0))


def test_colour_modes_work_on_the_result(photo, paintings):
    from nst_core.color import rgb_to_yiq

    plain = stylize(photo, [paintings[0]], config=Config(method="instant", size=None)).image
    kept = stylize(photo, [paintings[0]], config=Config(method="instant", size=None, preserve_color="luminance")).image
    chroma = lambda image: rgb_to_yiq(image)[..., 1:]  # noqa: E731
    assert _distance(chroma(kept), chroma(photo)) < 0.5 * _distance(chroma(plain), chroma(photo))


def test_the_paintings_vector_is_computed_once_per_process(photo, paintings, monkeypatch):
    calls = []
    real = instant_method.style_vector
    monkeypatch.setattr(instant_method, "style_vector", lambda image, device: calls.append(1) or real(image, device=device))
    painting = paintings[1][::-1].copy()  # pixels no other test used
    for strength in (1.0, 0.7, 0.4):
        stylize(photo, [painting], config=Config(method="instant", size=48, style_strength=strength))
    assert len(calls) == 2  # the painting once, the photo's own once (for strength < 1)


def test_a_tiled_run_can_be_cancelled_between_tiles(paintings):
    class CancelAtFirstTile(Recorder):
        @hookimpl
        def nst_should_cancel(self, progress):
            return True if progress.tiles else None

    big = shared_image("tubingen.jpg", 512)
    recorder = CancelAtFirstTile()
    result = stylize(big, [paintings[0]], config=Config(method="instant", size=None, max_memory=16 * 2**20),
                     plugins=[recorder])
    assert result.cancelled and result.image.shape == big.shape
    assert [p.tile for p in recorder.progress] == [1] and recorder.progress[0].tiles > 1


def test_instant_needs_a_painting(photo):
    with pytest.raises(InputError, match="style image"):
        stylize(photo, [], config=Config(method="instant"))


def test_files_keep_alpha_and_16_bit(tmp_path, paintings):
    from nst_core.image import load_image, save_image

    rgb = shared_image("tubingen.jpg", 64)
    alpha = np.linspace(0, 1, rgb.shape[1], dtype=np.float32)[None, :].repeat(rgb.shape[0], 0)
    content = save_image(tmp_path / "photo.png", rgb, alpha=alpha, bit_depth=16)
    style = save_image(tmp_path / "style.png", paintings[0])
    output = tmp_path / "out.png"
    stylize_files(content, [style], output, config=Config(method="instant", size=None))
    loaded = load_image(output)
    assert loaded.bit_depth == 16 and loaded.alpha is not None
    assert np.abs(loaded.alpha - alpha).max() < 1e-3


def test_cli_instant_batch_and_json(tmp_path, paintings):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, long_side in (("a", 40), ("b", 56)):
        Image.fromarray((shared_image("tubingen.jpg", long_side) * 255).astype(np.uint8)).save(photos / f"{name}.png")
    style = tmp_path / "starry.png"
    Image.fromarray((paintings[0] * 255).astype(np.uint8)).save(style)
    out = tmp_path / "out"
    proc = run_cli("run", photos, style, "--method", "instant", "--out-dir", out, "--style-strength", "0.8",
                   "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    starts = [e for e in events if e["event"] == "start"]
    assert [e["method"] for e in starts] == ["instant", "instant"] and [e["total"] for e in starts] == [0, 0]
    # the photos' own sizes: instant paints at any size
    assert Image.open(out / "a.png").size == Image.open(photos / "a.png").size
    assert Image.open(out / "b.png").size == Image.open(photos / "b.png").size
    assert [e["info"]["style_strength"] for e in events if e["event"] == "done"] == ["0.8", "0.8"]


def test_cli_instant_without_a_painting_is_one_line(tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(photo)
    assert "no style" in one_line_error(run_cli("run", photo, "--method", "instant", "-o", tmp_path / "o.png"), 2)
    message = one_line_error(run_cli("run", photo, photo, "--method", "instant", "--style-strength", "2",
                                     "-o", tmp_path / "o.png"), 2)
    assert "--style-strength must be between 0.0 and 1" in message


def test_init_instant_starts_the_optimization_from_the_instant_result(random_weights, photo, paintings):
    class FirstLoss(Recorder):
        pass

    losses = {}
    for init in ("content", "instant"):
        recorder = FirstLoss()
        stylize(photo, [paintings[0]], config=Config(size=64, iterations=1, init=init), plugins=[recorder])
        losses[init] = recorder.progress[0].losses
    # the instant start is already painted: a smaller style loss at the first step, a larger content loss
    assert losses["instant"]["style"] < losses["content"]["style"]
    assert losses["instant"]["content"] > losses["content"]["content"]
