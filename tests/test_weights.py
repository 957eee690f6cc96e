"""Tests of nst_core.weights: reading, checking, resolving, caching and importing VGG weights.

Nothing here touches the network: an autouse fixture points every cache at tmp_path and makes
torchvision's download fail unless a test replaces it.
"""

from __future__ import annotations

import functools
import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision.models

from nst_core import weights as W
from nst_core.config import Config
from nst_core.errors import ConfigError
from nst_core.features import build_vgg, vgg_conv_shapes

from .conftest import weights_error_of as error_of

URLS = {
    "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1.url,
    "vgg19": torchvision.models.VGG19_Weights.IMAGENET1K_V1.url,
}
ENUMS = {"vgg16": torchvision.models.VGG16_Weights, "vgg19": torchvision.models.VGG19_Weights}


@functools.lru_cache(maxsize=None)
def _random_tensors(model: str, seed: int) -> tuple[tuple[str, torch.Tensor], ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple((key, torch.randn(shape, generator=generator) * 0.01) for key, shape in vgg_conv_shapes(model).items())


def features_dict(model: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ``features`` weights (a new dict; the tensors are shared: clone before writing into one)."""
    return dict(_random_tensors(model, seed))


def full_dict(model: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision VGG state dict (classifier shrunk: it is dropped anyway)."""
    full = {f"features.{key}": value for key, value in features_dict(model, seed).items()}
    full.update({"classifier.0.weight": torch.zeros(8, 4), "classifier.0.bias": torch.zeros(8)})
    return full


class NotATensor:
    """A class torch.load(weights_only=True) must refuse to unpickle."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Weights files written once for the whole module (each test only reads them)."""
    folder = tmp_path_factory.mktemp("weights")
    made = {}
    for model in ("vgg16", "vgg19"):
        made[model] = folder / f"{model}-features.pth"
        torch.save(features_dict(model), made[model])
    made["vgg16-full"] = folder / "vgg16-full.pth"
    torch.save(full_dict("vgg16", seed=1), made["vgg16-full"])
    return made


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, no $NST_CORE_WEIGHTS, no network: downloads fail unless a test says otherwise."""
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(W.WEIGHTS_ENV, raising=False)

    def no_download(self, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    for enum in ENUMS.values():
        monkeypatch.setattr(enum, "get_state_dict", no_download)


# --- reading and checking -------------------------------------------------------------------


@pytest.mark.parametrize("model", ["vgg16", "vgg19"])
def test_features_dict_loads_and_infers_model(files, model):
    loaded = W.read_weights_file(files[model])
    assert loaded.model == model
    assert list(loaded.state_dict) == list(vgg_conv_shapes(model))
    assert all(t.dtype == torch.float32 for t in loaded.state_dict.values())
    assert torch.equal(loaded.state_dict["0.weight"], features_dict(model)["0.weight"])
    assert loaded.source == f"file {files[model]}" and loaded.path == files[model]
    # the result builds a network
    build_vgg(model, loaded.state_dict, layers=["relu1_1"])


def test_full_dict_drops_classifier(files):
    loaded = W.read_weights_file(files["vgg16-full"])
    assert loaded.model == "vgg16"
    assert set(loaded.state_dict) == set(vgg_conv_shapes("vgg16"))
    assert torch.equal(loaded.state_dict["28.bias"], full_dict("vgg16", seed=1)["features.28.bias"])


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_dict_and_half_precision(tmp_path, wrapper):
    inner = {key: value.half() for key, value in full_dict("vgg19").items()}
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: inner, "epoch": 3}, path)
    loaded = W.read_weights_file(path)
    assert loaded.model == "vgg19"
    assert loaded.state_dict["0.weight"].dtype == torch.float32


def test_same_file_is_read_once_until_it_changes(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(features_dict("vgg16", seed=2), path)
    first = W.read_weights_file(path)
    assert W.read_weights_file(str(path)).state_dict is first.state_dict
    torch.save(features_dict("vgg16", seed=3), path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = W.read_weights_file(path)
    assert second.state_dict is not first.state_dict
    assert torch.equal(second.state_dict["0.weight"], features_dict("vgg16", seed=3)["0.weight"])


def test_wrong_layer_count(tmp_path):
    state = {k: v for k, v in features_dict("vgg16").items() if int(k.split(".")[0]) < 22}
    path = tmp_path / "ten.pth"
    torch.save(state, path)
    message = error_of(W.read_weights_file, path)
    assert "has 10 convolution layers" in message and "13 (VGG-16) or 16 (VGG-19)" in message
    assert str(path) in message


def test_wrong_shape(tmp_path):
    state = features_dict("vgg19")
    state["2.weight"] = torch.zeros(64, 32, 3, 3)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    message = error_of(W.read_weights_file, path)
    assert "'2.weight'" in message and "(64, 32, 3, 3)" in message and "(64, 64, 3, 3)" in message


def test_missing_bias(tmp_path):
    state = features_dict("vgg16")
    del state["5.bias"]
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    message = error_of(W.read_weights_file, path)
    assert "lacks '5.bias'" in message and "(128,)" in message


def test_extra_key(tmp_path):
    state = features_dict("vgg16")
    state["1.running_mean"] = torch.zeros(64)
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    assert "unexpected tensor '1.running_mean'" in error_of(W.read_weights_file, path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values(tmp_path, bad):
    state = features_dict("vgg16")
    state["26.weight"] = state["26.weight"].clone()
    state["26.weight"][3, 2, 1, 0] = bad
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    message = error_of(W.read_weights_file, path)
    assert "'26.weight'" in message and "NaN or infinite" in message


def test_integer_and_non_tensor_values(tmp_path):
    state = features_dict("vgg16")
    state["0.bias"] = torch.zeros(64, dtype=torch.int64)
    torch.save(state, tmp_path / "int.pth")
    assert "torch.int64" in error_of(W.read_weights_file, tmp_path / "int.pth")
    state = features_dict("vgg16")
    state["0.bias"] = [0.0] * 64
    torch.save(state, tmp_path / "list.pth")
    assert "'0.bias' holds a list, not a tensor" in error_of(W.read_weights_file, tmp_path / "list.pth")


def test_unreadable_files(tmp_path, files):
    good = files["vgg16"].read_bytes()
    (tmp_path / "random.pth").write_bytes(os.urandom(4096))
    (tmp_path / "truncated.pth").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"a": torch.zeros(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    legacy = (tmp_path / "legacy.pth").read_bytes()
    (tmp_path / "legacy-truncated.pth").write_bytes(legacy[: len(legacy) // 2])
    expected = {
        "random.pth": "is not a PyTorch weights file",
        "truncated.pth": "corrupt or truncated",
        "legacy-truncated.pth": "corrupt or truncated",
        "empty.pth": "the file is empty",
        "missing.pth": "no such file",
    }
    for name, text in expected.items():
        message = error_of(W.read_weights_file, tmp_path / name)
        assert text in message and f"'{tmp_path / name}'" in message, message
    assert "is a directory" in error_of(W.read_weights_file, tmp_path)


def test_not_a_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    assert "holds a Tensor, not a state dict" in error_of(W.read_weights_file, tmp_path / "tensor.pth")
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    assert "holds a list, not a state dict" in error_of(W.read_weights_file, tmp_path / "list.pth")


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "object.pth"
    torch.save({"0.weight": NotATensor()}, path)
    message = error_of(W.read_weights_file, path)
    assert "NotATensor" in message and "refused" in message and "\x1b" not in message


# --- explicit files and resolution ----------------------------------------------------------


def test_explicit_path_from_config_then_env(monkeypatch, files, tmp_path):
    assert W.explicit_weights_path(Config()) is None
    assert W.infer_model(Config()) is None
    monkeypatch.setenv(W.WEIGHTS_ENV, str(files["vgg16"]))
    assert W.explicit_weights_path(Config()) == files["vgg16"]
    assert W.explicit_weights_path(Config(weights=str(files["vgg19"]))) == files["vgg19"]  # config wins
    assert W.infer_model(Config()) == "vgg16"
    assert W.infer_model(Config(weights=str(files["vgg19"]))) == "vgg19"


def test_load_explicit_file_via_config_and_env(monkeypatch, files):
    loaded = W.load_weights(model="vgg19", config=Config(weights=str(files["vgg19"])))
    assert loaded.model == "vgg19" and loaded.source == f"file {files['vgg19']}"
    monkeypatch.setenv(W.WEIGHTS_ENV, str(files["vgg16-full"]))
    loaded = W.load_weights(model="vgg16", config=Config())
    assert loaded.model == "vgg16" and loaded.path == files["vgg16-full"]


def test_explicit_file_beats_cache(files):
    W.import_weights(files["vgg16-full"])
    loaded = W.load_weights(model="vgg16", config=Config(weights=str(files["vgg16"])))
    assert loaded.source.startswith("file ")


def test_model_mismatch(files):
    message = error_of(W.load_weights, model="vgg19", config=Config(weights=str(files["vgg16"])))
    assert message == (
        f"weights file '{files['vgg16']}' holds VGG-16 weights but the model is vgg19; "
        "drop --model or pass a VGG-19 file"
    )


def test_bad_env_file_says_where_it_came_from(monkeypatch, tmp_path):
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    message = error_of(W.load_weights, model="vgg16", config=Config())
    assert "no such file" in message and "$NST_CORE_WEIGHTS" in message
    assert "$NST_CORE_WEIGHTS" in error_of(W.infer_model, Config())


def test_unknown_model_is_config_error():
    with pytest.raises(ConfigError, match="resnet50"):
        W.load_weights(model="resnet50", config=Config())


def test_cache_dir_locations(monkeypatch, tmp_path):
    assert W.cache_dir() == tmp_path / "cache"
    assert W.cached_weights_path("vgg19") == tmp_path / "cache" / "weights" / "vgg19.pth"
    monkeypatch.delenv(W.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name != "nt":
        assert W.cache_dir() == tmp_path / "xdg" / "nst-core"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert W.cache_dir() == tmp_path / "home" / ".cache" / "nst-core"


def test_cache_is_used_with_torchvision_or_without_embedded_weights(files, monkeypatch, tmp_path):
    target = W.cached_weights_path("vgg19")
    target.parent.mkdir(parents=True)
    target.write_bytes(files["vgg19"].read_bytes())
    loaded = W.load_weights(model="vgg19", config=Config(weights="torchvision"))
    assert loaded.source == f"cache {target}" and loaded.path == target and loaded.model == "vgg19"
    assert W.load_weights(model="vgg19", config=Config()).source.startswith("embedded ")  # embedded first
    monkeypatch.setattr(W.resolve, "embedded_weights_path", lambda model: tmp_path / "gone" / f"{model}.npz")
    assert W.load_weights(model="vgg19", config=Config()).source == f"cache {target}"


def test_broken_cache_file_is_reported(files):
    target = W.cached_weights_path("vgg16")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    torchvision = Config(weights="torchvision")
    message = error_of(W.load_weights, model="vgg16", config=torchvision)
    assert str(target) in message and "nst-core weights import" in message
    target.write_bytes(files["vgg19"].read_bytes())  # a VGG-19 file named vgg16.pth
    assert "hold VGG-19 weights, not VGG-16" in error_of(W.load_weights, model="vgg16", config=torchvision)


# --- import and list ------------------------------------------------------------------------


def test_import_and_list(files):
    assert W.list_cached_weights() == []
    loaded = W.import_weights(files["vgg16-full"])
    target = W.cached_weights_path("vgg16")
    assert loaded.model == "vgg16" and loaded.path == target and loaded.source == f"cache {target}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["vgg16.pth"]  # no temp file left
    stored = torch.load(target, weights_only=True)
    assert list(stored) == list(vgg_conv_shapes("vgg16"))  # features layout, classifier dropped
    assert torch.equal(stored["0.weight"], full_dict("vgg16", seed=1)["features.0.weight"])
    (info,) = W.list_cached_weights()
    assert (info.model, info.path, info.size_bytes) == ("vgg16", target, target.stat().st_size)
    assert W.load_weights(model="vgg16", config=Config(weights="torchvision")).source == f"cache {target}"
    # a stray non-weights file is not listed
    W.cached_weights_path("vgg19").write_bytes(b"not a zip")
    assert [i.model for i in W.list_cached_weights()] == ["vgg16"]


def test_bad_import_leaves_cache_intact(files, tmp_path):
    W.import_weights(files["vgg16"])
    target = W.cached_weights_path("vgg16")
    before = target.read_bytes()
    bad = features_dict("vgg16")
    bad["0.weight"] = bad["0.weight"].clone()
    bad["0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(bad, tmp_path / "bad.pth")
    assert "NaN" in error_of(W.import_weights, tmp_path / "bad.pth")
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["vgg16.pth"]


def test_failed_write_leaves_cache_intact(files, monkeypatch):
    W.import_weights(files["vgg16"])
    target = W.cached_weights_path("vgg16")
    before = target.read_bytes()

    def half_written(obj, stream):
        stream.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(W.torch, "save", half_written)
    message = error_of(W.import_weights, files["vgg16-full"])
    assert "No space left on device" in message
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["vgg16.pth"]


# --- torchvision download -------------------------------------------------------------------


@pytest.mark.parametrize("model", ["vgg16", "vgg19"])
def test_download_failure_explains_how_to_get_weights(model):
    message = error_of(W.load_weights, model=model, config=Config(weights="torchvision"))
    name = URLS[model].rsplit("/", 1)[1]
    assert URLS[model] in message and f"nst-core weights import {name}" in message
    assert "network disabled in tests" in message
    assert str(W.cache_dir() / "weights") in message
    assert message.startswith(f"no VGG-{model[3:]} weights from torchvision: ")


def test_download_hash_mismatch_is_a_weights_error(monkeypatch):
    def bad_hash(self, *args, **kwargs):
        raise RuntimeError('invalid hash value (expected "dcbb9e9d", got "00000000")')

    monkeypatch.setattr(ENUMS["vgg19"], "get_state_dict", bad_hash)
    message = error_of(W.load_weights, model="vgg19", config=Config(weights="torchvision"))
    assert "invalid hash value" in message and "nst-core weights import" in message


def test_download_result_is_converted_and_checked(monkeypatch, capsys):
    calls = []

    def fake(self, *args, **kwargs):
        calls.append((self, kwargs))
        print(f'Downloading: "{self.url}"')  # as torch.hub does, on stdout
        return full_dict("vgg19", seed=4)

    monkeypatch.setattr(ENUMS["vgg19"], "get_state_dict", fake)
    loaded = W.load_weights(model="vgg19", config=Config(weights="torchvision"))
    assert loaded.model == "vgg19" and set(loaded.state_dict) == set(vgg_conv_shapes("vgg19"))
    assert loaded.source.startswith("torchvision download (") and "vgg19-dcbb9e9d.pth" in loaded.source
    (member, kwargs), = calls
    assert member is ENUMS["vgg19"].IMAGENET1K_V1
    assert kwargs["check_hash"] is True and kwargs["progress"] is False
    assert capsys.readouterr() == ("", "")  # nothing printed


def test_download_of_wrong_tensors_is_rejected(monkeypatch):
    monkeypatch.setattr(ENUMS["vgg16"], "get_state_dict", lambda self, **kwargs: {"features.0.weight": torch.zeros(1)})
    message = error_of(W.load_weights, model="vgg16", config=Config(weights="torchvision"))
    assert "0 convolution layers" in message


# --- resolution with the embedded weights ----------------------------------------------------


EMBEDDED = {model: f"embedded VGG-{model[3:]} (original VGG weights, 8-bit)" for model in ("vgg16", "vgg19")}


def record_downloads(monkeypatch) -> list:
    """Replace torchvision's download by a fake that records its calls and returns random weights."""
    calls = []

    def fake(self, *args, **kwargs):
        calls.append(self)
        return full_dict("vgg19" if "vgg19" in self.url else "vgg16", seed=5)

    for enum in ENUMS.values():
        monkeypatch.setattr(enum, "get_state_dict", fake)
    return calls


@pytest.mark.parametrize("model", ["vgg16", "vgg19"])
def test_embedded_weights_are_the_default(monkeypatch, model):
    calls = record_downloads(monkeypatch)
    loaded = W.load_weights(model=model, config=Config())
    assert loaded.source == EMBEDDED[model] and loaded.model == model
    assert loaded.path == W.embedded_weights_path(model) and loaded.path.name == W.EMBEDDED_FILES[model]
    assert list(loaded.state_dict) == list(vgg_conv_shapes(model))
    assert W.load_weights(model=model, config=Config()).state_dict is loaded.state_dict  # read once
    assert calls == []  # no download


def test_explicit_file_beats_embedded_and_cache(monkeypatch, files):
    W.import_weights(files["vgg16-full"])
    assert W.load_weights(model="vgg16", config=Config(weights=str(files["vgg16"]))).source == f"file {files['vgg16']}"
    monkeypatch.setenv(W.WEIGHTS_ENV, str(files["vgg19"]))
    assert W.load_weights(model="vgg19", config=Config()).source == f"file {files['vgg19']}"


def test_embedded_beats_cache(files):
    W.import_weights(files["vgg16"])
    assert W.load_weights(model="vgg16", config=Config()).source == EMBEDDED["vgg16"]


@pytest.mark.parametrize("via", ["config", "env"])
def test_torchvision_is_downloaded_only_when_asked(monkeypatch, via):
    calls = record_downloads(monkeypatch)
    if via == "env":
        monkeypatch.setenv(W.WEIGHTS_ENV, "torchvision")
        config = Config()
    else:
        config = Config(weights="torchvision")
    assert W.wants_torchvision(config) and W.explicit_weights_path(config) is None
    assert W.infer_model(config) is None  # the model is --model's, else the default: no file to read
    loaded = W.load_weights(model="vgg19", config=config)
    assert loaded.source.startswith("torchvision download (") and "vgg19-dcbb9e9d.pth" in loaded.source
    assert calls == [ENUMS["vgg19"].IMAGENET1K_V1]
    # an explicit file in the config beats torchvision named by the variable
    if via == "env":
        assert not W.wants_torchvision(Config(weights="other.pth"))


def test_without_embedded_weights_nothing_is_downloaded(monkeypatch, tmp_path):
    calls = record_downloads(monkeypatch)
    gone = tmp_path / "gone" / "vgg19-imagenet-8bit.npz"
    monkeypatch.setattr(W.resolve, "embedded_weights_path", lambda model: gone)
    message = error_of(W.load_weights, model="vgg19", config=Config())
    assert message == (
        f"no VGG-19 weights: the embedded file '{gone}' is missing (reinstall nst-core) and none is in the cache "
        f"({W.cache_dir() / 'weights'}); pass --weights FILE, or --weights torchvision to download PyTorch's (0.5 GB)"
    )
    assert calls == []


def test_weights_sources_say_what_a_run_would_use(monkeypatch, files, tmp_path):
    def used(config=None, model="vgg19"):
        sources = W.weights_sources(model, config)
        assert [s.kind for s in sources] == ["explicit", "embedded", "cache", "torchvision"]
        return [s.kind for s in sources if s.used]

    assert used() == ["embedded"]
    (embedded,) = [s for s in W.weights_sources("vgg19") if s.kind == "embedded"]
    assert embedded.present and embedded.size_bytes == W.embedded_weights_path("vgg19").stat().st_size
    assert embedded.source == EMBEDDED["vgg19"]
    assert used(Config(weights=str(files["vgg19"]))) == ["explicit"]
    assert used(Config(weights="torchvision")) == ["torchvision"]
    W.import_weights(files["vgg19"])
    assert used(Config(weights="torchvision")) == ["cache"]
    assert used() == ["embedded"]
    monkeypatch.setattr(W.resolve, "embedded_weights_path", lambda model: tmp_path / "gone.npz")
    assert used() == ["cache"]
    assert used(model="vgg16") == []  # nothing: a run fails (no download unless asked)


# --- the real file --------------------------------------------------------------------------


@pytest.mark.real_weights
def test_real_shared_vgg16_weights(real_vgg16):
    path = real_vgg16
    loaded = W.load_weights(model="vgg16", config=Config(weights=str(path)))
    assert loaded.model == "vgg16"
    assert sum(t.numel() for t in loaded.state_dict.values()) == 14_714_688
    assert W.infer_model(Config(weights=str(path))) == "vgg16"
