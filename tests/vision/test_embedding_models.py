"""The embedding service's derived models: the emotion ONNX reproduces Keras; SFace prepared for batching."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from retailface.devtools.keras_onnx import UnsupportedLayerError, convert_keras_hdf5
from retailface.devtools.model_prep import DERIVED_MODELS, prepare_batchable_onnx
from retailface.devtools.models import model_path

FIXTURE = Path(__file__).parent / "fixtures" / "emotion_keras_reference.npz"


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_derived_models_are_registered() -> None:
    assert {m.key for m in DERIVED_MODELS} == {"sface_prepared", "emotion"}
    assert model_path("sface_prepared").is_file() and model_path("emotion").is_file()


def test_emotion_onnx_reproduces_the_keras_model_on_real_faces(tmp_path: Path) -> None:
    """Outputs recorded from the original Keras model (scripts/record_keras_emotion_fixture.py)."""
    reference = np.load(FIXTURE)
    gray, expected = reference["gray"], reference["probabilities"]
    assert gray.shape[0] >= 8 and expected.shape == (gray.shape[0], 7)
    # Convert afresh from the verified HDF5, so the test checks the converter, not a cached file.
    converted = tmp_path / "emotion.onnx"
    convert_keras_hdf5(model_path("fer_keras"), converted)
    x = (((gray.astype(np.float32) / 255.0) - 0.5) * 2.0)[..., None]
    for path in (converted, model_path("emotion")):
        got = session(path).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        assert (got.argmax(1) == expected.argmax(1)).all()
    # The faces are not all alike: several classes win somewhere.
    assert len(set(expected.argmax(1).tolist())) >= 3


def _write_keras_file(path: Path, layers: list[dict]) -> None:
    config = {"class_name": "Model", "config": {"name": "m", "layers": layers}}
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
        handle.create_group("model_weights")


def _input_layer() -> dict:
    return {
        "class_name": "InputLayer",
        "config": {"name": "in", "batch_input_shape": [None, 8, 8, 1]},
        "inbound_nodes": [],
    }


def test_converter_names_an_unsupported_layer(tmp_path: Path) -> None:
    source = tmp_path / "lstm.h5"
    _write_keras_file(
        source,
        [_input_layer(), {"class_name": "LSTM", "config": {"name": "lstm_1"}, "inbound_nodes": [[["in", 0, 0, {}]]]}],
    )
    with pytest.raises(UnsupportedLayerError, match=r"lstm_1.*LSTM"):
        convert_keras_hdf5(source, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_converter_refuses_unsupported_options(tmp_path: Path) -> None:
    source = tmp_path / "cf.h5"
    conv = {"name": "conv", "filters": 2, "kernel_size": [3, 3], "data_format": "channels_first"}
    _write_keras_file(
        source, [_input_layer(), {"class_name": "Conv2D", "config": conv, "inbound_nodes": [[["in", 0, 0, {}]]]}]
    )
    with pytest.raises(UnsupportedLayerError, match=r"conv.*channels_last"):
        convert_keras_hdf5(source, tmp_path / "out.onnx")


def test_sface_prepared_has_dynamic_batch_and_constant_weights(tmp_path: Path) -> None:
    shipped = onnx.load(str(model_path("sface")))
    shipped_initializers = {i.name for i in shipped.graph.initializer}
    assert len([i for i in shipped.graph.input if i.name in shipped_initializers]) > 100  # the problem being fixed

    prepared_path = tmp_path / "sface_prepared.onnx"
    prepare_batchable_onnx(model_path("sface"), prepared_path)
    prepared = onnx.load(str(prepared_path))
    onnx.checker.check_model(prepared, full_check=True)
    assert [i.name for i in prepared.graph.input] == ["data"]
    batch = prepared.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    assert not any(n.op_type in ("Dropout", "PRelu") for n in prepared.graph.node)

    # Same function: equal outputs (to float rounding) on real-valued inputs, batch of 3 in one run.
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    original = session(model_path("sface"))
    want = np.concatenate([original.run(None, {"data": x[i : i + 1]})[0] for i in range(3)])
    got = session(prepared_path).run(None, {"data": x})[0]
    assert got.shape == (3, 128)
    np.testing.assert_allclose(got, want, atol=1e-3 * np.abs(want).max())
