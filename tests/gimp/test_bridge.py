"""The plug-in's GIMP-free half (plugins/gimp/nst_gimp/nst_gimp_bridge.py), without GIMP."""

from __future__ import annotations

import os
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins" / "gimp" / "nst_gimp"))

import nst_gimp_bridge as bridge  # noqa: E402

FAKE = Path(__file__).resolve().parent / "fake_nst_core.py"


def fake_cli():
    return [sys.executable, str(FAKE)]


# --- strength mapping -------------------------------------------------------------------------

@pytest.mark.parametrize("strength, weight", [(0, 0.05), (25, 0.5), (50, 5.0), (75, 50.0), (100, 500.0)])
def test_strength_is_logarithmic_with_50_at_the_engine_default(strength, weight):
    assert bridge.style_weight_for_strength(strength) == pytest.approx(weight)
    assert bridge.strength_for_style_weight(weight) == pytest.approx(strength)


@pytest.mark.parametrize("strength", [0, 10, 37.5, 50, 80, 100])
def test_the_help_texts_formula_is_the_codes(strength):
    """The procedure's help shows STRENGTH_FORMULA; evaluated, it gives what the code sends."""
    expression = bridge.STRENGTH_FORMULA.replace("^", "**").replace("s", f"({strength})")
    assert eval(expression, {}) == pytest.approx(bridge.style_weight_for_strength(strength))
    source = (REPO / "plugins" / "gimp" / "nst_gimp" / "nst_gimp.py").read_text()
    assert "bridge.STRENGTH_FORMULA" in source and "10 * 10^" not in source


def test_strength_is_clamped_and_monotonic():
    weights = [bridge.style_weight_for_strength(s) for s in range(-10, 111)]
    assert weights == sorted(weights)
    assert weights[0] == pytest.approx(0.05) and weights[-1] == pytest.approx(500.0)


# --- command line -----------------------------------------------------------------------------

def flags(command):
    """The --flag value pairs of a command (after 'run C S -o OUT')."""
    rest = command[command.index("-o") + 2:]
    return {rest[i]: rest[i + 1] for i in range(0, len(rest), 2)}


def test_default_command():
    command = bridge.build_command("/bin/nst-core", "c.png", "s.png", "o.png", bridge.Options(style="s.png"), 300, 200)
    assert command[:6] == ["/bin/nst-core", "run", "c.png", "s.png", "-o", "o.png"]
    assert flags(command) == {"--size": "0", "--preset": "balanced", "--style-weight": "5", "--seed": "0",
                              "--preserve-color": "none", "--progress": "json"}
    assert "--quiet" not in command  # --quiet would silence the JSON progress


def test_presets_pick_the_cli_preset_and_cap_the_size():
    from nst_core.config import PRESETS

    for name, preset in bridge.QUALITY_PRESETS.items():
        options = bridge.Options(quality=name)
        big = flags(bridge.build_command("x", "c", "s", "o", options, 5000, 100))
        small = flags(bridge.build_command("x", "c", "s", "o", options, 100, 20))
        assert big["--preset"] == preset.cli_preset and preset.cli_preset in PRESETS
        assert "--iterations" not in big  # the preset's plan decides
        assert big["--size"] == str(preset.max_size)
        assert small["--size"] == "0"  # the layer's own size
    assert bridge.QUALITY_PRESETS["preview"].max_size < bridge.QUALITY_PRESETS["best"].max_size


def test_explicit_settings_win():
    options = bridge.Options(quality="preview", size=96, iterations=5, strength=75, seed=7, tv_weight=0.5,
                             model="vgg16", preserve_color="luminance", extra=["--device", "cpu"])
    command = bridge.build_command(["py", "cli.py"], "c", "s", "o", options, 4000, 3000)
    assert command[:2] == ["py", "cli.py"]
    assert flags(command) == {"--size": "96", "--preset": "preview", "--iterations": "5", "--style-weight": "50",
                              "--tv-weight": "0.5",
                              "--seed": "7", "--model": "vgg16", "--preserve-color": "luminance",
                              "--progress": "json", "--device": "cpu"}


def test_auto_model_and_default_tv_are_left_to_the_engine():
    command = bridge.build_command("x", "c", "s", "o", bridge.Options(), 10, 10)
    assert "--model" not in command and "--tv-weight" not in command


