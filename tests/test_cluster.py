"""Batches on a real ``dask.distributed`` LocalCluster of worker processes, and batch resume."""

import json
import os
import signal
import sys
import threading
import time

import numpy as np
from PIL import Image

from nst_core import Config, hookimpl
from nst_core.batch import DONE, Job, run_batch
from nst_core.batch_manifest import MANIFEST_NAME
from nst_core.image import load_image

from .conftest import shared_image
from .test_cli import interrupt_cli, run_cli
from .test_malloc import large_block_source

import distributed  # noqa: E402,F401 - the 'cluster' extra is part of the test install (.ci/run)


def _photos(folder, sizes=(40, 48, 56, 64)):
    folder.mkdir()
    for number, side in enumerate(sizes):
        image = shared_image("tubingen.jpg", side)[:, ::(-1 if number % 2 else 1)]
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"p{number}.png")
    return sorted(folder.iterdir())


def _style(tmp_path):
    path = tmp_path / "style.png"
    Image.fromarray((shared_image("starry_night.jpg", 48) * 255).astype(np.uint8)).save(path)
    return path


def _events(proc):
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_a_batch_on_two_workers_goes_on_past_a_corrupt_photo(tmp_path):
    photos = _photos(tmp_path / "photos", sizes=(40, 48, 56))
    (tmp_path / "photos" / "p1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    proc = run_cli("run", tmp_path / "photos", _style(tmp_path), "--method", "instant", "--out-dir", out,
                   "--workers", 2, "--progress", "json")
    assert proc.returncode == 2, proc.stderr
    events = _events(proc)
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["content"].endswith("p1.png") and failed[0]["attempts"] == 1
    assert "cannot read image" in failed[0]["message"] and str(tmp_path) in failed[0]["message"]
    assert sorted(e["index"] for e in events if e["event"] == "done") == [1, 3]
    assert events[-1]["event"] == "summary" and (events[-1]["done"], events[-1]["failed"]) == (2, 1)
    for photo in (photos[0], photos[2]):  # written by the client from the workers' bytes, at the photo's size
        assert Image.open(out / photo.name).size == Image.open(photo).size
    errors = [line for line in proc.stderr.splitlines() if line.startswith("nst-core: error")]
    assert len(errors) == 1 and "[2/3]" in errors[0]


class _ProgressLog:
    def __init__(self):
        self.progress, self.heard = [], []

    @hookimpl
    def nst_progress(self, progress):
        self.progress.append(progress)
        self.heard.append(time.monotonic())


def _profiling():
    import dask.config

    return dask.config.get("distributed.worker.profile.enabled")


def test_a_killed_worker_loses_no_output_and_duplicates_none(random_weights, tmp_path):
    from nst_core.cluster import DaskExecutor

    photos = _photos(tmp_path / "photos")
    style = _style(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    config = Config(size=None, iterations=25, precision="fp32", memory_format="contiguous")
    jobs = [Job(content=p, output=out / p.name, styles=(style,), config=config, index=i, count=len(photos))
            for i, p in enumerate(photos, 1)]
    killed, outcomes = threading.Event(), []

    with DaskExecutor(workers=2, threads_per_worker=1) as executor:
        pids = list(executor.client.run(os.getpid).values())
        # Dask's MALLOC_TRIM_THRESHOLD_ is neither in the workers' malloc nor left in this process,
        # and the workers' sampling profiler is off
        assert set(executor.client.run(large_block_source).values()) == {"heap"}
        assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
        assert set(executor.client.run(_profiling).values()) == {False}

        class KillAWorker(_ProgressLog):
            @hookimpl
            def nst_progress(self, progress):
                super().nst_progress(progress)
                if progress.step == 3 and not killed.is_set():
                    killed.set()
                    os.kill(pids[0], signal.SIGKILL)  # mid-job: both workers are busy

        logs = {job.index: KillAWorker() for job in jobs}
        summary = run_batch(jobs, executor=executor, plugins_for=lambda job: [logs[job.index]],
                            on_outcome=outcomes.append)
    assert killed.is_set()
    assert [o.status for o in summary.outcomes] == [DONE] * 4
    assert sorted(o.job.index for o in outcomes) == [1, 2, 3, 4]  # each job's outcome once
    assert summary.count("retried") >= 1
    for photo in photos:  # every output complete, at its photo's size, and nothing else left behind
        assert load_image(out / photo.name).rgb.shape[:2] == load_image(photo).rgb.shape[:2]
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST_NAME] + [p.name for p in photos])


