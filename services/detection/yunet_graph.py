"""The YuNet graph rewritten for batches of any size: what the shipped file needs before it can be batched.

The shipped ONNX file (face_detection_yunet_2023mar) has a fixed 1x3x640x640 input and Reshape
nodes that hard-code batch 1. `dynamic_yunet` rewrites it in memory so that batch, height and
width are dynamic: it drops the weights from the graph inputs (so onnxruntime may constant-fold
them), marks the input dimensions symbolic, and makes the twelve heads end at their convolutions
(NCHW), without the Transpose/Reshape(1, -1, C)/Sigmoid that follow them in the file and fix the
batch at 1.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

STRIDES = (8, 16, 32)
DIVISOR = max(STRIDES)  # padded input sides are multiples of the largest stride
INPUT_NAME = "input"  # the shipped model's own input name
HEADS = ("cls", "obj", "bbox", "kps")
OUTPUT_NAMES = tuple(f"{head}_{stride}" for head in HEADS for stride in STRIDES)


def dynamic_yunet(model_file: Path) -> onnx.ModelProto:
    """The YuNet graph with dynamic batch, height and width, its outputs the heads' NCHW convolutions."""
    model = onnx.load(str(model_file))
    _make_input_dynamic(model.graph)
    _end_heads_at_convolutions(model.graph)
    _drop_unused(model.graph)
    onnx.checker.check_model(model)
    return model


def _make_input_dynamic(graph: onnx.GraphProto) -> None:
    initializer_names = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializer_names]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ValueError(f"unexpected YuNet inputs {[i.name for i in inputs]}; is this the 2023mar model?")
    del graph.input[:]
    graph.input.extend(inputs)
    dims = graph.input[0].type.tensor_type.shape.dim  # extend() copied the messages: edit the graph's own
    for index, name in ((0, "batch"), (2, "height"), (3, "width")):
        dims[index].dim_param = name


def _end_heads_at_convolutions(graph: onnx.GraphProto) -> None:
    """Each head ends Conv -> Transpose(NHWC) -> Reshape(1, -1, C) [-> Sigmoid]; return the Conv outputs.

    The anchor order of a flattened NCHW plane is the same (row * cols + col), the decoder applies
    the sigmoid only where needed, and onnxruntime skips 23k-anchor transposes.
    """
    producers = {output: node for node in graph.node for output in node.output}
    head_outputs = {}
    for name in OUTPUT_NAMES:
        node = producers.get(name)
        if node is None:
            raise ValueError(f"YuNet has no output {name}; is this the 2023mar model?")
        chain = []
        while node.op_type in ("Sigmoid", "Reshape", "Transpose"):
            chain.append(node.op_type)
            node = producers[node.input[0]]
        expected = ["Reshape", "Transpose"] if name.startswith(("bbox", "kps")) else ["Sigmoid", "Reshape", "Transpose"]
        if node.op_type != "Conv" or chain != expected:
            raise ValueError(f"unexpected YuNet head {name}: {node.op_type} <- {chain}")
        head_outputs[name] = node.output[0]
    del graph.output[:]
    for name in OUTPUT_NAMES:
        graph.output.append(
            helper.make_tensor_value_info(
                head_outputs[name],
                onnx.TensorProto.FLOAT,
                ["batch", f"channels_{name}", f"rows_{name}", f"cols_{name}"],
            )
        )


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Removes the nodes and weights no output depends on any more, and the 640x640 shape records."""
    needed = {output.name for output in graph.output}
    kept_nodes = []
    for node in reversed(graph.node):
        if any(output in needed for output in node.output):
            kept_nodes.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept_nodes))
    used = {name for node in graph.node for name in node.input}
    kept_initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers)
    del graph.value_info[:]  # static shapes recorded for 640x640 no longer hold