def test_options_from_gimp_names():
    options = bridge.Options.from_mapping({"preserve-color": "histogram", "tv-weight": 2.0, "style": "a.png",
                                           "run-mode": 1})
    assert (options.preserve_color, options.tv_weight, options.style) == ("histogram", 2.0, "a.png")


@pytest.mark.parametrize("change, words", [
    ({"quality": "ultra"}, "unknown quality"), ({"preserve_color": "sepia"}, "unknown preserve color"),
    ({"model": "resnet"}, "unknown model"), ({"strength": 101}, "strength"), ({"size": 8}, "at least 16"),
    ({"iterations": -1}, "iterations"),
])
def test_invalid_options_are_one_line_errors(change, words):
    options = bridge.Options(**change)
    with pytest.raises(ValueError, match=words):
        bridge.build_command("x", "c", "s", "o", options, 10, 10)


def test_adding_a_choice_is_one_line(monkeypatch):
    monkeypatch.setitem(bridge.QUALITY_PRESETS, "draft", bridge.Preset("Draft", cli_preset="preview", max_size=256))
    monkeypatch.setitem(bridge.COLOR_MODES, "lab", "Lab matching")
    command = bridge.build_command("x", "c", "s", "o", bridge.Options(quality="draft", preserve_color="lab"), 999, 9)
    assert flags(command)["--preset"] == "preview" and flags(command)["--size"] == "256"
    assert flags(command)["--preserve-color"] == "lab"


# --- progress ---------------------------------------------------------------------------------

def test_parse_event_ignores_non_json():
    assert bridge.parse_event('{"event":"start","total":5}\n') == {"event": "start", "total": 5}
    assert bridge.parse_event(b'{"event":"done"}') == {"event": "done"}
    for line in ("", "hello", "{not json", "[1,2]", '{"step": 1}'):
        assert bridge.parse_event(line) is None


def test_tracker_fractions_and_texts():
    tracker = bridge.ProgressTracker("NS")
    assert tracker.feed({"event": "start", "total": 4}) == (0.0, "NS: starting")
    fraction, text = tracker.feed({"event": "progress", "step": 1, "total": 4, "eta": 75.0})
    assert fraction == 0.25 and text == "NS: step 1/4, 1:15 left"
    assert tracker.feed({"event": "notice", "message": "using vgg16"}) == (None, "NS: using vgg16")
    assert tracker.feed({"event": "done", "output": "/o.png", "steps": 4}) == (1.0, "NS: done")
    assert tracker.output == "/o.png" and tracker.notices == ["using vgg16"]
    assert tracker.feed({"event": "error", "message": "bad\nthing"}) is None and tracker.error == "bad thing"
    assert tracker.feed({"event": "unknown-future-event"}) is None


def test_error_from_stderr():
    assert bridge.error_from_stderr("warning\nnst-core: error: cannot read x.png\n") == "cannot read x.png"
    assert bridge.error_from_stderr("Traceback...\nKeyError: 'x'\n") == "KeyError: 'x'"
    assert bridge.error_from_stderr("") is None


# --- running the CLI (with a fake that follows the contract) -----------------------------------

@pytest.fixture
def images(tmp_path):
    from PIL import Image

    content, style = tmp_path / "c.png", tmp_path / "s.png"
    Image.new("RGBA", (8, 6), (10, 20, 30, 128)).save(content)
    Image.new("RGB", (8, 6), (200, 100, 0)).save(style)
    return content, style, tmp_path / "out.png"


def test_run_cli_success_reports_progress(images):
    content, style, out = images
    updates = []
    command = bridge.build_command(fake_cli(), content, style, out, bridge.Options(iterations=4), 8, 6)
    tracker = bridge.run_cli(command, on_update=lambda f, t: updates.append((f, t)))
    assert tracker.done and out.is_file() and tracker.output == str(out)
    fractions = [f for f, _ in updates if f is not None]
    assert fractions == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]  # step 4/4, then done
    from PIL import Image

    with Image.open(out) as result:
        assert result.mode == "RGBA" and result.getpixel((0, 0)) == (245, 235, 225, 128)


def test_run_cli_error_becomes_cli_error_with_the_one_line_message(images, tmp_path):
    content, _, out = images
    command = bridge.build_command(fake_cli(), content, tmp_path / "missing.png", out, bridge.Options(), 8, 6)
    with pytest.raises(bridge.CliError) as caught:
        bridge.run_cli(command)
    assert str(caught.value) == f"cannot read {tmp_path / 'missing.png'}: no such file"
    assert caught.value.returncode == 2 and not out.exists()


