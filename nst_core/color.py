"""Colour-preservation methods (built-in plugins) and the colour maths behind them.

A method's ``prepare`` may recolour the content and style images before the optimization and its
``finish`` may change the optimized image afterwards; see :class:`nst_core.registry.ColorMethod`.

The methods follow Gatys, Bethge, Hertzmann & Shechtman, *Preserving Color in Neural Artistic
Style Transfer* (2016, arXiv:1606.05897):

``luminance``
    Luminance-only transfer: content and style go to YIQ, the style's luminance Y is shifted and
    scaled to the content luminance's mean and standard deviation, the whole optimization runs on
    luminance images (three equal channels), and the result's luminance is combined with the
    content's chroma (I, Q). The output's chroma is the content's, up to clipping into RGB.
``histogram``
    Colour matching of the style image: before the optimization each style image is recoloured to
    the content's colour statistics (``Config.color_match``), then the transfer runs as usual.
``luminance-post``
    After a normal run, the output's luminance with the content's chroma (what most other
    implementations call "original colours").
``histogram-post``
    After a normal run, the output's colours are matched to the content's (``Config.color_match``).

``Config.color_strength`` (``s`` in ``[0, 1]``) goes from the style's colours (0) to preserved
colours (1):

* ``histogram``: each style image is ``(1 - s) · style + s · recoloured style``;
* ``histogram-post``: the output is ``(1 - s) · output + s · matched output``;
* ``luminance-post``: the output keeps its own luminance; its chroma is
  ``s · content chroma + (1 - s) · output chroma`` (the same as blending the two RGB images);
* ``luminance``: the optimization never sees the style's colours, so there are none to go back
  to. The result's luminance is the optimized one; its chroma is
  ``s · content chroma + (1 - s) · chroma of the optimized image``, and the optimized image is
  (nearly) grey: lower strengths give a *less saturated* picture, ``0`` the grey stylized
  luminance itself.

A content image whose three channels are equal (grayscale) has no colours to keep: both luminance
methods then leave the run alone and say so through the returned state's ``notice``.

The functional cores (:func:`rgb_to_yiq`, :func:`yiq_to_rgb`, :func:`match_linear`,
:func:`match_histogram`, :func:`match_colors`) are plain ``numpy`` functions that follow
scikit-image's dtype rules: ``float16``/``float32`` input gives ``float32``, anything else
``float64``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.color import rgb2yiq, yiq2rgb
from skimage.exposure import match_histograms

from .config import COLOR_MATCHES, Config
from .hookspecs import hookimpl

#: The linear colour transfers :func:`match_linear` offers.
LINEAR_MODES = ("chol", "pca", "sym")

#: Largest difference between the channels of an image that still counts as grayscale.
GRAYSCALE_TOLERANCE = 1.0 / 255.0


# -------------------------------------------------------------------------------------------------
# Functional cores
# -------------------------------------------------------------------------------------------------


def rgb_to_yiq(image):
    """RGB to YIQ (luminance Y, chroma I and Q), as :func:`skimage.color.rgb2yiq`.

    Parameters
    ----------
    image : (..., 3) array_like
        The image in RGB; float values are taken as they are, integer images are scaled to
        ``[0, 1]`` first (scikit-image's rules).

    Returns
    -------
    yiq : (..., 3) ndarray
        The image in YIQ; ``float32`` for ``float16``/``float32`` input, else ``float64``.
        For RGB in ``[0, 1]``, Y is in ``[0, 1]`` and a grey pixel has I = Q = 0.
    """
    return rgb2yiq(_check_colors("image", image), channel_axis=-1)


def yiq_to_rgb(image):
    """YIQ to RGB, the inverse of :func:`rgb_to_yiq` (as :func:`skimage.color.yiq2rgb`).

    Parameters
    ----------
    image : (..., 3) array_like
        The image in YIQ.

    Returns
    -------
    rgb : (..., 3) ndarray
        The image in RGB, not clipped (a YIQ triple may lie outside the RGB cube); ``float32``
        for ``float16``/``float32`` input, else ``float64``.
    """
    return yiq2rgb(_check_colors("image", image), channel_axis=-1)


def match_linear(source, reference, *, mode="sym", eps=1e-5):
    """Recolour an image with an affine map so that its colours' mean and covariance match another's.

    Every pixel colour ``x`` of ``source`` becomes ``A (x - mu_s) + mu_r``, where ``mu_s``,
    ``mu_r`` are the mean colours of ``source`` and ``reference`` and the 3×3 matrix ``A``
    satisfies ``A Sigma_s A^T = Sigma_r`` for their colour covariances. The modes differ only in
    which such ``A`` they choose.

    Parameters
    ----------
    source : (..., 3) array_like
        Image to recolour, channels last. Values are taken as they are (no rescaling).
    reference : (..., 3) array_like
        Image whose colour statistics to match; may have another size than ``source``.
    mode : {'chol', 'pca', 'sym'}, optional
        How to choose ``A``:

        * ``'chol'``: ``A = L_r L_s^-1`` from the Cholesky factors ``Sigma = L L^T`` (depends on
          the order of the channels);
        * ``'pca'``: ``A = Sigma_r^1/2 Sigma_s^-1/2`` with symmetric square roots from the
          eigen-decomposition (the "Image Analogies" colour transfer);
        * ``'sym'``: the symmetric ``A = Sigma_s^-1/2 (Sigma_s^1/2 Sigma_r Sigma_s^1/2)^1/2
          Sigma_s^-1/2``, the optimal-transport (Monge–Kantorovich) map between the two colour
          distributions' Gaussian fits: of all maps that match mean and covariance it moves the
          colours the least, and it does not depend on the channel order.
    eps : float, optional
        Added to the diagonal of both covariances, so that flat or grey images (singular
        covariances) can be matched. With ``eps=0`` the match is exact.

    Returns
    -------
    matched : ndarray
        ``source`` recoloured, same shape, not clipped; ``float32`` for ``float16``/``float32``
        ``source``, else ``float64``.

    Raises
    ------
    ValueError
        If either image is empty or does not have 3 channels last, if ``mode`` is unknown, or if
        ``eps=0`` and a covariance is singular.

    Notes
    -----
    The three modes are those of Gatys et al.'s reference code for [1]_ and [2]_. The
    arithmetic is done in ``float64``.

    References
    ----------
    .. [1] L. A. Gatys, M. Bethge, A. Hertzmann, E. Shechtman, "Preserving Color in Neural
           Artistic Style Transfer", arXiv:1606.05897, 2016.
    .. [2] L. A. Gatys, A. S. Ecker, M. Bethge, A. Hertzmann, E. Shechtman, "Controlling
           Perceptual Factors in Neural Style Transfer", CVPR 2017.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> source, reference = rng.random((8, 8, 3)), rng.random((6, 6, 3)) ** 2
    >>> matched = match_linear(source, reference, mode="sym", eps=0)
    >>> np.allclose(matched.reshape(-1, 3).mean(0), reference.reshape(-1, 3).mean(0))
    True
    """
    if mode not in LINEAR_MODES:
        raise ValueError(f"mode must be one of {', '.join(LINEAR_MODES)}; got {mode!r}")
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    source = _check_colors("source", source)
    reference = _check_colors("reference", reference)
    out_dtype = _float_type(source.dtype)
    x = source.reshape(-1, 3).astype(np.float64)
    y = reference.reshape(-1, 3).astype(np.float64)
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    cov_x = np.cov(x, rowvar=False, bias=True).reshape(3, 3) + eps * np.eye(3)
    cov_y = np.cov(y, rowvar=False, bias=True).reshape(3, 3) + eps * np.eye(3)
    a = _transfer_matrix(cov_x, cov_y, mode)
    matched = (x - mean_x) @ a.T + mean_y
    return matched.reshape(source.shape).astype(out_dtype, copy=False)


def match_histogram(source, reference):
    """Match each colour channel's histogram to another image's, as
    :func:`skimage.exposure.match_histograms`.

    Parameters
    ----------
    source : (..., 3) array_like
        Image to recolour, channels last.
    reference : (..., 3) array_like
        Image whose per-channel histograms to match; may have another size than ``source``.

    Returns
    -------
    matched : ndarray
        ``source`` with, in each channel, the quantiles of ``reference``'s same channel;
        ``float32`` for ``float16``/``float32`` ``source``, else ``float64``.

    Notes
    -----
    Each channel is matched on its own: the marginal distributions become the reference's
    exactly, but not the correlations between channels, which can give colours that neither
    image has.
    """
    source = _check_colors("source", source)
    reference = _check_colors("reference", reference)
    matched = match_histograms(source, reference, channel_axis=-1)
    return np.asarray(matched).astype(_float_type(source.dtype), copy=False)


def match_colors(source, reference, *, mode="sym", eps=1e-5):
    """Match ``source``'s colours to ``reference``'s with any of ``Config.color_match``'s modes.

    Parameters
    ----------
    source, reference : (..., 3) array_like
        As for :func:`match_linear`.
    mode : {'chol', 'pca', 'sym', 'histogram'}, optional
        A linear mode of :func:`match_linear`, or ``'histogram'`` for :func:`match_histogram`.
    eps : float, optional
        Passed to :func:`match_linear`; unused by ``'histogram'``.

    Returns
    -------
    matched : ndarray
        ``source`` recoloured, not clipped.
    """
    if mode == "histogram":
        return match_histogram(source, reference)
    if mode not in COLOR_MATCHES:
        raise ValueError(f"mode must be one of {', '.join(COLOR_MATCHES)}; got {mode!r}")
    return match_linear(source, reference, mode=mode, eps=eps)


def match_luminance(luminance, reference):
    """Shift and scale ``luminance`` to the mean and standard deviation of ``reference``.

    Parameters
    ----------
    luminance, reference : ndarray
        Luminance (Y) images of any shapes.

    Returns
    -------
    matched : ndarray
        ``(Y - mean_Y) · std_ref / std_Y + mean_ref``; a flat ``luminance`` is only shifted.
        Same float type as :func:`match_linear` gives.
    """
    luminance = np.asarray(luminance)
    reference = np.asarray(reference, dtype=np.float64)
    out_dtype = _float_type(luminance.dtype)
    y = luminance.astype(np.float64)
    std = y.std()
    scale = reference.std() / std if std > 1e-12 else 1.0
    return ((y - y.mean()) * scale + reference.mean()).astype(out_dtype, copy=False)


def is_grayscale(image, *, tolerance=GRAYSCALE_TOLERANCE):
    """Whether an RGB image's three channels are equal, to within ``tolerance``."""
    image = np.asarray(image, dtype=np.float64)
    if image.size == 0:
        return True
    return bool(
        np.abs(image[..., 0] - image[..., 1]).max() <= tolerance
        and np.abs(image[..., 1] - image[..., 2]).max() <= tolerance
    )


def _transfer_matrix(cov_source: np.ndarray, cov_reference: np.ndarray, mode: str) -> np.ndarray:
    if mode == "chol":
        try:
            return np.linalg.cholesky(cov_reference) @ np.linalg.inv(np.linalg.cholesky(cov_source))
        except np.linalg.LinAlgError:
            raise ValueError("colour covariance is singular (a flat or grey image); use eps > 0") from None
    if mode == "pca":
        return _sqrtm(cov_reference) @ _sqrtm(cov_source, inverse=True)
    root = _sqrtm(cov_source)
    inverse_root = _sqrtm(cov_source, inverse=True)
    return inverse_root @ _sqrtm(root @ cov_reference @ root) @ inverse_root


def _sqrtm(matrix: np.ndarray, *, inverse: bool = False) -> np.ndarray:
    """Symmetric square root (or inverse square root) of a symmetric positive matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    values = np.clip(values, 0.0, None)
    if inverse:
        if values.min() <= 1e-12 * max(values.max(), 1e-300):
            raise ValueError("colour covariance is singular (a flat or grey image); use eps > 0")
        roots = 1.0 / np.sqrt(values)
    else:
        roots = np.sqrt(values)
    return (vectors * roots) @ vectors.T


def _float_type(dtype: np.dtype) -> type:
    """scikit-image's rule: ``float16``/``float32`` stay single precision, everything else double."""
    return np.float32 if np.dtype(dtype) in (np.float16, np.float32) else np.float64


def _check_colors(name: str, image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim < 1 or image.shape[-1] != 3 or image.size == 0:
        raise ValueError(f"{name} must be a non-empty array of RGB colours (..., 3), got shape {image.shape}")
    return image


def _blend(original: np.ndarray, changed: np.ndarray, strength: float) -> np.ndarray:
    if strength >= 1.0:
        return changed
    if strength <= 0.0:
        return original
    return (1.0 - strength) * original + strength * changed


def _rgb01(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)


# -------------------------------------------------------------------------------------------------
# Methods
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColorState:
    """What a built-in method's ``prepare`` hands to its ``finish``.

    ``notice`` is a message for the user (the engine passes a state's ``notice``, when it has one,
    to the ``nst_notice`` hook once per run); ``skip`` makes ``finish`` return the output as it is.
    """

    notice: str | None = None
    skip: bool = False


GRAYSCALE_NOTICE = (
    "the content image is grayscale: it has no colours to keep, so '{name}' changes nothing "
    "(the result takes the style's colours)"
)


class NoColorPreservation:
    """Keep the style's colours: the images go through unchanged."""

    description = "keep the style's colours"

    def prepare(
        self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:
        return content, list(styles), None

    def finish(self, output: np.ndarray, content: np.ndarray, state: Any, *, config: Config) -> np.ndarray:
        return output


class _KeepsContentChroma:
    """What the luminance methods share: the result is the output's luminance with the content's
    chroma, and on grayscale content (no chroma to keep) the method is a no-op that says so."""

    #: The method's registered name, for the grayscale notice.
    name: str

    def prepare(
        self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:
        if is_grayscale(content):
            return content, list(styles), ColorState(notice=GRAYSCALE_NOTICE.format(name=self.name), skip=True)
        return self._prepare_colour(content, styles)

    def _prepare_colour(
        self, content: np.ndarray, styles: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:
        return content, list(styles), ColorState()

    def finish(self, output: np.ndarray, content: np.ndarray, state: Any, *, config: Config) -> np.ndarray:
        if isinstance(state, ColorState) and state.skip:
            return output
        return _luminance_with_chroma(output, content, config.color_strength)


class LuminanceTransfer(_KeepsContentChroma):
    """Transfer the style on luminance only and keep the content's chroma (Gatys et al. 2016)."""

    name = "luminance"
    description = "style transfer on luminance only, the photo's colours kept exactly (paper's method)"

    def _prepare_colour(
        self, content: np.ndarray, styles: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:
        content_y = rgb_to_yiq(content)[..., 0]
        run_styles = [_grey3(match_luminance(rgb_to_yiq(style)[..., 0], content_y)) for style in styles]
        return _grey3(content_y), run_styles, ColorState()


class LuminancePost(_KeepsContentChroma):
    """After a normal run, the output's luminance with the content's chroma."""

    name = "luminance-post"
    description = "after the run, the result's luminance with the photo's colours"


class HistogramMatching:
    """Recolour the style images to the content's colour statistics before the run."""

    description = "recolour the painting to the photo's colours before the run (paper's method; see --color-match)"

    def prepare(
        self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:
        strength = config.color_strength
        run_styles = [
            _rgb01(_blend(style, match_colors(style, content, mode=config.color_match), strength))
            if strength > 0 else style
            for style in styles
        ]
        return content, run_styles, ColorState()

    def finish(self, output: np.ndarray, content: np.ndarray, state: Any, *, config: Config) -> np.ndarray:
        return output


class HistogramPost:
    """After a normal run, match the output's colours to the content's."""

    description = "after the run, match the result's colours to the photo's (see --color-match)"

    def prepare(
        self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:
        return content, list(styles), ColorState()

    def finish(self, output: np.ndarray, content: np.ndarray, state: Any, *, config: Config) -> np.ndarray:
        strength = config.color_strength
        if strength <= 0:
            return output
        return _rgb01(_blend(output, match_colors(output, content, mode=config.color_match), strength))


def _grey3(luminance: np.ndarray) -> np.ndarray:
    """A luminance image as three equal channels in ``[0, 1]``, float32."""
    return np.repeat(_rgb01(luminance)[..., None], 3, axis=-1)


def _luminance_with_chroma(output: np.ndarray, content: np.ndarray, strength: float) -> np.ndarray:
    """``output``'s luminance with ``strength`` of ``content``'s chroma (the rest: ``output``'s own)."""
    out_yiq = rgb_to_yiq(output)
    content_yiq = rgb_to_yiq(content)
    out_yiq[..., 1:] = _blend(out_yiq[..., 1:], content_yiq[..., 1:], strength)
    return _rgb01(yiq_to_rgb(out_yiq))


def result_color_method(name: str, color_methods: Any) -> Any:
    """The colour method a one-pass method (fast, instant) applies to its finished result:
    ``NAME-post`` where one is registered (a network has no style image to recolour before)."""
    post = f"{name}-post"
    return color_methods.get(post if not name.endswith("-post") and post in color_methods else name)


@hookimpl
def nst_register_color_methods(register) -> None:
    register("none", NoColorPreservation())
    register("luminance", LuminanceTransfer())
    register("histogram", HistogramMatching())
    register("luminance-post", LuminancePost())
    register("histogram-post", HistogramPost())
