"""Filters > Neural Style > Paint by Region... through a real GIMP 3.0 (gimp-console-3.0 in the
Debian trixie chroot), the real nst-core CLI (``--masks``) and the real VGG-16 weights, at a tiny
size: one GIMP start runs gimp_batch.py's "regions" scenario.

The image: a gray "paper" layer under the Tübingen photo, two saved selections (channels "left"
and "right": the image's halves) and an unrelated rectangular selection. Painting A (warm: reds
and oranges) goes on "left", painting B (cold: blues and cyans) on "right", the rest unchanged.
The run must add ONE layer, leave everything else as it was, and move each half's colours
towards its own painting. A second run gives a layer mask (of a layer half off the canvas) no
painting and paints the rest. Three more runs fail before nst-core starts (a channel that does not
exist, an empty selection, an empty channel) and add nothing.

``NST_GIMP_TEST_CLI=PATH`` runs the plug-in with another nst-core (a stand-in while developing).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

pytestmark = pytest.mark.gimp

WIDTH, HEIGHT, ITERATIONS = 64, 48, 12
PROCEDURE = "python-fu-nst-region-style"


def write_painting(path: Path, colours: list[tuple[int, int, int]], seed: int) -> Path:
    """A 96x96 'painting': random strokes of the given colours (a texture, not a flat colour)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (96, 96), colours[0])
    draw = ImageDraw.Draw(image)
    for _ in range(160):
        x, y = (int(v) for v in rng.integers(0, 96, 2))
        dx, dy = (int(v) for v in rng.integers(-14, 15, 2))
        draw.line([(x, y), (x + dx, y + dy)], fill=colours[int(rng.integers(len(colours)))], width=3)
    image.save(path)
    return path


def mean_colour(path: Path) -> list[float]:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0).tolist()


@pytest.fixture(scope="module")
def regions(gimp_env, real_weights, tmp_path_factory):
    base = tmp_path_factory.mktemp("regions")
    home = base / "home"
    harness.install_plugin(home)
    harness.write_photo(base / "photo.rgba", WIDTH, HEIGHT)
    warm = write_painting(base / "warm.png", [(200, 40, 20), (240, 120, 30), (160, 20, 40), (250, 200, 60)], 1)
    cold = write_painting(base / "cold.png", [(20, 60, 200), (30, 160, 220), (10, 30, 120), (90, 200, 230)], 2)
    spec = {"results": str(base / "results.json"), "photo": str(base / "photo.rgba"), "width": WIDTH,
            "height": HEIGHT, "iterations": ITERATIONS, "scenarios": ["regions"],
            "painting_a": str(warm), "painting_b": str(cold)}
    extra = {"NST_GIMP_LOG": str(base / "plugin.log")}
    if os.environ.get("NST_GIMP_TEST_CLI"):
        extra["NST_GIMP_CLI"] = os.environ["NST_GIMP_TEST_CLI"]
    results = harness.run_batch(home, spec, extra_env=extra)
    gimp = results["_gimp"]
    facts = results.get("regions")
    print(f"\nGIMP run: {gimp['seconds']} s (chroot ensure {gimp_env:.1f} s); the scenario: "
          f"{(facts or {}).get('scenario_seconds')} s, the region run {(facts or {}).get('run', {}).get('seconds')} s")
    if gimp["returncode"] != 0 or facts is None:
        pytest.fail(f"GIMP batch failed (exit {gimp['returncode']}):\n{gimp['output']}", pytrace=False)
    assert "exception" not in facts, facts["exception"]
    log = base / "plugin.log"
    facts["log"] = log.read_text().splitlines() if log.is_file() else []
    facts["warm"], facts["cold"] = mean_colour(warm), mean_colour(cold)
    facts["leftover_temp"] = gimp["leftover_temp"]
    return facts


def test_the_entry_is_in_the_neural_style_submenu(regions):
    assert regions["menu"] == {"label": "Paint by Region...", "paths": ["<Image>/Filters/Neural Style"]}


def test_two_channels_two_paintings_one_new_layer_and_nothing_else_changed(regions):
    assert regions["run"]["status"] == "success", regions["run"]
    assert [layer["name"] for layer in regions["layers"]] == ["photo (warm + cold)", "photo", "cutout", "paper"]
    new = regions["layers"][0]
    assert (new["width"], new["height"], new["offsets"], new["mask"]) == (WIDTH, HEIGHT, [0, 0], False)
    assert regions["others_unchanged"] == [True] * 4  # paper, cutout, its mask, photo
    assert regions["channels_unchanged"] and regions["selection_unchanged"]
    assert [name for name in regions["leftover_temp"] if name.startswith("nst-gimp-")] == []


def test_the_command_gives_one_mask_per_painting_in_order(regions):
    runs = [line for line in regions["log"] if "run: " in line]
    assert len(runs) == 2, regions["log"]  # two successful runs; the failing ones start no nst-core
    words = runs[0].split("run: ", 1)[1].split()
    masks = words[words.index("--masks") + 1].split(",")
    assert [Path(word).name for word in words[3:5]] == ["warm.png", "cold.png"]
    assert [Path(mask).name for mask in masks] == ["mask-0-0.png", "mask-0-1.png"]
    assert "--rest" not in words


