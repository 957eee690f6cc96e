"""Instant Style and its dialog's preview, without GIMP: the command line and the preview's
requests built from the dialog's settings, the debounce and supersede logic of
``bridge.PreviewSession`` (on a fake clock), and ``bridge.ServeProcess`` against the real
``nst-core serve`` (start, requests, errors, quit) and stand-ins (a server that cannot start,
one that dies, one that hangs, one whose plug-in is killed)."""

from __future__ import annotations

import os
import queue
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins" / "gimp" / "nst_gimp"))

import nst_gimp_bridge as bridge  # noqa: E402

CLI = Path(sys.executable).with_name("nst-core")
SHARED = REPO.parent / "shared" / "images"


def flags(args):
    """The --flag value pairs after ``-o OUT``."""
    rest = args[args.index("-o") + 2:]
    return {rest[i]: rest[i + 1] for i in range(0, len(rest), 2)}


# --- the command line -------------------------------------------------------------------------

def test_instant_command_has_a_linear_strength_and_only_the_settings_that_matter():
    options = bridge.Options(method="instant", strength=80, preserve_color="luminance", style="s.png",
                             quality="best", seed=3, iterations=9)  # optimization settings: ignored
    command = bridge.build_command("/bin/nst-core", "c.png", "s.png", "o.png", options, 4000, 3000)
    assert command[:6] == ["/bin/nst-core", "run", "c.png", "s.png", "-o", "o.png"]
    assert flags(command) == {"--method": "instant", "--style-strength": "0.8", "--size": "0",
                              "--preserve-color": "luminance", "--progress": "json"}
    # the real CLI reads them as meant
    sys.path.insert(0, str(REPO / "plugins" / "cli"))
    from nst_cli.main import build_parser

    args = build_parser().parse_args(command[1:])
    assert (args.method, args.style_strength, args.preserve_color, args.size) == ("instant", 0.8, "luminance", 0)


@pytest.mark.parametrize("strength, value", [(0, "0"), (37.5, "0.375"), (100, "1"), (150, "1"), (-5, "0")])
def test_instant_strength_is_a_percentage_of_the_paintings_style(strength, value):
    options = bridge.Options(method="instant", strength=min(100, max(0, strength)))
    assert flags(bridge.run_arguments("c", "s", "o", options, 1, 1))["--style-strength"] == value
    assert f"{bridge.instant_strength(strength):.6g}" == value
    assert bridge.INSTANT_DEFAULT_STRENGTH == 100


def test_unknown_method_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown method 'magic'; choose one of optimize, instant"):
        bridge.Options(method="magic").validate()


def test_a_fast_model_still_wins_and_instant_needs_a_painting():
    fast = bridge.run_arguments("c", None, "o", bridge.Options(method="instant", fast_model="/m.nst"), 1, 1)
    assert fast[:3] == ["c", "--fast-model", "/m.nst"] and "--method" not in fast
    with pytest.raises(ValueError, match="choose a style image"):
        bridge.run_arguments("c", None, "o", bridge.Options(method="instant"), 1, 1)
    assert bridge.style_problem("", missing=bridge.NO_PAINTING) == "choose a style image or a style layer"


def test_instant_style_is_the_second_entry_of_the_submenu():
    assert list(bridge.MENU_LABELS)[:2] == ["python-fu-nst-neural-style", "python-fu-nst-instant-style"]
    assert bridge.menu_text("python-fu-nst-instant-style") == "Filters > Neural Style > Instant Style..."


@pytest.mark.parametrize("size, expected", [((1024, 768), (0.375, 384, 288)), ((300, 4000), (0.096, 29, 384)),
                                            ((200, 100), (1.0, 200, 100)), ((5000, 1), (0.0768, 384, 1))])
def test_preview_size_caps_the_long_side_and_never_enlarges(size, expected):
    scale, width, height = bridge.preview_size(*size)
    assert scale == pytest.approx(expected[0]) and (width, height) == expected[1:]


# --- the session's logic, on a fake clock -----------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def session(tmp_path):
    sent = []
    clock = Clock()
    preview = bridge.PreviewSession(lambda message: sent.append(message) or True, tmp_path, clock=clock)
    preview.sent, preview.test_clock = sent, clock
    return preview


def instant(**settings):
    return bridge.Options(method="instant", **settings)


def finish(session, request_id, code=0, *, write=True):
    """The server's last events for a request: ``done`` (having written its output) and ``finished``."""
    output = Path(session.requests[request_id].output)
    if write and code == 0:
        output.write_bytes(b"png")
    session.handle({"event": "done", "id": request_id, "output": str(output)})
    return session.handle({"event": "finished", "id": request_id, "exit_code": code})


