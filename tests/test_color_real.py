"""Colour preservation with the real ImageNet VGG-16 on real images: the measured acceptance.

Small images and few steps (64 px, 30 L-BFGS steps); every run here uses ``style_weight=20``
rather than the default 5, so that 30 steps lower the style loss well over fivefold (with 5 the
content term holds it back, as in test_integration). Run with ``-s`` to see the figures.
"""

import numpy as np
import pytest

from nst_core import Config, stylize
from nst_core.color import rgb_to_yiq

from .conftest import StyleLossLog, shared_image

pytestmark = pytest.mark.real_weights

SIZE, STEPS, STYLE_WEIGHT = 64, 30, 20.0


@pytest.fixture(scope="module")
def runs_cache():
    return {}


@pytest.fixture
def run(real_vgg16, monkeypatch, runs_cache):
    """``run(preserve_color, color_match)`` → ``(result, style losses per step)``, each run done once."""
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(real_vgg16))
    content = shared_image("tubingen.jpg", SIZE)
    style = shared_image("starry_night.jpg", SIZE)

    def run(preserve_color, color_match="sym"):
        key = (preserve_color, color_match)
        if key not in runs_cache:
            log = StyleLossLog()
            config = Config(size=SIZE, iterations=STEPS, style_weight=STYLE_WEIGHT,
                            preserve_color=preserve_color, color_match=color_match)
            result = stylize(content, [style], config=config, plugins=[log])
            assert result.image.shape == content.shape  # the content is already at the run's size
            assert len(log.style) == STEPS
            runs_cache[key] = (result, log.style)
        return runs_cache[key]

    run.content = content
    return run


def _mean_cov(image):
    x = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    return x.mean(axis=0), np.cov(x, rowvar=False, bias=True)


def _chroma_mad(image, content):
    return float(np.abs(rgb_to_yiq(image)[..., 1:] - rgb_to_yiq(content)[..., 1:]).mean())


def test_luminance_keeps_the_content_chroma_and_transfers_the_luminance_style(run):
    result, style = run("luminance")
    plain, _ = run("none")
    mad = _chroma_mad(result.image, run.content)
    fall = style[0] / result.losses["style"]  # the style loss of a luminance run is the luminance one
    print(f"\nluminance: chroma MAD {mad:.4f} (no preservation: {_chroma_mad(plain.image, run.content):.4f}); "
          f"luminance style loss {style[0]:.3f} -> {result.losses['style']:.3f} ({fall:.1f}x lower)")
    assert mad < 0.01, mad
    assert fall >= 5, style
    # the style did change the picture: its luminance is not the photo's
    luminance_change = np.abs(rgb_to_yiq(result.image)[..., 0] - rgb_to_yiq(run.content)[..., 0]).mean()
    assert luminance_change > 0.03, luminance_change


@pytest.mark.parametrize("match", ["chol", "pca", "sym", "histogram"])
def test_histogram_brings_the_colours_closer_to_the_content(run, match):
    result, style = run("histogram", match)
    plain, _ = run("none")
    content_mean, content_cov = _mean_cov(run.content)
    mean, cov = _mean_cov(result.image)
    plain_mean, plain_cov = _mean_cov(plain.image)
    mean_ratio = np.linalg.norm(mean - content_mean) / np.linalg.norm(plain_mean - content_mean)
    cov_ratio = np.linalg.norm(cov - content_cov) / np.linalg.norm(plain_cov - content_cov)
    fall = style[0] / result.losses["style"]
    print(f"\nhistogram/{match}: mean distance {mean_ratio:.2f}x, covariance distance {cov_ratio:.2f}x "
          f"that of no preservation (|dmean| {np.linalg.norm(mean - content_mean):.4f} vs "
          f"{np.linalg.norm(plain_mean - content_mean):.4f}, |dcov|_F {np.linalg.norm(cov - content_cov):.5f} vs "
          f"{np.linalg.norm(plain_cov - content_cov):.5f}); style loss {style[0]:.3f} -> "
          f"{result.losses['style']:.3f} ({fall:.1f}x lower)")
    assert mean_ratio < 1 and cov_ratio < 1, (mean_ratio, cov_ratio)
    assert fall >= 5, style
