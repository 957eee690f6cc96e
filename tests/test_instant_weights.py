"""The instant networks' weights files: format, checks (one-line WeightsError), one load per process."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from nst_core.instant import weights
from nst_core.instant.weights import (
    FORMAT,
    NETWORKS,
    Int8Tensor,
    embedded_path,
    expected_shapes,
    read_network_file,
    write_network_file,
)

from .conftest import weights_error_of


def _arrays(network: str) -> dict[str, np.ndarray]:
    with np.load(embedded_path(network), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _write(path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)


def _refused(path, network: str, *words: str) -> None:
    """Reading ``path`` is a one-line WeightsError holding ``words``."""
    message = weights_error_of(read_network_file, path, network)
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_embedded_files_load_with_the_modules_shapes(network):
    state_dict = read_network_file(embedded_path(network), network)
    assert {k: tuple(v.shape) for k, v in state_dict.items()} == expected_shapes(network)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state_dict.values())


def test_write_then_read_float_and_int8(tmp_path):
    shapes = expected_shapes("transformer")
    rng = np.random.default_rng(0)
    tensors = {}
    for index, (key, shape) in enumerate(shapes.items()):
        if index % 2:
            tensors[key] = rng.normal(size=shape).astype(np.float32)
        else:
            values = rng.integers(-127, 128, size=shape, dtype=np.int8)
            tensors[key] = Int8Tensor(values, rng.random(shape[0], dtype=np.float32))
    path = tmp_path / "t.npz"
    write_network_file(path, "transformer", tensors)
    loaded = read_network_file(path, "transformer")
    for key, tensor in tensors.items():
        expected = tensor.dequantize() if isinstance(tensor, Int8Tensor) else tensor
        assert np.array_equal(loaded[key].numpy(), expected), key


def test_missing_file(tmp_path):
    _refused(tmp_path / "nothing.npz", "transformer", "nothing.npz", "no such file")


def test_not_an_npz(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello\n")
    _refused(path, "transformer", "not an .npz")


def test_truncated(tmp_path):
    path = tmp_path / "cut.npz"
    data = embedded_path("transformer").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "transformer", "corrupt or truncated")


def test_pickled_objects_are_refused(tmp_path):
    arrays = _arrays("transformer")
    arrays["contract.conv1.bias"] = np.array([{"evil": 1}], dtype=object)
    path = tmp_path / "pickle.npz"
    np.savez(path, **arrays)
    _refused(path, "transformer", "refused for safety")


def test_wrong_marker_and_network(tmp_path):
    arrays = _arrays("transformer")
    path = tmp_path / "w.npz"
    _write(path, {**arrays, "__format__": np.array("something/2")})
    _refused(path, "transformer", FORMAT)
    _refused(embedded_path("transformer"), "style-predictor", "'transformer'", "style-predictor")


def test_missing_extra_and_misshapen_tensors(tmp_path):
    arrays = _arrays("transformer")
    path = tmp_path / "w.npz"
    _write(path, {k: v for k, v in arrays.items() if k != "contract.conv1.bias"})
    _refused(path, "transformer", "lacks 'contract.conv1.bias'")

    _write(path, {**arrays, "stray": np.zeros(3, np.float32)})
    _refused(path, "transformer", "unexpected", "stray")

    _write(path, {**arrays, "contract.conv1.bias": np.zeros(7, np.float32)})
    _refused(path, "transformer", "contract.conv1.bias", "(7,)", "(8,)")


def test_bad_values(tmp_path):
    arrays = _arrays("transformer")
    path = tmp_path / "w.npz"
    bias = arrays["contract.conv1.bias"].copy()
    bias[2] = np.nan
    _write(path, {**arrays, "contract.conv1.bias": bias})
    _refused(path, "transformer", "NaN")

    scale = arrays["contract.conv1.weight.scale"].copy()
    scale[0] = np.inf
    _write(path, {**arrays, "contract.conv1.weight.scale": scale})
    _refused(path, "transformer", "contract.conv1.weight", "NaN or infinite")

    _write(path, {k: v for k, v in arrays.items() if k != "contract.conv1.weight.scale"})
    _refused(path, "transformer", "no scales")

    _write(path, {**arrays, "contract.conv1.weight.int8": arrays["contract.conv1.weight.int8"].astype(np.int16)})
    _refused(path, "transformer", "int16")

    _write(path, {**arrays, "contract.conv1.bias": arrays["contract.conv1.bias"].astype(np.int32)})
    _refused(path, "transformer", "int32", "floating point")


def test_zip_with_other_members(tmp_path):
    path = tmp_path / "w.npz"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    path.write_bytes(buffer.getvalue())
    _refused(path, "transformer", "readme.txt")


def test_loaded_once_per_process(monkeypatch):
    monkeypatch.setattr(weights, "_loaded", {})
    reads = []
    real = weights.read_network_file
    monkeypatch.setattr(weights, "read_network_file", lambda *a: reads.append(a) or real(*a))
    first = weights.load_transformer("cpu")
    assert weights.load_transformer(torch.device("cpu")) is first
    assert len(reads) == 1
    assert not first.training and not any(p.requires_grad for p in first.parameters())


def test_a_damaged_embedded_file_is_a_weights_error(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "_loaded", {})
    broken = tmp_path / "instant-transformer.npz"
    broken.write_bytes(b"PK\x03\x04broken")
    monkeypatch.setattr(weights, "embedded_path", lambda network: broken)
    assert "instant-transformer.npz" in weights_error_of(weights.load_transformer)
