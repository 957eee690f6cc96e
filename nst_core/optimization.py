"""The ``optimize`` method: Gatys, Ecker & Bethge's optimization of the image itself.

images → features → losses → L-BFGS/Adam → colour → image, at a ladder of sizes
(:mod:`nst_core.schedule`), each size whole or in tiles (:mod:`nst_core.memory`,
:mod:`nst_core.tiling`), within a time budget if one is set. Registered as the method
``optimize`` (:mod:`nst_core.methods`); :func:`nst_core.stylize` runs it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from .config import Config
from .device import autocast, check_convolution, check_precision, resolve_device
from .errors import ConfigError, InputError, setting
from .image import long_side_size, resize_to, to_array, to_tensor
from .init_methods import accepts_styles
from .losses import grams_as_computed
from .malloc import allocator, large_blocks_from_heap
from .memory import (
    MIN_HISTORY,
    MemoryPlan,
    NetworkCost,
    default_budget,
    measure_network,
    plan_memory,
)
from .objective import build_objective
from .optim import LBFGS_HISTORY, StopOptimization, optimize
from .plugins import RunContext
from .precision import Choice, time_step
from .precision import choose as choose_layout
from .records import Plan, Progress, Result
from .schedule import BudgetClock, Stage, plan_stages, remaining_seconds, scales_for_budget, size_label
from .tiling import TiledEvaluator, check_tileable
from .winograd import MAX_WORKSPACE, with_winograd

#: Long side of the 4:3 image on which precision, memory format and convolutions are timed (a few
#: steps, once per machine and size; see :mod:`nst_core.precision`), or the output's long side if
#: shorter. Not smaller: which is faster changes with the size. On AMD EPYC (AVX2, fp32) Winograd's
#: convolutions made VGG-19's pass 0.93–1.04× as fast at 256×192, 1.2–1.3× at 384×288 and 1.4× at
#: 512×384, and channels_last won at 256 px and lost at 512. The shape does not follow the photo's,
#: so photos of every aspect share one measurement.
PROBE_SIDE = 512
PROBE_ASPECT = (3, 4)
#: Untiled stages of at least this many pixels run their steps with malloc's blocks from its heap
#: (:func:`nst_core.malloc.large_blocks_from_heap`). AMD EPYC, 2 cores, 40 steps at 1024×768
#: (786 432 px): 6.4 s a step against 7.7 s, peak RSS 3409 against 3318 MB. At 512 px (197 000 and
#: 262 000 px, 8 steps) 0 to 7 % less time and peak RSS between −2 and +6 %, within the spread of
#: repeated runs, so smaller stages are left as they were (the issue's "peak RSS no higher").
HEAP_STEPS_MIN_PIXELS = 500_000
#: ... and are planned to take at least this many steps. The heap's holes cost RSS in any run; the
#: L-BFGS history fills them as the run goes on, and the time saved grows with the steps. AMD EPYC,
#: 1024×768, the command: 6 steps, peak RSS 2610–2901 MB with the heap against 2289–2370 without
#: (stop 27's default: 2657); 20 steps, 153–165 s and 2823–2989 MB against 157–176 s and
#: 2710–2786 MB (stop 27's default: 334 s, 3012 MB). So ``preview`` (15) maps its blocks and
#: ``balanced`` (40) and ``best`` take them from the heap.
HEAP_STEPS_MIN_ITERATIONS = 20
#: ... and only where the memory budget has room, besides the stage's estimate, for this share of
#: a step's modelled bytes (:class:`nst_core.memory.NetworkCost`: activations, their gradients,
#: workspace). The heap keeps every page a step touched, and glibc places a step's blocks at
#: different addresses as the step goes: at 1024×768 (AMD EPYC) its 1.27 GB of live blocks spread
#: over a heap of 2.1–3.0 GB, and the process's peak was 90–610 MB above mapped blocks' (runs of
#: 6, 20 and 40 steps). A step there is modelled at 2.1 GB, so the share leaves 1.05 GB: the
#: default budget (4.5 GiB) has room for it, ``--max-memory 3G`` at 1024×768 does not, and its
#: run maps its blocks instead of overrunning the budget.
HEAP_MEMORY_SLACK = 0.5


class OptimizationMethod:
    """The registered ``optimize`` method (see :class:`nst_core.registry.Method`)."""

    description = "optimize the image itself (Gatys et al.): best quality, a minute or more"
    #: Paints ``Config.regions`` (a style per region, :mod:`nst_core.regions`).
    supports_regions = True
    uses_styles = True
    #: Starts from ``Config.init``'s image and minimises every registered loss term: a video's frame
    #: loop passes the previous frame as a start image and a temporal loss term (nst_core.video).
    warm_start = True

    def inputs(self, config: Config) -> list[str]:
        """Files the method reads besides the content and styles (protected from overwriting)."""
        return [config.init_image] if config.init_image else []

    def run(self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config, run: RunContext) -> Result:
        return _Run(config, run).execute(content, list(styles))


class _Run:
    """The state of one optimization."""

    def __init__(self, config: Config, run: RunContext) -> None:
        self.config = config
        self.run = run
        self.hook = run.hook
        self.started = run.started
        registries = run.registries
        self.color = registries.color_methods.get(config.preserve_color)
        self.init = registries.init_methods.get(config.init)
        self.objective = build_objective(config, registries)
        self.model = self.objective.model
        self.spec = self.objective.spec
        self.terms = self.objective.terms
        self.device = resolve_device(config.device)
        check_precision(config.precision, self.device)
        check_convolution(config.convolution, self.device)
        self.cancel_requested = False
        self.budget: BudgetClock | None = None
        self.choice = Choice(config.precision, config.memory_format, reason="as configured",
                             convolution=config.convolution)
        #: Images with a side shorter than this are padded before the network (its deepest
        #: pooling would otherwise leave nothing); set once the network is measured.
        self.min_side = 1

    def execute(self, content: np.ndarray, styles: list[np.ndarray]) -> Result:
        config = self.config
        if not styles:
            raise InputError("at least one style image is needed")
        blend = self._blend(len(styles))
        out_hw = long_side_size(content.shape[:2], config.size)
        if config.regions:
            self._check_regions(out_hw)

        layers = list(self.objective.layers)
        extractor = self.objective.build_extractor(config, self.device, layers)
        source = getattr(extractor, "source", self.model)
        self.hook.nst_notice(message=f"{self.model} with weights from {source}, on {self.device}")
        # what the network costs, before anything image-sized is allocated: an impossible plan
        # is refused from arithmetic
        cost = measure_network(extractor, self._content_target_layers(), self.device)
        self.min_side = cost.align
        memory_budget = config.max_memory or default_budget(self.device)

        # a size no tile fits is refused from arithmetic before the probe computes anything (the
        # full-size stage is the largest; the plans below check every stage with the chosen setting)
        plan_memory(out_hw, out_hw, budget=memory_budget, cost=cost, history=MIN_HISTORY)
        probe_hw = tuple(max(self.min_side, side) for side in long_side_size(PROBE_ASPECT, min(max(out_hw), PROBE_SIDE)))
        self.choice = self._choose_layout(extractor, probe_hw, layers[-1])
        self.hook.nst_notice(message=f"network runs in {self.choice.label}: {self.choice.reason}")
        # the loss terms' float32 copies of what they read below fp32; NNPACK's workspace
        copies = tuple(layers) if self.choice.precision != "fp32" else ()
        workspace = MAX_WORKSPACE if self.choice.convolution == "winograd" else 0
        if copies or workspace:
            cost = measure_network(extractor, self._content_target_layers(), self.device,
                                   float_copies=copies, max_workspace_bytes=workspace)
        stages = plan_stages(out_hw, self._plan_config(out_hw, probe_hw))
        plans = [plan_memory(stage.hw, out_hw, budget=memory_budget, cost=cost,
                             history=min(LBFGS_HISTORY, stage.iterations)) for stage in stages]
        if self.choice.memory_format == "channels_last":
            extractor = extractor.to(memory_format=torch.channels_last)
        if self.choice.convolution == "winograd":
            extractor = with_winograd(extractor)
        if len(stages) > 1:
            sizes = " → ".join(stage.label for stage in stages)
            self.hook.nst_notice(message=f"coarse to fine: {sizes}")

        budget = BudgetClock(config.time_budget, self.started, stages) if config.time_budget else None
        self.budget = budget
        self.hook.nst_plan(plan=Plan(method="optimize", stages=tuple((s.label, s.iterations) for s in stages),
                                     budgeted=budget is not None))
        content = resize_to(content, out_hw)
        style_long_side = max(16, round(max(out_hw) * config.style_scale))
        styles = [resize_to(s, long_side_size(s.shape[:2], style_long_side)) for s in styles]
        content_for_run, styles_for_run, color_state = self.color.prepare(content, styles, config=config)
        if getattr(color_state, "notice", None):  # e.g. "luminance transfer is a no-op on grayscale"
            self.hook.nst_notice(message=color_state.notice)

        generator = torch.Generator().manual_seed(config.seed)
        network = self._network(extractor)
        image: torch.Tensor | None = None
        steps_done, best_step, cancelled = 0, 0, False
        best_losses: Mapping[str, float] = {}
        tiling = "none"
        for stage, plan in zip(stages, plans):
            if budget and image is not None and not budget.affordable(stage):
                self.hook.nst_notice(
                    message=f"time budget: no time for a step at {stage.label}; the result is upscaled "
                    f"from {size_label(tuple(image.shape))}"
                )
                break
            reporter = _StageReporter(self, stages, stage, steps_done, finish=lambda best: self._finish(
                best, out_hw, content, color_state))
            tiles = self._tiles_for(network, plan, cost, stage, memory_budget, reporter) if plan.tiled else None
            if tiles is not None:
                tiling = f"{plan.core}px tiles + {plan.halo}px halo"
            content_tensor = to_tensor(resize_to(content_for_run, stage.hw), self.device)
            self._set_targets(network, content_tensor, styles_for_run, stage, blend, tiles=tiles,
                              style_tiles=self._style_tiles(network, cost, stage, memory_budget, out_hw))
            if image is None:
                given = {"styles": styles_for_run} if accepts_styles(self.init) else {}
                start = self.init(content=content_tensor, config=config, generator=generator, **given)
            else:
                start = upscale(image, stage.hw)
            del content_tensor
            if budget:
                budget.start_stage(stage)
            objective = tiles.objective(self.terms) if tiles is not None else self._objective(network, extractor)
            from_heap = _steps_from_heap(stage, plan, budget=memory_budget, cost=cost)
            heap = large_blocks_from_heap() if from_heap else contextlib.nullcontext()
            with torch.random.fork_rng(devices=[]), heap:
                torch.manual_seed(config.seed + stage.number - 1)
                iterations = stage.iterations if budget is None else 10**9
                outcome = optimize(
                    start, objective, optimizer=config.optimizer, iterations=iterations,
                    learning_rate=config.learning_rate, on_step=reporter.on_step, horizon=stage.iterations,
                    history=plan.history, smoothing=config.lbfgs_smoothing,
                )
            del start, objective
            if outcome.steps:
                best_step, best_losses = steps_done + outcome.best_step, outcome.best_losses
            steps_done += outcome.steps
            image = outcome.best_image
            if self.cancel_requested:
                cancelled = True
                break

        assert image is not None
        return Result(
            image=self._finish(image, out_hw, content, color_state),
            losses=best_losses,
            steps=steps_done,
            best_step=best_step,
            elapsed=time.perf_counter() - self.started,
            cancelled=cancelled,
            info={
                "method": "optimize",
                "model": self.model,
                "weights": str(source),
                "device": str(self.device),
                "precision": self.choice.precision,
                "memory_format": self.choice.memory_format,
                "convolution": self.choice.convolution,
                "size": f"{out_hw[1]}x{out_hw[0]}",
                "scales": " ".join(stage.label for stage in stages),
                "tiling": tiling,
                "max_memory": str(memory_budget),
                "allocator": allocator(),
            },
        )

    def _set_targets(self, network, content_tensor, styles_for_run, stage: Stage, blend, *, tiles, style_tiles) -> None:
        """Content and style targets at ``stage``'s size (the style keeps its size ratio).

        With ``tiles`` the content features are assembled from tiles; with ``style_tiles`` the
        style images' statistics are summed over tiles (a style image as large as the stage).
        """
        style_side = max(16, round(max(stage.hw) * self.config.style_scale))
        style_tensors = (
            to_tensor(resize_to(s, long_side_size(s.shape[:2], style_side)), self.device) for s in styles_for_run
        )
        for term in self.terms.values():  # terms that depend on the size (regions' masks)
            set_image_size = getattr(term, "set_image_size", None)
            if set_image_size is not None:
                set_image_size(stage.hw)
        with torch.no_grad():
            if tiles is not None:
                content_features = tiles.whole_maps(content_tensor, self._content_target_layers())
            else:
                content_features = network(content_tensor)
            for term in self.terms.values():
                term.set_content_targets(content_features)
            del content_features
            if style_tiles is not None:
                statistics = [style_tiles.summed_statistics(style, self.terms) for style in style_tensors]
                for name, term in self.terms.items():
                    if term.layers:  # terms that read no features have no style targets
                        term.set_style_statistics([s[name] for s in statistics], blend)
                return
            style_features = [network(style) for style in style_tensors]
            for term in self.terms.values():
                term.set_style_targets(style_features, blend)

    def _check_regions(self, out_hw) -> None:
        """Refuse what regions cannot do; say when a mask is stretched to the photo's shape."""
        if self.config.init == "instant":
            raise ConfigError(f"{setting('init')} instant paints the whole photo with one style, not per region; "
                              f"use {setting('init')} content with {setting('regions')}")
        for region in self.config.regions:
            if region.mask is not None:
                height, width = region.mask.shape
                if abs(math.log((width / height) / (out_hw[1] / out_hw[0]))) > 0.05:
                    name = f"'{region.label}'" if region.label else "a region's mask"
                    self.hook.nst_notice(message=f"mask {name} is {width}x{height}: stretched to the photo's "
                                                 f"shape ({out_hw[1]}x{out_hw[0]})")

    def _content_target_layers(self) -> tuple[str, ...]:
        return self.objective.content_target_layers

    def _tiles_for(self, network, plan: MemoryPlan, cost: NetworkCost, stage: Stage, memory_budget: int, reporter):
        """The tiled evaluator of a stage too large for memory, reporting progress per tile."""
        check_tileable(self.terms)
        if min(stage.hw) < cost.align:
            raise ConfigError(
                f"a {stage.label} image is too thin to compute in tiles (its short side is under {cost.align} px); "
                f"raise {setting('max_memory')} or lower {setting('size')}"
            )
        tiles = TiledEvaluator(network, core=plan.core, halo=plan.halo, strides=cost.strides, on_tile=reporter.on_tile)
        count = len(tiles.parts(stage.hw, shift=False))
        self.hook.nst_notice(
            message=f"{stage.label} does not fit in {memory_budget / 2**30:.1f} GiB of memory whole: "
            f"{count} tiles of up to {plan.core} px (+{plan.halo} px overlap), seams moving every step"
        )
        return tiles

    def _style_tiles(self, network, cost: NetworkCost, stage: Stage, memory_budget: int, out_hw):
        """A tiled evaluator for the style images at ``stage`` if their pass does not fit whole."""
        style_side = max(16, round(max(stage.hw) * self.config.style_scale))
        style_hw = long_side_size(stage.hw, style_side)  # the content's aspect: an upper bound
        style_hw = (max(style_hw), max(style_hw))
        plan = plan_memory(style_hw, out_hw, budget=memory_budget, cost=cost, history=0)
        if not plan.tiled:
            return None
        check_tileable(self.terms)
        return TiledEvaluator(network, core=plan.core, halo=plan.halo, strides=cost.strides)

    def _network(self, extractor) -> Callable[[torch.Tensor], Mapping[str, torch.Tensor]]:
        """``image -> features`` in the run's precision and layout; an image thinner than the
        network's deepest stride is padded (edge pixels repeated) so that every layer has a
        position, and the padding's gradient flows back onto the edge."""
        min_side = self.min_side

        def network(image: torch.Tensor):
            height, width = image.shape[-2:]
            if height < min_side or width < min_side:
                pad = (0, max(0, min_side - width), 0, max(0, min_side - height))
                image = torch.nn.functional.pad(image, pad, mode="replicate")
            with self._autocast():
                return extractor(self._layout(image))

        return network

    def _objective(self, network, extractor: torch.nn.Module):
        """The untiled step's loss of an image; ``network`` runs ``extractor``, on whose layers the
        Gram matrices are taken as they are computed (:func:`grams_as_computed`)."""
        gram_layers = {name for term in self.terms.values() for name in getattr(term, "gram_layers", ())}

        def objective(point: torch.Tensor) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
            # The loss of the image as it will be saved: pixels outside [0, 1] count as clipped.
            # Unclipped, L-BFGS drifts out of range and the saved (clipped) result scores much
            # worse than the loss says: 0.73 instead of 0.62 after 300 steps at 512 px (README).
            image = point.clamp(0.0, 1.0)
            with grams_as_computed(extractor, gram_layers):
                features = network(image)
                losses = {name: term.weight * term(image, features) for name, term in self.terms.items()}
            return sum(losses.values()), losses

        return objective

    def _finish(self, image: torch.Tensor, out_hw, content: np.ndarray, color_state) -> np.ndarray:
        """The optimized image at the output size with the colour method's finish applied."""
        array = to_array(upscale(image, out_hw))
        return np.clip(self.color.finish(array, content, color_state, config=self.config), 0.0, 1.0)

    def _plan_config(self, out_hw, probe_hw) -> Config:
        """The config whose plan the run follows: with a small time budget, more sizes."""
        config = self.config
        if config.time_budget is None or config.scales > 1 or self.choice.step_seconds is None:
            return config
        scales = scales_for_budget(
            out_hw[0] * out_hw[1], config.time_budget,
            step_seconds=self.choice.step_seconds, step_pixels=probe_hw[0] * probe_hw[1],
        )
        return config.replace(scales=scales)

    def _choose_layout(self, extractor, probe_hw: tuple[int, int], deepest: str) -> Choice:
        """Precision, memory format and convolutions: as configured, or measured on a ``probe_hw`` image."""
        config = self.config
        probe_image = torch.rand((1, 3, *probe_hw), generator=torch.Generator().manual_seed(0)).to(self.device)

        def probe(precision: str, memory_format: str, convolution: str) -> float:
            layout = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
            net = extractor.to(memory_format=layout)
            if convolution == "winograd":
                net = with_winograd(net)

            def step() -> None:
                point = probe_image.contiguous(memory_format=layout).requires_grad_(True)
                with autocast(precision, self.device):
                    features = net(point)
                sum(f.float().square().mean() for f in features.values()).backward()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)

            try:
                return time_step(step)
            finally:
                extractor.to(memory_format=torch.contiguous_format)

        return choose_layout(
            config.precision, config.memory_format, self.device, probe=probe,
            cache_key=f"{self.model} to {deepest} at {probe_hw[1]}x{probe_hw[0]}",
            requested_convolution=config.convolution,
        )

    def _layout(self, image: torch.Tensor) -> torch.Tensor:
        if self.choice.memory_format == "channels_last":
            return image.contiguous(memory_format=torch.channels_last)
        return image

    def _blend(self, count: int) -> list[float]:
        blend = self.config.style_blend or (1.0,) * count
        if len(blend) != count:
            raise ConfigError(f"{setting('style_blend')} has {len(blend)} weights for {count} style images")
        return [b / sum(blend) for b in blend]

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.choice.precision, self.device)


