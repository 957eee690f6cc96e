"""Coarse-to-fine plans: which sizes a run optimizes at, for how many steps or how long.

A run optimizes at a ladder of sizes, each twice the previous one's side, and ends at the output
size; each stage starts from the previous stage's best image, upsampled. Most steps are then
cheap (a step at half the side costs about a quarter), and the fine stages only have to add
the fine texture. With ``Config.time_budget`` the stages get equal shares of the time left,
and each stage stops before a step that would not end within its share.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .config import Config
from .image import long_side_size

#: Stages whose long side would be smaller than this are left out of the ladder.
MIN_STAGE_SIDE = 64
#: With a time budget too small for this many steps at the output size, coarser sizes are
#: added (see :func:`scales_for_budget`).
MIN_BUDGET_STEPS = 20
#: How much more than in proportion to its pixels a larger stage's step may cost.
SIZE_MARGIN = 1.6
MAX_BUDGET_SCALES = 4
#: Outputs whose long side exceeds this are computed coarse to fine even with ``scales=1``: a
#: step at 4000×3000 costs minutes on a CPU (and tiles, see :mod:`nst_core.tiling`), so the
#: composition is found small and only refined at the large sizes.
DETAIL_SIDE = 1024
#: The automatic ladder of a large output starts at its first halving that is at most this long.
BASE_SIDE = 768
#: The automatic ladder's refining sizes take ``iterations / (REFINE_DIVISOR · 2^(k-1))`` steps
#: at the k-th doubling above the base (10, 5, 3 for 50), but at least MIN_REFINE_STEPS.
REFINE_DIVISOR = 5
MIN_REFINE_STEPS = 3


@dataclass(frozen=True)
class Stage:
    """One size of a coarse-to-fine run."""

    #: 1-based position in the ladder.
    number: int
    #: ``(height, width)`` optimized at.
    hw: tuple[int, int]
    #: Steps to take (with a time budget the stage runs until its share of the time is used,
    #: see :class:`BudgetClock`; Adam's learning rate still decays over this many).
    iterations: int

    @property
    def pixels(self) -> int:
        return self.hw[0] * self.hw[1]

    @property
    def label(self) -> str:
        return size_label(self.hw)


def size_label(hw: tuple[int, ...]) -> str:
    """``WIDTHxHEIGHT`` of an ``(…, height, width)`` shape."""
    return f"{hw[-1]}x{hw[-2]}"


def plan_stages(out_hw: tuple[int, int], config: Config) -> tuple[Stage, ...]:
    """The ladder of sizes for an output of ``out_hw``: ``config.scales`` sizes ending at it.

    Each coarser size halves the side; sizes under :data:`MIN_STAGE_SIDE` are dropped, so a
    small output may get fewer stages than asked for. The last stage takes ``config.iterations``
    steps, every coarser one ``config.coarse_iterations``. An output longer than
    :data:`DETAIL_SIDE` with ``scales=1`` gets the automatic ladder of
    :func:`_large_output_ladder` instead.
    """
    long_side = max(out_hw)
    if config.scales == 1 and long_side > DETAIL_SIDE:
        return _large_output_ladder(out_hw, config)
    sides = [round(long_side / 2**k) for k in reversed(range(config.scales))]
    sides = [side for side in sides[:-1] if side >= MIN_STAGE_SIDE] + [long_side]
    stages = []
    for number, side in enumerate(sides, 1):
        hw = out_hw if side == long_side else long_side_size(out_hw, side)
        final = number == len(sides)
        stages.append(Stage(number, hw, config.iterations if final else config.coarse_iterations))
    return tuple(stages)


def _large_output_ladder(out_hw: tuple[int, int], config: Config) -> tuple[Stage, ...]:
    """Halve the output's side until it is at most :data:`BASE_SIDE`; that base size takes
    ``config.iterations`` steps, each doubling fewer (see :data:`REFINE_DIVISOR`).

    4000×3000 at 50 steps: 500×375 (50), 1000×750 (10), 2000×1500 (5), 4000×3000 (3).
    """
    long_side = max(out_hw)
    doublings = 0
    while long_side / 2**doublings > BASE_SIDE:
        doublings += 1
    stages = []
    for number, k in enumerate(range(doublings, -1, -1), 1):
        hw = out_hw if k == 0 else long_side_size(out_hw, round(long_side / 2**k))
        above = doublings - k
        steps = config.iterations if above == 0 else max(
            MIN_REFINE_STEPS, round(config.iterations / (REFINE_DIVISOR * 2 ** (above - 1)))
        )
        stages.append(Stage(number, hw, steps))
    return tuple(stages)


def scales_for_budget(out_pixels: int, seconds: float, *, step_seconds: float, step_pixels: int) -> int:
    """How many sizes a time-budgeted run needs so that its first size gets enough steps.

    At the output size a step costs about ``step_seconds · out_pixels / step_pixels`` (a step's
    cost grows with the pixel count). If the budget buys fewer than :data:`MIN_BUDGET_STEPS`
    there, sizes halving the side are added (up to :data:`MAX_BUDGET_SCALES`) until the
    coarsest one affords them in its share of the budget (about a third), so that a small
    budget still gives a styled image, computed small and refined at the output size as time
    allows.
    """
    scales = 1
    while scales < MAX_BUDGET_SCALES:
        share = 1.0 if scales == 1 else 1 / 3
        coarsest_pixels = out_pixels / 4 ** (scales - 1)
        if seconds * share / (step_seconds * coarsest_pixels / step_pixels) >= MIN_BUDGET_STEPS:
            break
        scales += 1
    return scales


class BudgetClock:
    """Splits a time budget over the stages and says when a stage must stop.

    Each stage, when it starts, gets an equal share of the time left among the stages left
    (time a stage does not use passes on). A step is only started when, at the last step's
    pace, it ends within the stage's share; a stage is only started when its set-up and one
    step, estimated from the previous stage's pace and the pixel ratio, fit in the budget.
    """

    def __init__(self, seconds: float, started: float, stages: tuple[Stage, ...], clock=time.perf_counter):
        self.stages = stages
        self.clock = clock
        self.deadline = started + seconds
        self.stage_deadline = self.deadline
        self.step_seconds: float | None = None  # pace of the current stage (last step)
        self._pixels = stages[0].pixels
        self._last_step_end: float | None = None

    def start_stage(self, stage: Stage) -> None:
        """Set the deadline of ``stage``: an equal share of the time left among the stages left."""
        now = self.clock()
        stages_left = sum(1 for s in self.stages if s.number >= stage.number)
        self.stage_deadline = now + max(0.0, self.deadline - now) / stages_left
        if self.step_seconds is not None:
            self.step_seconds *= stage.pixels / self._pixels
        self._pixels = stage.pixels
        self._last_step_end = now

    def affordable(self, stage: Stage) -> bool:
        """Whether ``stage``'s set-up and first step end within the whole budget (estimated).

        Set-up (content and style targets) costs about one more step; a step's cost grows
        faster than the pixel count at large sizes (18.5 s at 1024×768 against 4 × 3.0 s at
        512×384 on a 2-core AVX2 CPU), hence the margin.
        """
        if self.step_seconds is None:
            return True
        estimate = SIZE_MARGIN * self.step_seconds * stage.pixels / self._pixels
        return self.clock() + 2 * estimate <= self.deadline

    def step_done(self) -> bool:
        """Record a step's end; ``True`` when the stage must stop (the next step would be late)."""
        now = self.clock()
        if self._last_step_end is not None:
            self.step_seconds = now - self._last_step_end
        self._last_step_end = now
        return now + (self.step_seconds or 0.0) > self.stage_deadline

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def estimated_steps_left(self) -> int:
        """Steps the rest of the budget buys at the current pace (for progress totals only)."""
        if not self.step_seconds:
            return 0
        return int(math.floor(self.left() / self.step_seconds))


def remaining_seconds(stages: tuple[Stage, ...], stage: Stage, steps_in_stage: int, pace: float) -> float:
    """Seconds the planned steps left take at ``pace`` (seconds per step at ``stage``'s size)."""
    left = max(0, stage.iterations - steps_in_stage) * pace
    for later in stages[stage.number :]:
        left += later.iterations * pace * later.pixels / stage.pixels
    return left