def towards_warm(regions, halves):
    """The change of each half's mean colour from the photo's, projected on the direction from the
    cold painting's mean colour to the warm one's (RGB levels)."""
    axis = [w - c for w, c in zip(regions["warm"], regions["cold"])]
    norm = sum(a * a for a in axis) ** 0.5
    shifts = []
    for side in (0, 1):
        change = [n - p for n, p in zip(regions[halves][side], regions["photo_halves"][side])]
        shifts.append(round(sum(c * a for c, a in zip(change, axis)) / norm, 1))
    print(f"\n{halves}: photo's halves {regions['photo_halves']}, result's {regions[halves]}; "
          f"moved towards warm: left {shifts[0]:+.1f}, right {shifts[1]:+.1f} RGB levels")
    return shifts


def test_each_half_moves_towards_its_own_painting(regions):
    left, right = towards_warm(regions, "new_halves")
    assert left > 20 and right < -20, (left, right)  # measured: +46 and -48 RGB levels (12 steps)


def test_a_layer_mask_without_a_painting_keeps_the_photo_and_the_rest_is_painted(regions):
    """The cutout's layer mask (off the canvas by half its width) is the image's left half: with
    no painting it keeps the photo; the rest (the right half) is painted with the warm painting."""
    assert regions["rest_run"]["status"] == "success", regions["rest_run"]
    names = [layer["name"] for layer in regions["rest_layers"]]
    assert names == ["photo (warm + cold)", "photo (warm)", "photo", "cutout", "paper"]
    left, right = towards_warm(regions, "rest_halves")
    assert right > 20 and abs(left) < right / 3, (left, right)  # measured: right +33, left -0.2
    runs = [line.split("run: ", 1)[1].split() for line in regions["log"] if "run: " in line]
    words = runs[1]
    assert words[3:5] == ["none", "--masks"] and Path(words[words.index("--rest") + 1]).name == "warm.png"


def test_a_missing_channel_an_empty_selection_or_an_empty_channel_fail_before_nst_core_starts(regions):
    missing, empty = regions["missing_channel_run"], regions["empty_selection_run"]
    assert missing["status"] == "execution-error" and missing["message"] == "the image has no channel named 'sky'"
    assert empty["status"] == "execution-error"
    assert empty["message"] == "the selection is empty: select an area, or choose another region", empty
    uncovered = regions["uncovered_run"]
    assert uncovered["status"] == "execution-error"
    assert uncovered["message"] == "channel 'nothing' covers nothing of the layer 'photo'", uncovered
    assert regions["layers_after_errors"] == ["photo (warm + cold)", "photo (warm)", "photo", "cutout", "paper"]


# --- the dialog, in a real GIMP with its window (Xvfb), driven as in test_gimp_dialog.py ---------

@pytest.fixture(scope="module")
def region_dialog(gimp_env, tmp_path_factory):
    base = tmp_path_factory.mktemp("region-dialog")
    home = base / "home"
    harness.install_plugin(home)
    image = harness.save_photo(base / "photo.png", 256, 192)
    shared = harness.style_file().parent
    halves = {"left": [0, 0, 128, 192], "right": [128, 0, 128, 192]}
    paintings = {"painting-1": str(shared / "starry_night.jpg"), "painting-2": str(shared / "the_scream.jpg")}
    spec = {"image": str(image), "results": str(base / "results.json"), "runs": [
        # a painting but no region: OK (Alt+O) does nothing; Escape cancels
        {"procedure": PROCEDURE, "props": {"painting-1": paintings["painting-1"]}, "channels": halves,
         "keys": ["alt+o", "Escape"]},
        # the regions chosen (the dialog's lists show the values given): OK paints, tiny and short
        {"procedure": PROCEDURE, "channels": halves, "screenshot": str(base / "gimp_regions.png"),
         "props": {**paintings, "region-1": "channel:left", "region-2": "channel:right", "size": 32,
                   "iterations": 2, "model": "vgg16"},
         "keys": ["alt+o"]},
    ]}
    results = harness.run_dialog(home, spec)
    if results["_returncode"] != 0 or len(results.get("runs", [])) != 2:
        pytest.fail(f"driving GIMP's dialog failed (exit {results['_returncode']}):\n{results['_output']}",
                    pytrace=False)
    results["screenshot"] = base / "gimp_regions.png"
    return results


def test_dialog_without_a_region_keeps_ok_disabled(region_dialog):
    assert region_dialog["runs"][0]["open_after"] == [True, False], region_dialog["runs"][0]
    assert region_dialog["gimp"][0] == {"status": "cancel", "layers": ["Background"]}, region_dialog["gimp"]


def test_dialog_ok_paints_the_chosen_channels_into_one_new_layer(region_dialog):
    assert region_dialog["runs"][1]["open_after"] == [False]
    assert region_dialog["gimp"][1] == {"status": "success",
                                        "layers": ["Background (starry_night + the_scream)", "Background"]}
    runs = [line for line in region_dialog["plugin_log"] if "run: " in line]
    assert len(runs) == 1 and "the_scream.jpg --masks " in runs[0], region_dialog["plugin_log"]
    assert region_dialog["screenshot"].is_file()
