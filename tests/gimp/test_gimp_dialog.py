"""The Neural Style dialog in a real GIMP 3.0 with a window (gimp-3.0 on Xvfb in the chroot,
driven by plugins/gimp/tools/gimp_dialog.py with xdotool): without a style, OK does nothing (it
is disabled and the dialog says why); with one, OK closes the dialog and the run makes its layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

pytestmark = pytest.mark.gimp


@pytest.fixture(scope="module")
def dialog(gimp_env, tmp_path_factory):
    from PIL import Image

    base = tmp_path_factory.mktemp("dialog")
    home = base / "home"
    harness.install_plugin(home, harness.cli_executable())
    image = base / "photo.png"
    with Image.open(harness.photo_file()) as photo:
        photo.convert("RGB").resize((64, 48)).save(image)
    spec = {"image": str(image), "results": str(base / "results.json"), "runs": [
        {"props": {}, "keys": ["alt+o", "Escape"]},  # no style: OK (Alt+O) does nothing; Escape cancels
        {"props": {"style-file": str(harness.style_file()), "iterations": 2, "size": 32, "model": "vgg16"},
         "keys": ["alt+o"]},
    ]}
    results = harness.run_dialog(home, spec)
    if results["_returncode"] != 0 or len(results.get("runs", [])) != 2:
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
