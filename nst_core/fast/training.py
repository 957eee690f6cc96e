"""Training a fast-style network: random crops of photos, the engine's losses, Adam.

Johnson et al. train the transformation network so that its output for any photo minimises the
same perceptual loss the optimization method minimises per image. This module does that with
nst-core's own parts: the feature extractor comes from the extractor registry, and the loss terms
are the registered ones (:mod:`nst_core.losses`: content, Gram style, total variation, plus any
plugin's), evaluated image by image so that every term means what it means in a single run.

* **Data**: every photo is scaled once so that its short side is ``crop_size × PHOTO_SCALE``;
  each step draws ``batch_size`` random ``crop_size²`` crops (random photo, position and
  horizontal flip) from a seeded generator.
* **Targets**: the style's Gram matrices are computed once, from the style image at
  ``style_size`` (long side); the content targets are each crop's own features.
* **Checkpoints**: every ``checkpoint_every`` steps, on cancel and at the end, the output file is
  rewritten atomically with the weights, metadata and the optimizer and generator state, so that
  ``resume=True`` continues where it stopped (step count, Adam moments, crop sequence).
* **Precision**: :func:`nst_core.precision.choose` decides (bf16 only on hardware with fast bf16,
  confirmed by timing a training step); the losses stay float32.

The module never prints; progress goes to the ``nst_progress`` hook (``stage="train"``) and a
``nst_should_cancel`` answer of ``True`` stops after a checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..device import autocast, check_precision, resolve_device
from ..errors import ConfigError, InputError, OptimizationError, setting
from ..image import load_image, long_side_size, resize_to, to_tensor
from ..objective import build_objective
from ..plugins import open_run
from ..precision import choose as choose_precision
from ..precision import time_step
from ..records import Progress
from .model_file import SUFFIX, load_model, save_model
from .network import NetworkShape, TransformNet

#: Johnson et al.'s loss network and layers: VGG-16, content ``relu2_2``, style
#: ``relu1_2, relu2_2, relu3_3, relu4_3``.
FAST_MODEL = "vgg16"
FAST_CONTENT_LAYERS = ("relu2_2",)
FAST_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
#: Loss weights of a fast-style training run (relative losses, see :mod:`nst_core.losses`).
FAST_CONTENT_WEIGHT = 1.0
FAST_STYLE_WEIGHT = 10.0
FAST_TV_WEIGHT = 0.1
#: Photos are scaled so that their short side is this many crop sizes (room for random crops).
PHOTO_SCALE = 1.5
#: Image suffixes a photos folder is searched for.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
#: Config fields that define the training objective, stored in the model file and reused on resume.
LOSS_FIELDS = ("model", "pooling", "content_layers", "style_layers", "style_layer_weights",
               "content_weight", "style_weight", "tv_weight", "seed")


def training_config(**settings: Any) -> Config:
    """A :class:`Config` with the fast-style training defaults, overridden by ``settings``."""
    defaults = dict(
        model=FAST_MODEL, content_layers=FAST_CONTENT_LAYERS, style_layers=FAST_STYLE_LAYERS,
        content_weight=FAST_CONTENT_WEIGHT, style_weight=FAST_STYLE_WEIGHT, tv_weight=FAST_TV_WEIGHT,
    )
    return Config(**{**defaults, **settings})


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """Settings of a training run that are not loss settings (those are in :class:`Config`)."""

    #: Steps to reach (a resumed run continues from the file's step count up to this).
    steps: int = 1000
    #: Crops per step.
    batch_size: int = 4
    #: Side of the square random crops, in pixels.
    crop_size: int = 128
    #: Long side of the style image when its Gram matrices are taken; larger: larger brush strokes.
    style_size: int = 256
    #: Adam's learning rate.
    learning_rate: float = 1e-3
    #: Rewrite the model file every N steps (0: only at the end and on cancel).
    checkpoint_every: int = 100
    #: The network's shape (channels and residual blocks).
    network: NetworkShape = NetworkShape()

    def __post_init__(self) -> None:
        for name, minimum in (("steps", 1), ("batch_size", 1), ("crop_size", 32), ("style_size", 32),
                              ("checkpoint_every", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name.replace('_', ' ')} must be a whole number of at least {minimum}, got {value!r}")
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1 or not math.isfinite(rate):
            raise ConfigError(f"learning rate must be in (0, 1], got {rate!r}")

    def as_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "network"}
        values["network"] = self.network.as_dict()
        return values


@dataclass(frozen=True, kw_only=True, eq=False)
class TrainingResult:
    """The outcome of :func:`train`."""

    path: Path
    #: Steps the model has been trained for (all runs together).
    steps: int
    #: Steps this call did.
    steps_run: int
    #: Weighted losses of the last step, by term, and their ``total``.
    losses: Mapping[str, float]
    #: Mean total loss of the first and the last ten steps of this call.
    first_loss: float
    last_loss: float
    elapsed: float
    cancelled: bool = False
    info: Mapping[str, str] = dataclasses.field(default_factory=dict)


def list_photos(directory: str | PathLike) -> list[Path]:
    """The image files directly inside ``directory`` (sorted); an :class:`InputError` if none."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(f"photos folder '{folder}' does not exist or is not a folder")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not photos:
        raise InputError(f"photos folder '{folder}' holds no images ({', '.join(PHOTO_SUFFIXES)})")
    return photos


