"""The CLI's plugins of the engine: a terminal progress bar, JSON-lines progress, cancellation,
snapshots.

Each class with ``nst_*`` methods is a pluggy plugin registered for one run
(``stylize_files(..., plugins=[...])``). They write through :mod:`nst_cli.streams`, so
progress that cannot be written never stops a run.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nst_core import hookimpl
from nst_core.errors import NstError
from nst_core.image import save_image
from nst_core.records import Plan, Progress

from .streams import STDERR, Output, emit_json, say


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class BarReporter:
    """A one-line progress bar with loss and ETA, redrawn in place on a terminal (stderr)."""

    def __init__(self, output: Output = STDERR) -> None:
        self.output = output
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
        self.output.write("\r" + self.line(progress) + "\x1b[K")
        self._drawn = True

    @hookimpl
    def nst_notice(self, message: str) -> None:
        self._end_line()
        self.output.write(message + "\n")

    @hookimpl
    def nst_result(self, result) -> None:
        self._end_line()

    def _end_line(self) -> None:
        if self._drawn:
            self.output.write("\n")
            self._drawn = False


class BatchBar:
    """One bar over a whole batch: jobs finished, and the steps of the jobs running now (several at
    once on Dask workers), redrawn in place on stderr."""

    def __init__(self, count: int, output: Output = STDERR) -> None:
        self.count = count
        self.output = output
        self.finished = 0
        self.running: dict[int, Progress] = {}
        self._bar = BarReporter(output)

    def for_job(self, job: Any) -> _JobBar:
        """The plugin that reports ``job``'s steps to this bar."""
        return _JobBar(self, job.index)

    def job_finished(self, job: Any) -> None:
        self.finished += 1
        self.running.pop(job.index, None)
        self.draw()

    def draw(self) -> None:
        width = 20
        filled = int(width * self.finished / max(1, self.count))
        jobs = " ".join(f"#{index}: {p.step}/{p.total}" + (f" tile {p.tile}/{p.tiles}" if p.tiles else "")
                        for index, p in sorted(self.running.items()))
        self.output.write(f"\r[{'#' * filled}{'-' * (width - filled)}] {self.finished}/{self.count} done"
                          + (f"; {jobs}" if jobs else "") + "\x1b[K")
        self._bar._drawn = True

    def notice(self, message: str) -> None:
        self._bar.nst_notice(message)
        self.draw()

    def close(self) -> None:
        self._bar._end_line()


class _JobBar:
    def __init__(self, bar: BatchBar, index: int) -> None:
        self.bar, self.index = bar, index

    @hookimpl
    def nst_progress(self, progress: Progress) -> None:
        self.bar.running[self.index] = progress
        self.bar.draw()

    @hookimpl
    def nst_notice(self, message: str) -> None:
        self.bar.notice(f"#{self.index}: {message}")


class JsonReporter:
    """One JSON object per line on stdout, for programs such as the GIMP plug-in.

    ``start`` comes first and from the run's plan (``nst_plan``), so its ``total`` is the steps
    the engine will really take; notices made before the plan (which weights, which precision)
    follow it. ``fields`` (the job's files, its place in a batch) go into ``start``.
    """

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        self.fields = dict(fields or {})
        self._held: list[str] | None = []  # notices before the plan; None once it came

    @hookimpl
    def nst_plan(self, plan: Plan) -> None:
        emit_json("start", **plan.as_dict(), **self.fields)
        self.flush()

    @hookimpl
    def nst_progress(self, progress: Progress) -> None:
        emit_json("progress", **progress.as_dict())

    @hookimpl
    def nst_notice(self, message: str) -> None:
        if self._held is not None:
            self._held.append(message)
        else:
            emit_json("notice", message=message)

    def flush(self) -> None:
        """Write the notices held back (also when the run failed before its plan)."""
        held, self._held = self._held or [], None
        for message in held:
            emit_json("notice", message=message)


class Canceller:
    """Answers ``nst_should_cancel`` with whether a signal asked the run to stop."""

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal number that asked to stop
        #: Whether a run has reached its first step (before it, a signal stops at once).
        self.stepping = False

    @hookimpl(tryfirst=True)  # before any listener shows the step, which a user may answer with Ctrl-C
    def nst_progress(self, progress: Progress) -> None:
        self.stepping = True

    @hookimpl
    def nst_should_cancel(self, progress: Progress) -> bool | None:
        return True if self.requested is not None else None


class SnapshotWriter:
    """Writes the best image so far next to the output every ``--save-every`` steps.

    A snapshot that cannot be written is skipped, said once, and the run goes on: the final
    image matters more.
    """

    def __init__(self, output: Path, protect: list[Path], bit_depth: int = 8) -> None:
        self.output = output
        self.protect = protect
        self.bit_depth = bit_depth
        self._failed = False

    def path_for(self, step: int) -> Path:
        return snapshot_path(self.output, step)

    @hookimpl
    def nst_intermediate(self, image, progress: Progress) -> None:
        try:
            save_image(self.path_for(progress.step), image, bit_depth=self.bit_depth, protect=self.protect)
        except NstError as error:
            if not self._failed:
                say(f"nst-core: snapshot not written ({error}); the run goes on")
            self._failed = True


def snapshot_path(output: Path, step: int) -> Path:
    """``OUT_00050.png`` beside ``OUT.png``: the snapshot of ``step``."""
    return output.with_name(f"{output.stem}_{step:05d}{output.suffix}")
