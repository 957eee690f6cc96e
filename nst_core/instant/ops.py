"""The transformer's operations, written for speed on a small CPU.

On a 2-core CPU the transformer is bound by memory traffic as much as by arithmetic: its
full-resolution feature maps have few channels (8), so a pass over one costs about as much as
a convolution, and oneDNN's convolutions run slowly with few output channels (a 9×9
convolution to 3 channels at full resolution takes twice as long as the same arithmetic as a
5×5 convolution to 12 channels at half resolution). So:

- every map is in ``channels_last`` memory (the convolutions run about twice as fast);
- the upper half of the network works on *phase maps*: a map ``X`` of ``C`` channels at full
  resolution is held as ``Z`` of ``4·C`` channels at half resolution, with
  ``Z[(2·r + s)·C + c, i, j] = X[c, 2i + r, 2j + s]`` (``r``, ``s``: the row and column phase).
  An upsampling layer (×2 nearest neighbour, then a 3×3 convolution) becomes one 3×3
  convolution at the low resolution whose output *is* the phase map of the result
  (:func:`subpixel_weight`), and the last 9×9 convolution becomes a 5×5 convolution from phase
  map to phase map (:func:`phase_weight`), so the largest maps are never made;
- padding is written into a new buffer by one interior copy plus border copies
  (:func:`pad_into`, :func:`phase_pad`); a phase map is unpacked straight into a padded buffer
  (:func:`pixel_shuffle_into`), and a normalization can write its result straight into the
  next convolution's padded buffer (:func:`padded_buffer`, :func:`instance_norm`'s ``out``);
- instance-norm statistics are column means of the map seen as a ``pixels × channels`` matrix
  (a view of a channels-last map), which vectorize over the channels, unlike reductions over
  the spatial dimensions;
- a convolution followed by a ReLU, a ReLU6, a sigmoid or a residual addition is one oneDNN
  call where PyTorch has it (:func:`conv`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: ``[phase, tap, kernel index]``: which taps of a 3×3 kernel, applied to a ×2 nearest-neighbour
#: upsampled map, fall on the low-resolution rows ``i - 1, i, i + 1`` for an output row ``2i + phase``.
_SUBPIXEL_TAPS = torch.tensor(
    [[[1, 0, 0], [0, 1, 1], [0, 0, 0]],
     [[0, 0, 0], [1, 1, 0], [0, 0, 1]]],
    dtype=torch.float32,
)


def _fused_conv_available() -> bool:
    try:
        return hasattr(torch.ops.mkldnn, "_convolution_pointwise") and torch.backends.mkldnn.is_available()
    except (AttributeError, RuntimeError):
        return False


#: Whether oneDNN's fused convolution + activation / + addition (which ``torch.compile`` uses) is there.
FUSED_CONV = _fused_conv_available()


#: Activations :func:`conv` fuses: name → (oneDNN post-op, its scalars, the unfused in-place op).
_ACTIVATIONS = {
    "relu": ("relu", [], torch.relu_),
    "relu6": ("hardtanh", [0.0, 6.0], lambda y: y.clamp_(0.0, 6.0)),
    "sigmoid": ("sigmoid", [], torch.sigmoid_),
}


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, stride: int = 1, padding: int = 0,
         groups: int = 1, activation: str | None = None, add: torch.Tensor | None = None) -> torch.Tensor:
    """A convolution (zero ``padding``; the transformer pads ``x`` itself), then ``activation``
    (``relu``, ``relu6`` or ``sigmoid``) or the addition of ``add``, fused on CPUs where possible."""
    if FUSED_CONV and x.device.type == "cpu" and x.dtype == torch.float32:
        args = ([padding, padding], [stride, stride], [1, 1], groups)
        if add is not None:
            return torch.ops.mkldnn._convolution_pointwise.binary(x, add, weight, bias, *args, "add", None, None, [],
                                                                  None)
        post_op, scalars, _ = _ACTIVATIONS[activation] if activation else ("none", [], None)
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *args, post_op, scalars, "")
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=groups)
    if add is not None:
        return y.add_(add)
    return _ACTIVATIONS[activation][2](y) if activation else y


def _empty(like: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    return torch.empty((like.shape[0], channels, height, width), dtype=like.dtype, device=like.device,
                       memory_format=torch.channels_last)


def _source_row(padded_row: int, pad: int, size: int, mode: str) -> int:
    """Which row of an unpadded side of ``size`` rows lands on row ``padded_row`` of the padded one."""
    row = padded_row - pad
    if row < 0:
        return -row if mode == "reflect" else 0
    if row >= size:
        return 2 * (size - 1) - row if mode == "reflect" else size - 1
    return row


def fill_border(buffer: torch.Tensor, pad: int, mode: str = "reflect") -> torch.Tensor:
    """Fill the ``pad``-pixel border of ``buffer`` from its interior, as ``F.pad`` does in
    ``mode`` ``reflect`` (the edge pixel not repeated) or ``replicate``."""
    height, width = buffer.shape[-2] - 2 * pad, buffer.shape[-1] - 2 * pad
    rows = slice(pad, pad + height)
    for column in (*range(pad), *range(pad + width, width + 2 * pad)):  # columns first, interior rows …
        buffer[..., rows, column] = buffer[..., rows, pad + _source_row(column, pad, width, mode)]
    for row in (*range(pad), *range(pad + height, height + 2 * pad)):  # … then whole rows, corners too
        buffer[..., row, :] = buffer[..., pad + _source_row(row, pad, height, mode), :]
    return buffer


def pad_into(x: torch.Tensor, pad: int, mode: str = "reflect") -> torch.Tensor:
    """``F.pad(x, (pad,) * 4, mode=mode)`` into a new channels-last buffer."""
    buffer = _empty(x, x.shape[1], x.shape[-2] + 2 * pad, x.shape[-1] + 2 * pad)
    buffer[..., pad:pad + x.shape[-2], pad:pad + x.shape[-1]] = x
    return fill_border(buffer, pad, mode)


def _phase_view(z: torch.Tensor) -> torch.Tensor:
    """A phase map ``N × 4C × h × w`` as ``N × h × w × 2 × 2 × C`` (row phase, column phase, channel)."""
    return z.permute(0, 2, 3, 1).unflatten(3, (2, 2, z.shape[1] // 4))


def pixel_shuffle_into(z: torch.Tensor, pad: int, mode: str = "reflect") -> torch.Tensor:
    """The full map of phase map ``z``, padded by ``pad`` pixels (``mode``), in a new buffer."""
    n, c4, h, w = z.shape
    buffer = _empty(z, c4 // 4, 2 * h + 2 * pad, 2 * w + 2 * pad)
    interior = buffer[..., pad:pad + 2 * h, pad:pad + 2 * w].permute(0, 2, 3, 1)  # N, 2h, 2w, C (a view)
    interior.unflatten(1, (h, 2)).unflatten(3, (w, 2)).copy_(_phase_view(z).permute(0, 1, 3, 2, 4, 5))
    return fill_border(buffer, pad, mode)


def padded_buffer(like: torch.Tensor, channels: int, height: int, width: int,
                  pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A new channels-last buffer for a ``height × width`` map with ``pad`` pixels of border,
    and the view of its interior."""
    buffer = _empty(like, channels, height + 2 * pad, width + 2 * pad)
    return buffer, buffer[..., pad:pad + height, pad:pad + width]


