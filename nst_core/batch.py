"""Batches: many photos, each a job of its own, so that one bad photo fails its job only.

A batch is a list of :class:`Job` (content, styles, output, config). :func:`run_batch` hands the
jobs to an *executor*: :class:`InProcess` (the default: one after the other in this process) or
:class:`nst_core.cluster.DaskExecutor` (the workers of a ``dask.distributed`` cluster). Whatever
runs them:

* a job that fails is recorded with its error and the batch goes on;
* once a stop is requested the jobs not started are skipped;
* every finished output is recorded in its folder's manifest (:mod:`nst_core.batch_manifest`),
  and with ``resume=True`` the jobs whose output the manifest vouches for are skipped;
* the :class:`BatchSummary` counts what was done, failed, skipped and retried and says which exit
  code a command should end with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .config import Config
from .errors import NstError
from .records import Result

DONE, FAILED, SKIPPED = "done", "failed", "skipped"
#: ``JobOutcome.note`` of a job skipped because its output is already complete.
COMPLETE = "complete"


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
    #: ``done``, ``failed`` or ``skipped`` (not started: the batch was stopped, or its output was
    #: already complete, :data:`COMPLETE`).
    status: str
    result: Result | None = None
    #: The error of a failed job: an :class:`~nst_core.errors.NstError`, or any other exception
    #: (a bug), which fails its job only.
    error: BaseException | None = None
    #: How many times the job was started (more than 1: a worker died and it ran again).
    attempts: int = 1
    note: str = ""

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
        """Jobs with ``status`` (``done``, ``failed``, ``skipped``), or ``retried``: started twice or more."""
        if status == "retried":
            return sum(1 for outcome in self.outcomes if outcome.attempts > 1)
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; 1 when a job failed at run time; else 2 (bad input)."""
        codes = {outcome.exit_code for outcome in self.outcomes if outcome.status == FAILED}
        if not codes:
            return 0
        return 1 if 1 in codes else max(codes)


#: ``plugins_for(job)``: the run plugins of a job (progress listeners, cancel checks).
PluginsFor = Callable[[Job], Iterable[Any]]
#: ``on_outcome(outcome)``: called with each job's outcome as it is known.
OnOutcome = Callable[[JobOutcome], None]


class Executor(Protocol):
    """Runs jobs and reports each one's outcome (in any order) through ``on_outcome``."""

    def run(self, jobs: Sequence[Job], *, plugins_for: PluginsFor, stop_requested: Callable[[], bool],
            on_outcome: OnOutcome) -> None: ...


class InProcess:
    """Runs the jobs one after the other in this process, each through :func:`nst_core.stylize_files`."""

    def run(self, jobs: Sequence[Job], *, plugins_for: PluginsFor, stop_requested: Callable[[], bool],
            on_outcome: OnOutcome) -> None:
        from .engine import stylize_files

        for job in jobs:
            if stop_requested():
                on_outcome(JobOutcome(job=job, status=SKIPPED))
                continue
            try:
                result = stylize_files(job.content, job.styles, job.output, config=job.config,
                                       plugins=list(plugins_for(job)))
                outcome = JobOutcome(job=job, status=DONE, result=result)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # noqa: BLE001 - a bad photo (or a bug) fails its job only
                outcome = JobOutcome(job=job, status=FAILED, error=error)
            on_outcome(outcome)


def run_batch(
    jobs: Sequence[Job],
    *,
    executor: Executor | None = None,
    resume: bool = False,
    plugins_for: PluginsFor = lambda job: (),
    stop_requested: Callable[[], bool] = lambda: False,
    on_outcome: OnOutcome = lambda outcome: None,
) -> BatchSummary:
    """Run ``jobs`` with ``executor`` (default :class:`InProcess`); a failure fails its job only.

    :param resume: skip the jobs whose output the manifest of its folder vouches for (made whole,
        by the same content, inputs and settings).
    :param stop_requested: asked before each job starts; once it says ``True`` the rest are
        skipped (a running job is stopped by its own cancel plugins).
    """
    from .batch_manifest import Manifest

    digests = _JobDigests()
    manifests: dict[Path, Manifest] = {}
    outcomes: dict[int, JobOutcome] = {}

    def manifest_of(job: Job) -> Manifest:
        folder = job.output.parent
        if folder not in manifests:
            manifests[folder] = Manifest(folder)
        return manifests[folder]

    def finished(outcome: JobOutcome) -> None:
        job = outcome.job
        if outcome.status == DONE and outcome.result is not None and not outcome.result.cancelled:
            digest = digests.of(job)
            if digest is not None:
                try:
                    manifest_of(job).record(job.output, digest)
                except OSError:
                    pass  # the output is written; only a later --resume will redo it
        outcomes[job.index] = outcome
        on_outcome(outcome)

    to_run = []
    for job in jobs:
        digest = digests.of(job) if resume else None
        if digest is not None and manifest_of(job).complete(job.output, digest):
            finished(JobOutcome(job=job, status=SKIPPED, note=COMPLETE))
        else:
            to_run.append(job)
    (executor or InProcess()).run(to_run, plugins_for=plugins_for, stop_requested=stop_requested,
                                  on_outcome=finished)
    return BatchSummary(tuple(outcomes[job.index] for job in jobs if job.index in outcomes))


class _JobDigests:
    """Each job's digest for the manifest (style and model files hashed once per batch)."""

    def __init__(self) -> None:
        self._files: dict[Path, str] = {}

    def of(self, job: Job) -> str | None:
        """The job's digest, or ``None`` when an input cannot be read (the job will say why)."""
        from .batch_manifest import file_digest, job_digest
        from .plugins import shared_registries

        try:
            method = shared_registries().methods.get(job.config.method)
            reads = getattr(method, "inputs", None)
            inputs = [*job.styles, *(Path(p) for p in (reads(job.config) if reads else ()))]
            for path in inputs:
                if path not in self._files:
                    self._files[path] = file_digest(path)
            # neither snapshots nor the time a budget had left at start-up make the result another one
            settings = {**job.config.as_dict(), "save_every": 0, "time_budget": None}
            return job_digest(job.content, [self._files[p] for p in inputs], settings, job.output.suffix)
        except (OSError, NstError):
            return None
