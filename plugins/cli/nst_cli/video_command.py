"""``nst-core video``: paint a clip without flicker, keeping its sound (:mod:`nst_core.video`).

The frames take every setting of ``nst-core run`` (method, size, look, network, optimization,
hardware, progress): the subcommand's parser copies those options from ``run``'s, so that both
stay the same as options are added. ``--time-budget`` is per frame.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from nst_core import hookimpl

#: ``run`` options that make no sense for a clip (batches, snapshots) or that ``video`` has its own of.
NOT_COPIED = {"help", "content", "styles", "output", "style_files", "out_dir", "out_format", "resume", "workers",
              "cluster", "threads_per_worker", "write_on_workers", "save_every"}

DESCRIPTION = """\
Paint a clip (mp4, mov, mkv, webm, avi, an animated GIF, or a folder of frames) in the style of a
painting, frame by frame, with any method, and write a video (the input's sound and frame rate
kept), a GIF, or a folder of PNG frames.

Temporal consistency is on by default (--temporal-weight; 0 paints frame by frame): the optical
flow between the input's frames (OpenCV's DIS) carries the previous painted frame onto the next,
except where something was hidden (forward-backward check). The optimization starts from it and
keeps to it with a temporal loss (Ruder et al. 2016); --method instant and --fast-model blend it
into their result.

Finished frames are kept in OUTPUT.nst-core-frames/ until the clip is written: Ctrl-C keeps them
and --resume continues. Every option of 'nst-core run' for the look applies to each frame;
--time-budget is per frame.

examples:
  nst-core video clip.mp4 starry_night.jpg --method instant -o painted.mp4
  nst-core video clip.mov scream.jpg -o painted.mp4 --size 384 --time-budget 20 --resume
  nst-core video frames/ --fast-model starry_night -o painted/ --fps 25
"""


def add_parser(commands: Any, run_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``video`` subparser: its own arguments, then ``run``'s per-frame options."""
    from nst_core.video.loop import DEFAULT_TEMPORAL_WEIGHT

    video = commands.add_parser("video", help="stylize a clip without flicker, keeping its sound",
                                description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    video.add_argument("input", metavar="INPUT", help="a video file, an animated GIF, or a folder of frames")
    video.add_argument("styles", metavar="PAINTING", nargs="*", help="painting(s) whose style to use")
    video.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                       help="a video file (.mp4, .mov, .mkv, .webm, .avi), a .gif, or a folder for PNG frames; "
                            "never the input")
    clip = video.add_argument_group("clip")
    clip.add_argument("--temporal-weight", type=float, default=DEFAULT_TEMPORAL_WEIGHT, metavar="W",
                      help="how strongly each frame keeps to the previous one along the motion; 0: frame by frame "
                           f"(default {DEFAULT_TEMPORAL_WEIGHT:g})")
    clip.add_argument("--codec", metavar="NAME",
                      help="video codec: libx264 (default for .mp4 .mov .mkv), libx265, libvpx-vp9 (default for "
                           ".webm), mpeg4 …")
    clip.add_argument("--crf", type=int, metavar="N",
                      help="quality, lower is better (default: libx264 18, libx265 20, libvpx-vp9 31)")
    clip.add_argument("--fps", type=float, metavar="RATE",
                      help="frame rate of a folder of frames (default 24), or to override a file's")
    clip.add_argument("--resume", action="store_true",
                      help="continue from the frames finished before (kept in OUTPUT.nst-core-frames/)")
    for group in run_parser._action_groups:  # noqa: SLF001 - argparse has no public way to share groups
        actions = [a for a in group._group_actions if a.dest not in NOT_COPIED]  # noqa: SLF001
        if not actions:
            continue
        target = video.add_argument_group(f"each frame: {group.title}", group.description)
        for action in actions:
            target._add_action(action)  # noqa: SLF001 - shared as argparse's parents= shares them
    video.set_defaults(save_every=0, style_files=[], out_dir=None, resume=False)
    return video