class _StageReporter:
    """Progress of one stage: after each step (``on_step``) and, when tiled, each tile (``on_tile``).

    Reports through the run hooks, writes snapshots, asks whether to cancel, and enforces the
    time budget, also between the tiles of a long step.
    """

    def __init__(self, run: _Run, stages: tuple[Stage, ...], stage: Stage, steps_before: int, *, finish) -> None:
        self.run = run
        self.stages = stages
        self.stage = stage
        self.steps_before = steps_before
        self.finish = finish
        self.began = self.last_step_end = time.perf_counter()
        self.steps = 0
        self.losses: Mapping[str, float] = {}
        self.planned_total = sum(s.iterations for s in stages)

    def on_step(self, step: int, losses: Mapping[str, float], best: Callable[[], torch.Tensor]) -> bool:
        run, budget = self.run, self.run.budget
        now = time.perf_counter()
        self.steps, self.losses, self.last_step_end = step, losses, now
        out_of_time = budget.step_done() if budget else False
        progress = self._progress(now, remaining=self._remaining(now, step, (now - self.began) / step))
        run.hook.nst_progress(progress=progress)
        if run.config.save_every and progress.step % run.config.save_every == 0:
            run.hook.nst_intermediate(image=self.finish(best()), progress=progress)
        if run.run.cancelled(progress):
            run.cancel_requested = True
        return run.cancel_requested or out_of_time

    def on_tile(self, done: int, tiles: int) -> None:
        """Between two tiles of a step: report, and stop the step if cancelled or out of time."""
        run, budget = self.run, self.run.budget
        now = time.perf_counter()
        step_pace = (now - self.last_step_end) * tiles / done  # this step's duration, extrapolated
        remaining = step_pace * (1 - done / tiles) + self._remaining(now, self.steps + 1, step_pace)
        progress = self._progress(now, remaining=remaining, tile=done, tiles=tiles)
        run.hook.nst_progress(progress=progress)
        if run.run.cancelled(progress):
            run.cancel_requested = True
        if run.cancel_requested or (budget is not None and budget.left() <= 0):
            raise StopOptimization

    def _remaining(self, now: float, steps_in_stage: int, pace: float) -> float:
        budget = self.run.budget
        if budget:
            return budget.left()
        return remaining_seconds(self.stages, self.stage, steps_in_stage, pace)

    def _progress(self, now: float, *, remaining: float, tile: int = 0, tiles: int = 0) -> Progress:
        budget = self.run.budget
        step = self.steps_before + self.steps
        total = step + budget.estimated_steps_left() if budget else self.planned_total
        return Progress(
            step=step, total=total, losses=self.losses, elapsed=now - self.run.started,
            scale=self.stage.number, scales=len(self.stages), size=self.stage.label, remaining=remaining,
            tile=tile, tiles=tiles,
        )


def upscale(image: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``image`` (``1×3×H×W``) resized to ``hw`` (bicubic, kept in ``[0, 1]``); as is if it fits."""
    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    resized = torch.nn.functional.interpolate(image, size=tuple(hw), mode="bicubic", align_corners=False)
    return resized.clamp_(0.0, 1.0)


def _steps_from_heap(stage: Stage, plan: MemoryPlan, *, budget: int, cost: NetworkCost) -> bool:
    """Whether ``stage`` takes its steps' large blocks from malloc's heap: an untiled one of at least
    :data:`HEAP_STEPS_MIN_PIXELS` pixels planned for at least :data:`HEAP_STEPS_MIN_ITERATIONS`
    steps, whose ``plan`` leaves :data:`HEAP_MEMORY_SLACK` of a step's bytes of ``budget`` unused."""
    return (not plan.tiled and stage.pixels >= HEAP_STEPS_MIN_PIXELS and stage.iterations >= HEAP_STEPS_MIN_ITERATIONS
            and plan.estimate + HEAP_MEMORY_SLACK * cost.pass_bytes(stage.pixels) <= budget)
