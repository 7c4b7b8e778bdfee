"""Where each camera is: its store, its role (entrance, aisle or checkout lane), its zone and lane.

The cameras are personalization's registry (RegisterCamera; read with ListCameras). `CameraRegistry` keeps
a copy: refreshed every few seconds, and loaded at once (at most once per `miss_interval`) when a frame names
a camera it does not know (the first frame loads it), so a camera registered a moment ago streams without
waiting for the next refresh. A camera that is still unknown after that is refused, frame by frame, with
NOT_FOUND: it is never processed with made-up defaults. While personalization is out of reach the last copy
serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog

from retailface.services.shared.errors import NotFound, Unavailable
from retailface.services.shared.periodic import PeriodicWorker
from retailface.v1 import personalization_pb2, personalization_pb2_grpc

log = structlog.get_logger(__name__)

CAMERA_ROLES = {
    personalization_pb2.CAMERA_ROLE_ENTRANCE: "entrance",
    personalization_pb2.CAMERA_ROLE_AISLE: "aisle",
    personalization_pb2.CAMERA_ROLE_LANE: "lane",
}


@dataclass(frozen=True)
class CameraInfo:
    camera_id: str
    store_id: str = ""
    role: str = "aisle"  # entrance | aisle | lane
    zone_id: str = ""
    lane_id: str = ""


# What a load returns: the cameras by id, and the registry's version.
Snapshot = tuple[dict[str, CameraInfo], int]


def camera_info(camera: personalization_pb2.Camera) -> CameraInfo:
    role = CAMERA_ROLES.get(camera.role, "aisle")
    return CameraInfo(camera.camera_id, camera.store_id, role, camera.zone_id, camera.lane_id)


def list_cameras(stub: personalization_pb2_grpc.PersonalizationServiceStub, deadline: float) -> Callable[[], Snapshot]:
    """A loader that asks personalization for every registered camera."""

    def load() -> Snapshot:
        response = stub.ListCameras(personalization_pb2.ListCamerasRequest(), timeout=deadline)
        return {camera.camera_id: camera_info(camera) for camera in response.cameras}, int(response.version)

    return load


class CameraRegistry:
    def __init__(
        self,
        load: Callable[[], Snapshot],
        refresh_interval: float = 5.0,
        miss_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._miss_interval = miss_interval
        self._clock = clock
        self._cameras: dict[str, CameraInfo] = {}
        self._version: int | None = None  # None: never loaded
        self._lock = threading.Lock()  # one load at a time
        self._last_miss_load: float | None = None
        # No load at start: personalization may not be up yet (the first frame loads the registry, see lookup).
        self._worker = PeriodicWorker("gateway-cameras", refresh_interval, self.refresh)

    @property
    def version(self) -> int | None:
        return self._version

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def refresh(self) -> bool:
        """Loads the registry; False (the last copy stays) when personalization cannot answer."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        try:
            cameras, version = self._load()
        except grpc.RpcError as error:
            log.warning("camera_registry_unavailable", code=error.code().name, details=error.details())
            return False
        if version != self._version or cameras != self._cameras:
            log.info("camera_registry_loaded", cameras=len(cameras), version=version)
        self._cameras, self._version = cameras, version
        return True

    def lookup(self, camera_id: str) -> CameraInfo:
        """The registered camera; NOT_FOUND when it is not registered (UNAVAILABLE before a first load)."""
        info = self._cameras.get(camera_id)
        if info is not None:
            return info
        with self._lock:  # a miss: reload, unless a load for a miss happened within `miss_interval`
            info = self._cameras.get(camera_id)  # loaded by another thread while this one waited
            now = self._clock()
            if info is None and (self._last_miss_load is None or now - self._last_miss_load >= self._miss_interval):
                self._last_miss_load = now
                self._refresh_locked()
                info = self._cameras.get(camera_id)
        if info is not None:
            return info
        if self._version is None:
            raise Unavailable(f"camera {camera_id} cannot be checked: the camera registry is not loaded yet; retry")
        raise NotFound(f"camera {camera_id} is not registered: register it with RegisterCamera")