def test_the_request_is_the_ok_commands_arguments(session, tmp_path):
    options = instant(strength=60, preserve_color="histogram")
    session.handle({"event": "ready"})
    session.change("layer.png", "starry.jpg", options)
    session.test_clock.now += bridge.PREVIEW_DELAY + 0.001
    assert session.tick() == 1
    output = str(tmp_path / "preview-1.png")
    command = bridge.build_command("nst-core", "layer.png", "starry.jpg", output, options, 384, 288)
    assert session.sent == [{"id": 1, "run": command[2:-2]}]  # less "nst-core run" and "--progress json"
    assert command[-2:] == ["--progress", "json"]  # serve adds it to every request


def test_changes_are_debounced_into_one_request_with_the_latest_settings(session):
    session.handle({"event": "ready"})
    clock = session.test_clock
    for strength in (90, 80, 70):  # a dragged slider: a change every 0.2 s
        session.change("c.png", "s.png", instant(strength=strength))
        clock.now += 0.2
        assert session.tick() is None
    clock.now += bridge.PREVIEW_DELAY - 0.2 + 0.001
    assert session.tick() == 1
    assert [flags(m["run"])["--style-strength"] for m in session.sent] == ["0.7"]
    assert session.tick() is None  # nothing new


def test_nothing_is_sent_before_the_server_is_ready_nor_for_unchanged_settings(session):
    session.change("c.png", "s.png", instant())
    session.test_clock.now += 5
    assert session.tick() is None and session.sent == []
    update = session.handle({"event": "ready", "version": "x", "methods": ["instant"]})
    assert update == bridge.PreviewUpdate("status", "Painting...")
    assert session.tick() == 1
    assert finish(session, 1).kind == "drawn"
    session.change("c.png", "s.png", instant())  # the same again (GIMP notifies unchanged values too)
    session.test_clock.now += 5
    assert session.tick() is None and len(session.sent) == 1


def test_a_change_supersedes_the_running_request_whose_result_is_dropped(session, tmp_path):
    session.handle({"event": "ready"})
    clock = session.test_clock
    session.change("c.png", "s.png", instant(strength=100))
    clock.now += 1
    assert session.tick() == 1
    session.change("c.png", "s.png", instant(strength=50))
    assert session.sent[-1] == {"cancel": 1}
    clock.now += 1
    assert session.tick() is None  # one request at a time
    assert finish(session, 1) is None  # superseded: not shown
    assert not (tmp_path / "preview-1.png").exists()
    assert session.tick() == 2
    clock.now += 0.8
    drawn = finish(session, 2)
    assert drawn.kind == "drawn" and drawn.path == str(tmp_path / "preview-2.png") and drawn.request == 2
    assert drawn.request_seconds == pytest.approx(0.8) and drawn.since_change == pytest.approx(1.8)
    # the next picture replaces this one's file
    session.change("c.png", "s.png", instant(strength=20))
    clock.now += 1
    assert session.tick() == 3
    assert finish(session, 3).path == str(tmp_path / "preview-3.png")
    assert not (tmp_path / "preview-2.png").exists() and (tmp_path / "preview-3.png").exists()


def test_a_cleared_painting_drops_the_running_request(session):
    session.handle({"event": "ready"})
    session.change("c.png", "s.png", instant())
    session.test_clock.now += 1
    assert session.tick() == 1
    session.change("c.png", None, instant())  # the painting was unset: nothing to preview
    assert session.sent[-1] == {"cancel": 1}
    assert finish(session, 1, code=130, write=False) is None
    session.test_clock.now += 1
    assert session.tick() is None


def test_a_failed_request_shows_its_one_line_and_the_next_one_runs(session):
    session.handle({"event": "ready"})
    session.change("c.png", "missing.png", instant())
    session.test_clock.now += 1
    assert session.tick() == 1
    session.handle({"event": "error", "id": 1, "message": "cannot read missing.png:\n no such file", "exit_code": 2})
    assert finish(session, 1, code=2) == bridge.PreviewUpdate("error", "cannot read missing.png: no such file",
                                                              request=1)
    session.change("c.png", "s.png", instant())
    session.test_clock.now += 1
    assert session.tick() == 2


def test_a_dead_server_is_an_error_and_nothing_more_is_sent(session):
    update = session.handle({"event": "exited", "exit_code": 1, "message": "No module named 'torch'"})
    assert update == bridge.PreviewUpdate("error", "No module named 'torch'")
    session.change("c.png", "s.png", instant())
    session.test_clock.now += 1
    assert session.tick() is None and session.sent == []
    assert session.handle({"event": "exited", "exit_code": -9, "message": ""}).text == \
        "nst-core serve stopped (exit code -9)"


def test_a_server_that_cannot_be_written_to_fails_the_session(tmp_path):
    preview = bridge.PreviewSession(lambda message: False, tmp_path, delay=0)
    preview.handle({"event": "ready"})
    preview.change("c.png", "s.png", instant())
    assert preview.tick() is None and preview.failed == "nst-core serve is not running"


# --- ServeProcess: the real nst-core serve, and stand-ins -------------------------------------