def test_two_jobs_in_one_worker_process_keep_their_progress_apart(random_weights, tmp_path):
    from nst_core.cluster import DaskExecutor

    photos = _photos(tmp_path / "photos", sizes=(32, 48))
    style = _style(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    steps = {1: 12, 2: 16}
    jobs = [Job(content=p, output=out / p.name, styles=(style,), index=i, count=2,
                config=Config(size=None, iterations=steps[i], precision="fp32", memory_format="contiguous"))
            for i, p in enumerate(photos, 1)]
    logs = {job.index: _ProgressLog() for job in jobs}
    with DaskExecutor(workers=1, jobs_per_worker=2, threads_per_worker=2) as executor:
        summary = run_batch(jobs, executor=executor, plugins_for=lambda job: [logs[job.index]])
    results = {o.job.index: o.result for o in summary.outcomes}
    assert results[1].info["worker"] == results[2].info["worker"]  # one worker process ran both
    # with the threads asked for, in Dask's task threads too (they start with OMP_NUM_THREADS=1)
    assert results[1].info["threads"] == results[2].info["threads"] == "2"
    for index, photo in enumerate(photos, 1):
        size = "x".join(map(str, Image.open(photo).size))
        assert [p.step for p in logs[index].progress] == list(range(1, steps[index] + 1))
        assert {p.size for p in logs[index].progress} == {size}
    # they ran at the same time: each one's steps began before the other's ended
    assert logs[1].heard[0] < logs[2].heard[-1] and logs[2].heard[0] < logs[1].heard[-1]


def test_resume_after_an_interrupted_batch_on_workers(random_weights, tmp_path):
    _photos(tmp_path / "photos", sizes=(32, 40, 48))
    style = _style(tmp_path)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "photos"), str(style), "--out-dir", str(out), "--size", "32", "-n", "6",
            "--progress", "json"]
    # stop the batch once its first photo is done
    proc = interrupt_cli(*args, when=lambda event: event["event"] == "done", timeout=300)
    assert proc.returncode == 130, proc.stderr
    # the manifest vouches for the photos finished; one stopped early (its best image so far is
    # written) is not complete
    done_first = sorted(json.loads((out / MANIFEST_NAME).read_text())["outputs"])
    assert 1 <= len(done_first) < 3 and "p0.png" in done_first
    first = out / "p0.png"
    before = first.read_bytes()

    resumed = run_cli(*args, "--resume", "--workers", 2)
    assert resumed.returncode == 0, resumed.stderr
    events = _events(resumed)
    skipped = [e["output"] for e in events if e["event"] == "skipped"]
    assert [os.path.basename(s) for s in skipped] == done_first and first.read_bytes() == before
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.png", "p1.png", "p2.png"]

    # an output cut short, or made with other settings, is not complete: it is done again
    first.write_bytes(before[: len(before) // 2])
    again = run_cli(*args, "--resume")
    events = _events(again)
    assert [os.path.basename(e["output"]) for e in events if e["event"] == "done"] == [first.name]
    assert load_image(first).rgb.shape[0] > 0
    changed = run_cli(*args, "--resume", "--style-weight", "7")
    assert sum(1 for e in _events(changed) if e["event"] == "done") == 3


def _main_error(capsys, *args):
    """The CLI's one error line and exit code for ``args``, run in this process (argument checks)."""
    from nst_cli.main import main

    handler = signal.getsignal(signal.SIGTERM)
    try:
        code = main([str(a) for a in args])
    finally:
        signal.signal(signal.SIGTERM, handler)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nst-core: error: "), lines
    return code, lines[0]


def test_batch_options_without_the_extra_or_with_bad_values_are_one_line(tmp_path, small_files, capsys,
                                                                          monkeypatch):
    content, style = small_files
    out = ["--out-dir", tmp_path / "o"]
    assert _main_error(capsys, "run", content, style, *out, "--workers", 2, "--cluster", "tcp://127.0.0.1:1") == (
        2, "nst-core: error: give --workers N (a local cluster) or --cluster ADDRESS (an existing one), not both")
    code, line = _main_error(capsys, "run", content, style, "-o", tmp_path / "o.png", "--resume")
    assert code == 2 and "--resume works with --out-dir" in line
    code, line = _main_error(capsys, "run", content, style, "-o", tmp_path / "o.png", "--write-on-workers")
    assert code == 2 and "--write-on-workers needs --workers N or --cluster ADDRESS" in line
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    import dask

    dask.config.refresh()
    code, line = _main_error(capsys, "run", content, style, *out, "--cluster", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot reach the Dask scheduler 'tcp://127.0.0.1:9'" in line
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were not installed
    code, line = _main_error(capsys, "run", content, style, *out, "--workers", 2)
    assert code == 2 and "pip install 'nst-core[cluster]'" in line