class VideoReporter:
    """Progress of a clip: one bar over the frames, or JSON lines; each notice once."""

    def __init__(self, mode: str, fields: dict[str, Any]) -> None:
        from .reporters import BarReporter

        self.mode = mode
        self.fields = fields
        self.bar = BarReporter() if mode == "bar" else None
        self._seen: set[str] = set()
        self._held: list[str] | None = []  # JSON: notices before the first frame's plan

    @hookimpl
    def nst_plan(self, plan: Any) -> None:
        if self.mode == "json" and self._held is not None:
            from .streams import emit_json

            emit_json("start", **plan.as_dict(), **self.fields)
            self.flush()

    @hookimpl
    def nst_notice(self, message: str) -> None:
        if message in self._seen:
            return
        self._seen.add(message)
        if self.bar is not None:
            self.bar.nst_notice(message)
        elif self.mode == "json":
            if self._held is not None:
                self._held.append(message)
            else:
                from .streams import emit_json

                emit_json("notice", message=message)

    @hookimpl
    def nst_video_frame(self, progress: Any) -> None:
        if self.bar is not None:
            self.bar.nst_progress(progress)
        elif self.mode == "json":
            from .streams import emit_json

            emit_json("progress", **progress.as_dict(), frame=progress.step, frames=progress.total)

    def flush(self) -> None:
        from .streams import emit_json

        held, self._held = self._held or [], None
        for message in held:
            emit_json("notice", message=message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.nst_result(None)


class _FrameStarted:
    """Marks the canceller as stepping once a frame is finished (Ctrl-C then stops between frames)."""

    def __init__(self, canceller: Any) -> None:
        self.canceller = canceller

    @hookimpl(tryfirst=True)
    def nst_video_frame(self, progress: Any) -> None:
        self.canceller.stepping = True


def command_video(args: argparse.Namespace) -> int:
    from .main import _Signals
    from .reporters import Canceller

    canceller = Canceller()
    with _Signals(canceller):
        code = video_command(args, canceller)
    if canceller.requested is not None:
        return 128 + canceller.requested
    return code


def video_command(args: argparse.Namespace, canceller: Any) -> int:
    """What ``nst-core video`` does with parsed ``args``; the exit code."""
    from nst_core.errors import InputError
    from nst_core.plugins import shared_registries
    from nst_core.video import require_video_extra

    from .main import EXIT_OK, _progress_mode, config_from_args
    from .streams import emit_json, say

    require_video_extra()
    from nst_core.video.loop import VideoOptions, stylize_video

    config = config_from_args(args, time.perf_counter())
    config = config.replace(time_budget=args.time_budget)  # per frame, not per clip
    method = shared_registries().methods.get(config.method)
    if method.uses_styles and not args.styles:
        raise InputError("no painting: give PAINTING after INPUT, or --fast-model MODEL")
    if not method.uses_styles and args.styles:
        raise InputError(f"the {config.method} method paints without paintings; leave out "
                         f"{' '.join(args.styles)}")
    options = VideoOptions(temporal_weight=args.temporal_weight, codec=args.codec, crf=args.crf, rate=args.fps,
                           resume=args.resume)
    mode = _progress_mode(args)
    reporter = VideoReporter(mode, {"input": args.input, "styles": list(args.styles), "output": args.output})
    try:
        result = stylize_video(args.input, args.styles, args.output, config=config, options=options,
                               plugins=[canceller, _FrameStarted(canceller), reporter])
    finally:
        if mode == "json":
            reporter.flush()
        reporter.close()
    rate = f"{float(result.rate):.3g}"
    if mode == "json":
        emit_json("done", output=str(result.output), frames=result.frames, painted=result.painted, fps=rate,
                  audio=result.audio, cancelled=result.cancelled, elapsed=round(result.elapsed, 3),
                  info={k: v for k, v in result.info.items() if v is not None})
    if result.cancelled:
        say(f"nst-core: stopped: {result.painted} frames painted this time; the finished frames are in "
            f"{result.info['work']}; run again with --resume to continue")
    elif mode == "bar":
        sound = f", sound: {result.audio}" if result.audio else ""
        say(f"done: wrote {result.output} ({result.frames} frames at {rate} fps{sound}; {result.elapsed:.1f} s)")
    return EXIT_OK
