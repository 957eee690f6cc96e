"""How much memory a run may use, and whether a stage's size fits it whole or needs tiles.

Memory grows with the pixel count: a forward and backward pass of VGG-19 up to ``relu5_1``
keeps about 2 KB of activations per pixel (measured: 1.7–2.1 KB from 256² to 768²), so a
12-megapixel photo would need about 25 GB in one pass. :func:`plan_memory` decides, for each
stage of a run, whether the whole image fits the budget (``Config.max_memory``) and otherwise
how large the tiles of :mod:`nst_core.tiling` may be, and how many L-BFGS history pairs fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ConfigError, setting
from .optim import HISTORY_DTYPE

#: Share of the memory available when a run starts that it takes by default.
DEFAULT_SHARE = 0.5
#: Upper bound of the default budget on a CPU. Larger tiles are not faster there (a step costs
#: 15.7 µs per pixel at 512², 21 µs at 768² and 23.5 µs at 1024×768 on a 2-core AVX2 CPU), and
#: with PyTorch and the network (about 0.7 GB) a 12-megapixel run stays under 6 GB.
DEFAULT_CPU_CAP = 9 * 2**29  # 4.5 GiB
#: Float32 RGB images of a stage's size the run holds at once besides the network's activations:
#: the optimizer's point, gradient, direction and trial point, L-BFGS's latest pair, the best
#: image, the clamped image, the tiled gradient sum, the content image, and temporaries (one of
#: them the smoothing preconditioner's, :mod:`nst_core.smoothing`).
STAGE_IMAGE_COPIES = 15
#: Images of the output's size held through the run (content, colour-prepared content, styles).
OUTPUT_IMAGE_COPIES = 4
#: The network's forward and backward pass needs this much more than its activations (the
#: gradient buffers of the largest layers while they are back-propagated).
BACKWARD_MARGIN = 1.15
#: Float32 RGB images of a stage's size one L-BFGS history pair takes: two images in
#: :data:`nst_core.optim.HISTORY_DTYPE` (fp16: one).
PAIR_IMAGE_COPIES = 2 * HISTORY_DTYPE.itemsize / torch.float32.itemsize
#: Fewest L-BFGS history pairs a memory budget may leave (fewer makes L-BFGS gradient descent).
MIN_HISTORY = 3
#: Halo around each tile's core, in multiples of the network's largest stride (3 × 16 = 48 px
#: for VGG up to ``relu5_1``): enough that the core's features are nearly those of a whole pass.
HALO_STRIDES = 3
#: The smallest core side a tile may have, in multiples of the largest stride.
MIN_CORE_STRIDES = 4

_BYTES_PER_VALUE = 4  # float32
_RGB = 3 * _BYTES_PER_VALUE


def available_bytes(device: torch.device) -> int:
    """Memory free for this process now: GPU memory on CUDA, else RAM (container limits kept)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    candidates = [_meminfo_available()]
    candidates.append(_cgroup_room())
    found = [value for value in candidates if value is not None]
    if found:
        return min(found)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def default_budget(device: torch.device) -> int:
    """What a run's work may use when ``Config.max_memory`` is not set (PyTorch and the network
    not counted): a share of the memory available, on a CPU at most :data:`DEFAULT_CPU_CAP`."""
    share = int(DEFAULT_SHARE * available_bytes(device))
    return share if device.type == "cuda" else min(share, DEFAULT_CPU_CAP)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_room() -> int | None:
    """Bytes left under a cgroup v2 memory limit, if there is one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        current = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - current)


@dataclass(frozen=True)
class NetworkCost:
    """What the feature network costs in memory, measured once per run on a small image."""

    #: Bytes of activations per input pixel for a forward and backward pass.
    train_bytes_per_pixel: float
    #: Bytes per input pixel of the whole-image feature maps kept as content targets.
    target_bytes_per_pixel: float
    #: Stride of each requested layer (input side / feature-map side).
    strides: Mapping[str, int]
    #: NNPACK's workspace for Winograd's convolutions (:mod:`nst_core.winograd`): what the largest
    #: call needs, per input pixel, up to ``max_workspace_bytes`` (larger calls run in bands).
    workspace_bytes_per_pixel: float = 0.0
    max_workspace_bytes: int = 0

    def workspace(self, pixels: int) -> int:
        """Bytes of workspace the convolutions keep for an image of ``pixels``."""
        return int(min(self.max_workspace_bytes, self.workspace_bytes_per_pixel * pixels))

    def pass_bytes(self, pixels: int) -> int:
        """Bytes a forward and backward pass of an image of ``pixels`` needs: activations, their
        gradients and the convolutions' workspace."""
        return int(self.train_bytes_per_pixel * pixels) + self.workspace(pixels)

    @property
    def align(self) -> int:
        """Tile edges lie on multiples of this (the largest stride)."""
        return max(self.strides.values(), default=1)