def events_of(server_queue, until, timeout=180):
    """Events from the queue up to the first for which ``until(event)`` is true."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = server_queue.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(event)
        if until(event):
            return seen
    raise AssertionError(f"timed out; events so far: {seen}")


def test_preview_against_the_real_nst_core_serve(tmp_path):
    """Start, wait for ready, a preview, a change (colours, strength), a failing request, quit."""
    from PIL import Image

    content = tmp_path / "layer.png"
    with Image.open(SHARED / "tubingen.jpg") as photo:
        photo.convert("RGB").resize((96, 72)).save(content)
    events: queue.Queue = queue.Queue()
    server = bridge.ServeProcess(str(CLI), on_event=events.put, env={**os.environ, "OMP_NUM_THREADS": "2"})
    session = bridge.PreviewSession(server.send, tmp_path, delay=0.05)
    started = time.monotonic()
    server.start()
    assert time.monotonic() - started < 2  # the dialog shows at once; torch loads in the background
    try:
        ready = events_of(events, lambda e: e["event"] == "ready")[-1]
        assert "instant" in ready["methods"] and session.handle(ready) is None

        def preview(style, **settings):
            session.change(str(content), str(style), instant(**settings))
            time.sleep(0.06)
            request_id = session.tick()
            assert request_id is not None
            update = None
            for event in events_of(events, lambda e: e["event"] == "finished" and e["id"] == request_id):
                update = session.handle(event) or update
            return update

        first = preview(SHARED / "starry_night.jpg")
        assert first.kind == "drawn" and first.request == 1
        with Image.open(first.path) as picture:
            assert picture.size == (96, 72)
            full = picture.convert("RGB").tobytes()
        second = preview(SHARED / "starry_night.jpg", strength=30, preserve_color="luminance")
        assert second.kind == "drawn" and not os.path.exists(first.path)
        with Image.open(second.path) as picture:
            assert picture.convert("RGB").tobytes() != full
        failed = preview(tmp_path / "no-such-painting.png")
        assert failed.kind == "error" and "no-such-painting.png" in failed.text and "\n" not in failed.text
        assert preview(SHARED / "the_scream.jpg").kind == "drawn"  # the server goes on
    finally:
        code = server.close()
    assert code == 0 and server.process.poll() == 0  # it quit when asked (not killed)
    assert events_of(events, lambda e: e["event"] == "exited", timeout=5)[-1]["exit_code"] == 0


def test_a_missing_program_cannot_start(tmp_path):
    server = bridge.ServeProcess(str(tmp_path / "no-nst-core"), on_event=lambda e: None)
    with pytest.raises(bridge.CliError, match="cannot start .*no-nst-core"):
        server.start()
    assert server.close() is None


def stand_in(code):
    """A stand-in server: ``python -c CODE serve``."""
    return [sys.executable, "-c", code]


def test_a_server_that_dies_at_start_reports_its_one_line_message(tmp_path):
    events: queue.Queue = queue.Queue()
    server = bridge.ServeProcess(stand_in("import sys\nsys.stderr.write('Traceback...\\nnst-core: error: "
                                          "no torch in this Python\\n')\nsys.exit(1)"), on_event=events.put)
    server.start()
    exited = events_of(events, lambda e: e["event"] == "exited", timeout=30)[-1]
    assert exited == {"event": "exited", "exit_code": 1, "message": "no torch in this Python"}
    assert server.close() == 1


@pytest.mark.parametrize("ready", [False, True])
def test_close_kills_a_server_that_is_loading_or_does_not_quit(ready):
    server = bridge.ServeProcess(stand_in("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                          "time.sleep(60)"), on_event=lambda e: None)
    server.start()
    started = time.monotonic()
    code = server.close(timeout=0.5, ready=ready)
    assert code == -9 and time.monotonic() - started < (2.0 if ready else 1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_the_server_dies_with_the_plugin(tmp_path):
    """GIMP kills a plug-in (Cancel on its progress, or a crash): its preview server goes too."""
    import subprocess

    pid_file = tmp_path / "pid"
    driver = tmp_path / "plugin.py"
    driver.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(REPO / 'plugins' / 'gimp' / 'nst_gimp')!r})\n"
        "import nst_gimp_bridge as b\n"
        f"s = b.ServeProcess({stand_in('import time; time.sleep(60)')!r}, on_event=lambda e: None)\n"
        f"s.start(); open({str(pid_file)!r}, 'w').write(str(s.pid)); time.sleep(60)\n")
    plugin = subprocess.Popen([sys.executable, str(driver)])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and plugin.poll() is None
        time.sleep(0.05)
    child = int(pid_file.read_text())
    plugin.kill()
    plugin.wait()
    killed = time.monotonic()
    while _alive(child) and time.monotonic() - killed < 5:
        time.sleep(0.02)
    assert not _alive(child)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_log_lines_go_to_the_file_named_by_the_environment(tmp_path):
    path = tmp_path / "plugin.log"
    bridge.log("preview: request 1\ndrawn", environ={bridge.LOG_ENV: str(path)})
    bridge.log("not written", environ={})
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith("preview: request 1 drawn") and f"[{os.getpid()}]" in lines[0]