def train_files(
    style_path: str | PathLike,
    photos_dir: str | PathLike,
    output_path: str | PathLike,
    *,
    config: Config | None = None,
    settings: TrainingSettings | None = None,
    resume: bool = False,
    style_name: str | None = None,
    plugins: Iterable[Any] = (),
) -> TrainingResult:
    """:func:`train` on an image file and a folder of photos; inputs are never overwritten.

    Each photo is shrunk to its training size as it is read, so a folder of large photos costs
    only the small copies' memory.
    """
    photo_paths = list_photos(photos_dir)
    style = load_image(style_path).rgb
    crop = (settings or TrainingSettings()).crop_size
    if resume and Path(output_path).is_file():  # a resumed run keeps the file's crop size
        crop = int(load_model(output_path).metadata.get("training", {}).get("crop_size", crop))
    photos = [fit_photo(load_image(path).rgb, crop) for path in photo_paths]
    return train(
        style, photos, output_path, style_name=style_name or Path(style_path).stem, config=config,
        settings=settings, resume=resume, plugins=plugins, protect=[Path(style_path), *photo_paths],
    )


def train(
    style: np.ndarray,
    photos: Sequence[np.ndarray],
    output_path: str | PathLike,
    *,
    style_name: str,
    config: Config | None = None,
    settings: TrainingSettings | None = None,
    resume: bool = False,
    plugins: Iterable[Any] = (),
    protect: Iterable[str | PathLike] = (),
) -> TrainingResult:
    """Train a fast-style network for ``style`` on random crops of ``photos``; write it to ``output_path``.

    :param style: ``H×W×3`` float array in ``[0, 1]``.
    :param photos: ``H×W×3`` float arrays in ``[0, 1]`` (any sizes).
    :param config: loss, network and hardware settings; :func:`training_config` when omitted.
    :param settings: steps, batch, crops, learning rate, checkpoints, network shape.
    :param resume: continue the training stored in ``output_path`` (its network, loss settings
        and training settings; ``settings.steps`` and ``checkpoint_every`` are taken from here).
        Without it an existing ``output_path`` is refused, so that no trained model is lost.
    :param plugins: run-hook plugins for this call (progress, cancel).
    :param protect: paths ``output_path`` must not be (the inputs).
    """
    started = time.perf_counter()
    config = config or training_config()
    settings = settings or TrainingSettings()
    output = Path(output_path)
    if not photos:
        raise InputError("training needs at least one photo")
    run = open_run(plugins, started=started)
    trainer = _Trainer(config, settings, output, resume=resume, run=run, protect=list(protect))
    with _flush_denormals():
        return trainer.run(np.asarray(style, dtype=np.float32), [np.asarray(p, dtype=np.float32) for p in photos],
                           style_name=style_name)


@contextlib.contextmanager
def _flush_denormals():
    """Treat denormal floats as zero while training: Adam's tiny second moments otherwise slow
    CPU steps down severalfold as training goes on."""
    changed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if changed:
            torch.set_flush_denormal(False)