def measure_network(
    network,
    layers_for_targets: tuple[str, ...],
    device: torch.device,
    *,
    side: int = 128,
    float_copies: tuple[str, ...] = (),
    max_workspace_bytes: int = 0,
) -> NetworkCost:
    """Count the activations ``network`` produces for a ``side``² image (forward hooks).

    ``network(image) -> {layer: features}``; every leaf module's output is counted at four bytes
    a value, which is what autograd keeps for the backward pass in fp32 (and more than it keeps
    in bf16). ``float_copies`` are the layers the loss terms convert to float32 when the network
    runs in a lower precision: those copies are kept for the backward pass too, on top.
    With ``max_workspace_bytes`` the 3×3 convolutions run by NNPACK (Winograd's) keep a
    workspace, what their largest call needs up to that many bytes.
    """
    from .winograd import convertible, workspace_bytes

    counted = workspace = 0

    def count(module, inputs, output) -> None:
        nonlocal counted, workspace
        if isinstance(output, torch.Tensor):
            counted += output.numel()
        if max_workspace_bytes and convertible(module):
            workspace = max(workspace, workspace_bytes(inputs[0].shape, module.out_channels))

    handles = [m.register_forward_hook(count) for m in network.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            features = network(torch.zeros((1, 3, side, side), device=device))
    finally:
        for handle in handles:
            handle.remove()
    counted += sum(features[name].numel() for name in float_copies if name in features)
    pixels = side * side
    strides = {name: max(1, round(side / f.shape[-1])) for name, f in features.items()}
    targets = sum(features[name].numel() for name in layers_for_targets if name in features)
    return NetworkCost(
        train_bytes_per_pixel=BACKWARD_MARGIN * counted * _BYTES_PER_VALUE / pixels,
        target_bytes_per_pixel=targets * _BYTES_PER_VALUE / pixels,
        strides=strides,
        workspace_bytes_per_pixel=workspace / pixels,
        max_workspace_bytes=max_workspace_bytes,
    )


@dataclass(frozen=True)
class MemoryPlan:
    """How one stage runs within the budget."""

    #: Tile core side in pixels; ``None``: the whole image in one pass.
    core: int | None
    #: Tile halo in pixels (0 when untiled).
    halo: int
    #: L-BFGS history pairs.
    history: int
    #: Bytes the stage's work is estimated to use.
    estimate: int

    @property
    def tiled(self) -> bool:
        return self.core is not None


def plan_memory(
    stage_hw: tuple[int, int],
    out_hw: tuple[int, int],
    *,
    budget: int,
    cost: NetworkCost,
    history: int,
) -> MemoryPlan:
    """Whole or tiled, and how much L-BFGS history, for a stage of ``stage_hw``.

    ``budget`` is the memory the run's work may use (images, optimizer state, activations; not
    PyTorch and the network). The whole image is used when it fits with the full ``history``;
    otherwise the history shrinks to what the budget allows (at least :data:`MIN_HISTORY`) and
    the tile core is the largest multiple of the network's stride that fits.
    """
    room = budget
    stage_pixels = stage_hw[0] * stage_hw[1]
    out_pixels = out_hw[0] * out_hw[1]

    def fixed(pairs: int) -> int:
        return int(
            (STAGE_IMAGE_COPIES + PAIR_IMAGE_COPIES * pairs) * _RGB * stage_pixels
            + OUTPUT_IMAGE_COPIES * _RGB * out_pixels
            + cost.target_bytes_per_pixel * stage_pixels
        )

    whole = fixed(history) + cost.pass_bytes(stage_pixels)
    if whole <= room:
        return MemoryPlan(core=None, halo=0, history=history, estimate=whole)
    align = cost.align
    halo = HALO_STRIDES * align
    smallest_core = MIN_CORE_STRIDES * align
    pairs = history
    while pairs > MIN_HISTORY and fixed(pairs) + _tile_bytes(smallest_core, halo, cost) > room // 2:
        pairs -= 1  # history first gives up what tiles need, down to half the room
    core = smallest_core
    if fixed(pairs) + _tile_bytes(core, halo, cost) > room:
        need = fixed(MIN_HISTORY) + _tile_bytes(smallest_core, halo, cost)
        where = "" if stage_hw == tuple(out_hw) else f" (at its {stage_hw[1]}x{stage_hw[0]} stage)"
        raise ConfigError(
            f"not enough memory for a {out_hw[1]}x{out_hw[0]} result: the budget is {_gib(budget)} and the run "
            f"needs at least {_gib(need)}{where}; raise {setting('max_memory')} or lower {setting('size')}"
        )
    longest = max(stage_hw)
    while core + align <= longest and fixed(pairs) + _tile_bytes(core + align, halo, cost) <= room:
        core += align
    return MemoryPlan(core=core, halo=halo, history=pairs, estimate=fixed(pairs) + _tile_bytes(core, halo, cost))


def _tile_bytes(core: int, halo: int, cost: NetworkCost) -> int:
    from .parts import largest_outer_side

    side = largest_outer_side(core, halo)
    return cost.pass_bytes(side * side)


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"
