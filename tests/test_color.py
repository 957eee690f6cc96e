"""Colour preservation: the colour maths on synthetic arrays, the methods, config and CLI options."""

import numpy as np
import pytest
from PIL import Image

from nst_core import Config, ConfigError, hookimpl, stylize, stylize_files
from nst_core.color import (
    LINEAR_MODES,
    ColorState,
    is_grayscale,
    match_colors,
    match_histogram,
    match_linear,
    match_luminance,
    rgb_to_yiq,
    yiq_to_rgb,
)
from nst_core.image import load_image
from nst_core.plugins import build_registries, make_plugin_manager

from .test_cli import config_of

METHODS = ("luminance", "histogram", "luminance-post", "histogram-post")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _colors(image):
    return np.asarray(image, dtype=np.float64).reshape(-1, 3)


def _mean_cov(image):
    x = _colors(image)
    return x.mean(axis=0), np.cov(x, rowvar=False, bias=True)


def _methods():
    return build_registries(make_plugin_manager(load_entry_points=False)).color_methods


def _source_and_reference():
    """Two differently coloured, correlated random images of different sizes, inside [0, 1]."""
    rng = _rng(1)
    source = rng.random((24, 20, 3)) @ np.array([[0.6, 0.2, 0.1], [0.1, 0.5, 0.3], [0.0, 0.2, 0.4]])
    reference = 0.1 + 0.8 * rng.random((16, 18, 3)) ** 2 @ np.array([[0.5, 0.0, 0.0], [0.3, 0.4, 0.0], [0.1, 0.1, 0.3]])
    return source.astype(np.float32), reference.astype(np.float32)


# -------------------------------------------------------------------------------------------------
# colour spaces
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rgb_yiq_round_trip_keeps_values_and_dtype(dtype):
    rgb = _rng().random((9, 7, 3)).astype(dtype)
    yiq = rgb_to_yiq(rgb)
    assert yiq.dtype == dtype
    back = yiq_to_rgb(yiq)
    assert back.dtype == dtype
    np.testing.assert_allclose(back, rgb, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_yiq_of_grey_is_its_value_without_chroma():
    grey = np.repeat(np.linspace(0, 1, 11, dtype=np.float32)[:, None, None], 3, axis=2)
    yiq = rgb_to_yiq(grey)
    np.testing.assert_allclose(yiq[..., 0], grey[..., 0], atol=1e-6)
    np.testing.assert_allclose(yiq[..., 1:], 0, atol=1e-6)
    assert is_grayscale(grey) and not is_grayscale(_rng().random((4, 4, 3)))
    assert not is_grayscale(np.array([[[1, 0, 1]]], dtype=np.uint8))  # no unsigned wrap-around


def test_colour_functions_reject_non_rgb_shapes():
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_yiq(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="RGB"):
        match_linear(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="RGB"):
        match_histogram(np.zeros((4, 4, 3)), np.zeros((0, 4, 3)))
    with pytest.raises(ValueError, match="mode must be one of chol, pca, sym; got 'lab'"):
        match_linear(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), mode="lab")
    with pytest.raises(ValueError, match="mode must be one of chol, pca, sym, histogram"):
        match_colors(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), mode="lab")


# -------------------------------------------------------------------------------------------------
# matching
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", LINEAR_MODES)
def test_linear_transfer_reproduces_the_reference_mean_and_covariance(mode):
    source, reference = (a.astype(np.float64) for a in _source_and_reference())
    matched = match_linear(source, reference, mode=mode, eps=0)
    assert matched.shape == source.shape and matched.dtype == np.float64
    mean, cov = _mean_cov(matched)
    ref_mean, ref_cov = _mean_cov(reference)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    # float32 in, float32 out; the default regularization changes the covariance by ~eps only
    matched32 = match_linear(source.astype(np.float32), reference, mode=mode)
    assert matched32.dtype == np.float32
    mean32, cov32 = _mean_cov(matched32)
    np.testing.assert_allclose(mean32, ref_mean, atol=1e-6)
    np.testing.assert_allclose(cov32, ref_cov, atol=2e-5)
    # an affine map: the same colour always goes to the same colour
    assert match_colors(source, reference, mode=mode, eps=0) == pytest.approx(matched)


def test_linear_modes_differ_and_sym_moves_colours_least():
    source, reference = (a.astype(np.float64) for a in _source_and_reference())
    moved = {mode: np.mean((match_linear(source, reference, mode=mode, eps=0) - source) ** 2)
             for mode in LINEAR_MODES}
    assert len({round(value, 9) for value in moved.values()}) == 3, moved
    # sym is the optimal-transport map: the least mean squared colour change of the three
    assert moved["sym"] <= min(moved["chol"], moved["pca"]) + 1e-12, moved


