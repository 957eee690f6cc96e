"""Batches on a ``dask.distributed`` cluster: a local one, or any scheduler's workers.

:class:`DaskExecutor` is an executor of :func:`nst_core.batch.run_batch`::

    with DaskExecutor(workers=2) as executor:                    # a LocalCluster of 2 processes
        run_batch(jobs, executor=executor)
    with DaskExecutor(address="tcp://host:8786") as executor:    # an existing scheduler
        run_batch(jobs, executor=executor)

No shared filesystem is assumed: the client reads each job's files (the photo, the paintings, a
fast-style model, a start image) and sends their bytes; the worker writes them to a private
folder, paints, and sends the encoded result back, which the client writes atomically (16-bit and
alpha kept, since the worker wrote it with the content's depth and alpha). With
``write_on_workers=True`` the workers write the outputs themselves (a shared filesystem).

* Each worker process sets its PyTorch threads once (:class:`NstWorkerPlugin`) and keeps what the
  methods load (networks, models, style vectors) between jobs.
* A worker that dies mid-job has its job run again on another worker (Dask reschedules it; an
  exception is retried ``retries`` times); only the run that finishes sends its result, so every
  output is written once and whole. Jobs started more than once count as *retried*.
* Progress, notices and plans travel from the workers as Dask events and reach each job's own
  plugins on the client, so a front end shows them as for a batch in one process.
* A stop request cancels the jobs not finished and tells running ones to stop at their next step.

``dask`` and ``distributed`` are the optional extra ``cluster`` (``pip install 'nst-core[cluster]'``).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .batch import DONE, FAILED, SKIPPED, Job, JobOutcome, OnOutcome, PluginsFor
from .errors import ConfigError, InputError, NstError
from .records import Plan, Progress, Result

#: The optional dependencies' extra.
EXTRA = "cluster"
#: Retries of a job whose run raised an error that is not the job's own (e.g. a lost connection).
RETRIES = 2
_TOPIC = "nst-core-batch-{}"


#: Dask settings for the workers of a local cluster. Dask's nanny would set MALLOC_TRIM_THRESHOLD_
#: and OMP/MKL/OPENBLAS_NUM_THREADS=1 in this process's environment and its workers': the first
#: slows every step (see nst_core.malloc; the worker plugin resets malloc on clusters that others
#: started), the others are moot (the plugin sets PyTorch's threads). Each worker's sampling profiler
#: (every 10 ms) is off. A 512-px optimization on 2 AMD EPYC cores, one run each: Dask's defaults
#: 50.9 s, no profiler 44.6 s, neither profiler nor these variables 47.2 s; in-process 41.6-48.1 s.
LOCAL_WORKER_SETTINGS = {
    "distributed.nanny.pre-spawn-environ": {},
    "distributed.worker.profile.enabled": False,
}


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"batches on Dask need the '{EXTRA}' extra: pip install 'nst-core[{EXTRA}]'") from None
    return distributed


class DaskExecutor:
    """Runs a batch's jobs on Dask workers (see the module doc). Use it as a context manager."""

    def __init__(
        self,
        *,
        workers: int | None = None,
        address: str | None = None,
        threads_per_worker: int | None = None,
        jobs_per_worker: int = 1,
        write_on_workers: bool = False,
        retries: int = RETRIES,
    ) -> None:
        if (workers is None) == (address is None):
            raise ConfigError("give the number of local workers or a scheduler's address, not both")
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ConfigError(f"threads per worker must be at least 1, got {threads_per_worker}")
        self.workers = workers
        self.address = address
        self.threads_per_worker = threads_per_worker
        self.jobs_per_worker = jobs_per_worker
        self.write_on_workers = write_on_workers
        self.retries = retries
        self.client: Any = None
        self._cluster: Any = None
        self._scattered: dict[tuple, Any] = {}
        #: Seconds it took to start the cluster and the workers (for the benchmark).
        self.start_seconds = 0.0

    def __enter__(self) -> DaskExecutor:
        distributed = _distributed()
        began = time.perf_counter()
        if self.workers is not None:
            threads = self.threads_per_worker or max(1, (os.cpu_count() or 1) // self.workers)
            import dask.config

            with dask.config.set(LOCAL_WORKER_SETTINGS):
                self._cluster = distributed.LocalCluster(
                    n_workers=self.workers, threads_per_worker=self.jobs_per_worker, processes=True,
                    dashboard_address=None, silence_logs=50)
            self.client = distributed.Client(self._cluster)
        else:
            threads = self.threads_per_worker
            try:
                # how long to try: Dask's connect timeout (distributed.comm.timeouts.connect, 30 s)
                self.client = distributed.Client(self.address)
            except (OSError, TimeoutError) as error:
                raise InputError(f"cannot reach the Dask scheduler {self.address!r}: {error}") from None
        from .cluster_worker import NstWorkerPlugin

        self.client.register_plugin(NstWorkerPlugin(threads), name="nst-core")
        self.start_seconds = time.perf_counter() - began
        return self

    def __exit__(self, *exc: Any) -> None:
        self._scattered.clear()
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def run(self, jobs: Sequence[Job], *, plugins_for: PluginsFor, stop_requested: Callable[[], bool],
            on_outcome: OnOutcome) -> None:
        distributed = _distributed()
        from .cluster_worker import work_job
        from .plugins import open_run

        client = self.client
        batch = uuid.uuid4().hex[:12]
        topic = _TOPIC.format(batch)
        stop = distributed.Event(f"nst-core-stop-{batch}", client=client)
        relays = {job.index: open_run(plugins_for(job)) for job in jobs}
        starts: dict[int, int] = {job.index: 0 for job in jobs}

        def heard(event: tuple[float, dict]) -> None:
            message = event[1]
            index = message.get("job")
            if index not in relays:
                return
            hook, fields = relays[index].hook, message.get("fields", {})
            kind = message.get("kind")
            if kind == "started":
                starts[index] += 1
            elif kind == "plan":
                hook.nst_plan(plan=Plan(**{**fields, "stages": tuple(map(tuple, fields["stages"]))}))
            elif kind == "progress":
                hook.nst_progress(progress=Progress(**fields))
            elif kind == "notice":
                hook.nst_notice(message=fields["message"])

        client.subscribe_topic(topic, heard)
        futures = {}
        by_index = {job.index: job for job in jobs}
        try:
            for job in jobs:
                try:
                    payload = self._payload(job, topic, stop.name)
                except NstError as error:  # a file of this job cannot be read: this job fails
                    on_outcome(JobOutcome(job=job, status=FAILED, error=error))
                    continue
                future = client.submit(work_job, payload, key=f"nst-core-job-{batch}-{job.index}", pure=False,
                                       retries=self.retries)
                futures[future] = job.index
            pending = set(futures)
            while pending:
                if stop_requested():
                    stop.set()
                    client.cancel(list(pending))
                    for future in pending:
                        on_outcome(JobOutcome(job=by_index[futures[future]], status=SKIPPED))
                    break
                try:
                    finished, pending = distributed.wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:  # none finished: look at the stop request again
                    continue
                for future in finished:
                    job = by_index[futures[future]]
                    on_outcome(self._outcome(job, future, relays[job.index], max(1, starts[job.index])))
        finally:
            client.unsubscribe_topic(topic)

    def _payload(self, job: Job, topic: str, stop: str) -> dict[str, Any]:
        """What a worker needs: the job's settings and its files' bytes (shared files scattered once
        per executor and file version, and held while the executor lives, so that a second batch on
        the same cluster neither sends them again nor loses them to a release racing a scatter)."""

        def scattered(path: Path) -> Any:
            data = _read(path)
            key = (str(path.resolve()), hashlib.sha256(data).hexdigest())
            if key not in self._scattered:
                self._scattered[key] = self.client.scatter(data, broadcast=True, hash=False)
            return self._scattered[key]

        config = job.config
        files: dict[str, Any] = {}
        if config.fast_model:
            from .fast.folders import find_model

            files["fast_model"] = (find_model(config.fast_model).suffix, scattered(find_model(config.fast_model)))
        if config.init_image:
            files["init_image"] = (Path(config.init_image).suffix, scattered(Path(config.init_image)))
        if config.weights and config.weights != "torchvision":
            weights = Path(config.weights).expanduser()
            files["weights"] = (weights.suffix, scattered(weights))
        return {
            "index": job.index, "topic": topic, "stop": stop,
            "content": (job.content.suffix, _read(job.content)), "content_name": str(job.content),
            "styles": [(path.suffix, scattered(path)) for path in job.styles],
            "config": config, "files": files, "output_suffix": job.output.suffix,
            "output": str(job.output) if self.write_on_workers else None,
        }

    def _outcome(self, job: Job, future: Any, relay: Any, attempts: int) -> JobOutcome:
        from .atomic_file import write_atomically

        try:
            answer = future.result()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # noqa: BLE001 - the job's own error, or a worker lost too often
            if type(error).__name__ == "KilledWorker":
                error = InputError(f"the workers running it died {self.retries + 1} times or more")
            return JobOutcome(job=job, status=FAILED, error=error, attempts=attempts)
        if "error" in answer:
            return JobOutcome(job=job, status=FAILED, error=answer["error"], attempts=attempts)
        if answer["output"] is not None:
            try:
                write_atomically(job.output, lambda handle: handle.write(answer["output"]))
            except OSError as error:
                return JobOutcome(job=job, status=FAILED, attempts=attempts,
                                  error=InputError(f"cannot save '{job.output}': {error.strerror or error}"))
        result = Result(image=None, **answer["result"])
        relay.hook.nst_result(result=result)
        return JobOutcome(job=job, status=DONE, result=result, attempts=attempts)


def _read(path: Path) -> bytes:
    """A job's file, read whole on the client; a missing, unreadable or non-regular file is an
    :class:`InputError` naming it (checked before opening, so nothing blocks)."""
    from .file_checks import FileProblem, read_head
    from .message_text import quote_path

    try:
        read_head(path, 0)
        return Path(path).read_bytes()
    except FileProblem as problem:
        raise InputError(f"cannot read {quote_path(path)}: {problem}") from None
    except OSError as error:
        raise InputError(f"cannot read {quote_path(path)}: {error.strerror or error}") from None