def test_runtime_error_message(images, monkeypatch):
    content, style, out = images
    monkeypatch.setenv("FAKE_NST_FAIL", "loss became NaN")
    with pytest.raises(bridge.CliError, match="^loss became NaN$"):
        bridge.run_cli(bridge.build_command(fake_cli(), content, style, out, bridge.Options(iterations=4), 8, 6))


def test_error_without_json_uses_stderr(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.stderr.write('nst-core: error: cannot import nst_core (x)\\n')\nsys.exit(1)\n")
    with pytest.raises(bridge.CliError, match=r"^cannot import nst_core \(x\)$"):
        bridge.run_cli([sys.executable, str(script)])


def test_missing_executable(tmp_path):
    with pytest.raises(bridge.CliError, match="cannot start"):
        bridge.run_cli([str(tmp_path / "no-such-nst-core")])


def test_cancel_stops_the_subprocess(images, monkeypatch, tmp_path):
    content, style, out = images
    monkeypatch.setenv("FAKE_NST_STEP_DELAY", "0.2")
    started = time.monotonic()
    seen = []

    def should_cancel():
        return len(seen) >= 2

    command = bridge.build_command(fake_cli(), content, style, out, bridge.Options(iterations=500), 8, 6)
    with pytest.raises(bridge.Cancelled):
        bridge.run_cli(command, on_update=lambda f, t: seen.append(f), should_cancel=should_cancel,
                       poll_interval=0.05)
    assert time.monotonic() - started < 15
    assert out.is_file()  # the fake (like nst-core) writes its best image when stopped


def test_child_environment_drops_gimps_python_settings():
    env = bridge.child_env({"PYTHONPATH": "/gimp/python", "PYTHONHOME": "/gimp", "PATH": "/bin", "X": "1"})
    assert "PYTHONPATH" not in env and "PYTHONHOME" not in env
    assert env["PATH"] == "/bin" and env["X"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def start_plugin_and_kill_it(command, tmp_path, env):
    """Run ``command`` through bridge.run_cli in a stand-in plug-in process; once the CLI has
    reported progress, SIGKILL the plug-in (as GIMP does on Cancel). Returns the CLI's pid and
    the seconds it lived on after its parent's death (None: still running after 20 s)."""
    import subprocess

    started = tmp_path / "started"
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'plugins' / 'gimp' / 'nst_gimp')!r})\n"
        "import nst_gimp_bridge as b\n"
        f"b.run_cli({command!r}, on_update=lambda f, t: open({str(started)!r}, 'w').close())\n")
    plugin = subprocess.Popen([sys.executable, str(driver)], env={**os.environ, **env})
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and plugin.poll() is None:
        time.sleep(0.05)
    assert started.exists(), "the CLI did not report progress"
    children = [int(p) for p in Path(f"/proc/{plugin.pid}/task/{plugin.pid}/children").read_text().split()]
    assert len(children) == 1, children
    plugin.kill()
    killed = time.monotonic()
    plugin.wait()
    while time.monotonic() - killed < 20:
        if not _alive(children[0]):
            return children[0], time.monotonic() - killed
        time.sleep(0.02)
    os.kill(children[0], 9)
    return children[0], None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_cli_dies_with_the_plugin_process(images, tmp_path):
    """GIMP kills a cancelled plug-in; its CLI must go within a second, even in the middle of a
    long step that it would finish first if it were only asked to stop (SIGTERM)."""
    content, style, out = images
    command = bridge.build_command(fake_cli(), content, style, out, bridge.Options(iterations=3), 8, 6)
    _, lived = start_plugin_and_kill_it(command, tmp_path, {"FAKE_NST_STEP_DELAY": "30"})
    assert lived is not None and lived < 1.0, lived


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_the_real_nst_core_dies_with_the_plugin_process(images, tmp_path, random_weights_file):
    """The same with the real nst-core mid-run (it answers SIGTERM by finishing its step)."""
    from PIL import Image

    content, style, out = images
    Image.new("RGB", (96, 96), (10, 120, 200)).save(content)
    Image.new("RGB", (96, 96), (200, 100, 0)).save(style)
    cli = str(Path(sys.executable).with_name("nst-core"))
    command = bridge.build_command(cli, content, style, out, bridge.Options(iterations=100000, size=96), 96, 96)
    _, lived = start_plugin_and_kill_it(command, tmp_path, {"NST_CORE_WEIGHTS": str(random_weights_file),
                                                            "OMP_NUM_THREADS": "1"})
    assert lived is not None and lived < 2.0, lived
    assert not out.exists()


