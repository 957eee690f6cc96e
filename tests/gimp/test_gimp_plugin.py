"""The GIMP 3 plug-in, through a real GIMP 3.0 (gimp-console-3.0 in a Debian trixie chroot, see
plugins/gimp/tools/gimp-env.sh), the real nst-core CLI and the real VGG-16 weights at a tiny size.

All scenarios run in ONE GIMP start (each start costs ~9 s): the module fixture runs
gimp_batch.py inside GIMP, which writes what it observed as JSON; each test asserts on its part.

Undo: GIMP 3.0's plug-in API has no call that performs an undo (undo is a UI action), so the test
checks that the plug-in's undo group is balanced (a new group opens and closes after it) and that
undo stays enabled; all result layers are made between one undo_group_start()/undo_group_end().
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

sys.path.insert(0, str(harness.REPO / "plugins" / "gimp" / "nst_gimp"))
import nst_gimp_bridge as bridge  # noqa: E402

pytestmark = pytest.mark.gimp

WIDTH, HEIGHT, ITERATIONS = 64, 48, 12
# "killed" runs before others: their runs must remove the temporary folder it leaves
SCENARIOS = ["basic", "killed", "u16_alpha", "missing_style", "no_style", "gray_two_layers", "fast_style",
             "instant"]
FAST_STYLE = "tiny_starry"


def result_name(layer, style="starry_night"):
    return bridge.result_layer_name(layer, style)


@pytest.fixture(scope="module")
def gimp_results(gimp_env, real_weights, tmp_path_factory):
    base = tmp_path_factory.mktemp("gimp")
    home = base / "home"
    harness.install_plugin(home)
    harness.write_photo(base / "photo.rgba", WIDTH, HEIGHT)
    harness.train_tiny_model(home / ".cache" / "nst-core" / "models" / f"{FAST_STYLE}.nst")
    spec = {"results": str(base / "results.json"), "style": str(harness.style_file()),
            "photo": str(base / "photo.rgba"), "width": WIDTH, "height": HEIGHT, "iterations": ITERATIONS,
            "scenarios": SCENARIOS, "fast_style": FAST_STYLE}
    results = harness.run_batch(home, spec)
    gimp = results["_gimp"]
    timings = {name: results.get(name, {}).get("scenario_seconds") for name in SCENARIOS}
    print(f"\nGIMP run: {gimp['seconds']} s (chroot ensure {gimp_env:.1f} s); scenarios: {timings}")
    if gimp["returncode"] != 0 or not any(name in results for name in SCENARIOS):
        pytest.fail(f"GIMP batch failed (exit {gimp['returncode']}):\n{gimp['output']}", pytrace=False)
    return results


def scenario(results, name):
    facts = results.get(name)
    assert facts is not None, f"scenario {name} did not run:\n{results['_gimp']['output']}"
    assert "exception" not in facts, facts["exception"]
    return facts


def succeeded(facts):
    assert facts["run"]["status"] == "success", facts["run"]
    return facts


def test_new_layer_above_original_which_is_unchanged(gimp_results):
    facts = succeeded(scenario(gimp_results, "basic"))
    names = [layer["name"] for layer in facts["layers"]]
    assert names == ["photo (starry_night)", "photo", "background"]
    new, original = facts["layers"][0], facts["layers"][1]
    assert (new["width"], new["height"], new["offsets"]) == (original["width"], original["height"], [8, 10])
    assert facts["original_unchanged"]
    assert facts["new_vs_original_mean_diff"] > 2.0  # stylized, not a copy
    assert facts["bottom_is_last"]


def test_menu_entry_in_a_neural_style_submenu_under_filters(gimp_results):
    menu = scenario(gimp_results, "basic")["menu"]
    assert menu["label"] == "Paint Like a Painting..."
    assert menu["paths"] == ["<Image>/Filters/Neural Style"]
    assert menu["image_types"] == "RGB*, GRAY*"


def test_help_states_the_strength_mapping_the_code_uses(gimp_results):
    help_text = scenario(gimp_results, "basic")["menu"]["help"]
    assert f"--style-weight as {bridge.STRENGTH_FORMULA}:" in help_text
    assert bridge.STRENGTH_FORMULA.startswith(f"{bridge.style_weight_for_strength(50):g} * ")


def test_one_balanced_undo_group(gimp_results):
    facts = succeeded(scenario(gimp_results, "basic"))
    assert facts["undo_enabled_before"] and facts["undo_enabled_after"]
    assert facts["undo_group_balanced"]


def test_selection_limits_the_change(gimp_results):
    facts = succeeded(scenario(gimp_results, "basic"))
    assert facts["layers"][0]["mask"]
    assert facts["outside_max_diff"] <= 1
    assert facts["inside_mean_diff"] > 2.0


def test_16_bit_image_with_alpha(gimp_results):
    facts = succeeded(scenario(gimp_results, "u16_alpha"))
    assert [layer["name"] for layer in facts["layers"]] == [result_name("photo16"), "photo16"]
    new = facts["layers"][0]
    assert new["alpha"] and not new["mask"]  # no selection: no mask
    assert facts["precision"] == "u16-non-linear"
    assert facts["original_unchanged"]
    assert facts["new_vs_original_mean_diff_8bit"] > 2.0
    assert facts["alpha_max_diff_8bit"] <= 2, facts
    # a 16-bit result (nst-core writes 16-bit PNGs for 16-bit input), not 8-bit levels
    assert facts["fraction_8bit_levels"] < 0.5, facts


def test_missing_style_file_is_an_error_before_nst_core_starts(gimp_results):
    facts = scenario(gimp_results, "missing_style")
    assert facts["run"]["status"] == "execution-error", facts["run"]
    # the plug-in's own check (nst-core's message would be "cannot read ...")
    assert facts["run"]["message"] == f"the style image {facts['missing']} does not exist", facts["run"]
    assert facts["file_run"]["status"] in ("calling-error", "execution-error"), facts["file_run"]
    assert [layer["name"] for layer in facts["layers"]] == ["photo"]


def test_no_style_is_an_error_before_nst_core_starts(gimp_results):
    facts = scenario(gimp_results, "no_style")
    assert facts["run"]["status"] == "execution-error", facts["run"]
    assert facts["run"]["message"] == bridge.NO_STYLE
    assert [layer["name"] for layer in facts["layers"]] == ["photo"]


def test_cancel_gimp_killing_the_plugin_kills_nst_core_at_once(gimp_results):
    facts = scenario(gimp_results, "killed")
    assert facts["cli_command"][1].endswith("/nst-core") and facts["cli_command"][2] == "run", facts
    print(f"\nnst-core killed with the plug-in {facts['cli_started_to_kill']} s after the run began; it lived on "
          f"{facts['cli_lived_after_kill']} s")
    assert facts["cli_lived_after_kill"] is not None and facts["cli_lived_after_kill"] < 1.0, facts
    assert facts["run"]["status"] != "success"
    assert [layer["name"] for layer in facts["layers"]] == ["photo"]
    # the killed run's temporary folder is there until the plug-in runs next
    assert [name for name in facts["temp_after_kill"] if name.startswith(bridge.TEMP_PREFIX)], facts


def test_gray_image_two_selected_layers_style_from_a_layer(gimp_results):
    facts = succeeded(scenario(gimp_results, "gray_two_layers"))
    assert facts["base_type"] == "gray"
    names = [layer["name"] for layer in facts["layers"]]
    # each named after its own layer and the style layer: no "#1" to tell them apart
    assert names == ["second (painting)", "second", "first (painting)", "first"]
    assert facts["layers"][0]["offsets"] == facts["layers"][1]["offsets"] == [4, 6]
    assert (facts["layers"][0]["width"], facts["layers"][0]["height"]) == (WIDTH // 2, HEIGHT // 2)


def test_temporary_files_removed(gimp_results):
    leftovers = [name for name in gimp_results["_gimp"]["leftover_temp"] if name.startswith("nst-gimp-")]
    assert leftovers == []


def test_fast_style_from_the_models_folder(gimp_results):
    facts = succeeded(scenario(gimp_results, "fast_style"))
    assert [layer["name"] for layer in facts["layers"]] == [result_name("photo", FAST_STYLE), "photo"]
    assert (facts["layers"][0]["width"], facts["layers"][0]["height"]) == (WIDTH, HEIGHT)
    assert facts["original_unchanged"] and facts["new_vs_original_mean_diff"] > 1.0


def test_instant_style_keeps_16_bits_alpha_and_the_selection(gimp_results):
    facts = succeeded(scenario(gimp_results, "instant"))
    assert facts["menu"]["label"] == "Instant Style..."
    assert [layer["name"] for layer in facts["layers"]] == [result_name("photo16"), "photo16"]
    assert facts["layers"][0]["alpha"] and not facts["layers"][0]["mask"]
    assert facts["original_unchanged"] and facts["new_vs_original_mean_diff_8bit"] > 2.0
    assert facts["alpha_max_diff_8bit"] <= 2, facts
    assert facts["fraction_8bit_levels"] < 0.5, facts
    assert facts["masked_run"]["status"] == "success", facts["masked_run"]
    names = [layer["name"] for layer in facts["masked_layers"]]
    assert names[0] == result_name("photo16") and names[2] == "photo16"
    assert names[1].startswith(result_name("photo16"))  # GIMP makes names unique ("... #1")
    assert facts["masked_layers"][1]["mask"]  # the new one is right above its layer
    missing = facts["missing_run"]
    assert missing["status"] == "execution-error" and missing["message"].startswith("the style image "), missing