def test_sym_does_not_depend_on_the_channel_order_but_chol_does():
    source, reference = (a.astype(np.float64) for a in _source_and_reference())
    order = [2, 0, 1]
    for mode, invariant in (("sym", True), ("pca", True), ("chol", False)):
        direct = match_linear(source, reference, mode=mode, eps=0)
        permuted = match_linear(source[..., order], reference[..., order], mode=mode, eps=0)
        assert np.allclose(permuted, direct[..., order], atol=1e-10) == invariant, mode


def test_linear_transfer_of_grey_images_needs_eps():
    source, reference = _source_and_reference()
    grey = np.repeat(reference[..., :1], 3, axis=2)
    matched = match_linear(source, grey)  # default eps: works, and the result is (nearly) grey
    assert np.isfinite(matched).all()
    assert np.abs(matched - matched.mean(axis=2, keepdims=True)).max() < 0.02
    for mode in LINEAR_MODES:
        with pytest.raises(ValueError, match="singular"):
            match_linear(grey, source, mode=mode, eps=0)


def test_histogram_matching_gives_the_reference_quantiles():
    source, reference = _source_and_reference()
    matched = match_histogram(source, reference)
    assert matched.shape == source.shape and matched.dtype == np.float32
    quantiles = np.linspace(0.02, 0.98, 25)
    for channel in range(3):
        np.testing.assert_allclose(
            np.quantile(matched[..., channel], quantiles), np.quantile(reference[..., channel], quantiles),
            atol=0.01)
    # order within each channel is kept: a monotonic map per channel
    for channel in range(3):
        order = np.argsort(source[..., channel], axis=None)
        assert np.all(np.diff(matched[..., channel].reshape(-1)[order]) >= 0)
    assert match_colors(source, reference, mode="histogram") == pytest.approx(matched)


def test_luminance_matching_gives_the_reference_mean_and_deviation():
    y = _rng().random((10, 10)).astype(np.float32)
    ref = 0.3 + 0.1 * _rng(2).random((5, 7))
    matched = match_luminance(y, ref)
    assert matched.dtype == np.float32
    assert matched.mean() == pytest.approx(ref.mean(), abs=1e-6)
    assert matched.std() == pytest.approx(ref.std(), abs=1e-6)
    flat = match_luminance(np.full((3, 3), 0.9), ref)
    np.testing.assert_allclose(flat, ref.mean())


# -------------------------------------------------------------------------------------------------
# methods
# -------------------------------------------------------------------------------------------------


def test_the_methods_register_through_the_hook():
    methods = _methods()
    assert methods.names()[:5] == ["none", *METHODS]
    for name in METHODS:
        assert methods.get(name).description


def test_luminance_runs_on_luminance_and_keeps_the_content_chroma():
    method = _methods().get("luminance")
    content, style = _source_and_reference()
    config = Config()
    run_content, run_styles, state = method.prepare(content, [style, style[::-1]], config=config)
    assert state.notice is None and len(run_styles) == 2
    content_y = rgb_to_yiq(content)[..., 0]
    np.testing.assert_allclose(run_content, np.repeat(content_y[..., None], 3, axis=2), atol=1e-6)
    for run_style in run_styles:
        assert run_style.dtype == np.float32 and run_style.shape == style.shape
        assert is_grayscale(run_style, tolerance=0)
        # the style's luminance has the content's mean and deviation (no clipping with these images)
        assert run_style[..., 0].mean() == pytest.approx(content_y.mean(), abs=1e-5)
        assert run_style[..., 0].std() == pytest.approx(content_y.std(), abs=1e-5)
    # a made-up optimized image: somewhat coloured, of another luminance
    output = np.clip(0.2 + 0.6 * _rng(3).random(content.shape), 0, 1).astype(np.float32)
    final = method.finish(output, content, state, config=config)
    final_yiq, content_yiq, output_yiq = rgb_to_yiq(final), rgb_to_yiq(content), rgb_to_yiq(output)
    inside = np.all((final > 0.001) & (final < 0.999), axis=2)  # away from clipping
    assert inside.mean() > 0.8
    np.testing.assert_allclose(final_yiq[inside][:, 1:], content_yiq[inside][:, 1:], atol=1e-5)
    np.testing.assert_allclose(final_yiq[inside][:, 0], output_yiq[inside][:, 0], atol=1e-5)
    # strength 0: the optimized image as it is; 0.5: half of each chroma
    assert method.finish(output, content, state, config=Config(color_strength=0.0)) == pytest.approx(output, abs=1e-5)
    half = rgb_to_yiq(method.finish(output, content, state, config=Config(color_strength=0.5)))
    expected = 0.5 * (content_yiq[..., 1:] + output_yiq[..., 1:])
    np.testing.assert_allclose(half[inside][:, 1:], expected[inside], atol=0.02)


