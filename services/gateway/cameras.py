"""Where each camera is: its store, its role (entrance, aisle or checkout lane), its zone and lane."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from retailface.v1 import common_pb2

CAMERA_ROLES = frozenset({"entrance", "aisle", "lane"})


@dataclass(frozen=True)
class CameraInfo:
    camera_id: str
    store_id: str = ""
    role: str = "aisle"  # entrance | aisle | lane
    zone_id: str = ""
    lane_id: str = ""


def load_cameras(path: Path | None) -> dict[str, CameraInfo]:
    """Camera-to-zone map: {"entrance-1": {"store_id": "s1", "role": "entrance", "zone_id": "entrance"}, ...}."""
    if path is None:
        return {}
    data = json.loads(Path(path).read_text())
    cameras = {}
    for camera_id, info in data.items():
        role = info.get("role", "aisle")
        if role not in CAMERA_ROLES:
            raise ValueError(f"{path}: camera {camera_id}: role {role!r} is not entrance, aisle or lane")
        cameras[camera_id] = CameraInfo(
            camera_id, info.get("store_id", ""), role, info.get("zone_id", ""), info.get("lane_id", "")
        )
    return cameras


def camera_of(frame: common_pb2.Frame, cameras: dict[str, CameraInfo]) -> CameraInfo:
    """The frame's camera: as mapped, with the frame's store where the map names none.

    An unmapped camera is an aisle camera whose zone is the camera itself.
    """
    info = cameras.get(frame.camera_id)
    if info is None:
        return CameraInfo(frame.camera_id, frame.store_id, "aisle", frame.camera_id, "")
    if frame.store_id and not info.store_id:
        return replace(info, store_id=frame.store_id)
    return info