class _Trainer:
    """The state of one :func:`train` call."""

    def __init__(self, config: Config, settings: TrainingSettings, output: Path, *, resume: bool, run: Any,
                 protect: list) -> None:
        self.run_context = run
        self.hook = run.hook
        self.started = run.started
        self.output = output
        self.protect = protect
        self.device = resolve_device(config.device)
        check_precision(config.precision, self.device)
        self.resumed = None
        if resume:
            self.resumed = load_model(output)
            if self.resumed.training_state is None:
                raise InputError(f"cannot resume '{output}': the file holds no training state")
            stored = self.resumed.metadata
            config = config.replace(**_loss_settings_of(stored.get("config", {})))
            settings = _settings_of(stored.get("training", {}), steps=settings.steps,
                                    checkpoint_every=settings.checkpoint_every)
        elif output.exists():
            raise InputError(
                f"model file '{output}' exists; set {setting('resume')} to continue its training, or choose another path"
            )
        if output.suffix.lower() != SUFFIX:
            self.hook.nst_notice(message=f"model files usually end in {SUFFIX}; writing '{output}' anyway")
        self.config, self.settings = config, settings
        objective = build_objective(config, run.registries, default_model=FAST_MODEL)
        self.model, self.terms = objective.model, objective.terms
        self.extractor = objective.build_extractor(config, self.device)
        # the content targets need only the content layers: a shorter network for the no-grad pass
        self.content_extractor = objective.build_extractor(
            config, self.device, objective.content_target_layers or objective.layers[:1])
        self.source = str(getattr(self.extractor, "source", self.model))

    def run(self, style: np.ndarray, photos: list[np.ndarray], *, style_name: str) -> TrainingResult:
        config, settings = self.config, self.settings
        crop = settings.crop_size
        self.photos = [_photo_tensor(p, crop) for p in photos]
        self.hook.nst_notice(
            message=f"{self.model} with weights from {self.source}, on {self.device}; "
            f"{len(photos)} photos, {settings.batch_size} crops of {crop} px per step"
        )
        style_small = resize_to(style, long_side_size(style.shape[:2], settings.style_size))
        style_digest = hashlib.sha256(np.ascontiguousarray(style_small).tobytes()).hexdigest()[:16]
        with torch.no_grad():
            style_features = self.extractor(to_tensor(style_small, self.device))
        for term in self.terms.values():
            term.set_style_targets([style_features], [1.0])
        del style_features

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            network = TransformNet(settings.network)
        network.to(self.device).train()
        optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
        generator = torch.Generator().manual_seed(config.seed + 1)
        step = 0
        if self.resumed is not None:
            if self.resumed.metadata.get("style_digest") not in (None, style_digest):
                self.hook.nst_notice(message=f"the style image differs from the one '{self.output}' was trained on")
            network.load_state_dict(self.resumed.network.state_dict())
            state = self.resumed.training_state
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            step = self.resumed.step
            self.hook.nst_notice(message=f"resuming '{self.output}' at step {step} of {settings.steps}")
        precision = self._choose_precision(network, optimizer, generator)
        self.hook.nst_notice(message=f"training runs in {precision.label}: {precision.reason}")
        cast = autocast(precision.precision, self.device)

        metadata = {
            "style_name": style_name,
            "style_digest": style_digest,
            "config": {name: _plain(getattr(config, name)) for name in LOSS_FIELDS},
            "training": settings.as_dict(),
            "loss_network": self.model,
            "loss_weights": self.source,
        }

        def checkpoint(at_step: int, losses: Mapping[str, float]) -> None:
            state = {"optimizer": optimizer.state_dict(), "generator": generator.get_state()}
            save_model(self.output, network, metadata={**metadata, "step": at_step, "losses": dict(losses)},
                       training_state=state, protect=self.protect)

        first_step, totals = step, []
        losses: dict[str, float] = dict(self.resumed.metadata.get("losses", {})) if self.resumed else {}
        cancelled = False
        began = time.perf_counter()
        while step < settings.steps:
            batch = _random_crops(self.photos, settings.batch_size, crop, generator).to(self.device)
            total, terms = self._loss(network, batch, cast)
            if not torch.isfinite(total):
                raise OptimizationError(f"the training loss became {float(total)} at step {step + 1}; "
                                        f"try a lower {setting('learning_rate')}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            step += 1
            losses = {**{name: float(value.detach()) for name, value in terms.items()}, "total": float(total.detach())}
            totals.append(losses["total"])
            now = time.perf_counter()
            done_here = step - first_step
            progress = Progress(
                step=step, total=settings.steps, losses=losses, elapsed=now - self.started, stage="train",
                size=f"{crop}x{crop}", remaining=(now - began) / done_here * (settings.steps - step),
            )
            self.hook.nst_progress(progress=progress)
            if self.run_context.cancelled(progress):
                cancelled = True
                break
            if settings.checkpoint_every and step % settings.checkpoint_every == 0 and step < settings.steps:
                checkpoint(step, losses)
        if step > first_step or self.resumed is None:
            checkpoint(step, losses)
        elapsed = time.perf_counter() - self.started
        steps_run = step - first_step
        train_seconds = time.perf_counter() - began
        head, tail = totals[:10], totals[-10:]
        return TrainingResult(
            path=self.output, steps=step, steps_run=steps_run, losses=losses,
            first_loss=float(np.mean(head)) if head else math.nan,
            last_loss=float(np.mean(tail)) if tail else math.nan,
            elapsed=elapsed, cancelled=cancelled,
            info={
                "model": self.model, "weights": self.source, "device": str(self.device),
                "precision": precision.precision, "threads": str(torch.get_num_threads()),
                "steps_per_second": f"{steps_run / train_seconds:.3f}" if steps_run else "0",
                "crop": f"{crop}x{crop}", "batch": str(settings.batch_size),
            },
        )

    def _loss(self, network: TransformNet, batch: torch.Tensor, cast) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean over the batch of each term's weighted loss, and their sum (``cast``: the autocast)."""
        with cast:
            with torch.no_grad():
                content_features = self.content_extractor(batch)
            output = network(batch).float()
            output_features = self.extractor(output)
        count = batch.shape[0]
        sums = {name: output.new_zeros(()) for name in self.terms}
        for index in range(count):
            one_content = {k: v[index:index + 1] for k, v in content_features.items()}
            one_output = {k: v[index:index + 1] for k, v in output_features.items()}
            for name, term in self.terms.items():
                term.set_content_targets(one_content)
                sums[name] = sums[name] + term.weight * term(output[index:index + 1], one_output)
        terms = {name: value / count for name, value in sums.items()}
        return sum(terms.values()), terms

    def _choose_precision(self, network, optimizer, generator):
        """fp32, or bf16/fp16 where :func:`nst_core.precision.choose` finds it available and faster."""
        settings = self.settings
        probe_state = generator.get_state()
        probe_batch = _random_crops(self.photos, settings.batch_size, settings.crop_size, generator).to(self.device)
        generator.set_state(probe_state)

        def probe(precision: str, memory_format: str) -> float:
            cast = autocast(precision, self.device)

            def step() -> None:
                total, _ = self._loss(network, probe_batch, cast)
                total.backward()
                optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)

            return time_step(step, repeats=1)

        key = f"fast training {self.model} at {settings.crop_size}px x{settings.batch_size}"
        return choose_precision(self.config.precision, "contiguous", self.device, probe=probe, cache_key=key)


