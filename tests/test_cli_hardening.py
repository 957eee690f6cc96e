"""Hostile conditions for the nst-core command (issue 15, section 1), each as a real subprocess."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .test_cli import NST_CORE, one_line_error, run_cli


def _png(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _shell(command, timeout=300):
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout)


# --- progress that cannot be written ---------------------------------------------------------


@pytest.mark.parametrize("redirect", ["| head -1 >/dev/null", ">&-", ">/dev/full"])
def test_progress_that_cannot_be_written_does_not_stop_the_run(random_weights, small_files, tmp_path, redirect):
    output = tmp_path / "out.png"
    content, style = small_files
    command = (f"'{NST_CORE}' run '{content}' '{style}' -o '{output}' --size 32 -n 4 --progress json {redirect}; "
               "echo \"exit=${PIPESTATUS[0]}\" >&2")
    proc = _shell(command)
    assert "exit=0" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert output.is_file() and Image.open(output).size == (32, 24)
    # said once, on stderr (with `| head -1` the first line may have gone through before the pipe closed)
    notices = [line for line in proc.stderr.splitlines() if "progress on stdout stopped" in line]
    assert len(notices) == 1, proc.stderr


# --- images too small after resizing ---------------------------------------------------------


@pytest.mark.parametrize("size, width, height, out", [
    ("64", 4000, 8, (64, 1)),
    ("64", 1024, 200, (64, 12)),
    ("0", 8, 8, (8, 8)),
])
def test_thin_and_tiny_photos_are_painted(random_weights, small_files, tmp_path, size, width, height, out):
    photo = _png(tmp_path / "thin.png", width, height)
    output = tmp_path / "out.png"
    proc = run_cli("run", photo, small_files[1], "-o", output, "--size", size, "-n", 2)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(output).size == out


# --- memory before work ----------------------------------------------------------------------


def test_an_impossible_size_is_refused_from_arithmetic_naming_it(random_weights, tmp_path, small_files):
    photo = _png(tmp_path / "small.png", 96, 72)
    began = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", f"'{NST_CORE}' run '{photo}' '{small_files[1]}' -o '{tmp_path / 'o.png'}' --size 20000; "
                       "echo \"exit=$?\" >&2"],
        capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - began
    line = [entry for entry in proc.stderr.splitlines() if entry.startswith("nst-core: error")]
    assert "exit=2" in proc.stderr and len(line) == 1, proc.stderr
    assert "20000x15000" in line[0] and "--max-memory" in line[0] and "--size" in line[0]
    assert seconds < 30, seconds  # arithmetic, not allocation (it took 37-87 s and 9.9 GB)


def test_an_impossible_size_allocates_nothing_big(random_weights, small_pair):
    import resource

    from nst_core import Config, ConfigError, stylize

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError, match="20000x15000 result"):
        stylize(np.zeros((72, 96, 3), np.float32), [small_pair[1]], config=Config(size=20000, iterations=1))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
    assert grown < 500 * 1024, f"peak grew by {grown / 1024:.0f} MiB"


# --- numbers that do not fit ---------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--time-budget", "nan"], "expected a number of seconds"),
    (["--time-budget", "inf"], "expected a number of seconds"),
    (["--time-budget", "1e308"], "--time-budget must be between"),
    (["--seed", str(2**70)], "--seed must be at most"),
    (["--seed", "-1"], "--seed must be at least 0"),
    (["--lbfgs-smoothing", "-1"], "--lbfgs-smoothing must be"),
    (["--content-layers", ","], "expected comma-separated layer names"),
    (["--style-layers", " , "], "expected comma-separated layer names"),
    (["--precision", "fp16", "--device", "cpu"], "--precision fp16 works only on a CUDA GPU"),
    (["--method", "fast"], "--method fast needs --fast-model"),
    (["--convolution", "winograd", "--precision", "bf16"], "--convolution winograd runs in fp32 only"),
])
def test_settings_that_cannot_work_are_one_line_errors(random_weights, small_files, tmp_path, args, words):
    proc = run_cli("run", *small_files, "-o", tmp_path / "o.png", *args)
    assert words in one_line_error(proc, 2)
    assert not (tmp_path / "o.png").exists()


def test_a_seed_too_large_for_torch_is_refused_by_config():
    from nst_core import Config, ConfigError

    with pytest.raises(ConfigError, match="seed must be at most"):
        Config(seed=2**70)
    assert Config(seed=2**63 - 1).seed == 2**63 - 1


def test_a_nan_loss_advises_what_the_optimizer_can_use():
    import torch

    from nst_core.errors import OptimizationError
    from nst_core.optim import optimize

    def objective(image):
        loss = (image * float("nan")).sum()
        return loss, {"style": loss}

    start = torch.rand(1, 3, 8, 8)
    for optimizer, advice in (("lbfgs", "lower style_weight, or start from another image"),
                              ("adam", "set optimizer to lbfgs")):
        with pytest.raises(OptimizationError) as raised:
            optimize(start, objective, optimizer=optimizer, iterations=3, learning_rate=0.1,
                     on_step=lambda *a: False)
        assert advice in str(raised.value)
        assert ("--optimizer" in raised.value.render(lambda name: "--" + name)) == (optimizer == "adam")


# --- signals --------------------------------------------------------------------------------


def _wait_for_signal_handlers(pid: int, timeout: float = 30.0) -> None:
    """Until process ``pid`` catches SIGTERM (Python does not by default; nst-core's main() does
    first thing): a fixed sleep raced the interpreter's own start on a busy machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)
    raise AssertionError("nst-core never installed its signal handlers")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_start_up_exits_with_one_line(small_files, tmp_path, signum, code):
    # as from a terminal: a shell's background job (CI started with `&`) inherits SIGINT ignored,
    # and Python then raises no KeyboardInterrupt
    proc = subprocess.Popen([str(NST_CORE), "run", *map(str, small_files), "-o", str(tmp_path / "o.png")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_signal_handlers(proc.pid)  # main() has begun; importing PyTorch takes seconds more
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nst-core: error: stopped by"), stderr
    assert not (tmp_path / "o.png").exists()


# --- JSON mode for every error ---------------------------------------------------------------


def test_an_argument_error_in_json_mode_sends_an_error_event(tmp_path):
    proc = run_cli("run", "a.png", "b.png", "-o", tmp_path / "o.png", "--progress", "json", "--size", "big")
    line = one_line_error(proc, 2)
    events = [json.loads(entry) for entry in proc.stdout.splitlines()]
    assert events and events[-1]["event"] == "error" and events[-1]["exit_code"] == 2
    assert events[-1]["message"] in line


# --- batches ---------------------------------------------------------------------------------


def test_a_batch_goes_on_after_a_bad_photo_and_sums_up(random_weights, small_files, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "c"):
        _png(photos / f"{name}.png", 40, 30, seed=ord(name))
    (photos / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "styled"
    proc = run_cli("run", photos, small_files[1], "--out-dir", out, "--size", 32, "-n", 2, "--progress", "json")
    assert proc.returncode == 2, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [".nst-core-batch.json", "a.png", "c.png"]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["content"].endswith("b.png") and failed[0]["index"] == 2
    assert [e["index"] for e in events if e["event"] == "done"] == [1, 3]
    summary = events[-1]
    assert summary["event"] == "summary" and (summary["done"], summary["failed"], summary["skipped"], summary["retried"]) == (2, 1, 0, 0)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("nst-core: error")]
    assert len(errors) == 1 and "b.png" in errors[0] and "[2/3]" in errors[0]
    assert "batch: 2 done, 1 failed, 0 skipped, 0 retried of 3" in proc.stderr


def test_a_snapshot_that_would_overwrite_an_input_is_refused_before_the_run(random_weights, small_files, tmp_path):
    style = tmp_path / "out_00002.png"
    style.write_bytes(small_files[1].read_bytes())
    before = style.read_bytes()
    proc = run_cli("run", small_files[0], style, "-o", tmp_path / "out.png", "--size", 32, "-n", 4,
                   "--save-every", 2, "--progress", "json")
    assert "--save-every would overwrite input file" in one_line_error(proc, 2)
    assert '"progress"' not in proc.stdout
    assert style.read_bytes() == before and not (tmp_path / "out.png").exists()


def test_start_event_total_follows_the_engines_plan_above_1024_px(random_weights, small_files, tmp_path):
    """The CLI used to work the total out itself: wrong for the automatic ladder above 1024 px."""
    from nst_core.config import Config
    from nst_core.schedule import plan_stages

    photo = _png(tmp_path / "wide.png", 60, 20)
    proc = subprocess.Popen([str(NST_CORE), "run", str(photo), str(small_files[1]), "-o", str(tmp_path / "o.png"),
                             "--size", "1100", "-n", "3", "--progress", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        start = json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)  # before the first step: stops at once
        proc.communicate(timeout=120)
    stages = plan_stages((367, 1100), Config(iterations=3))
    assert start["event"] == "start" and start["total"] == sum(s.iterations for s in stages) != 3
    assert [stage["size"] for stage in start["stages"]] == [s.label for s in stages]
    assert proc.returncode == 143
