"""The gateway's camera registry: cameras come from personalization's ListCameras, refreshed periodically and on
a frame of an unknown camera (at most once a second); an unregistered camera's frames are refused with NOT_FOUND."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from gateway_fakes import FakeDetection, FakeEmbedding, FakeMatching, FakePersonalization, FakeRpcError, backends, face

from retailface.services.gateway.cameras import CameraInfo, CameraRegistry, list_cameras
from retailface.services.gateway.members import MemberCache
from retailface.services.gateway.pipeline import FramePipeline, PipelineConfig
from retailface.services.gateway.relay import EventRelay
from retailface.services.shared.errors import NotFound, Unavailable
from retailface.v1 import common_pb2, gateway_pb2, personalization_pb2

NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
DOOR = personalization_pb2.Camera(
    camera_id="door", store_id="s1", role=personalization_pb2.CAMERA_ROLE_ENTRANCE, zone_id="entrance"
)
AISLE = personalization_pb2.Camera(
    camera_id="aisle-7", store_id="s1", role=personalization_pb2.CAMERA_ROLE_AISLE, zone_id="aisle-7"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def personalization() -> FakePersonalization:
    return FakePersonalization({}, cameras=[DOOR])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(personalization: FakePersonalization, clock: Clock) -> CameraRegistry:
    registry = CameraRegistry(list_cameras(personalization, 1.0), refresh_interval=60.0, clock=clock)  # type: ignore[arg-type]
    assert registry.refresh()
    return registry


def test_a_registered_camera_comes_with_its_store_role_and_zone(registry: CameraRegistry) -> None:
    assert registry.lookup("door") == CameraInfo("door", "s1", "entrance", "entrance", "")


def test_an_unregistered_camera_is_not_found_with_what_to_do(registry: CameraRegistry) -> None:
    with pytest.raises(NotFound, match="camera lobby-2 is not registered: register it with RegisterCamera"):
        registry.lookup("lobby-2")


def test_a_camera_registered_after_the_last_refresh_is_found_on_its_first_frame(
    registry: CameraRegistry, personalization: FakePersonalization
) -> None:
    personalization.register(AISLE)
    assert registry.lookup("aisle-7") == CameraInfo("aisle-7", "s1", "aisle", "aisle-7", "")
    assert registry.version == 2


def test_unknown_cameras_reload_the_registry_at_most_once_a_second(
    registry: CameraRegistry, personalization: FakePersonalization, clock: Clock
) -> None:
    loads = personalization.camera_lists
    for _ in range(5):
        with pytest.raises(NotFound):
            registry.lookup("lobby-2")
    assert personalization.camera_lists == loads + 1
    clock.now += 1.0
    with pytest.raises(NotFound):
        registry.lookup("lobby-2")
    assert personalization.camera_lists == loads + 2


def test_a_removed_camera_is_refused_after_the_next_refresh(
    registry: CameraRegistry, personalization: FakePersonalization
) -> None:
    personalization.cameras = []
    personalization.camera_version += 1
    assert registry.refresh()
    with pytest.raises(NotFound):
        registry.lookup("door")


def test_the_periodic_refresh_picks_up_new_cameras(personalization: FakePersonalization) -> None:
    registry = CameraRegistry(list_cameras(personalization, 1.0), refresh_interval=0.05)  # type: ignore[arg-type]
    registry.start()
    try:
        personalization.register(AISLE)
        deadline = time.monotonic() + 5
        while registry.version != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        loads = personalization.camera_lists
        assert registry.lookup("aisle-7").zone_id == "aisle-7"
        assert personalization.camera_lists == loads  # known from the periodic refresh: no reload for it
    finally:
        registry.stop()


def test_the_last_copy_serves_while_personalization_is_out(
    registry: CameraRegistry, personalization: FakePersonalization
) -> None:
    personalization.error = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
    assert not registry.refresh()
    assert registry.lookup("door").role == "entrance"


def test_before_a_first_load_a_camera_cannot_be_checked(personalization: FakePersonalization) -> None:
    personalization.error = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
    registry = CameraRegistry(list_cameras(personalization, 1.0))  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="the camera registry is not loaded yet; retry"):
        registry.lookup("door")


@pytest.fixture
def pipeline(registry: CameraRegistry, personalization: FakePersonalization) -> Iterator[FramePipeline]:
    detection = FakeDetection({b"room": [face(10)]})
    stubs = backends(detection, FakeEmbedding({}), FakeMatching({}), personalization)
    relay = EventRelay(stubs.personalization, deadline=1.0)
    members = MemberCache(stubs.personalization, ttl=60.0, deadline=1.0)
    pipeline = FramePipeline(stubs, members, relay, PipelineConfig(), registry)
    yield pipeline
    pipeline.close()
    relay.close()


def test_a_frame_of_an_unregistered_camera_is_refused_alone_and_not_processed(pipeline: FramePipeline) -> None:
    batch = gateway_pb2.FrameBatch(
        frames=[
            common_pb2.Frame(encoded=b"room", camera_id="lobby-2", store_id="s1", sequence=1),
            common_pb2.Frame(encoded=b"room", camera_id="door", store_id="s1", sequence=2),
        ]
    )
    refused, served = pipeline.process(batch).results
    assert (refused.status.code, refused.status.message, len(refused.faces)) == (
        NOT_FOUND,
        "camera lobby-2 is not registered: register it with RegisterCamera",
        0,
    )
    assert (served.status.code, len(served.faces)) == (0, 1)
    detect_calls = pipeline.backends.detection.calls  # type: ignore[attr-defined]
    assert [frame.camera_id for call in detect_calls for frame in call.frames] == ["door"]
