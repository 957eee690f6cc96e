"""The CLI's plugins of the engine: a terminal progress bar, JSON-lines progress, cancellation.

Each class is a pluggy plugin: its ``nst_*`` methods implement the engine's run hooks and are
registered for one run (``stylize_files(..., plugins=[...])``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import IO, Any

from nst_core import hookimpl
from nst_core.image import save_image
from nst_core.records import Progress


def emit_json(stream: IO[str], event: str, **fields: Any) -> None:
    """Write one JSON object, ``{"event": event, **fields}``, as a line and flush it."""
    stream.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    stream.flush()


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class BarReporter:
    """A one-line progress bar with loss and ETA, redrawn in place on a terminal (stderr)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._drawn = False

    def line(self, progress: Progress) -> str:
        width = max(10, min(30, shutil.get_terminal_size((80, 20)).columns - 50))
        filled = int(width * progress.fraction)
        bar = "#" * filled + "-" * (width - filled)
        loss = progress.losses.get("total")
        return (
            f"[{bar}] {progress.step}/{progress.total}"
            + (f" tile {progress.tile}/{progress.tiles}" if progress.tiles else "")
            + (f" loss {loss:.4g}" if loss is not None else "")
            + f" {format_seconds(progress.elapsed)} < {format_seconds(progress.eta)}"
        )

    @hookimpl
    def nst_progress(self, progress: Progress) -> None:
        self.stream.write("\r" + self.line(progress) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    @hookimpl
    def nst_notice(self, message: str) -> None:
        self._end_line()
        self.stream.write(message + "\n")
        self.stream.flush()

    @hookimpl
    def nst_result(self, result) -> None:
        self._end_line()

    def _end_line(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False


class JsonReporter:
    """One JSON object per line on stdout, for programs such as the GIMP plug-in."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    @hookimpl
    def nst_progress(self, progress: Progress) -> None:
        emit_json(self.stream, "progress", **progress.as_dict())

    @hookimpl
    def nst_notice(self, message: str) -> None:
        emit_json(self.stream, "notice", message=message)


class Canceller:
    """Answers ``nst_should_cancel`` with whether a signal asked the run to stop."""

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal number that asked to stop

    @hookimpl
    def nst_should_cancel(self, progress: Progress) -> bool | None:
        return True if self.requested is not None else None


class SnapshotWriter:
    """Writes the best image so far next to the output every ``--save-every`` steps."""

    def __init__(self, output: Path, protect: list[Path], bit_depth: int = 8) -> None:
        self.output = output
        self.protect = protect
        self.bit_depth = bit_depth

    def path_for(self, step: int) -> Path:
        return self.output.with_name(f"{self.output.stem}_{step:05d}{self.output.suffix}")

    @hookimpl
    def nst_intermediate(self, image, progress: Progress) -> None:
        save_image(self.path_for(progress.step), image, bit_depth=self.bit_depth, protect=self.protect)