def test_luminance_post_keeps_output_luminance_and_content_chroma():
    method = _methods().get("luminance-post")
    content, style = _source_and_reference()
    run_content, run_styles, state = method.prepare(content, [style], config=Config())
    assert run_content is content and run_styles[0] is style and state.notice is None
    output = np.clip(0.2 + 0.6 * _rng(3).random(content.shape), 0, 1).astype(np.float32)
    final = method.finish(output, content, state, config=Config())
    inside = np.all((final > 0.001) & (final < 0.999), axis=2)
    np.testing.assert_allclose(rgb_to_yiq(final)[inside][:, 1:], rgb_to_yiq(content)[inside][:, 1:], atol=1e-5)
    np.testing.assert_allclose(rgb_to_yiq(final)[inside][:, 0], rgb_to_yiq(output)[inside][:, 0], atol=1e-5)
    same = method.finish(output, content, state, config=Config(color_strength=0.0))
    np.testing.assert_allclose(same, output, atol=1e-5)


@pytest.mark.parametrize("match", ["chol", "pca", "sym", "histogram"])
def test_histogram_recolours_the_style_by_strength(match):
    method = _methods().get("histogram")
    content, style = _source_and_reference()
    # strength 0: the style image unchanged
    run_content, run_styles, _ = method.prepare(content, [style], config=Config(color_match=match, color_strength=0.0))
    assert run_content is content
    np.testing.assert_array_equal(run_styles[0], style)
    # strength 1: the content's colour statistics (these images need no clipping)
    _, full, _ = method.prepare(content, [style], config=Config(color_match=match, color_strength=1.0))
    full = full[0]
    assert full.dtype == np.float32 and full.shape == style.shape and 0 <= full.min() and full.max() <= 1
    np.testing.assert_allclose(full, np.clip(match_colors(style, content, mode=match), 0, 1), atol=1e-6)
    mean, cov = _mean_cov(full)
    content_mean, content_cov = _mean_cov(content)
    np.testing.assert_allclose(mean, content_mean, atol=0.01)
    if match == "histogram":  # per channel: the variances, not the correlations between channels
        np.testing.assert_allclose(np.diag(cov), np.diag(content_cov), atol=0.002)
    else:
        np.testing.assert_allclose(cov, content_cov, atol=1e-4)
    # in between: a blend of the original and the recoloured style
    _, half, _ = method.prepare(content, [style], config=Config(color_match=match, color_strength=0.25))
    np.testing.assert_allclose(half[0], 0.75 * style + 0.25 * full, atol=1e-5)
    assert method.finish(content, content, None, config=Config()) is content


@pytest.mark.parametrize("match", ["chol", "sym", "histogram"])
def test_histogram_post_matches_the_output_to_the_content(match):
    method = _methods().get("histogram-post")
    content, output = _source_and_reference()
    output = output[:20, :16]  # the engine gives content at the output's size; any size works here
    content = content[:20, :16]
    _, _, state = method.prepare(content, [output], config=Config())
    final = method.finish(output, content, state, config=Config(color_match=match))
    np.testing.assert_allclose(final, np.clip(match_colors(output, content, mode=match), 0, 1), atol=1e-6)
    np.testing.assert_array_equal(method.finish(output, content, state, config=Config(color_strength=0.0)), output)
    blended = method.finish(output, content, state, config=Config(color_match=match, color_strength=0.5))
    np.testing.assert_allclose(blended, np.clip(0.5 * output + 0.5 * match_colors(output, content, mode=match), 0, 1),
                               atol=1e-5)


@pytest.mark.parametrize("name", ["luminance", "luminance-post"])
def test_luminance_methods_leave_a_grayscale_content_alone_and_say_so(name):
    method = _methods().get(name)
    content, style = _source_and_reference()
    grey = np.repeat(content.mean(axis=2, keepdims=True), 3, axis=2)
    run_content, run_styles, state = method.prepare(grey, [style], config=Config())
    assert run_content is grey and run_styles[0] is style
    assert isinstance(state, ColorState) and "grayscale" in state.notice and name in state.notice
    assert method.finish(style, grey, state, config=Config()) is style
    # a grayscale style is fine: nothing special happens
    _, _, state = method.prepare(content, [np.repeat(style[..., :1], 3, axis=2)], config=Config())
    assert state.notice is None


