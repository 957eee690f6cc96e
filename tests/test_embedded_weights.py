"""The embedded 8-bit VGG weights (``nst_core/data/*.npz``): exact, accurate, packaged, robust.

Figures behind the tolerances (tubingen.jpg at 128 px, embedded vs float VGG-16): relative
activation error 0 at relu1_1 (the first layer is kept in float), 0.018 at relu2_1, 0.036 at
relu3_1, 0.055 at relu4_1, 0.072 at relu5_1; a red/blue swap of the input gives 0.65-0.90 and a
neighbouring layer (reluN_2 for reluN_1) 1.03-4.7.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import Config, stylize
from nst_core import weights as W
from nst_core.features import build_vgg, vgg_conv_shapes

from .conftest import weights_error_of as error_of
from nst_core.losses import content_loss, gram_matrix, style_loss

from .conftest import REPO_ROOT, SHARED, shared_image

SHARED_VGG19 = SHARED / "weights" / "vgg19-imagenet-features.pth"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: Largest accepted relative activation error of the embedded VGG-16, about 1.5× the measured one.
TOLERANCE = {"relu1_1": 1e-5, "relu2_1": 0.03, "relu3_1": 0.055, "relu4_1": 0.085, "relu5_1": 0.11}


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].contiguous()


def load_script():
    path = REPO_ROOT / "scripts" / "make_embedded_weights.py"
    spec = importlib.util.spec_from_file_location("make_embedded_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the files ---------------------------------------------------------------------------------


def test_embedded_files_are_package_data():
    data = files("nst_core") / "data"
    sizes = {}
    for model, name in W.EMBEDDED_FILES.items():
        resource = data / name
        assert resource.is_file(), resource
        assert W.embedded_weights_path(model) == Path(os.fspath(resource))
        sizes[model] = W.embedded_weights_path(model).stat().st_size
    # uint8 codes: one byte a weight, plus small codebooks, biases and the float first VGG-16 layer
    params = {model: sum(int(np.prod(s)) for s in vgg_conv_shapes(model).values()) for model in sizes}
    assert params["vgg16"] < sizes["vgg16"] < params["vgg16"] * 1.01
    assert params["vgg19"] < sizes["vgg19"] < params["vgg19"] * 1.01
    assert sum(sizes.values()) < 40e6


def test_files_load_without_pickle_and_say_what_they_are():
    for model, name in W.EMBEDDED_FILES.items():
        with np.load(W.embedded_weights_path(model), allow_pickle=False) as archive:
            assert str(archive["__format__"]) == W.EMBEDDED_FORMAT and str(archive["__model__"]) == model
            quantized = [key for key in archive.files if key.endswith(W.CODES_SUFFIX)]
            assert all(archive[key].dtype == np.uint8 for key in quantized)
        expected = 12 if model == "vgg16" else 16  # VGG-16's first layer is float
        assert len(quantized) == expected


@pytest.mark.real_weights
def test_embedded_vgg19_equals_the_shared_file_exactly():
    if not SHARED_VGG19.is_file():
        pytest.fail(f"real VGG-19 weights not found at {SHARED_VGG19}; ../shared must sit beside the checkout")
    reference = torch.load(SHARED_VGG19, map_location="cpu", weights_only=True)
    embedded = W.load_embedded_weights("vgg19")
    assert embedded.source == "embedded VGG-19 (original VGG weights, 8-bit)"
    assert list(embedded.state_dict) == list(reference)
    for key, tensor in reference.items():
        assert torch.equal(embedded.state_dict[key], tensor), key


@pytest.mark.real_weights
def test_the_script_makes_these_files(real_vgg16):
    """The generator, run on one layer of each float file, gives the stored codes and codebooks."""
    script = load_script()
    float16 = W.read_weights_file(real_vgg16).state_dict["2.weight"].numpy()
    codes, codebook = script.kmeans_1d(float16)
    with np.load(W.embedded_weights_path("vgg16"), allow_pickle=False) as archive:
        assert np.array_equal(archive["2.weight.codes"], codes)
        assert np.array_equal(archive["2.weight.codebook"], codebook)
    float19 = torch.load(SHARED_VGG19, map_location="cpu", weights_only=True)["5.weight"].numpy()
    codes, codebook = script.exact_codebook(float19)
    with np.load(W.embedded_weights_path("vgg19"), allow_pickle=False) as archive:
        assert np.array_equal(archive["5.weight.codes"], codes)
        assert np.array_equal(archive["5.weight.codebook"], codebook)


# --- accuracy of the quantized VGG-16 ---------------------------------------------------------


@pytest.fixture(scope="module")
def vgg16_pair(real_vgg16):
    """The float and the embedded VGG-16, cut after relu5_2."""
    layers = [f"relu{block}_{n}" for block in range(1, 6) for n in (1, 2)]
    float_net = build_vgg("vgg16", W.read_weights_file(real_vgg16).state_dict, layers=layers)
    embedded_net = build_vgg("vgg16", W.load_embedded_weights("vgg16").state_dict, layers=layers)
    return float_net, embedded_net


@pytest.mark.real_weights
def test_embedded_vgg16_activations_match_the_float_network(vgg16_pair):
    float_net, embedded_net = vgg16_pair
    photo = as_batch(shared_image("tubingen.jpg", 128))
    with torch.no_grad():
        reference = float_net(photo)
        embedded = embedded_net(photo)
        swapped = float_net(photo[:, [2, 1, 0]])  # the photo as BGR
    for layer, tolerance in TOLERANCE.items():
        error = relative_error(embedded[layer], reference[layer])
        assert error < tolerance, (layer, error)
        # the tolerance is tight enough to catch a wrong channel order or a wrong layer
        assert relative_error(swapped[layer], reference[layer]) > 5 * tolerance, layer
        assert relative_error(reference[layer[:-1] + "2"], reference[layer]) > 5 * tolerance, layer
    # and the embedded network's errors grow with depth, as quantization noise does
    errors = [relative_error(embedded[layer], reference[layer]) for layer in TOLERANCE]
    assert errors == sorted(errors) and errors[1] > 0.005


@pytest.mark.real_weights
def test_embedded_vgg16_losses_match_the_float_network(vgg16_pair):
    """Content and style losses of one image (half photo, half painting) agree to about 1 %."""
    photo = shared_image("tubingen.jpg", 128)
    painting = shared_image("starry_night.jpg", 128)
    resized = Image.fromarray((painting * 255).round().astype(np.uint8)).resize(photo.shape[1::-1], Image.LANCZOS)
    mix = as_batch(0.5 * photo + 0.5 * np.asarray(resized, dtype=np.float32) / 255)
    losses = []
    with torch.no_grad():
        for net in vgg16_pair:
            content, style, image = net(as_batch(photo)), net(as_batch(painting)), net(mix)
            losses.append((
                float(content_loss(image["relu4_2"], content["relu4_2"])),
                float(np.mean([float(style_loss(gram_matrix(image[n]), gram_matrix(style[n]))) for n in STYLE_LAYERS])),
            ))
    (float_content, float_style), (embedded_content, embedded_style) = losses
    assert 0.1 < float_content and 0.1 < float_style  # losses that mean something
    assert abs(embedded_content / float_content - 1) < 0.02, losses  # measured: 0.7 %
    assert abs(embedded_style / float_style - 1) < 0.03, losses  # measured: 1.2 %


def test_a_run_without_weights_uses_embedded_vgg19(small_pair):
    """The README's first command: no --weights, no variable, no network."""
    result = stylize(small_pair[0], [small_pair[1]], config=Config(size=32, iterations=2))
    assert result.info["model"] == "vgg19"
    assert result.info["weights"] == "embedded VGG-19 (original VGG weights, 8-bit)"


