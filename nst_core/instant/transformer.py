"""The style transformer: a photo and a style vector in, the photo painted in that style out.

Magenta's ``nza_model.transform`` (Ghiasi et al. 2017) with width multiplier ``alpha = 0.25``,
the network of the mobile (TF Lite) release whose weights nst-core embeds. Channels
``c1, c2, c3 = 8, 16, 32``::

    contract   9×9 conv 3→c1 · 3×3 conv stride 2 c1→c2 · 3×3 conv stride 2 c2→c3   (each + ReLU)
    residual   5 blocks: x + CIN(conv(ReLU(CIN(conv(x)))))                     (3×3, c3→c3)
    expand     ×2 nearest + 3×3 conv c3→c2, CIN, ReLU · ×2 nearest + 3×3 conv c2→c1, CIN, ReLU
               · 9×9 conv c1→3, CIN, sigmoid

Every convolution pads by reflection (``MirrorPad``) and pads itself, so the output has the
input's size (a multiple of 4; :func:`nst_core.instant.stylize_instant_array` pads and crops
any other size). The
contracting convolutions' batch normalization is folded into their biases; they see no style.

*Conditional instance normalization* (CIN, Dumoulin et al. 2017) normalizes each channel of a
feature map by its mean and variance over the whole image, then scales and shifts it by
``gamma`` and ``beta`` that depend on the style: here both are linear functions of the
100-number style vector (Magenta's ``style_params/…/StyleNorm/Conv_1`` for ``gamma`` and
``…/Conv`` for ``beta``), 13 layers × 2 of them (:class:`StyleProjection`).

Because the statistics are taken over the whole image, the network is not local. But once the
13 layers' means and variances are fixed, every output pixel depends only on a window of the
input (:data:`RECEPTIVE_RADIUS` pixels each side): :func:`transform` can *record* the
statistics of one pass and another pass can *use* them, which is how large images are done in
tiles (:mod:`nst_core.instant.tiles`). With fixed statistics the normalization is a per-channel
affine map, which is folded into the convolution before it (one pass over the feature map less).

How the layers are computed (channels-last maps, sub-pixel and phase-map convolutions, fused
oneDNN calls) is in :mod:`nst_core.instant.ops`; the result is the same network to float rounding
(tests/test_instant_network.py compares it with onnxruntime on the source graph).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .predictor import STYLE_DIM

#: Channels at full, half and quarter resolution (Magenta's 32, 64, 128 × alpha 0.25).
CHANNELS = (8, 16, 32)
#: Residual blocks.
RESIDUAL_BLOCKS = 5
#: Added to the variance before its square root (the graph's ``StyleNorm/batchnorm/add/y``).
EPSILON = 1e-5
#: Total downsampling of the contracting part: sizes must be a multiple of it.
STRIDE = 4
#: How far (in input pixels, each side) an output pixel's value reaches back into the input
#: once the normalization statistics are fixed (measured over every pixel phase in
#: tests/test_instant_tiles.py: 57).
RECEPTIVE_RADIUS = 57

#: The conditionally normalized layers, in order, as Magenta names them (``…/StyleNorm``).
NORM_LAYERS = (
    *(f"residual/residual{block}/conv{conv}" for block in range(1, RESIDUAL_BLOCKS + 1) for conv in (1, 2)),
    "expand/conv1/conv", "expand/conv2/conv", "expand/conv3/conv",
)

#: Per layer, the per-channel ``(mean, inverse standard deviation)`` of its convolution's output
#: (``1 / sqrt(variance + EPSILON)``), float32 vectors: what instance normalization measures.
Statistics = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
#: Per layer, ``(gamma, beta)``, float32 vectors of the layer's channels: what the style vector sets.
StyleParameters = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
#: Per normalized layer, its resolution's stride relative to the input image (the residual blocks
#: work at a quarter of it; the expanding layers' outputs are at a half, then the full size).
LAYER_STRIDES = {**{layer: 4 for layer in NORM_LAYERS[:2 * RESIDUAL_BLOCKS]},
                 "expand/conv1/conv": 2, "expand/conv2/conv": 1, "expand/conv3/conv": 1}
#: The expanding layers' outputs are held as phase maps (:mod:`nst_core.instant.ops`).
_PHASE_LAYERS = frozenset(NORM_LAYERS[2 * RESIDUAL_BLOCKS:])


@dataclass(frozen=True)
class SpatialStyle:
    """A style per pixel: several styles' ``(gamma, beta)`` mixed by soft masks.

    At every conditional normalization the per-pixel ``gamma`` and ``beta`` are
    ``Σ_k w_k(x, y) · gamma_k`` and ``Σ_k w_k(x, y) · beta_k``, with the masks ``w_k`` averaged over
    the layer's ``stride × stride`` blocks (:data:`LAYER_STRIDES`) and divided by their sum
    where they cover (Dumoulin et al. 2017, Ghiasi et al. 2017 mix styles in space this way);
    pixels no mask covers take the fixed mix ``rest``. Since ``gamma`` and ``beta`` are linear in
    the style vector, this is the network run with the masks' mix of the style vectors at every pixel.

    :param styles: one :data:`StyleParameters` per style (:meth:`Transformer.style_parameters`).
    :param weights: ``H×W×K`` float32 masks at the input's resolution (``K`` = number of styles).
    :param rest: ``K`` weights (summing to 1) for pixels no mask covers.

    Blocks are aligned on the image's origin, so a crop on multiples of :data:`STRIDE`
    (:meth:`crop`, as tiles are cut) pools exactly as the whole image does.
    """

    styles: tuple[StyleParameters, ...]
    weights: torch.Tensor
    rest: torch.Tensor

    def crop(self, top: int, bottom: int, left: int, right: int) -> SpatialStyle:
        """The same style for the image's ``[top:bottom, left:right]`` (edges on multiples of :data:`STRIDE`)."""
        return SpatialStyle(self.styles, self.weights[top:bottom, left:right], self.rest)

    def resized(self, hw: tuple[int, int]) -> SpatialStyle:
        """The same style for the image resized to ``hw`` (the masks resized as the image is)."""
        from ..image import resize_to

        weights = torch.from_numpy(resize_to(self.weights.cpu().numpy(), hw)).to(self.weights.device)
        return SpatialStyle(self.styles, weights, self.rest)

    def layer_maps(self, hw: tuple[int, int]) -> Mapping[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{layer: (gamma map, beta map)}`` for an ``hw`` input, made when a layer asks for it:
        see :func:`style_maps`."""
        return _LazyMaps(self, hw)


def style_maps(style: SpatialStyle, stride: int, hw: tuple[int, int], *,
               pooled: dict[int, torch.Tensor] | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The per-pixel ``gamma`` and ``beta`` of every layer at ``stride`` (:data:`LAYER_STRIDES`)
    for an ``hw`` input: ``{layer: (gamma, beta)}``, ``1×C×h×w`` channels-last float32 maps laid
    out as the layer's output is (phase maps for the expanding layers). ``pooled`` caches the
    normalized masks per stride."""
    if style.weights.shape[:2] != tuple(hw):
        raise ValueError(f"the style's masks are {tuple(style.weights.shape[:2])}, the image {tuple(hw)}")
    pooled = {} if pooled is None else pooled
    if stride not in pooled:
        weights = style.weights.float().contiguous()  # h×w×K: a channels-last 1×K×h×w map
        if stride > 1:
            weights = F.avg_pool2d(weights.permute(2, 0, 1)[None], stride, stride)[0].permute(1, 2, 0).contiguous()
        total = weights.sum(dim=2, keepdim=True)
        mixed = weights / total.clamp(min=1e-6)
        uncovered = total[..., 0] <= 1e-6
        if bool(uncovered.any()):
            mixed[uncovered] = style.rest.to(mixed)
        pooled[stride] = mixed
    weights = pooled[stride]
    h, w, k = weights.shape
    layers = [name for name in NORM_LAYERS if LAYER_STRIDES[name] == stride]
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if not any(name in _PHASE_LAYERS for name in layers):
        # every layer of this stride at once (one product): gammas, then betas, K × Σ channels
        values = torch.cat([torch.stack([s[name][index].float() for s in style.styles])
                            for index in (0, 1) for name in layers], dim=1).to(weights.device)
        product = (weights.view(h * w, k) @ values).view(h, w, -1)
        depths = [style.styles[0][name][0].numel() for name in layers]
        slices = torch.split(product, depths * 2, dim=2)
        for number, name in enumerate(layers):
            out[name] = (slices[number].permute(2, 0, 1)[None], slices[len(layers) + number].permute(2, 0, 1)[None])
        return out
    # phase maps: the masks (K channels) put in phase order, Z[(2r + s)·C + c, i, j] = X[c, 2i + r, 2j + s],
    # so that each product comes out as the phase map itself
    phased = weights.view(h // 2, 2, w // 2, 2, k).permute(0, 2, 1, 3, 4).reshape(-1, k)
    for name in layers:
        maps = []
        for index in (0, 1):
            values = torch.stack([s[name][index].float() for s in style.styles]).to(weights.device)
            maps.append((phased @ values).view(h // 2, w // 2, -1).permute(2, 0, 1)[None])  # channels-last
        out[name] = (maps[0], maps[1])
    return out


class _LazyMaps(Mapping):
    """:func:`style_maps` per stride, on demand (a stride's maps live only while its layers run)."""

    def __init__(self, style: SpatialStyle, hw: tuple[int, int]) -> None:
        self.style, self.hw, self.pooled = style, hw, {}
        self.maps: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __getitem__(self, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        if layer not in self.maps:  # a stride's layers are made together, and each freed once used
            self.maps.update(style_maps(self.style, LAYER_STRIDES[layer], self.hw, pooled=self.pooled))
        return self.maps.pop(layer)

    def __iter__(self) -> Iterator[str]:
        return iter(NORM_LAYERS)

    def __len__(self) -> int:
        return len(NORM_LAYERS)


def spatial_style(styles: Sequence[StyleParameters], masks: torch.Tensor, rest: torch.Tensor) -> SpatialStyle:
    """A :class:`SpatialStyle` from styles and their ``H×W×K`` masks (checked)."""
    if masks.dim() != 3 or masks.shape[2] != len(styles) or not styles:
        raise ValueError(f"expected H×W×{len(styles)} masks, not of shape {tuple(masks.shape)}")
    rest = torch.as_tensor(rest, dtype=torch.float32).reshape(len(styles))
    return SpatialStyle(tuple(styles), masks.float(), rest / rest.sum())


def norm_key(layer: str) -> str:
    """A :data:`NORM_LAYERS` name as a module name: ``residual/residual1/conv1`` → ``residual1_conv1``."""
    return layer.removeprefix("residual/").removesuffix("/conv").replace("/", "_")


def _conv(in_channels: int, out_channels: int, kernel: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, bias=bias)


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions (``conv1``, ``conv2``; no bias: the normalization removes it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, 3, bias=False)
        self.conv2 = _conv(channels, channels, 3, bias=False)


class StyleProjection(nn.Module):
    """Style vector → ``gamma`` and ``beta`` of every normalized layer (two linear maps each)."""

    def __init__(self) -> None:
        super().__init__()
        depths = [CHANNELS[2]] * (2 * RESIDUAL_BLOCKS) + [CHANNELS[1], CHANNELS[0], 3]
        self.gamma = nn.ModuleDict({norm_key(n): nn.Linear(STYLE_DIM, d) for n, d in zip(NORM_LAYERS, depths)})
        self.beta = nn.ModuleDict({norm_key(n): nn.Linear(STYLE_DIM, d) for n, d in zip(NORM_LAYERS, depths)})

    def forward(self, vector: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{layer: (gamma, beta)}``, float32 vectors of the layer's channels, for one style vector."""
        weight = self.gamma[norm_key(NORM_LAYERS[0])].weight
        vector = vector.reshape(STYLE_DIM).to(device=weight.device, dtype=torch.float32)
        out = {}
        for layer in NORM_LAYERS:
            gamma, beta = self.gamma[norm_key(layer)], self.beta[norm_key(layer)]
            out[layer] = (F.linear(vector, gamma.weight.float(), gamma.bias.float()),
                          F.linear(vector, beta.weight.float(), beta.bias.float()))
        return out


class Transformer(nn.Module):
    """Photos in ``[0, 1]`` and a style → stylized photos of the same size, in ``[0, 1]``.

    State dict keys: ``contract.conv{1,2,3}.*``, ``residual.residual{1…5}.conv{1,2}.weight``,
    ``expand.conv{1,2,3}.*`` (Magenta's ``transformer/…`` scopes) and
    ``style.{gamma,beta}.{layer}.*`` (``style_params/transformer/{layer}/StyleNorm/Conv_1``
    and ``…/Conv``). The module holds the weights; :func:`transform` computes.
    """

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3 = CHANNELS
        self.contract = nn.ModuleDict({
            "conv1": _conv(3, c1, 9), "conv2": _conv(c1, c2, 3, stride=2), "conv3": _conv(c2, c3, 3, stride=2),
        })
        self.residual = nn.ModuleDict({f"residual{i}": ResidualBlock(c3) for i in range(1, RESIDUAL_BLOCKS + 1)})
        self.expand = nn.ModuleDict({"conv1": _conv(c3, c2, 3), "conv2": _conv(c2, c1, 3), "conv3": _conv(c1, 3, 9)})
        self.style = StyleProjection()
        self._kernels: dict[tuple, dict[str, torch.Tensor]] = {}

    def style_parameters(self, vector: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{layer: (gamma, beta)}`` of every normalized layer for one 100-number style vector."""
        return self.style(vector)

    def forward(self, images: torch.Tensor, style: StyleParameters, **kwargs) -> torch.Tensor:
        """:func:`transform` with this network's weights."""
        return transform(self, images, style, **kwargs)

    def kernels(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The convolutions as :func:`transform` runs them, in ``dtype``, made once per dtype:
        channels-last weights, the upsampling layers as sub-pixel convolutions
        (:func:`~nst_core.instant.ops.subpixel_weight`) and the last layer as a phase-map
        convolution (:func:`~nst_core.instant.ops.phase_weight`); biases of phase-map outputs
        repeated per phase."""
        key = (dtype, self.expand["conv3"].weight.device, tuple(p._version for p in self.parameters()))
        if key not in self._kernels:
            self._kernels = {key: _kernels(self, dtype)}
        return self._kernels[key]


def _kernels(net: Transformer, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    def weight(t: torch.Tensor) -> torch.Tensor:
        return t.detach().float().to(dtype).contiguous(memory_format=torch.channels_last)

    def bias(t: torch.Tensor, phases: int = 1) -> torch.Tensor:
        return t.detach().float().repeat(phases).to(dtype)

    out: dict[str, torch.Tensor] = {}
    for name, layer in net.contract.items():
        out[f"contract.{name}.weight"], out[f"contract.{name}.bias"] = weight(layer.weight), bias(layer.bias)
    for name, block in net.residual.items():
        out[f"residual.{name}.conv1.weight"] = weight(block.conv1.weight)
        out[f"residual.{name}.conv2.weight"] = weight(block.conv2.weight)
    for name in ("conv1", "conv2"):
        layer = net.expand[name]
        out[f"expand.{name}.weight"] = weight(ops.subpixel_weight(layer.weight.detach().float()))
        out[f"expand.{name}.bias"] = bias(layer.bias, 4)
    last = net.expand["conv3"]
    out["expand.conv3.weight"] = weight(ops.phase_weight(last.weight.detach().float()))
    out["expand.conv3.bias"] = bias(last.bias, 4)
    return out


def transform(
    net: Transformer,
    images: torch.Tensor,
    style: StyleParameters | SpatialStyle,
    *,
    statistics: Statistics | None = None,
    record: MutableMapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stylize one image: ``1×3×H×W`` in ``[0, 1]``, sides multiples of :data:`STRIDE`, at least 8.

    :param style: from :meth:`Transformer.style_parameters`, or a :class:`SpatialStyle` of the
        image's size (a style per pixel).
    :param statistics: normalize with these per-layer ``(mean, inverse standard deviation)``
        instead of the image's own; each normalization is then folded into its convolution.
    :param record: filled with each layer's ``(mean, inverse standard deviation)`` of this pass
        (without ``statistics``).
    :param dtype: what the convolutions compute in (statistics stay float32).
    :param out: an ``H×W×3`` float32 tensor to write the result into (e.g. a NumPy array's).
    :return: the stylized image in ``[0, 1]``, ``H×W×3`` float32 (``out`` if given).
    """
    if images.dim() != 4 or images.shape[:2] != (1, 3):
        raise ValueError(f"expected one 1×3×H×W image, not of shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height % STRIDE or width % STRIDE or min(height, width) < 2 * STRIDE:
        raise ValueError(f"image sides must be multiples of {STRIDE} and at least {2 * STRIDE}, not {height}×{width}")
    k = net.kernels(dtype)
    if isinstance(style, SpatialStyle):
        style = style.layer_maps((height, width))
    layers = _NormalizedLayers(style, statistics, record)

    h = ops.pad_into(images.to(dtype), 4)
    h = ops.conv(h, k["contract.conv1.weight"], k["contract.conv1.bias"], activation="relu")
    h = ops.conv(ops.pad_into(h, 1), k["contract.conv2.weight"], k["contract.conv2.bias"], stride=2, activation="relu")
    h = ops.conv(ops.pad_into(h, 1), k["contract.conv3.weight"], k["contract.conv3.bias"], stride=2, activation="relu")
    for index, name in enumerate(net.residual):
        first, second = NORM_LAYERS[2 * index], NORM_LAYERS[2 * index + 1]
        inner = layers.conv_norm(ops.pad_into(h, 1), k[f"residual.{name}.conv1.weight"], None, first,
                                 activation="relu")
        h = layers.conv_norm(ops.pad_into(inner, 1), k[f"residual.{name}.conv2.weight"], None, second, add=h)
    # ×2 nearest + 3×3 convolution: a convolution at the low resolution (input replicate-padded)
    # whose output is the phase map of the result (see ops)
    z = layers.conv_norm(ops.pad_into(h, 1, "replicate"), k["expand.conv1.weight"], k["expand.conv1.bias"],
                         "expand/conv1/conv", activation="relu", phases=4)
    h = ops.pixel_shuffle_into(z, 1, "replicate")
    # written straight into the buffer of the last convolution: a 9×9 one (reflect padding 4),
    # computed from phase map to phase map
    buffer, interior = ops.padded_buffer(h, k["expand.conv2.weight"].shape[0], h.shape[-2] - 2, h.shape[-1] - 2, 2)
    layers.conv_norm(h, k["expand.conv2.weight"], k["expand.conv2.bias"], "expand/conv2/conv", activation="relu",
                     phases=4, out=interior)
    z = layers.conv_norm(ops.fill_phase_border(buffer, 2), k["expand.conv3.weight"], k["expand.conv3.bias"],
                         "expand/conv3/conv", activation="sigmoid", phases=4)
    if out is None:
        out = torch.empty((height, width, 3), dtype=torch.float32, device=images.device)
    return ops.depth_to_space_into(out, z)


class _NormalizedLayers:
    """Convolution + conditional instance normalization (+ activation or residual addition),
    with the image's own statistics (measured, and recorded if asked) or with fixed ones."""

    def __init__(self, style: StyleParameters, statistics: Statistics | None,
                 record: MutableMapping[str, tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        self.style, self.statistics, self.record = style, statistics, record

    def conv_norm(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, layer: str, *,
                  activation: str | None = None, add: torch.Tensor | None = None, phases: int = 1,
                  out: torch.Tensor | None = None) -> torch.Tensor:
        """``activation(CIN(conv(x))) [+ add]`` for padded ``x``; ``phases`` = 4 for phase maps;
        written into ``out`` if given. ``gamma`` and ``beta`` are per-channel vectors, or per-pixel
        maps (:func:`style_maps`): then the map is normalized, and scaled and shifted after."""
        gamma, beta = self.style[layer]
        if gamma.dim() > 1:
            return self._spatial(x, weight, bias, layer, gamma, beta, activation=activation, add=add, phases=phases,
                                 out=out)
        if self.statistics is not None:  # y·scale + shift per channel: fold it into the convolution
            mean, inverse_std = self.statistics[layer]
            scale = (gamma * inverse_std).repeat(phases)
            shift = (beta - mean * gamma * inverse_std).repeat(phases)
            folded_bias = shift if bias is None else bias.float() * scale + shift
            folded = weight * scale.to(weight.dtype).reshape(-1, 1, 1, 1)
            y = ops.conv(x, folded, folded_bias.to(weight.dtype), activation=activation, add=add)
            return y if out is None else out.copy_(y)
        y, mean, inverse_std = ops.instance_norm(ops.conv(x, weight, bias), gamma, beta, eps=EPSILON, phases=phases,
                                                 out=out)
        if self.record is not None:
            self.record[layer] = (mean, inverse_std)
        if add is not None:
            return y.add_(add)
        if activation == "relu":
            return y.relu_()
        return y.sigmoid_() if activation == "sigmoid" else y

    def _spatial(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, layer: str,
                 gamma: torch.Tensor, beta: torch.Tensor, *, activation: str | None, add: torch.Tensor | None,
                 phases: int, out: torch.Tensor | None) -> torch.Tensor:
        """:meth:`conv_norm` with per-pixel ``gamma`` and ``beta`` maps."""
        if self.statistics is not None:  # the normalization alone folds into the convolution
            mean, inverse_std = self.statistics[layer]
            scale = inverse_std.repeat(phases)
            shift = (-mean * inverse_std).repeat(phases)
            folded_bias = shift if bias is None else bias.float() * scale + shift
            y = ops.conv(x, weight * scale.to(weight.dtype).reshape(-1, 1, 1, 1), folded_bias.to(weight.dtype))
            if out is not None:
                y = out.copy_(y)
        else:
            channels = gamma.shape[1] // phases
            ones = torch.ones(channels, dtype=torch.float32, device=x.device)
            y, mean, inverse_std = ops.instance_norm(ops.conv(x, weight, bias), ones, torch.zeros_like(ones),
                                                     eps=EPSILON, phases=phases, out=out)
            if self.record is not None:
                self.record[layer] = (mean, inverse_std)
        y = torch.addcmul(beta.to(y.dtype), y, gamma.to(y.dtype), out=y)
        if add is not None:
            return y.add_(add)
        if activation == "relu":
            return y.relu_()
        return y.sigmoid_() if activation == "sigmoid" else y
