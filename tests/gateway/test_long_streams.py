"""A camera's stream outlives the gateway's connection-age limit: real gateway and detection processes.

The limit is set to one second here. With the shipped grace period the stream simply goes on;
with a grace shorter than the stream, the call breaks and the client resumes it, and the camera's
tracks (which are the camera's, not the call's) go on across the break.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from retailface.client import CameraClient, connect
from retailface.client.stream import ResumingStream
from retailface.devtools.localstack import LocalStack, Runtime, free_port
from retailface.devtools.models import testdata_path
from retailface.services.shared.config import SERVICES
from retailface.v1 import gateway_pb2

STREAM_SECONDS = 4.0


def _stack(root: Path, grace_seconds: float) -> LocalStack:
    runtime = Runtime(root)
    runtime.prepare()
    ports: dict[str, int] = {}
    for name in SERVICES:
        ports[name], ports[f"{name}-metrics"] = free_port(), free_port()
    limits = {
        "RETAILFACE_MAX_CONNECTION_AGE_SECONDS": "1",
        "RETAILFACE_MAX_CONNECTION_AGE_GRACE_SECONDS": str(grace_seconds),
    }
    stack = LocalStack(runtime, ports=ports, extra_env={"gateway": limits})
    # No embedding: faces are tracked, nobody is identified. Personalization holds the camera registry.
    stack.start_all(("personalization", "detection", "gateway"))
    stack.register_store("s1", "Stream test store")
    stack.register_cameras({"entrance-9": {"store_id": "s1", "role": "entrance", "zone_id": "entrance"}})
    return stack


@pytest.fixture(scope="module")
def photo() -> bytes:
    image = cv2.imread(str(testdata_path("face_recognition/obama.jpg")))
    small = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small)[1].tobytes()


def _paced(camera: CameraClient, photo: bytes, seconds: float, sent: list[str]) -> Iterator[gateway_pb2.FrameBatch]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        batch = camera.frames([photo])
        sent.append(batch.request_id)
        yield batch
        time.sleep(0.1)


def _stream(stack: LocalStack, photo: bytes) -> tuple[list[gateway_pb2.FrameBatchResult], ResumingStream, list[str]]:
    token = stack.runtime.tokens["camera"]
    sent: list[str] = []
    with connect(stack.processes["gateway"].target, token=token, insecure=True) as connection:
        camera = CameraClient(connection, "entrance-9", "s1")
        stream = camera.stream(_paced(camera, photo, STREAM_SECONDS, sent))
        return list(stream), stream, sent


def test_a_stream_goes_on_past_the_connection_age_within_the_grace(tmp_path: Path, photo: bytes) -> None:
    stack = _stack(tmp_path / "runtime", grace_seconds=600)
    try:
        results, stream, sent = _stream(stack, photo)
    finally:
        stack.stop_all()
    assert stream.gaps == []
    *answered, final = results
    assert final.request_id == "end-of-stream"
    # Every batch is answered, or was dropped by the gateway's backpressure (counted, oldest first).
    assert len(answered) + final.dropped_frames == len(sent)
    assert [result.request_id for result in answered] == [r for r in sent if r in {a.request_id for a in answered}]
    tracks = {face.track_id for result in answered for frame in result.results for face in frame.faces}
    assert len(results) >= 8 and tracks == {"entrance-9:1"}


def test_a_broken_stream_is_resumed_and_the_camera_keeps_its_track(tmp_path: Path, photo: bytes) -> None:
    stack = _stack(tmp_path / "runtime", grace_seconds=0.5)
    try:
        results, stream, sent = _stream(stack, photo)
    finally:
        stack.stop_all()
    gaps = stream.gaps
    assert len(gaps) >= 1 and {gap.code for gap in gaps} == {"UNAVAILABLE"}
    answered = [result.request_id for result in results if result.request_id != "end-of-stream"]
    unanswered = [request_id for gap in gaps for request_id in gap.unanswered]
    assert sorted(answered + unanswered) == sorted(sent)  # every batch is answered or reported lost, once
    first_break = sent.index(gaps[0].unanswered[-1]) if gaps[0].unanswered else 0
    assert any(sent.index(request_id) > first_break for request_id in answered)  # answers went on after it
    answered = [result for result in results if result.request_id != "end-of-stream"]
    tracks = {face.track_id for result in answered for frame in result.results for face in frame.faces}
    assert tracks == {"entrance-9:1"}  # the same track before and after every break
