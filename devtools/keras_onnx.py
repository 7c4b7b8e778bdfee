"""Keras HDF5 (functional or sequential, channels_last) to ONNX, for the layers small CNNs use.

h5py reads the layer graph from the file's `model_config` and each layer's weights by its
`weight_names`; onnx.helper builds the graph. The ONNX model keeps Keras' NHWC input and output
(so the same arrays feed both) and runs NCHW inside: one Transpose after the input, none after,
because every supported layer before the head works per channel. Spatial shapes are tracked
layer by layer so 'same' padding gets TensorFlow's explicit, asymmetric pads (the extra row and
column at the end). A layer or option outside the supported set raises UnsupportedLayerError
naming it, rather than producing a model that silently differs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime since 1.10


class UnsupportedLayerError(ValueError):
    """The Keras model uses a layer or an option this converter does not map."""


@dataclass
class _Tensor:
    name: str
    channels: int
    height: int | None  # None once spatial axes are gone (after global pooling)
    width: int | None


class _Builder:
    def __init__(self, weights: h5py.Group) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def layer_weights(self, layer: str) -> dict[str, np.ndarray]:
        """Weights of one layer keyed by their short Keras name ('kernel', 'gamma', ...)."""
        if layer not in self.weights:
            return {}
        group = self.weights[layer]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
        return {name.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[name], dtype=np.float32) for name in names}


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """TensorFlow 'same': output ceil(size/stride); the odd pixel of padding goes at the end."""
    out = math.ceil(size / stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2, out


def _spatial(
    layer: str, tensor: _Tensor, kernel: tuple[int, int], strides: tuple[int, int], padding: str
) -> tuple[list[int], int, int]:
    if tensor.height is None or tensor.width is None:
        raise UnsupportedLayerError(f"layer {layer!r}: spatial operation after the spatial axes were removed")
    if padding == "valid":
        out_h = (tensor.height - kernel[0]) // strides[0] + 1
        out_w = (tensor.width - kernel[1]) // strides[1] + 1
        return [0, 0, 0, 0], out_h, out_w
    if padding == "same":
        top, bottom, out_h = _same_pads(tensor.height, kernel[0], strides[0])
        left, right, out_w = _same_pads(tensor.width, kernel[1], strides[1])
        return [top, left, bottom, right], out_h, out_w
    raise UnsupportedLayerError(f"layer {layer!r}: padding {padding!r} is not supported (valid, same)")


_ACTIVATIONS: dict[str, str | None] = {"linear": None, "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _activation(builder: _Builder, layer: str, name: str, tensor: _Tensor, output: str) -> _Tensor:
    if name == "softmax":
        if tensor.height is not None:
            raise UnsupportedLayerError(f"layer {layer!r}: softmax over a spatial tensor is not supported")
        return _Tensor(builder.node("Softmax", [tensor.name], output, axis=-1), tensor.channels, None, None)
    if name not in _ACTIVATIONS:
        raise UnsupportedLayerError(
            f"layer {layer!r}: activation {name!r} is not supported ({', '.join(_ACTIVATIONS)})"
        )
    op = _ACTIVATIONS[name]
    if op is None:
        return tensor
    return _Tensor(builder.node(op, [tensor.name], output), tensor.channels, tensor.height, tensor.width)


def _check_channels_last(layer: str, config: dict[str, Any]) -> None:
    if config.get("data_format", "channels_last") != "channels_last":
        raise UnsupportedLayerError(f"layer {layer!r}: only data_format='channels_last' is supported")
    dilation = _pair(config.get("dilation_rate", 1))
    if dilation != (1, 1):
        raise UnsupportedLayerError(f"layer {layer!r}: dilation_rate {dilation} is not supported")


def _conv2d(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    _check_channels_last(name, config)
    (tensor,) = inputs
    weights = builder.layer_weights(name)
    kernel = weights["kernel"]  # (kh, kw, in, out)
    ksize, strides = _pair(config["kernel_size"]), _pair(config.get("strides", 1))
    pads, out_h, out_w = _spatial(name, tensor, ksize, strides, config.get("padding", "valid"))
    conv_inputs = [tensor.name, builder.const(f"{name}/W", kernel.transpose(3, 2, 0, 1))]
    if config.get("use_bias", True):
        conv_inputs.append(builder.const(f"{name}/B", weights["bias"]))
    out = builder.node("Conv", conv_inputs, f"{name}/conv", kernel_shape=list(ksize), strides=list(strides), pads=pads)
    result = _Tensor(out, int(kernel.shape[3]), out_h, out_w)
    return _activation(builder, name, config.get("activation", "linear"), result, f"{name}/act")


def _separable_conv2d(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    _check_channels_last(name, config)
    (tensor,) = inputs
    weights = builder.layer_weights(name)
    depthwise = weights["depthwise_kernel"]  # (kh, kw, in, multiplier)
    pointwise = weights["pointwise_kernel"]  # (1, 1, in * multiplier, out)
    kh, kw, channels, multiplier = depthwise.shape
    ksize, strides = _pair(config["kernel_size"]), _pair(config.get("strides", 1))
    pads, out_h, out_w = _spatial(name, tensor, ksize, strides, config.get("padding", "valid"))
    # Keras orders depthwise outputs channel-major (c * multiplier + m), which is ONNX's grouped layout.
    depthwise_onnx = depthwise.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
    mid = builder.node(
        "Conv",
        [tensor.name, builder.const(f"{name}/depthwise_W", depthwise_onnx)],
        f"{name}/depthwise",
        kernel_shape=list(ksize),
        strides=list(strides),
        pads=pads,
        group=int(channels),
    )
    point_inputs = [mid, builder.const(f"{name}/pointwise_W", pointwise.transpose(3, 2, 0, 1))]
    if config.get("use_bias", True):
        point_inputs.append(builder.const(f"{name}/B", weights["bias"]))
    out = builder.node("Conv", point_inputs, f"{name}/pointwise", kernel_shape=[1, 1])
    result = _Tensor(out, int(pointwise.shape[3]), out_h, out_w)
    return _activation(builder, name, config.get("activation", "linear"), result, f"{name}/act")


def _batch_norm(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    (tensor,) = inputs
    axis = config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, 3 if tensor.height is not None else 1):
        raise UnsupportedLayerError(f"layer {name!r}: BatchNormalization over axis {axis} (only the channel axis)")
    weights = builder.layer_weights(name)
    ones, zeros = np.ones(tensor.channels, np.float32), np.zeros(tensor.channels, np.float32)
    scale = weights.get("gamma", ones) if config.get("scale", True) else ones
    bias = weights.get("beta", zeros) if config.get("center", True) else zeros
    out = builder.node(
        "BatchNormalization",
        [
            tensor.name,
            builder.const(f"{name}/scale", scale),
            builder.const(f"{name}/bias", bias),
            builder.const(f"{name}/mean", weights["moving_mean"]),
            builder.const(f"{name}/var", weights["moving_variance"]),
        ],
        f"{name}/bn",
        epsilon=float(config.get("epsilon", 1e-3)),
    )
    return _Tensor(out, tensor.channels, tensor.height, tensor.width)


def _activation_layer(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    (tensor,) = inputs
    return _activation(builder, name, config["activation"], tensor, f"{name}/act")


def _relu_layer(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    if config.get("max_value") is not None or config.get("negative_slope", 0.0) or config.get("threshold", 0.0):
        raise UnsupportedLayerError(f"layer {name!r}: ReLU with max_value/negative_slope/threshold is not supported")
    return _activation(builder, name, "relu", inputs[0], f"{name}/act")


def _max_pool(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    _check_channels_last(name, config)
    (tensor,) = inputs
    pool = _pair(config.get("pool_size", 2))
    strides = _pair(config.get("strides") or pool)
    # ONNX MaxPool ignores padded cells, as TensorFlow does.
    pads, out_h, out_w = _spatial(name, tensor, pool, strides, config.get("padding", "valid"))
    out = builder.node(
        "MaxPool", [tensor.name], f"{name}/pool", kernel_shape=list(pool), strides=list(strides), pads=pads
    )
    return _Tensor(out, tensor.channels, out_h, out_w)


def _add(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    shapes = {(t.channels, t.height, t.width) for t in inputs}
    if len(shapes) != 1:
        raise UnsupportedLayerError(f"layer {name!r}: Add of tensors with different shapes {sorted(map(str, shapes))}")
    out = inputs[0].name
    for index, other in enumerate(inputs[1:], 1):
        out = builder.node("Add", [out, other.name], f"{name}/add{index}")
    first = inputs[0]
    return _Tensor(out, first.channels, first.height, first.width)


def _global_avg_pool(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    _check_channels_last(name, config)
    if config.get("keepdims", False):
        raise UnsupportedLayerError(f"layer {name!r}: GlobalAveragePooling2D(keepdims=True) is not supported")
    (tensor,) = inputs
    pooled = builder.node("GlobalAveragePool", [tensor.name], f"{name}/gap")
    out = builder.node("Flatten", [pooled], f"{name}/flat", axis=1)
    return _Tensor(out, tensor.channels, None, None)


def _dropout(builder: _Builder, name: str, config: dict[str, Any], inputs: list[_Tensor]) -> _Tensor:
    return inputs[0]  # identity at inference


_LAYERS: dict[str, Callable[[_Builder, str, dict[str, Any], list[_Tensor]], _Tensor]] = {
    "Conv2D": _conv2d,
    "SeparableConv2D": _separable_conv2d,
    "BatchNormalization": _batch_norm,
    "Activation": _activation_layer,
    "ReLU": _relu_layer,
    "MaxPooling2D": _max_pool,
    "Add": _add,
    "GlobalAveragePooling2D": _global_avg_pool,
    "Dropout": _dropout,
}
SUPPORTED_LAYERS: tuple[str, ...] = ("InputLayer", *_LAYERS)


def _inbound_names(layer: dict[str, Any]) -> list[str]:
    """Names of a layer's inputs, from Keras 2 ([[name, 0, 0, {}]]) or Keras 3 (keras_history) configs."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    if len(nodes) > 1:
        raise UnsupportedLayerError(f"layer {layer['config']['name']!r} is shared (called {len(nodes)} times)")
    node = nodes[0]
    if isinstance(node, list):
        return [entry[0] for entry in node]
    names: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if "keras_history" in value.get("config", {}):
                names.append(value["config"]["keras_history"][0])
            else:
                for item in value.values():
                    collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(node.get("args", []))
    return names


