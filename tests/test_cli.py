"""The nst-core command, run as a real subprocess."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

NST_CORE = Path(sys.executable).with_name("nst-core")


def run_cli(*args, env=None, timeout=300):
    return subprocess.run([str(NST_CORE), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def config_of(*options):
    """The settings ``nst-core run c.png s.png -o o.png *options`` would run with (parsed only)."""
    from nst_cli.main import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["run", "c.png", "s.png", "-o", "o.png", *options]))


def interrupt_cli(*args, when, timeout=120):
    """Run ``nst-core *args`` (with ``--progress json`` among them), press Ctrl-C (SIGINT) as soon as
    an event it prints satisfies ``when``, and return it finished, as :func:`run_cli` does; its
    ``stdout`` holds the lines after that event."""
    proc = subprocess.Popen([str(NST_CORE), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stdout:
            if when(json.loads(line)):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def one_line_error(proc, code):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nst-core: error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_explains_every_option():
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    for option in ("--size", "--iterations", "--content-weight", "--style-weight", "--tv-weight", "--style-blend",
                   "--style-scale", "--content-layers", "--style-layers", "--style-layer-weights", "--pooling",
                   "--init", "--init-image", "--optimizer", "--learning-rate", "--lbfgs-smoothing", "--seed",
                   "--model", "--weights", "--device", "--precision", "--preserve-color", "--save-every",
                   "--progress", "--quiet", "--preset", "--time-budget", "--scales", "--coarse-iterations",
                   "--memory-format", "--convolution"):
        assert option in proc.stdout, option
    top = run_cli("--help")
    assert top.returncode == 0 and "run" in top.stdout and "weights" in top.stdout


def test_json_progress_stream_and_output(random_weights, small_files, tmp_path):
    content, style = small_files
    output = tmp_path / "out.png"
    proc = run_cli("run", content, style, "-o", output, "--size", 32, "-n", 4, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    progress = [event for event in events if event["event"] == "progress"]
    assert [event["step"] for event in progress] == [1, 2, 3, 4]
    assert all(event["total"] == 4 and "total" in event["losses"] for event in progress)
    assert events[-1]["output"] == str(output) and events[-1]["cancelled"] is False
    assert output.is_file() and output.stat().st_size > 0


def test_preset_plans_sizes_and_json_reports_them(random_weights, small_files, tmp_path):
    output = tmp_path / "p.png"
    proc = run_cli("run", *small_files, "-o", output, "--size", 128, "--preset", "preview", "--scales", 2,
                   "--coarse-iterations", 3, "-n", 2, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["total"] == 5
    progress = [event for event in events if event["event"] == "progress"]
    assert [(event["scale"], event["size"]) for event in progress] == [(1, "64x48")] * 3 + [(2, "128x96")] * 2
    fractions = [event["fraction"] for event in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    notices = [event["message"] for event in events if event["event"] == "notice"]
    assert any(message.startswith("network runs in fp32") or "bf16" in message for message in notices)
    assert events[-1]["info"]["scales"] == "64x48 128x96"


def test_time_budget_run_ends_with_a_result(random_weights, small_files, tmp_path):
    output = tmp_path / "b.png"
    proc = run_cli("run", *small_files, "-o", output, "--size", 64, "--time-budget", 8, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    done = events[-1]
    assert done["event"] == "done" and done["steps"] >= 1 and not done["cancelled"]
    assert output.is_file()
    progress = [event for event in events if event["event"] == "progress"]
    assert all(event["eta"] is not None and event["eta"] <= 8 for event in progress)


def test_quiet_prints_nothing(random_weights, small_files, tmp_path):
    proc = run_cli("run", *small_files, "-o", tmp_path / "q.png", "--size", 32, "-n", 1, "--quiet")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_save_every_writes_snapshots(random_weights, small_files, tmp_path):
    proc = run_cli("run", *small_files, "-o", tmp_path / "s.png", "--size", 32, "-n", 4, "--save-every", 2, "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("s_*.png")) == ["s_00002.png", "s_00004.png"]


def test_bad_input_path_exits_2_with_one_line(random_weights, small_files, tmp_path):
    proc = run_cli("run", tmp_path / "missing.jpg", small_files[1], "-o", tmp_path / "o.png", "--progress", "json")
    line = one_line_error(proc, 2)
    assert "missing.jpg" in line
    assert json.loads(proc.stdout.splitlines()[-1])["event"] == "error"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--style-layers", "relu1_1,relu9_9"], "relu9_9"),
        (["--size", "4"], "size must be at least 16"),
        (["--style-weight", "x"], "invalid float value"),
        (["--preserve-color", "sepia"], "invalid choice"),
        (["--preset", "fastest"], "invalid choice"),
        (["--time-budget", "0"], "--time-budget must be between 0.1 and"),
        (["--scales", "0"], "scales must be at least 1"),
    ],
)
def test_bad_settings_exit_2_with_one_line(random_weights, small_files, tmp_path, args, words):
    proc = run_cli("run", *small_files, "-o", tmp_path / "o.png", *args)
    assert words in one_line_error(proc, 2)


def test_missing_output_is_a_usage_error(small_files):
    assert "-o/--output" in one_line_error(run_cli("run", *small_files), 2)


def test_bad_weights_file_exits_2_and_keeps_existing_output(small_files, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a weights file at all")
    output = tmp_path / "o.png"
    output.write_bytes(b"precious")
    proc = run_cli("run", *small_files, "-o", output, "--weights", bad)
    assert "bad.pth" in one_line_error(proc, 2)
    assert output.read_bytes() == b"precious"


def test_output_equal_to_input_is_refused(random_weights, small_files):
    content, style = small_files
    before = content.read_bytes()
    assert "refusing to overwrite input" in one_line_error(run_cli("run", content, style, "-o", content), 2)
    assert content.read_bytes() == before


def test_sigint_writes_best_so_far_and_exits_130(random_weights, small_files, tmp_path):
    output = tmp_path / "interrupted.png"
    proc = interrupt_cli("run", *small_files, "-o", output, "--size", "32", "-n", "100000", "--progress", "json",
                         when=lambda event: event["event"] == "progress")
    assert proc.returncode == 130, proc.stderr
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    assert done["event"] == "done" and done["cancelled"] is True and done["steps"] < 100000
    assert output.is_file()


def test_weights_import_and_list(random_weights_file, tmp_path):
    cache = tmp_path / "cache"
    env = {"NST_CORE_CACHE_DIR": str(cache)}
    listed = run_cli("weights", "list", env=env)
    assert listed.returncode == 0 and "vgg16: not cached" in listed.stdout
    imported = run_cli("weights", "import", random_weights_file, env=env)
    assert imported.returncode == 0, imported.stderr
    assert (cache / "weights" / "vgg16.pth").is_file()
    listed = run_cli("weights", "list", env=env)
    assert "vgg16: " + str(cache / "weights" / "vgg16.pth") in listed.stdout
    bad = tmp_path / "bad.pth"
    torch.save({"0.weight": torch.zeros(3)}, bad)
    assert "bad.pth" in one_line_error(run_cli("weights", "import", bad, env=env), 2)


def test_cached_weights_are_used_without_a_weights_variable(random_weights_file, small_files, tmp_path):
    cache = tmp_path / "cache"
    env = {"NST_CORE_CACHE_DIR": str(cache)}
    assert run_cli("weights", "import", random_weights_file, env=env).returncode == 0
    proc = run_cli("run", *small_files, "-o", tmp_path / "o.png", "--size", 32, "-n", 1, "--model", "vgg16",
                   "--weights", "torchvision", "--progress", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    notices = [json.loads(l)["message"] for l in proc.stdout.splitlines() if '"notice"' in l]
    assert any("cache" in notice for notice in notices)


def test_gimp_install_doctor_uninstall(tmp_path):
    plug_ins = tmp_path / "plug-ins"
    installed = run_cli("gimp", "install", "--gimp-dir", plug_ins)
    assert installed.returncode == 0, installed.stderr
    plugin = plug_ins / "nst_gimp" / "nst_gimp.py"
    assert plugin.is_file() and os.access(plugin, os.X_OK)
    recorded = (plug_ins / "nst_gimp" / "nst-core-path.txt").read_text().strip()
    assert Path(recorded) == NST_CORE
    doctor = run_cli("gimp", "doctor", "--gimp-dir", plug_ins)
    lines = doctor.stdout.splitlines()
    assert f"ok       the plug-in runs {NST_CORE}" in lines
    assert any(line.startswith("ok       plug-in installed in") for line in lines)
    # what is left can only be about GIMP itself: none on this machine, or not restarted since
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert all("no GIMP 3 found" in line or "has not loaded the plug-in yet" in line for line in problems), lines
    plugin.chmod(0o644)
    assert "lacks its run bit" in run_cli("gimp", "doctor", "--gimp-dir", plug_ins).stdout
    removed = run_cli("gimp", "uninstall", "--gimp-dir", plug_ins)
    assert removed.returncode == 0 and not (plug_ins / "nst_gimp").exists()
    assert f"removed {plug_ins / 'nst_gimp'}" in removed.stdout
    doctor = run_cli("gimp", "doctor", "--gimp-dir", plug_ins)
    assert doctor.returncode == 1 and "the plug-in is not installed" in doctor.stdout