def fill_phase_border(buffer: torch.Tensor, pad: int) -> torch.Tensor:
    """Fill the ``pad``-row border of a phase-map buffer so that it is the phase map of the full
    map reflect-padded by ``2·pad`` pixels.

    A full-resolution row ``2I + r`` of the padded map is a row of the same phase ``r`` (the
    reflection ``-x`` keeps the parity), so each border row of the result is one row of the
    interior's row-phase-``r`` channels; columns likewise.
    """
    h, w = buffer.shape[-2] - 2 * pad, buffer.shape[-1] - 2 * pad
    phases = _phase_view(buffer)  # N, H, W, row phase, column phase, C
    rows = slice(pad, pad + h)
    for column in (*range(pad), *range(pad + w, w + 2 * pad)):
        for phase in (0, 1):
            source = _source_row(2 * column + phase, 2 * pad, 2 * w, "reflect")
            phases[:, rows, column, :, phase] = phases[:, rows, pad + source // 2, :, phase]
    for row in (*range(pad), *range(pad + h, h + 2 * pad)):
        for phase in (0, 1):
            source = _source_row(2 * row + phase, 2 * pad, 2 * h, "reflect")
            phases[:, row, :, phase] = phases[:, pad + source // 2, :, phase]
    return buffer


def phase_pad(z: torch.Tensor, pad: int) -> torch.Tensor:
    """The phase map of the full map of ``z`` reflect-padded by ``2·pad`` pixels, in a new buffer."""
    buffer, interior = padded_buffer(z, z.shape[1], z.shape[-2], z.shape[-1], pad)
    interior.copy_(z)
    return fill_phase_border(buffer, pad)


def depth_to_space_into(out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Write the full map of phase map ``z`` into ``out``, an ``H × W × C`` (NumPy-layout) tensor."""
    h, w = z.shape[-2:]
    out.unflatten(0, (h, 2)).unflatten(2, (w, 2)).copy_(_phase_view(z)[0].permute(0, 2, 1, 3, 4))
    return out


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """The weight of ``conv3×3(upsample×2(x))`` as a 3×3 convolution of ``x`` itself that
    outputs the result's phase map.

    ``weight`` is ``Cout × Cin × 3 × 3``; the result is ``4·Cout × Cin × 3 × 3``. With ``x``
    replicate-padded by one pixel, it equals the ×2 map reflect-padded by one pixel and convolved
    with ``weight`` (a reflected border row of the ×2 map is a copy of the low map's border row).
    """
    taps = _SUBPIXEL_TAPS.to(weight)
    out_channels, in_channels = weight.shape[:2]
    combined = torch.einsum("rak,sbl,ockl->rsocab", taps, taps, weight)
    return combined.reshape(4 * out_channels, in_channels, 3, 3)


def phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """A ``K × K`` convolution (``K`` odd, stride 1) of a map padded by ``K // 2`` pixels, as a
    convolution from the padded map's phase map to the result's phase map.

    Output pixel ``2i + r`` reads padded rows ``2i + r + t`` (``t < K``), that is phase-map row
    ``i + a`` of phase ``q`` with ``2a + q = r + t``: a ``(K + 1) / 2``-square kernel.
    """
    out_channels, in_channels, size, _ = weight.shape
    half = (size + 1) // 2
    result = weight.new_zeros((2, 2, out_channels, 2, 2, in_channels, half, half))
    for r in (0, 1):
        for q in (0, 1):
            for a in range(half):
                t = 2 * a + q - r
                if not 0 <= t < size:
                    continue
                for s in (0, 1):
                    for p in (0, 1):
                        for b in range(half):
                            u = 2 * b + p - s
                            if 0 <= u < size:
                                result[r, s, :, q, p, :, a, b] = weight[:, :, t, u]
    return result.reshape(4 * out_channels, 4 * in_channels, half, half)


def instance_norm(y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, *, eps: float, phases: int = 1,
                  out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Instance normalization of a batch-of-one channels-last map with per-channel ``gamma`` and ``beta``.

    Returns the normalized map (written into ``out`` if given) and each channel's mean and
    inverse standard deviation (float32). With ``phases = 4``, ``y`` is a phase map and each
    channel is normalized over its four phases together.

    The map is seen as a ``pixels × channels`` matrix (a view of a channels-last map). With 16
    channels or more and no ``out``, ``torch.native_batch_norm`` in training mode does it in one
    call (for one image, batch statistics are the instance's; each phase is one more row);
    otherwise, where that kernel is slow on narrow rows, column means and the mean square of the
    centred values (two passes, no cancellation), then one multiply-add.
    """
    n, width, h, w = y.shape
    channels = width // phases
    if out is None and channels >= 16:
        rows = y.permute(0, 2, 3, 1).reshape(n, h * w * phases, 1, channels).permute(0, 3, 1, 2)
        normalized, mean, inverse_std = torch.native_batch_norm(rows, gamma.to(y.dtype), beta.to(y.dtype), None, None,
                                                                True, 0.0, eps)
        return normalized.permute(0, 2, 3, 1).reshape(n, h, w, width).permute(0, 3, 1, 2), mean, inverse_std
    rows = y.permute(0, 2, 3, 1).reshape(-1, width)
    if rows.dtype != torch.float32:
        rows = rows.float()
    mean = rows.mean(dim=0).view(phases, -1).mean(dim=0)
    variance = (rows - mean.repeat(phases)).square_().mean(dim=0).view(phases, -1).mean(dim=0)
    inverse_std = torch.rsqrt(variance + eps)
    scale = (gamma * inverse_std).repeat(phases).to(y.dtype).view(1, -1, 1, 1)
    shift = (beta - mean * gamma * inverse_std).repeat(phases).to(y.dtype).view(1, -1, 1, 1)
    return torch.addcmul(shift, y, scale, out=y if out is None else out), mean, inverse_std