# --- damaged files ---------------------------------------------------------------------------


def damaged_copies(folder: Path) -> dict[str, Path]:
    good = W.embedded_weights_path("vgg16").read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    header = bytearray(good)
    header[200] ^= 0x20
    made = {"truncated": good[: len(good) // 3], "flipped": bytes(flipped), "header": bytes(header), "empty": b""}
    paths = {}
    for name, data in made.items():
        paths[name] = folder / name / W.EMBEDDED_FILES["vgg16"]
        paths[name].parent.mkdir()
        paths[name].write_bytes(data)
    return paths


def test_damaged_embedded_file_is_a_one_line_error(tmp_path, monkeypatch):
    corrupt = "the file is corrupt or truncated"
    expected = {"truncated": corrupt, "flipped": corrupt, "header": corrupt, "empty": "the file is empty"}
    for name, path in damaged_copies(tmp_path).items():
        monkeypatch.setattr(W.resolve, "embedded_weights_path", lambda model, path=path: path)
        message = error_of(W.load_weights, model="vgg16", config=Config())
        assert message == f"cannot load weights '{path}': {expected[name]}; reinstall nst-core, or pass --weights FILE"
        # as an explicit file: the same message as any bad weights file
        assert error_of(W.read_weights_file, path) == f"cannot load weights '{path}': {expected[name]}"


def test_npz_files_are_checked(tmp_path):
    good = {key: value.numpy() for key, value in W.load_embedded_weights("vgg16").state_dict.items()}

    def write(name, arrays, raw=False):
        path = tmp_path / name
        if raw:
            np.savez(path, **arrays)
        else:
            W.write_embedded_file(path, "vgg16", arrays)
        return path

    # a plain float .npz (no quantization) is a valid --weights file
    plain = W.read_weights_file(write("plain.npz", good, raw=True))
    assert plain.model == "vgg16" and torch.equal(plain.state_dict["28.weight"], torch.from_numpy(good["28.weight"]))
    assert plain.source == f"file {tmp_path / 'plain.npz'}"
    # Python objects are refused
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"0.weight": np.array([object()], dtype=object)})
    assert "refused for safety" in error_of(W.read_weights_file, pickled)
    # codes and codebooks must fit together
    codes = np.zeros((64, 64, 3, 3), dtype=np.uint8)
    cases = {
        "no codebook": ({"2.weight.codes": codes}, "'2.weight' has codes but no codebook"),
        "no codes": ({"2.weight.codebook": np.zeros(256, np.float32)},
                     "codebook '2.weight.codebook' without its codes"),
        "wide codes": ({"2.weight.codes": codes.astype(np.int16), "2.weight.codebook": np.zeros(256, np.float32)},
                       "int16 codes, expected uint8"),
        "short codebook": ({"2.weight.codes": codes, "2.weight.codebook": np.zeros(255, np.float32)},
                           "codebook of shape (255,), expected (256,) or (input channels, 256)"),
        "nan codebook": ({"2.weight.codes": codes, "2.weight.codebook": np.full(256, np.nan, np.float32)},
                         "'2.weight' holds NaN or infinite values"),
        "integer bias": ({"2.bias": np.zeros(64, np.int64)}, "'2.bias' holds int64 values, expected floating point"),
    }
    for name, (change, text) in cases.items():
        arrays = {key: value for key, value in good.items() if key.split(".")[0] != "2"} | {"2.bias": good["2.bias"]}
        arrays.update(change)
        if "2.weight.codes" not in arrays and "2.weight.codebook" not in arrays:
            arrays["2.weight"] = good["2.weight"]
        path = write(f"{name.replace(' ', '-')}.npz", arrays)
        message = error_of(W.read_weights_file, path)
        assert text in message and str(path) in message, (name, message)
    # a PyTorch file named .npz
    torch.save({"0.weight": torch.zeros(3)}, tmp_path / "torch.npz")
    assert "a zip archive but not an .npz weights file" in error_of(W.read_weights_file, tmp_path / "torch.npz")
    # a format marker from a future version
    future = tmp_path / "future.npz"
    np.savez(future, __format__=np.array("nst-core-vgg-npz/99"), **good)
    assert "unknown format marker" in error_of(W.read_weights_file, future)