def convert_keras_hdf5(
    source: Path, target: Path, input_name: str = "input", output_name: str = "probabilities"
) -> None:
    """Converts a Keras HDF5 image classifier to an ONNX file with NHWC input [N, H, W, C]."""
    with h5py.File(source, "r") as handle:
        if "model_config" not in handle.attrs:
            raise UnsupportedLayerError(f"{source}: no model_config attribute (weights-only file?)")
        raw = handle.attrs["model_config"]
        model_config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        weights = handle.get("model_weights", handle)
        model = _convert(model_config, weights, input_name, output_name)
    onnx.checker.check_model(model, full_check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(target))


def _convert(model_config: dict[str, Any], weights: h5py.Group, input_name: str, output_name: str) -> onnx.ModelProto:
    kind = model_config.get("class_name")
    config = model_config["config"]
    layers: list[dict[str, Any]] = config["layers"] if isinstance(config, dict) else config
    if kind == "Sequential":
        # A Sequential model chains its layers; give each the previous one as input.
        chained = []
        for index, layer in enumerate(layers):
            previous = [[layers[index - 1]["config"]["name"], 0, 0, {}]] if index else []
            chained.append({**layer, "inbound_nodes": [previous] if previous else []})
        layers = chained
    elif kind not in ("Model", "Functional"):
        raise UnsupportedLayerError(f"model class {kind!r} is not supported (Model, Functional, Sequential)")

    builder = _Builder(weights)
    tensors: dict[str, _Tensor] = {}
    graph_input: onnx.ValueInfoProto | None = None
    for layer in layers:
        kind, layer_config = layer["class_name"], layer["config"]
        name = layer_config["name"]
        inbound = _inbound_names(layer)
        if kind == "InputLayer" or (graph_input is None and not inbound):
            shape = layer_config.get("batch_input_shape") or layer_config.get("batch_shape")
            if kind != "InputLayer" or not shape or len(shape) != 4:
                raise UnsupportedLayerError(f"layer {name!r}: the model must start with a 4-D (N, H, W, C) InputLayer")
            _, height, width, channels = shape
            graph_input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", height, width, channels])
            nchw = builder.node("Transpose", [input_name], f"{name}/nchw", perm=[0, 3, 1, 2])
            tensors[name] = _Tensor(nchw, int(channels), int(height), int(width))
            continue
        if kind not in _LAYERS:
            raise UnsupportedLayerError(
                f"layer {name!r} of type {kind} is not supported; supported: {', '.join(SUPPORTED_LAYERS)}"
            )
        missing = [n for n in inbound if n not in tensors]
        if missing:
            raise UnsupportedLayerError(f"layer {name!r}: inputs {missing} are not produced by earlier layers")
        tensors[name] = _LAYERS[kind](builder, name, layer_config, [tensors[n] for n in inbound])

    if graph_input is None:
        raise UnsupportedLayerError("the model has no InputLayer")
    output_layers = config.get("output_layers") if isinstance(config, dict) else None
    last = output_layers[0][0] if output_layers else layers[-1]["config"]["name"]
    final = tensors[last]
    if final.height is not None:
        raise UnsupportedLayerError(
            f"output layer {last!r} is spatial; only classifier heads [N, classes] are supported"
        )
    builder.node("Identity", [final.name], output_name)
    graph = helper.make_graph(
        builder.nodes,
        "keras_converted",
        [graph_input],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", final.channels])],
        builder.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="retailface-keras-onnx"
    )
    model.ir_version = IR_VERSION
    return model
