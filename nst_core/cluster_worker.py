"""The worker side of :mod:`nst_core.cluster`: set-up per worker process, and one job's run.

Imported on the workers (and by the client once ``distributed`` is known to be installed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from distributed import Event, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from .errors import NstError
from .hookspecs import hookimpl
from .records import Plan, Progress

#: How often a running job asks whether the batch was stopped (seconds).
STOP_CHECK_SECONDS = 1.0



class NstWorkerPlugin(WorkerPlugin):
    """Set up once per worker process: its PyTorch threads and a private folder for job files.

    A ``distributed`` worker plugin (``setup``/``teardown``); ``threads=None`` gives each of the
    worker's task slots an equal share of the machine's cores.
    """

    name = "nst-core"
    idempotent = False

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        import torch

        from .malloc import reuse_freed_memory

        reuse_freed_memory(override=True)  # Dask's nanny set MALLOC_TRIM_THRESHOLD_ (see nst_core.malloc)

        slots = max(1, getattr(worker.state, "nthreads", 1))
        worker.nst_core_threads = self.threads or max(1, (os.cpu_count() or 1) // slots)
        torch.set_num_threads(worker.nst_core_threads)
        worker.nst_core_folder = tempfile.mkdtemp(prefix="nst-core-worker-")
        import nst_core.plugins

        nst_core.plugins.shared_registries()  # the methods, networks' specs: loaded before the first job

    def teardown(self, worker: Any) -> None:
        shutil.rmtree(getattr(worker, "nst_core_folder", ""), ignore_errors=True)


class _Forwarder:
    """A job's plugin on the worker: sends its plan, progress and notices to the client as Dask
    events, and stops the job when the batch was stopped."""

    def __init__(self, worker: Any, topic: str, index: int, stop: Any) -> None:
        self.worker, self.topic, self.index, self.stop = worker, topic, index, stop
        self._checked = 0.0

    def send(self, kind: str, **fields: Any) -> None:
        self.worker.log_event(self.topic, {"job": self.index, "kind": kind, "fields": fields})

    @hookimpl
    def nst_plan(self, plan: Plan) -> None:
        self.send("plan", method=plan.method, stages=[list(stage) for stage in plan.stages], budgeted=plan.budgeted)

    @hookimpl
    def nst_progress(self, progress: Progress) -> None:
        fields = {f.name: getattr(progress, f.name) for f in dataclasses.fields(progress)}
        self.send("progress", **{**fields, "losses": dict(progress.losses)})

    @hookimpl
    def nst_notice(self, message: str) -> None:
        self.send("notice", message=message)

    @hookimpl
    def nst_should_cancel(self, progress: Progress) -> bool | None:
        now = time.monotonic()
        if now - self._checked < STOP_CHECK_SECONDS:
            return None
        self._checked = now
        return True if self.stop.is_set() else None


def work_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one job on a worker (see :meth:`DaskExecutor._payload`): the result's fields and, unless
    the worker wrote it, the output file's bytes; or the job's own error (``{"error": …}``)."""
    from .engine import stylize_files

    worker = get_worker()
    folder = Path(getattr(worker, "nst_core_folder", None) or tempfile.mkdtemp(prefix="nst-core-worker-"))
    worker.nst_core_folder = str(folder)
    # OpenMP's thread count is per calling thread, and Dask runs tasks in its own threads, which
    # start with the nanny's OMP_NUM_THREADS=1: set it here, in the thread that computes
    import torch

    torch.set_num_threads(getattr(worker, "nst_core_threads", None) or torch.get_num_threads())
    index = payload["index"]
    forwarder = _Forwarder(worker, payload["topic"], index, Event(payload["stop"]))
    forwarder.send("started")
    job_folder = Path(tempfile.mkdtemp(prefix=f"job-{index}-", dir=folder))
    content = job_folder / f"content{payload['content'][0]}"
    try:
        content = _local(job_folder, *payload["content"], name="content")
        styles = [_local(folder, suffix, data) for suffix, data in payload["styles"]]
        config = payload["config"].replace(**{field: str(_local(folder, suffix, data))
                                              for field, (suffix, data) in payload["files"].items()})
        output = Path(payload["output"]) if payload["output"] else job_folder / f"out{payload['output_suffix']}"
        result = stylize_files(content, styles, output, config=config, plugins=[forwarder])
        data = None if payload["output"] else output.read_bytes()
    except NstError as error:
        # the job's own error (a bad photo, a bad setting): its answer, not an exception that Dask
        # would retry; with the photo's own name in the message, not the worker's copy's
        return {"error": type(error)(str(error).replace(str(content), payload["content_name"]))}
    finally:
        shutil.rmtree(job_folder, ignore_errors=True)
    fields = {name: getattr(result, name) for name in ("steps", "best_step", "elapsed", "cancelled")}
    info = {**result.info, "worker": f"{worker.address} pid {os.getpid()}", "threads": str(torch.get_num_threads())}
    return {"output": data, "result": {**fields, "losses": dict(result.losses), "info": info, "alpha": None}}


def _local(folder: Path, suffix: str, data: bytes, *, name: str | None = None) -> Path:
    """``data`` as a file in ``folder``: named ``name``, or by its digest (written once per worker)."""
    path = folder / f"{name or hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    if name is not None or not path.is_file():
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, path)
    return path