def fit_photo(photo: np.ndarray, crop: int) -> np.ndarray:
    """``photo`` resized so that its short side is ``crop × PHOTO_SCALE`` (its training size)."""
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise InputError(f"photos must be H×W×3 RGB, got shape {photo.shape}")
    height, width = photo.shape[:2]
    scale = round(crop * PHOTO_SCALE) / min(height, width)
    return resize_to(photo, (max(crop, round(height * scale)), max(crop, round(width * scale))))


def _photo_tensor(photo: np.ndarray, crop: int) -> torch.Tensor:
    """A photo at its training size as a ``3×H×W`` tensor."""
    return to_tensor(fit_photo(photo, crop))[0]


def _random_crops(photos: list[torch.Tensor], count: int, crop: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``crop²`` crops (random photo, position, horizontal flip) as a batch."""
    crops = []
    for _ in range(count):
        photo = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        top = int(torch.randint(photo.shape[1] - crop + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - crop + 1, (1,), generator=generator))
        piece = photo[:, top:top + crop, left:left + crop]
        if float(torch.rand((1,), generator=generator)) < 0.5:
            piece = piece.flip(-1)
        crops.append(piece)
    return torch.stack(crops)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _loss_settings_of(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The loss fields of a model file's ``config`` metadata as :class:`Config` values."""
    values = {}
    for name in LOSS_FIELDS:
        if name in stored:
            value = stored[name]
            values[name] = tuple(value) if isinstance(value, list) else value
    return values


def _settings_of(stored: Mapping[str, Any], **overrides: Any) -> TrainingSettings:
    """A model file's training settings (with ``overrides``), checked like new ones."""
    values = {f.name: stored[f.name] for f in dataclasses.fields(TrainingSettings)
              if f.name in stored and f.name != "network"}
    try:
        network = NetworkShape.from_dict(stored["network"]) if "network" in stored else NetworkShape()
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"cannot resume: the model file's network description is bad ({error})") from None
    return TrainingSettings(**{**values, **overrides, "network": network})
