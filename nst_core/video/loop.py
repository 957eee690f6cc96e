"""The frame loop: paint a clip frame by frame with any registered method, without flicker.

Each frame is painted by :func:`nst_core.stylize` with the run's method, carrying a temporal
state from the frame before — the previous stylized frame warped onto this one along the input's
optical flow, and the mask of the pixels that are not occluded (:mod:`.flow`):

* a method that optimizes the image from a start image with the registered loss terms
  (``Method.warm_start``, the ``optimize`` method) starts from the warped frame and gets one more
  loss term, Ruder, Dosovitskiy & Brox's (2016) short-term temporal loss
  ``100 · mean(c · (x − ω)²)`` (``c`` the mask, ``ω`` the warped frame). Both come in as a
  per-run plugin (an init method and a loss term registered through the usual hooks), so the
  method itself knows nothing of video;
* a one-pass method (``instant``, ``fast``) paints the frame on its own, and the result is
  blended with the warped frame on the non-occluded pixels: ``(s + w c ω) / (1 + w c)``, which is
  the pixel-wise minimum of the same quadratic penalty with weight ``w``.

``temporal_weight`` ``w`` = 0 paints frame by frame. :func:`stylize_frames` works on arrays;
:func:`stylize_video` on files: finished frames are kept as PNG files in a work folder beside the
output (``OUT.nst-core-frames/``, or the output folder itself), so that a stopped run continues
with ``resume=True``, and the video is written at the end, atomically, with the input's sound.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic_file import write_atomically
from ..config import Config
from ..errors import ConfigError, InputError
from ..hookspecs import hookimpl
from ..message_text import quote_path
from ..plugins import open_run, shared_registries
from ..records import Progress, Result
from . import container, flow

#: Default ``temporal_weight``: blends 60 % of the warped previous frame into one-pass results
#: (instant at 512 px: temporal error 0.47× frame by frame at weight 1 and 0.32× at 2, style
#: distance +4 % and +9 %; see benchmarks/video.py).
DEFAULT_TEMPORAL_WEIGHT = 1.5
#: The optimization's temporal loss weight is ``temporal_weight`` times this.
LOSS_SCALE = 5.0
#: The DIS preset of the frame loop (``fast``: 0.6 ms a frame at 512 px against 50 ms; the
#: benchmark measures flicker with ``medium``).
FLOW_PRESET = "fast"
#: Name of the init method and of the loss term a frame's run gets.
INIT_NAME, LOSS_NAME = "video_previous", "video_temporal"
#: The work folder beside a video output: ``OUT.mp4.nst-core-frames``.
WORK_SUFFIX = ".nst-core-frames"
JOB_FILE = ".nst-core-video.json"


@dataclass(frozen=True, kw_only=True)
class VideoOptions:
    """Settings of a clip (the frames' settings stay in :class:`~nst_core.config.Config`)."""

    #: How strongly each frame keeps to the previous one along the motion; 0: frame by frame.
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT
    #: Video codec (FFmpeg's encoder name); ``None``: the container's default (libx264 for .mp4).
    codec: str | None = None
    #: Constant rate factor (lower is better); ``None``: the codec's default (libx264: 18).
    crf: int | None = None
    #: Frame rate of a folder of frames (``None``: 24), or to override a file's.
    rate: float | None = None
    #: Continue from the finished frames in the work folder.
    resume: bool = False

    def __post_init__(self) -> None:
        weight = self.temporal_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"temporal_weight must be a number ≥ 0 (0: frame by frame), got {weight!r}")
        if self.rate is not None and not (0 < self.rate <= 1000):
            raise ConfigError(f"rate must be a frame rate in (0, 1000], got {self.rate!r}")


