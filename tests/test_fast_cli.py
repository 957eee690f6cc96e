"""``nst-core train``, ``run --fast-model``, batch runs and ``models list``, as real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core.batch_manifest import MANIFEST_NAME as MANIFEST
from nst_core.errors import InputError
from nst_core.fast import load_model
from nst_core.fast.model_file import FORMAT

from .conftest import shared_image
from .test_cli import interrupt_cli, one_line_error, run_cli

TINY_NET = ("--channels", "4,8,8", "--residual-blocks", "1")
TINY_TRAIN = ("--batch-size", "1", "--crop-size", "32", "--style-size", "32", *TINY_NET)


def write_png(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


def _make_files(folder):
    photos = folder / "photos"
    photos.mkdir()
    write_png(photos / "tubingen.png", shared_image("tubingen.jpg", 48))
    write_png(photos / "shipwreck.png", shared_image("shipwreck.jpg", 40))
    style = write_png(folder / "starry.png", shared_image("starry_night.jpg", 48))
    return photos, style


@pytest.fixture
def files(tmp_path):
    return _make_files(tmp_path)


@pytest.fixture(scope="module")
def training(random_weights_file, tmp_path_factory):
    """One training for the whole module: 2 steps with JSON progress; its model is shared."""
    folder = tmp_path_factory.mktemp("training")
    photos, style = _make_files(folder)
    path = folder / "starry.nst"
    proc = run_cli("train", style, "--images", photos, "-o", path, "--steps", 2, "--progress", "json", *TINY_TRAIN,
                   env={"NST_CORE_WEIGHTS": str(random_weights_file),
                        "NST_CORE_CACHE_DIR": str(folder / "cache")})
    assert proc.returncode == 0, proc.stderr
    return proc, path


@pytest.fixture
def model(random_weights, training, tmp_path):
    """A copy of the module's trained model (tests may change their copy)."""
    path = tmp_path / "starry.nst"
    shutil.copyfile(training[1], path)
    return path


def events_of(proc):
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_train_reports_progress_and_writes_a_loadable_model(training):
    proc, path = training
    events = events_of(proc)
    assert events[0]["event"] == "start" and events[0]["total"] == 2
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2]
    assert all(e["stage"] == "train" for e in events if e["event"] == "progress")
    assert events[-1]["event"] == "done" and events[-1]["steps"] == 2
    loaded = load_model(path)
    assert loaded.step == 2 and loaded.style_name == "starry" and loaded.shape.channels == (4, 8, 8)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()  # like images, not 0600


