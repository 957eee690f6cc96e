"""Batches: many photos, each a job of its own, so that one bad photo fails its job only.

A batch is a list of :class:`Job` (content, styles, output, config). :func:`run_batch` runs them
one after the other in this process, each through :func:`nst_core.stylize_files` with its own
plugins; a job that fails is recorded with its error and the batch goes on; once a stop is
requested the jobs not started are skipped. The :class:`BatchSummary` counts what was done,
failed and skipped and says which exit code a command should end with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .errors import NstError
from .records import Result

DONE, FAILED, SKIPPED = "done", "failed", "skipped"


@dataclass(frozen=True, kw_only=True)
class Job:
    """One photo of a batch: what to paint, with what, and where the result goes."""

    content: Path
    output: Path
    styles: tuple[Path, ...] = ()
    config: Config = field(default_factory=Config)
    #: 1-based position in the batch, and the batch's length.
    index: int = 1
    count: int = 1


@dataclass(frozen=True, kw_only=True, eq=False)
class JobOutcome:
    """What became of one job."""

    job: Job
    #: ``done``, ``failed`` or ``skipped`` (not started: the batch was stopped).
    status: str
    result: Result | None = None
    #: The error of a failed job: an :class:`~nst_core.errors.NstError`, or any other exception
    #: (a bug), which fails its job only.
    error: BaseException | None = None

    @property
    def exit_code(self) -> int:
        if self.error is None:
            return 0
        return self.error.exit_code if isinstance(self.error, NstError) else 1

    def message(self, spell: Callable[[str], str] = str) -> str:
        """The error in one line (settings spelled by ``spell``), or ``""``."""
        if self.error is None:
            return ""
        if isinstance(self.error, NstError):
            return self.error.render(spell)
        return " ".join(f"internal error: {type(self.error).__name__}: {self.error}".split())


@dataclass(frozen=True)
class BatchSummary:
    """Every job's outcome, in order."""

    outcomes: tuple[JobOutcome, ...]

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; 1 when a job failed at run time; else 2 (bad input)."""
        codes = {outcome.exit_code for outcome in self.outcomes if outcome.status == FAILED}
        if not codes:
            return 0
        return 1 if 1 in codes else max(codes)


def run_batch(
    jobs: Sequence[Job],
    *,
    plugins_for: Callable[[Job], Iterable[Any]] = lambda job: (),
    stop_requested: Callable[[], bool] = lambda: False,
    on_outcome: Callable[[JobOutcome], None] = lambda outcome: None,
) -> BatchSummary:
    """Run ``jobs`` in order in this process; a failure fails its job only.

    :param plugins_for: the run plugins of a job (progress listeners, cancel checks).
    :param stop_requested: asked before each job; once it says ``True`` the rest are skipped
        (a job already running is stopped by its own cancel plugins).
    :param on_outcome: called with each job's outcome as it is known.
    """
    from .engine import stylize_files

    outcomes = []
    for job in jobs:
        if stop_requested():
            outcome = JobOutcome(job=job, status=SKIPPED)
        else:
            try:
                result = stylize_files(job.content, job.styles, job.output, config=job.config,
                                       plugins=list(plugins_for(job)))
                outcome = JobOutcome(job=job, status=DONE, result=result)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # noqa: BLE001 - a bad photo (or a bug) fails its job only
                outcome = JobOutcome(job=job, status=FAILED, error=error)
        outcomes.append(outcome)
        on_outcome(outcome)
    return BatchSummary(tuple(outcomes))