def test_histogram_with_a_grayscale_content_gives_a_grey_style():
    content, style = _source_and_reference()
    grey = np.repeat(content.mean(axis=2, keepdims=True), 3, axis=2)
    _, run_styles, _ = _methods().get("histogram").prepare(grey, [style], config=Config(color_match="sym"))
    assert np.isfinite(run_styles[0]).all()
    assert np.abs(run_styles[0] - run_styles[0].mean(axis=2, keepdims=True)).max() < 0.02


# -------------------------------------------------------------------------------------------------
# config, command line, runs
# -------------------------------------------------------------------------------------------------


def test_config_checks_color_match_and_strength():
    assert Config().color_match == "sym" and Config().color_strength == 1.0
    assert Config(color_match="histogram", color_strength=0).color_strength == 0
    with pytest.raises(ConfigError, match="color_match must be one of chol, pca, sym, histogram; got 'lab'"):
        Config(color_match="lab")
    for bad in (-0.1, 1.5, float("nan"), True, "1"):
        with pytest.raises(ConfigError, match="color_strength"):
            Config(color_strength=bad)


def test_cli_options_reach_the_config():
    from nst_cli.main import UsageError, build_parser

    parser = build_parser()
    config = config_of("--preserve-color", "histogram-post", "--color-match", "chol", "--color-strength", "0.4")
    assert (config.preserve_color, config.color_match, config.color_strength) == ("histogram-post", "chol", 0.4)
    defaults = config_of()
    assert (defaults.preserve_color, defaults.color_match, defaults.color_strength) == ("none", "sym", 1.0)
    help_text = parser._subparsers._group_actions[0].choices["run"].format_help()
    for name in METHODS:
        assert name in help_text
    with pytest.raises(UsageError, match="--color-match: invalid choice: 'lab'"):
        parser.parse_args(["run", "c.png", "s.png", "-o", "o.png", "--color-match", "lab"])
    with pytest.raises(ConfigError, match="color_strength"):
        config_of("--color-strength", "2")


@pytest.mark.parametrize("name", ["histogram", "luminance-post", "histogram-post"])  # luminance: below
def test_each_method_runs_end_to_end(random_weights, small_pair, name):
    content, style = small_pair
    result = stylize(content, [style], config=Config(size=32, iterations=1, preserve_color=name, save_every=1))
    assert result.image.shape == (24, 32, 3) and result.image.dtype == np.float32
    assert 0 <= result.image.min() and result.image.max() <= 1


def test_alpha_survives_luminance_transfer(random_weights, tmp_path, small_pair):
    content, style = small_pair
    alpha = np.linspace(0, 255, content.shape[1]).round().astype(np.uint8)[None, :].repeat(content.shape[0], 0)
    rgba = np.dstack([(content * 255).round().astype(np.uint8), alpha])
    content_path, style_path, output = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "out.png"
    Image.fromarray(rgba, "RGBA").save(content_path)
    Image.fromarray((style * 255).round().astype(np.uint8)).save(style_path)
    result = stylize_files(content_path, [style_path], output,
                           config=Config(size=None, iterations=2, preserve_color="luminance"))
    written = load_image(output)
    assert written.alpha is not None
    np.testing.assert_allclose(written.alpha, alpha / 255.0, atol=1 / 255)
    np.testing.assert_allclose(result.alpha, alpha / 255.0, atol=1 / 255)
    # and the colours are the photo's: chroma kept
    chroma = np.abs(rgb_to_yiq(written.rgb)[..., 1:] - rgb_to_yiq(content)[..., 1:]).mean()
    assert chroma < 0.02, chroma


class Notices:
    def __init__(self):
        self.messages = []

    @hookimpl
    def nst_notice(self, message):
        self.messages.append(message)


def test_a_grayscale_content_is_reported_once(random_weights, small_pair):
    content, style = small_pair
    grey = np.repeat(content.mean(axis=2, keepdims=True), 3, axis=2)
    notices = Notices()
    stylize(grey, [style], config=Config(size=32, iterations=3, save_every=1, preserve_color="luminance"),
            plugins=[notices])
    assert sum("grayscale" in message for message in notices.messages) == 1, notices.messages