def test_train_resume_continues_the_step_count(model, files):
    photos, style = files
    proc = run_cli("train", style, "--images", photos, "-o", model, "--steps", 4, "--resume", "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    assert [e["step"] for e in events_of(proc) if e["event"] == "progress"] == [3, 4]
    assert load_model(model).step == 4


def test_train_refuses_an_existing_model_without_resume(model, files):
    photos, style = files
    before = model.read_bytes()
    message = one_line_error(run_cli("train", style, "--images", photos, "-o", model, "--steps", 3), 2)
    assert "--resume" in message and model.read_bytes() == before


def test_train_never_overwrites_an_input(random_weights, files):
    photos, style = files
    before = style.read_bytes()
    one_line_error(run_cli("train", style, "--images", photos, "-o", style, "--steps", 1, *TINY_TRAIN), 2)
    assert style.read_bytes() == before


def test_train_default_output_is_the_models_folder_and_models_list_shows_it(random_weights, files, tmp_path):
    photos, style = files
    proc = run_cli("train", style, "--images", photos, "--steps", 1, *TINY_TRAIN)
    assert proc.returncode == 0, proc.stderr
    listing = run_cli("models", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    models = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [(m["name"], m["style"], m["steps"], m["problem"]) for m in models] == [("starry", "starry", 1, None)]
    output = tmp_path / "out.png"
    proc = run_cli("run", photos / "tubingen.png", "--fast-model", "starry", "-o", output)
    assert proc.returncode == 0, proc.stderr
    assert output.is_file() and Image.open(output).size == Image.open(photos / "tubingen.png").size


def test_sigint_during_training_writes_a_checkpoint(random_weights, files, tmp_path):
    photos, style = files
    path = tmp_path / "m.nst"
    proc = interrupt_cli("train", style, "--images", photos, "-o", path, "--steps", "100000", "--checkpoint-every", "0",
                         "--progress", "json", *TINY_TRAIN, when=lambda event: event.get("event") == "progress")
    assert proc.returncode == 130, proc.stderr
    assert 1 <= load_model(path).step < 100000


def test_run_fast_model_keeps_the_photo_size_and_applies_colour_modes(model, files, tmp_path):
    photos, _ = files
    content = photos / "tubingen.png"
    outputs = {}
    for mode in ("none", "luminance", "histogram"):
        outputs[mode] = tmp_path / f"{mode}.png"
        proc = run_cli("run", content, "--fast-model", model, "-o", outputs[mode], "--preserve-color", mode,
                       "--progress", "json")
        assert proc.returncode == 0, proc.stderr
        done = events_of(proc)[-1]
        assert done["event"] == "done" and done["info"]["method"] == "fast"
    arrays = {mode: np.asarray(Image.open(path), dtype=np.float32) / 255 for mode, path in outputs.items()}
    photo = np.asarray(Image.open(content), dtype=np.float32) / 255
    assert all(array.shape == photo.shape for array in arrays.values())
    assert not np.array_equal(arrays["none"], arrays["luminance"])
    # the luminance mode keeps the photo's chroma: its colour statistics move towards the photo's
    chroma = lambda a: a - a.mean(axis=2, keepdims=True)  # noqa: E731
    assert np.abs(chroma(arrays["luminance"]) - chroma(photo)).mean() < np.abs(chroma(arrays["none"]) - chroma(photo)).mean()
    proc = run_cli("run", content, "--fast-model", model, "-o", tmp_path / "small.png", "--size", 24)
    assert proc.returncode == 0 and max(Image.open(tmp_path / "small.png").size) == 24


def test_fast_batch_of_files_and_a_folder(model, files, tmp_path):
    photos, style = files
    extra = write_png(tmp_path / "extra.png", shared_image("the_scream.jpg", 32))
    out_dir = tmp_path / "styled"
    proc = run_cli("run", photos, extra, "--fast-model", model, "--out-dir", out_dir, "--out-format", "jpg",
                   "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == [MANIFEST, "extra.jpg", "shipwreck.jpg", "tubingen.jpg"]
    done = [e for e in events_of(proc) if e["event"] == "done"]
    assert [(e["index"], e["count"]) for e in done] == [(1, 3), (2, 3), (3, 3)]


def test_optimization_batch_folder_then_styles(random_weights, files, tmp_path):
    photos, style = files
    out_dir = tmp_path / "out"
    proc = run_cli("run", photos, style, "--out-dir", out_dir, "--size", 32, "-n", 2)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == [MANIFEST, "shipwreck.png", "tubingen.png"]


def test_optimization_batch_with_style_option(random_weights, files, tmp_path):
    photos, style = files
    out_dir = tmp_path / "out"
    proc = run_cli("run", photos / "tubingen.png", photos / "shipwreck.png", "--style", style, "--out-dir", out_dir,
                   "--size", 32, "-n", 2, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == [MANIFEST, "shipwreck.png", "tubingen.png"]
    starts = [e for e in events_of(proc) if e["event"] == "start"]
    assert [e["styles"] for e in starts] == [[str(style)]] * 2


def test_the_classic_command_line_still_works(random_weights, files, tmp_path):
    photos, style = files
    output = tmp_path / "o.png"
    proc = run_cli("run", photos / "tubingen.png", style, style, "-o", output, "--size", 32, "-n", 2)
    assert proc.returncode == 0, proc.stderr
    assert max(Image.open(output).size) == 32


@pytest.mark.parametrize("args, words", [
    (("{photos}", "{style}", "-o", "{tmp}/o.png"), "--out-dir"),
    (("{photos}/tubingen.png",  "-o", "{tmp}/o.png"), "no style"),
    (("{photos}/tubingen.png", "{style}"), "no output"),
    (("{photos}/tubingen.png", "{style}", "-o", "{tmp}/o.png", "--out-dir", "{tmp}/d"), "not both"),
    (("{photos}/tubingen.png", "--fast-model", "{tmp}/missing.nst", "-o", "{tmp}/o.png"), "no fast model"),
    (("{photos}/tubingen.png", "--fast-model", "m", "--style", "{style}", "-o", "{tmp}/o.png"), "two methods"),
])
def test_batch_usage_errors_are_one_line(random_weights, files, tmp_path, args, words):
    photos, style = files
    filled = [a.format(photos=photos, style=style, tmp=tmp_path) for a in args]
    assert words in one_line_error(run_cli("run", *filled), 2)


def test_batch_output_never_overwrites_an_input(model, files):
    photos, _ = files
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    message = one_line_error(run_cli("run", photos, "--fast-model", model, "--out-dir", photos), 2)
    assert "refusing to overwrite" in message
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_same_names_in_a_batch_are_refused(model, files, tmp_path):
    photos, _ = files
    other = tmp_path / "other"
    other.mkdir()
    write_png(other / "tubingen.png", shared_image("tubingen.jpg", 24))
    message = one_line_error(run_cli("run", photos, other, "--fast-model", model, "--out-dir", tmp_path / "o"), 2)
    assert "same result" in message


# --- bad model files ----------------------------------------------------------------------------


def bad_files(tmp_path, model_path, vgg_path):
    payload = torch.load(model_path, weights_only=True)
    made = {}
    made["corrupt"] = tmp_path / "corrupt.nst"
    made["corrupt"].write_bytes(model_path.read_bytes()[:2000])
    made["text"] = tmp_path / "text.nst"
    made["text"].write_text("hello")
    made["vgg"] = vgg_path
    made["newer"] = tmp_path / "newer.nst"
    torch.save({**payload, "version": 99}, made["newer"])
    made["shapes"] = tmp_path / "shapes.nst"
    meta = {**payload["metadata"], "network": {"channels": [8, 8, 8], "residual_blocks": 1}}
    torch.save({**payload, "metadata": meta}, made["shapes"])
    made["object"] = tmp_path / "object.nst"
    torch.save({"format": FORMAT, "version": 1, "metadata": {"x": Fraction(1, 2)}, "weights": {}}, made["object"])
    made["no_weights"] = tmp_path / "no_weights.nst"
    torch.save({k: v for k, v in payload.items() if k != "weights"}, made["no_weights"])
    return made


EXPECTED = {
    "corrupt": "corrupt or truncated", "text": "not a fast-style model", "vgg": "not a fast-style model",
    "newer": "version 99", "shapes": "needs", "object": "refused for safety", "no_weights": "lacks",
}


def test_bad_model_files_are_one_line_input_errors(model, tmp_path, random_weights_file):
    for kind, path in bad_files(tmp_path, model, random_weights_file).items():
        with pytest.raises(InputError) as info:
            load_model(path)
        message = str(info.value)
        assert "\n" not in message and EXPECTED[kind] in message, (kind, message)


def test_bad_model_files_exit_2_from_the_cli(model, files, tmp_path, random_weights_file):
    photos, _ = files
    made = bad_files(tmp_path, model, random_weights_file)
    for kind in ("corrupt", "vgg", "object", "newer"):
        message = one_line_error(run_cli("run", photos / "tubingen.png", "--fast-model", made[kind],
                                         "-o", tmp_path / "o.png"), 2)
        assert EXPECTED[kind] in message
    assert not (tmp_path / "o.png").exists()


def test_help_shows_the_new_commands():
    run_help = run_cli("run", "--help").stdout
    for option in ("--fast-model", "--out-dir", "--out-format", "--style", "--max-memory"):
        assert option in run_help
    train_help = run_cli("train", "--help").stdout
    for option in ("--images", "--resume", "--steps", "--batch-size", "--crop-size", "--checkpoint-every",
                   "--seed", "--channels", "--precision", "--device"):
        assert option in train_help
    assert run_cli("models", "list").returncode == 0


@pytest.mark.parametrize("width, height", [(1, 1), (3, 70), (7, 5)])
def test_a_tiny_photo_goes_through_a_fast_model(model, tmp_path, width, height):
    photo = tmp_path / "tiny.png"
    Image.fromarray(np.full((height, width, 3), 200, np.uint8)).save(photo)
    output = tmp_path / "o.png"
    proc = run_cli("run", photo, "--fast-model", model, "-o", output)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(output).size == (width, height)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
