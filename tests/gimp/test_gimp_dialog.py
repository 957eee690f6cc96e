"""The Neural Style dialogs in a real GIMP 3.0 with a window (gimp-3.0 on Xvfb in the chroot,
driven by plugins/gimp/tools/gimp_dialog.py with xdotool), all in one GIMP start:

* Paint Like a Painting: without a style, OK does nothing (it is disabled and the dialog says
  why); with one, OK closes the dialog and the run makes its layer;
* Instant Style, the painting a layer of another image: the preview is drawn, then redrawn
  after a change of the strength (its spin scale's mnemonic, then Page Down: 100 -> 90) and one
  of the colours (Alt+U, Down: luminance), by one nst-core serve; no layer is added until OK,
  which adds one made with those settings. The plug-in's log ($NST_GIMP_LOG) tells when each
  preview was drawn and how long after its change.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

pytestmark = pytest.mark.gimp

INSTANT = "python-fu-nst-instant-style"


@pytest.fixture(scope="module")
def dialog(gimp_env, tmp_path_factory):
    base = tmp_path_factory.mktemp("dialog")
    home = base / "home"
    harness.install_plugin(home)
    image = harness.save_photo(base / "photo.png", 512, 384)  # the preview: 384 x 288
    spec = {"image": str(image), "results": str(base / "results.json"), "runs": [
        {"props": {}, "keys": ["alt+o", "Escape"]},  # no style: OK (Alt+O) does nothing; Escape cancels
        {"props": {"style-file": str(harness.style_file()), "iterations": 2, "size": 32, "model": "vgg16"},
         "keys": ["alt+o"]},
        # the painting as a style layer (of another open image): exported once for the preview
        {"procedure": INSTANT, "props": {"style-layer": str(harness.style_file())}, "pause": 1.0,
         "keys": [{"wait_for": "drawn"}, "alt+n", "Page_Down", {"wait_for": "drawn", "count": 2},
                  "alt+u", "Down", {"wait_for": "drawn", "count": 3}, "alt+o"]},
    ]}
    results = harness.run_dialog(home, spec)
    if results["_returncode"] != 0 or len(results.get("runs", [])) != 3:
        pytest.fail(f"driving GIMP's dialog failed (exit {results['_returncode']}):\n{results['_output']}",
                    pytrace=False)
    return results


def test_without_a_style_ok_keeps_the_dialog_open(dialog):
    assert dialog["runs"][0]["open_after"] == [True, False], dialog["runs"][0]  # OK: still open; Escape: closed
    assert dialog["gimp"][0] == {"status": "cancel", "layers": ["Background"]}, dialog["gimp"][0]


def test_with_a_style_ok_runs_and_adds_the_layer_named_after_its_source(dialog):
    assert dialog["runs"][1]["open_after"] == [False]
    expected = {"status": "success", "layers": ["Background (starry_night)", "Background"]}
    assert dialog["gimp"][1] == expected, dialog["gimp"]


def instant_log(dialog):
    """The Instant Style run's lines of the plug-in's log (its process id is its own)."""
    pids = {match.group(1) for line in dialog["plugin_log"] if "preview:" in line
            for match in [re.search(r"nst-gimp\[(\d+)\]", line)] if match}
    assert len(pids) == 1, dialog["plugin_log"]
    tag = f"nst-gimp[{pids.pop()}]"
    return [line for line in dialog["plugin_log"] if tag in line]


def test_instant_preview_is_redrawn_after_each_change_and_adds_no_layer_until_ok(dialog):
    log = instant_log(dialog)
    drawn = [re.search(r"request (\d+) drawn ([\d.]+) s after the change \(nst-core ([\d.]+) s\); "
                       r"image layers: (\d+)", line) for line in log if " drawn " in line]
    assert [int(m.group(1)) for m in drawn] == [1, 2, 3], log  # one request per change, none dropped
    assert [int(m.group(4)) for m in drawn] == [1, 1, 1], log  # GIMP's count while the dialog was up
    assert sum("nst-core serve started" in line for line in log) == 1, log  # start-up paid once
    changes = [float(m.group(2)) for m in drawn[1:]]
    print(f"\nInstant Style preview: first drawn {float(drawn[0].group(2)):.2f} s after the dialog opened "
          f"(nst-core's start included); after a change: {changes} s (nst-core's part: "
          f"{[float(m.group(3)) for m in drawn[1:]]} s)")
    assert max(changes) < 6.0, log  # well under a fresh nst-core's start-up on these machines
    # OK: the dialog closed, the server quit when asked (exit 0), and the run added ONE layer
    assert dialog["runs"][2]["open_after"][-1] is False
    assert any(re.search(r"nst-core serve \(pid \d+\) stopped in [\d.]+ s, exit code 0$", line) for line in log), log
    # named after the style layer (GIMP names a JPEG's layer "Background")
    assert dialog["gimp"][2] == {"status": "success", "layers": ["Background (Background)", "Background"]}


def test_instant_ok_runs_with_the_dialogs_settings(dialog):
    run = [line for line in instant_log(dialog) if "run: " in line]
    assert len(run) == 1, run
    assert "--method instant --style-strength 0.9 --size 0 --preserve-color luminance" in run[0], run