@dataclass(frozen=True, kw_only=True, eq=False)
class VideoResult:
    """What :func:`stylize_video` did."""

    output: Path
    frames: int
    #: Frames painted by this call (the rest were finished before, ``resume``).
    painted: int
    rate: Fraction
    #: The audio codec carried over, or ``None``.
    audio: str | None
    elapsed: float
    cancelled: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class TemporalLoss(nn.Module):
    """Ruder et al.'s short-term temporal loss: ``100 · mean(c · (x − ω)²)`` over the image."""

    layers: tuple[str, ...] = ()

    def __init__(self, warped: torch.Tensor, mask: torch.Tensor, *, weight: float) -> None:
        super().__init__()
        self.weight = weight
        self.warped, self.mask = warped, mask
        self._sized: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def set_content_targets(self, features) -> None:
        pass

    def set_style_targets(self, features, blend) -> None:
        pass

    def _at(self, hw: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if hw not in self._sized:  # a coarse size of a coarse-to-fine run
            resize = lambda t: nn.functional.interpolate(t, size=hw, mode="bilinear", align_corners=False)  # noqa: E731
            same = tuple(self.warped.shape[-2:]) == hw
            self._sized[hw] = (self.warped if same else resize(self.warped)).to(device), \
                              (self.mask if same else resize(self.mask)).to(device)
        return self._sized[hw]

    def forward(self, image: torch.Tensor, features) -> torch.Tensor:
        warped, mask = self._at(tuple(image.shape[-2:]), image.device)
        return 100.0 * torch.sum(mask * (image.float() - warped) ** 2) / image.numel()


class _TemporalState:
    """A frame's run's plugin: the warped previous frame as start image, and the temporal loss."""

    def __init__(self, warped: np.ndarray, mask: np.ndarray, content: np.ndarray, weight: float) -> None:
        from ..image import to_tensor

        self.warped = to_tensor(warped)
        self.mask = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
        # where the previous frame shows nothing (occluded), start from the photo
        self.start = to_tensor(warped * mask[..., None] + content * (1.0 - mask[..., None]))
        self.weight = weight

    @hookimpl
    def nst_register_init_methods(self, register) -> None:
        def previous(*, content: torch.Tensor, config: Config, generator: torch.Generator) -> torch.Tensor:
            start = self.start
            if tuple(start.shape[-2:]) != tuple(content.shape[-2:]):
                start = nn.functional.interpolate(start, size=tuple(content.shape[-2:]), mode="bicubic",
                                                  align_corners=False).clamp(0.0, 1.0)
            return start.to(content.device)

        register(INIT_NAME, previous)

    @hookimpl
    def nst_register_losses(self, register) -> None:
        register(LOSS_NAME, lambda config: TemporalLoss(self.warped, self.mask, weight=self.weight * LOSS_SCALE))


class FrameLoop:
    """Paints a clip's frames in order with one config, carrying the temporal state between them.

    :param styles: the paintings (``H×W×3`` float arrays), none for the ``fast`` method.
    :param config: every frame's settings (method, size, colour mode, time budget per frame …).
    :param temporal_weight: 0 paints frame by frame.
    :param plugins: listeners and cancel checks that hear every frame's run.
    """

    def __init__(self, styles: Sequence[np.ndarray], *, config: Config, temporal_weight: float,
                 plugins: Iterable[Any] = ()) -> None:
        self.styles = list(styles)
        self.config = config
        self.weight = float(temporal_weight)
        self.plugins = list(plugins)
        method = shared_registries().methods.get(config.method)
        #: Whether the method starts from an image and minimises loss terms (else: blend).
        self.warm_start = bool(getattr(method, "warm_start", False))
        self.previous_input: np.ndarray | None = None
        self.previous_output: np.ndarray | None = None
        #: The motion from the last frame to the one before it (``None`` for the first frame).
        self.motion: flow.Motion | None = None

    def output_hw(self, frame: np.ndarray) -> tuple[int, int]:
        from ..image import long_side_size

        return long_side_size(frame.shape[:2], self.config.size)

    def remember(self, frame: np.ndarray, output: np.ndarray) -> None:
        """Take ``output`` as the painting of ``frame`` (a frame finished before, when resuming)."""
        from ..image import resize_to

        self.previous_input = resize_to(frame, output.shape[:2])
        self.previous_output = output

    def paint(self, frame: np.ndarray) -> Result:
        """The next frame's painting (``H×W×3`` at the config's size)."""
        from ..engine import stylize
        from ..image import resize_to

        out_hw = self.output_hw(frame)
        current = resize_to(frame, out_hw)
        config, plugins, self.motion = self.config, self.plugins, None
        temporal = self.weight > 0 and self.previous_output is not None \
            and self.previous_output.shape[:2] == tuple(out_hw)
        if temporal:
            self.motion = flow.motion(self.previous_input, current, preset=FLOW_PRESET)
            warped = flow.warp(self.previous_output, self.motion.backward)
            if self.warm_start:
                plugins = [*plugins, _TemporalState(warped, self.motion.mask, current, self.weight)]
                config = config.replace(init=INIT_NAME)
        result = stylize(frame, self.styles, config=config, plugins=plugins)
        if temporal and not self.warm_start and not result.cancelled:
            image = result.image
            if image.shape[:2] != tuple(out_hw):
                image = resize_to(image, out_hw)
            blend = self.weight * self.motion.mask[..., None]
            image = ((image + blend * warped) / (1.0 + blend)).astype(np.float32)
            result = _replace_image(result, image)
        if not result.cancelled:
            self.remember(frame, result.image)
        return result


def _replace_image(result: Result, image: np.ndarray) -> Result:
    import dataclasses

    return dataclasses.replace(result, image=image)


def stylize_frames(frames: Iterable[np.ndarray], styles: Sequence[np.ndarray], *, config: Config | None = None,
                   temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
                   plugins: Iterable[Any] = ()) -> Iterator[Result]:
    """Paint ``frames`` (``H×W×3`` float arrays in ``[0, 1]``) in order; one result per frame."""
    loop = FrameLoop(styles, config=config or Config(), temporal_weight=temporal_weight, plugins=plugins)
    for frame in frames:
        yield loop.paint(frame)


# --- files -----------------------------------------------------------------------------------------


def work_folder(spec: container.OutputSpec) -> Path:
    """Where the finished frames of ``spec``'s clip are kept until the clip is written."""
    return spec.path if spec.kind == "folder" else spec.path.with_name(spec.path.name + WORK_SUFFIX)


def frame_path(folder: Path, index: int) -> Path:
    return folder / f"{index:06d}.png"


def stylize_video(
    input_path: str | os.PathLike[str],
    style_paths: Sequence[str | os.PathLike[str]] = (),
    output_path: str | os.PathLike[str] = "",
    *,
    config: Config | None = None,
    options: VideoOptions | None = None,
    plugins: Iterable[Any] = (),
) -> VideoResult:
    """Paint a clip (a video file, an animated GIF or a folder of frames) and write it to
    ``output_path`` (a video file, a GIF, or a folder of PNG frames), with the input's sound.

    Every frame's run hears ``plugins``; they also receive ``nst_video_frame`` after each frame
    (with the ETA of the clip) and may stop the clip with ``nst_should_cancel``: the finished
    frames are kept and ``options.resume`` continues. Problems with the files, the codec or the
    settings are found before the first frame (:class:`InputError`).
    """
    from ..image import load_image, resize_to, save_image

    config = config or Config()
    options = options or VideoOptions()
    plugins = list(plugins)
    started = time.perf_counter()
    source = Path(input_path)
    styles_in = [Path(p) for p in style_paths]
    info = container.probe(source, rate=options.rate)
    protect = [source, *styles_in, *info.files]
    spec = container.check_output(output_path, codec=options.codec, crf=options.crf, protect=protect)
    work = work_folder(spec)
    if work.resolve() == source.resolve() or (work.exists() and not work.is_dir()):
        raise InputError(f"cannot keep frames in {quote_path(work)}: it is the input or not a folder")
    styles = [load_image(path).rgb for path in styles_in]
    loop = FrameLoop(styles, config=config, temporal_weight=options.temporal_weight, plugins=plugins)
    run = open_run(plugins, started=started)
    if info.audio is not None and spec.kind != "video":
        run.hook.nst_notice(message=f"a {spec.kind} output has no sound: the audio ({info.audio}) is left out")

    digest = _job_digest(info, styles_in, config, options, spec)
    work.mkdir(parents=True, exist_ok=True)
    done = _finished_frames(work, digest, info.frames) if options.resume else 0
    if not done:
        _clear_frames(work)
    write_atomically(work / JOB_FILE, lambda handle: handle.write(json.dumps({"job": digest}).encode()))
    if done:
        run.hook.nst_notice(message=f"resuming after {done} finished frames of {info.frames}")

    painted, cancelled, began = 0, False, time.perf_counter()
    for index, (frame, alpha) in enumerate(container.read_frames(info), 1):
        if index < done:
            continue
        if index == done:  # the last finished frame: the temporal state continues from it
            loop.remember(frame, load_image(frame_path(work, index)).rgb)
            continue
        result = loop.paint(frame)
        if result.cancelled:
            cancelled = True
            break
        out_alpha = None if alpha is None else np.clip(resize_to(alpha, result.image.shape[:2]), 0.0, 1.0)
        save_image(frame_path(work, index), result.image, alpha=out_alpha, protect=protect)
        painted += 1
        now = time.perf_counter()
        pace = (now - began) / painted
        progress = Progress(step=index, total=info.frames, losses={}, elapsed=now - started, stage="video",
                            size=f"{result.image.shape[1]}x{result.image.shape[0]}",
                            remaining=pace * (info.frames - index))
        run.hook.nst_video_frame(progress=progress)
        if run.cancelled(progress):
            cancelled = index < info.frames
            if cancelled:
                break
    audio = info.audio if spec.kind == "video" else None
    if not cancelled:
        def finished() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
            for index in range(1, info.frames + 1):
                loaded = load_image(frame_path(work, index))
                yield loaded.rgb, loaded.alpha

        if spec.kind != "folder":
            container.encode(spec, finished(), rate=info.rate, audio_from=source if audio else None)
            _clear_frames(work)
            (work / JOB_FILE).unlink(missing_ok=True)
            try:
                work.rmdir()
            except OSError:
                pass  # something else is in it: left alone
        else:
            (work / JOB_FILE).unlink(missing_ok=True)
    return VideoResult(output=spec.path, frames=info.frames, painted=painted, rate=info.rate, audio=audio,
                       elapsed=time.perf_counter() - started, cancelled=cancelled,
                       info={"method": config.method, "temporal_weight": options.temporal_weight,
                             "codec": spec.codec, "crf": spec.crf, "work": str(work)})


def _job_digest(info: container.ClipInfo, styles: Sequence[Path], config: Config, options: VideoOptions,
                spec: container.OutputSpec) -> str:
    from ..batch_manifest import file_digest

    inputs = [file_digest(p) for p in (info.files or (info.path,))] + [file_digest(p) for p in styles]
    record = {"inputs": inputs, "config": config.as_dict(), "temporal_weight": options.temporal_weight,
              "rate": str(info.rate), "kind": spec.kind}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _finished_frames(work: Path, digest: str, count: int) -> int:
    """How many frames from the first are finished in ``work`` by the same job (0: none, or another job's)."""
    try:
        if json.loads((work / JOB_FILE).read_text()).get("job") != digest:
            return 0
    except (OSError, ValueError, AttributeError):
        return 0
    done = 0
    while done < count and frame_path(work, done + 1).is_file():
        done += 1
    return done


def _clear_frames(work: Path) -> None:
    """Remove the frame files this module writes (``000001.png`` …) from ``work``; nothing else."""
    for entry in work.iterdir():
        if entry.suffix == ".png" and entry.stem.isdigit() and len(entry.stem) == 6 and entry.is_file():
            entry.unlink()


__all__ = ["DEFAULT_TEMPORAL_WEIGHT", "FrameLoop", "TemporalLoss", "VideoOptions", "VideoResult", "stylize_frames",
           "stylize_video"]