# --- packaging -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A non-editable wheel, built from a copy of the checkout (so no build/ folder appears in it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "benchmarks", "docs"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp / "wheels"), "."], cwd=source, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    (built,) = (tmp / "wheels").glob("nst_core-*.whl")
    return built


def test_wheel_contains_the_embedded_weights(tmp_path, wheel):
    """The wheel ships the .npz files (VGG's and the instant networks'), and the package unpacked
    from it finds them."""
    from nst_core.instant import weights as instant_weights

    embedded = {name: W.embedded_weights_path(model) for model, name in W.EMBEDDED_FILES.items()}
    embedded.update({instant_weights.embedded_path(net).name: instant_weights.embedded_path(net)
                     for net in instant_weights.NETWORKS})
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name, path in embedded.items():
            member = f"nst_core/data/{name}"
            assert member in names, sorted(names)
            assert archive.read(member) == path.read_bytes()
        assert any(name.endswith(".dist-info/licenses/NOTICE") for name in names), sorted(names)  # the attribution
        archive.extractall(tmp_path / "site")
    check = (
        "import os, nst_core; from importlib.resources import files; from nst_core import weights; "
        "print(nst_core.__file__); data = files('nst_core') / 'data'; "
        "print(sorted(p.name for p in data.iterdir() if p.name.endswith('.npz'))); "
        "print(weights.load_embedded_weights('vgg16').source)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    where, listed, source_line = proc.stdout.splitlines()
    assert where.startswith(str(tmp_path / "site"))  # the unpacked wheel, not the checkout
    assert listed == str(sorted(embedded))
    assert source_line == "embedded VGG-16 (original VGG weights, 8-bit)"


def test_wheel_installed_in_a_fresh_venv_stylizes_without_any_weights_variable(tmp_path, wheel):
    """pip installs the wheel (not editable) into a new venv, whose nst-core then runs offline.

    The heavy dependencies (torch: 5 GB) are borrowed from the test's own environment through a
    ``.pth`` line; Python does not process ``.pth`` files inside a directory added that way, so the
    checkout's editable install stays invisible and nst_core can only come from the wheel.
    """
    import json
    import sysconfig
    import venv

    fresh = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = fresh / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    photo = tmp_path / "photo.png"
    Image.fromarray((shared_image("tubingen.jpg", 32) * 255).astype(np.uint8)).save(photo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NST_CORE_WEIGHTS")}
    output = tmp_path / "out.png"
    proc = subprocess.run([str(fresh / "bin" / "nst-core"), "run", str(photo), str(photo), "-o", str(output),
                           "--size", "32", "-n", "2", "--progress", "json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    notices = [json.loads(line)["message"] for line in proc.stdout.splitlines() if '"notice"' in line]
    assert any("embedded VGG-19" in notice for notice in notices), notices
    assert output.is_file()
    where = subprocess.run([str(python), "-c", "import nst_core; print(nst_core.__file__)"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=120).stdout.strip()
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout


# --- the command -----------------------------------------------------------------------------


def test_weights_list_shows_every_source(capsys, monkeypatch):
    from nst_cli.main import main

    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "vgg19: not cached; a run would use embedded VGG-19 (original VGG weights, 8-bit)" in out
    path = W.embedded_weights_path("vgg19")
    assert f"2. embedded:    {path} ({path.stat().st_size / 1e6:.1f} MB); the original VGG weights" in out
    for number, kind in enumerate(("explicit:", "embedded:", "cache:", "torchvision:"), 1):
        assert out.count(f"  {number}. {kind}") == 2, kind
    assert out.count("<- used") == 2 and "0.5 GB download" in out
    monkeypatch.setenv(W.WEIGHTS_ENV, "torchvision")
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "vgg16: not cached; a run would use torchvision download (" in out