def test_a_parent_gone_before_the_child_is_armed_is_noticed():
    """The window between fork and prctl: the child sees a new parent and exits at once."""
    preexec = bridge._parent_death_kill()
    assert preexec is not None
    import subprocess

    code = ("import os, sys\n"
            f"sys.path.insert(0, {str(REPO / 'plugins' / 'gimp' / 'nst_gimp')!r})\n"
            "import nst_gimp_bridge as b\n"
            "f = b._parent_death_kill()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    import time; time.sleep(0.5); f(); os._exit(0)\n"  # the parent is gone by then
            "print(pid)\n")
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid):
    return Path(f"/proc/{pid}").exists() and _state(pid) != "Z"


def _state(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


# --- PNG writing ------------------------------------------------------------------------------

def decode_png(data):
    """A minimal decoder for what write_png writes (filter type 0 rows)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color_type = header[:4]
    raw = zlib.decompress(idat)
    stride = len(raw) // height
    assert all(raw[row * stride] == 0 for row in range(height))
    return header, b"".join(raw[row * stride + 1:(row + 1) * stride] for row in range(height))


@pytest.mark.parametrize("channels, mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_png_8bit_round_trips_through_pillow(tmp_path, channels, mode):
    from PIL import Image

    width, height = 5, 3
    pixels = bytes((i * 7) % 256 for i in range(width * height * channels))
    path = tmp_path / "x.png"
    bridge.write_png(path, pixels, width, height, channels, 8)
    with Image.open(path) as image:
        assert image.mode == mode and image.size == (width, height)
        assert image.tobytes() == pixels


def test_png_16bit_is_big_endian_rgba(tmp_path):
    from array import array

    width, height = 3, 2
    samples = array("H", [(i * 4099) % 65536 for i in range(width * height * 4)])
    native = samples.tobytes()  # as GEGL's "u16" formats give them
    path = tmp_path / "x16.png"
    bridge.write_png(path, native, width, height, 4, 16)
    header, body = decode_png(path.read_bytes())
    assert header[:4] == (width, height, 16, 6)
    assert list(struct.unpack(f">{width * height * 4}H", body)) == list(samples)
    from PIL import Image

    with Image.open(path) as image:  # Pillow accepts it (and reduces it to 8-bit RGBA)
        assert image.size == (width, height)


def test_png_rejects_wrong_sizes():
    with pytest.raises(ValueError):
        bridge.png_bytes(b"\x00" * 5, 2, 2, 1, 8)
    with pytest.raises(ValueError):
        bridge.png_bytes(b"\x00" * 4, 2, 2, 1, 4)


def test_bit_depth_for_precision():
    assert bridge.bit_depth_for_precision("GIMP_PRECISION_U8_NON_LINEAR") == 8
    assert bridge.bit_depth_for_precision("u8-linear") == 8
    for name in ("GIMP_PRECISION_U16_NON_LINEAR", "GIMP_PRECISION_FLOAT_LINEAR", "half-perceptual", "u32-linear"):
        assert bridge.bit_depth_for_precision(name) == 16


# --- finding the CLI, names, temp folders -------------------------------------------------------

def executable(path):
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_find_cli_order(tmp_path):
    plugin, bin_dir = tmp_path / "plugin", tmp_path / "bin"
    plugin.mkdir(), bin_dir.mkdir()
    on_path = executable(bin_dir / "nst-core")
    recorded = executable(tmp_path / "recorded-nst-core")
    env = {"PATH": str(bin_dir)}
    assert bridge.find_cli(plugin, environ=env) == str(on_path)
    (plugin / bridge.CLI_PATH_FILE).write_text(f"{recorded}\n")
    assert bridge.find_cli(plugin, environ=env) == str(recorded)
    override = executable(tmp_path / "override")
    assert bridge.find_cli(plugin, environ={**env, bridge.CLI_ENV: str(override)}) == str(override)


def test_find_cli_errors(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / bridge.CLI_PATH_FILE).write_text(str(tmp_path / "gone") + "\n")
    with pytest.raises(bridge.CliError, match="nst-core gimp install"):
        bridge.find_cli(plugin, environ={"PATH": str(tmp_path / "empty")})
    with pytest.raises(bridge.CliError, match=bridge.CLI_ENV):
        bridge.find_cli(plugin, environ={bridge.CLI_ENV: str(tmp_path / "gone")})


def test_names():
    assert bridge.style_label("/x/starry_night.jpg") == "starry_night"
    assert bridge.style_label("", "Layer 2") == "Layer 2"
    assert bridge.result_layer_name("Background", "starry_night") == "Background (starry_night)"


def test_style_problem_is_found_before_nst_core_starts(tmp_path):
    style = tmp_path / "style.jpg"
    assert bridge.style_problem("") == bridge.NO_STYLE
    assert bridge.style_problem(str(style)) == f"the style image {style} does not exist"
    style.write_bytes(b"x")
    assert bridge.style_problem(str(style)) is None
    assert bridge.style_problem("", style_layer=True) is None
    assert bridge.style_problem("", fast_model="candy") is None
    assert bridge.style_problem("", fast_model=bridge.NO_FAST_MODEL) == bridge.NO_STYLE


def test_menu_is_a_neural_style_submenu_under_filters():
    assert bridge.MENU_PATH == "<Image>/Filters/Neural Style"
    assert bridge.menu_text("python-fu-nst-neural-style") == "Filters > Neural Style > Paint Like a Painting..."
    # what `nst-core gimp install` tells the user: the submenu and every entry
    assert bridge.menu_text() == "Filters > Neural Style (Paint Like a Painting, Instant Style, Paint by Region)"
    assert bridge.menu_text("python-fu-nst-region-style") == "Filters > Neural Style > Paint by Region..."
    # the plug-in defines exactly the procedures that have menu labels
    import ast

    tree = ast.parse((REPO / "plugins" / "gimp" / "nst_gimp" / "nst_gimp.py").read_text())
    entries = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                   and any(getattr(target, "id", "") == "ENTRIES" for target in node.targets))
    assert [key.value for key in entries.keys] == list(bridge.MENU_LABELS)


def test_sweep_removes_only_dead_processes_folders(tmp_path):
    import subprocess

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{bridge.TEMP_PREFIX}{dead.pid}-abc"
    mine = tmp_path / f"{bridge.temp_prefix()}def"
    other = tmp_path / "unrelated"
    for folder in (stale, mine, other):
        folder.mkdir()
        (folder / "f").write_text("x")
    assert bridge.sweep_stale_temp_dirs(tmp_path) == [stale]
    assert not stale.exists() and mine.exists() and other.exists()


def test_strength_50_is_the_engine_default_style_weight():
    from nst_core import Config

    assert bridge.style_weight_for_strength(50) == Config().style_weight


# --- fast styles ----------------------------------------------------------------------------


def test_fast_style_command_uses_the_model_and_only_size_and_colour(tmp_path):
    options = bridge.Options(fast_model=str(tmp_path / "starry.nst"), preserve_color="luminance", quality="best",
                             iterations=99)
    command = bridge.build_command("/bin/nst-core", "c.png", None, "o.png", options, 300, 200)
    assert command[:7] == ["/bin/nst-core", "run", "c.png", "--fast-model", str(tmp_path / "starry.nst"), "-o", "o.png"]
    assert flags(command) == {"--size": "0", "--preserve-color": "luminance", "--progress": "json"}


def test_fast_style_none_falls_back_to_the_style_image():
    options = bridge.Options(fast_model=bridge.NO_FAST_MODEL)
    assert not options.uses_fast_model
    command = bridge.build_command("nst-core", "c.png", "s.png", "o.png", options, 30, 20)
    assert "--fast-model" not in command and command[3] == "s.png"
    with pytest.raises(ValueError, match="style"):
        bridge.build_command("nst-core", "c.png", None, "o.png", options, 30, 20)


def test_models_folder_listing_and_choices(tmp_path, monkeypatch):
    folder = tmp_path / "cache" / "models"
    monkeypatch.setenv("NST_CORE_CACHE_DIR", str(tmp_path / "cache"))
    assert bridge.list_fast_models() == {} and list(bridge.fast_model_choices()) == ["none"]
    folder.mkdir(parents=True)
    for name in ("starry night.nst", "scream.nst", "notes.txt", "none.nst"):
        (folder / name).write_bytes(b"x")
    models = bridge.list_fast_models()
    assert models == {"scream": str(folder / "scream.nst"), "starry-night": str(folder / "starry night.nst")}
    assert list(bridge.fast_model_choices()) == ["none", "scream", "starry-night"]
    assert bridge.resolve_fast_model("scream") == str(folder / "scream.nst")
    assert bridge.resolve_fast_model("/elsewhere/m.nst") == "/elsewhere/m.nst"
    command = bridge.build_command("nst-core", "c.png", None, "o.png", bridge.Options(fast_model="scream"), 30, 20)
    assert command[command.index("--fast-model") + 1] == str(folder / "scream.nst")


@pytest.mark.parametrize("env", [{}, {"XDG_CACHE_HOME": "/xdg"}, {"XDG_CACHE_HOME": "relative"}])
def test_models_folder_is_nst_cores(monkeypatch, env):
    from nst_core.fast import default_models_folder

    monkeypatch.delenv("NST_CORE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert bridge.models_folder() == default_models_folder()


def test_fast_style_progress_is_start_then_done():
    tracker = bridge.ProgressTracker()
    assert tracker.feed({"event": "start", "total": 1}) == (0.0, "Neural Style: starting")
    assert tracker.feed({"event": "done", "output": "o.png"}) == (1.0, "Neural Style: done")
    assert tracker.done and tracker.output == "o.png"


def test_progress_text_counts_tiles_and_full_size_has_no_cap():
    parser = bridge.ProgressTracker("Neural Style")
    parser.feed({"event": "start", "total": 68})
    fraction, text = parser.feed({"event": "progress", "step": 65, "total": 68, "scale": 4, "scales": 4,
                                  "size": "4000x3000", "tile": 9, "tiles": 234, "fraction": 0.6, "eta": 90})
    assert fraction == 0.6 and "step 65/68 at 4000x3000, tile 9/234" in text
    _, plain = parser.feed({"event": "progress", "step": 66, "total": 68, "tile": 0, "tiles": 0})
    assert "tile" not in plain
    options = bridge.Options(quality="full")
    assert options.processing_size(4000, 3000) == 0  # the layer's own size, whatever it is


# --- Paint by Region --------------------------------------------------------------------------

def test_region_command_one_mask_per_painting_in_order():
    regions = [bridge.Region("/p/a.jpg", "channel:sky"), bridge.Region("/p/b.jpg", "layer-mask:houses")]
    command = bridge.build_region_command("/bin/nst-core", "c.png", regions, ["/t/m0.png", "/t/m1.png"], "o.png",
                                          bridge.Options(iterations=7), 300, 200)
    assert command[:9] == ["/bin/nst-core", "run", "c.png", "/p/a.jpg", "/p/b.jpg", "--masks", "/t/m0.png,/t/m1.png",
                           "-o", "o.png"]
    assert "--rest" not in command
    assert command[-2:] == ["--progress", "json"]
    # the optimization's flags, as for one painting
    one = bridge.build_command("/bin/nst-core", "c.png", "s.png", "o.png", bridge.Options(iterations=7), 300, 200)
    assert flags(command) == flags(one)


def test_region_without_a_painting_is_none_and_the_rest_is_painted():
    regions = [bridge.Region("", "selection"), bridge.Region("/p/b.jpg", "channel:right")]
    args = bridge.region_arguments("c.png", regions, ["m0.png", "m1.png"], "o.png", bridge.Options(), 64, 48,
                                   rest="/p/rest.jpg")
    assert args[:8] == ["c.png", "none", "/p/b.jpg", "--masks", "m0.png,m1.png", "--rest", "/p/rest.jpg", "-o"]


@pytest.mark.parametrize("masks, words", [(["m0.png"], "2 regions but 1 mask files"),
                                          (["m0.png", "a,b.png"], "has a comma")])
def test_region_mask_count_and_commas_are_refused(masks, words):
    regions = [bridge.Region("a.jpg", "selection"), bridge.Region("b.jpg", "channel:x")]
    with pytest.raises(ValueError, match=words):
        bridge.region_arguments("c.png", regions, masks, "o.png", bridge.Options(), 8, 8)
    with pytest.raises(ValueError, match="give a painting a region"):
        bridge.region_arguments("c.png", [], [], "o.png", bridge.Options(), 8, 8)


def test_regions_only_slots_with_a_region_are_used():
    used = bridge.used_regions(["a.jpg", "b.jpg", ""], ["channel:left", "", "selection"])
    assert used == [bridge.Region("a.jpg", "channel:left"), bridge.Region("", "selection")]


def test_region_strings():
    assert bridge.parse_region("selection") == ("selection", "")
    assert bridge.parse_region("channel:sky:2") == ("channel", "sky:2")  # a name may hold a colon
    assert bridge.parse_region("layer-mask:Houses") == ("layer-mask", "Houses")
    for bad in ("", "channel:", "path:x", "sky"):
        with pytest.raises(ValueError, match="unknown region"):
            bridge.parse_region(bad)
    assert bridge.region_label("channel:sky") == "channel 'sky'"
    assert bridge.region_label("layer-mask:Houses") == "layer mask of 'Houses'"
    assert bridge.region_label("selection") == "the selection"


def test_region_choices_list_the_selection_channels_and_layer_masks():
    choices = bridge.region_choices(["left", "right"], ["photo"], selection_empty=True)
    assert choices == {"": "(not used)", "selection": "Current selection (empty now)", "channel:left": "Channel: left",
                       "channel:right": "Channel: right", "layer-mask:photo": "Layer mask of: photo"}
    assert all(bridge.parse_region(spec) for spec in list(choices)[1:])


def test_region_problem_is_found_before_nst_core_starts(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"x")
    assert bridge.region_problem([]) == bridge.NO_REGION
    assert bridge.region_problem([bridge.Region(str(a), "channel:left")]) is None
    assert bridge.region_problem([bridge.Region(str(b), "channel:left")]) == f"the painting {b} does not exist"
    assert bridge.region_problem([bridge.Region(str(a), "sky")]).startswith("painting 1: unknown region 'sky'")
    keep = [bridge.Region("", "selection")]
    assert bridge.region_problem(keep).startswith("nothing to paint")
    assert bridge.region_problem(keep, "paint", "") == "choose the painting for the rest"
    assert bridge.region_problem(keep, "paint", str(b)) == f"the painting {b} does not exist"
    assert bridge.region_problem(keep, "paint", str(a)) is None
    assert bridge.region_problem(keep, "paint", str(a), selection_empty=True) == bridge.EMPTY_SELECTION
    assert bridge.region_problem([bridge.Region(str(a), "channel:left")], selection_empty=True) is None
    assert bridge.region_problem(keep, "everything", str(a)).startswith("unknown rest 'everything'")
    assert bridge.rest_painting("paint", str(a)) == str(a)
    assert bridge.rest_painting("unchanged", str(a)) == ""


def test_region_summary_and_the_new_layers_name():
    regions = [bridge.Region("/p/starry_night.jpg", "channel:sky"), bridge.Region("", "selection"),
               bridge.Region("/p/starry_night.jpg", "layer-mask:trees")]
    assert bridge.region_summary(regions) == ("channel 'sky': starry_night; the selection: kept; "
                                              "layer mask of 'trees': starry_night; the rest: unchanged")
    assert bridge.region_summary(regions, "paint", "/p/picasso.png").endswith("; the rest: picasso")
    assert bridge.region_summary(regions, "unchanged", "/p/picasso.png").endswith("; the rest: unchanged")
    assert bridge.region_style_label(regions, "/p/picasso.png") == "starry_night + picasso"
    assert bridge.result_layer_name("photo", bridge.region_style_label(regions)) == "photo (starry_night)"


def test_region_run_through_the_fake_cli(images, tmp_path):
    from PIL import Image

    content, style, out = images
    masks = [tmp_path / "m0.png", tmp_path / "m1.png"]
    Image.new("L", (8, 6), 255).save(masks[0])
    Image.new("L", (8, 6), 0).save(masks[1])
    regions = [bridge.Region(str(style), "channel:left"), bridge.Region("", "channel:right")]
    command = bridge.build_region_command(fake_cli(), content, regions, masks, out, bridge.Options(iterations=2), 8, 6,
                                          rest=str(style))
    assert bridge.run_cli(command).done and out.is_file()
    with Image.open(out) as result:  # the fake: the left mask's painting, "none" keeps the content
        assert result.getpixel((0, 0)) == (200, 100, 0, 128)  # alpha kept
    # the CLI's contract: the wrong count is refused in one line
    wrong = list(command)
    wrong[wrong.index("--masks") + 1] = str(masks[0])
    with pytest.raises(bridge.CliError, match="1 masks for 2 paintings"):
        bridge.run_cli(wrong)
