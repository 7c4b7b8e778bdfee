"""Fixtures shared by the vision tests: real models, real test images, a real detection server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from retailface.devtools.localstack import LocalStack, Runtime, ServiceProcess, free_port
from retailface.devtools.models import model_path, testdata_path
from retailface.services.detection.engine import DetectionEngine, DetectionSettings
from retailface.services.shared.config import SERVICES
from retailface.v1 import detection_pb2_grpc


@pytest.fixture(scope="session")
def yunet_file() -> Path:
    return model_path("yunet")


@pytest.fixture(scope="session")
def load_image() -> Callable[[str], np.ndarray]:
    """Reads a test image (BGR) by its testdata name, e.g. "insightface/t1.jpg"."""
    cache: dict[str, np.ndarray] = {}

    def load(name: str) -> np.ndarray:
        if name not in cache:
            image = cv2.imread(str(testdata_path(name)), cv2.IMREAD_COLOR)
            assert image is not None, f"cannot read {name}"
            cache[name] = image
        return cache[name].copy()

    return load


@pytest.fixture(scope="session")
def detection_engine(yunet_file: Path) -> DetectionEngine:
    """The engine with the shipped defaults, as the service builds it."""
    return DetectionEngine.from_model(yunet_file, DetectionSettings())


@dataclass
class DetectionServer:
    stack: LocalStack
    process: ServiceProcess
    channel: grpc.Channel
    stub: detection_pb2_grpc.DetectionServiceStub
    metadata: tuple[tuple[str, str], ...]
    max_batch_frames: int
    max_frame_pixels: int


@pytest.fixture(scope="module")
def detection_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DetectionServer]:
    """`python -m retailface.services.detection` as a real process on a free loopback port, with small
    batch and pixel limits so that the limit checks are cheap to exercise."""
    runtime = Runtime(tmp_path_factory.mktemp("detection") / "runtime")
    runtime.prepare()
    ports = {}
    for name in SERVICES:
        ports[name], ports[f"{name}-metrics"] = free_port(), free_port()
    max_batch_frames, max_frame_pixels = 16, 2_000_000
    extra = {
        "RETAILFACE_DETECTION_MAX_BATCH_FRAMES": str(max_batch_frames),
        "RETAILFACE_DETECTION_MAX_FRAME_PIXELS": str(max_frame_pixels),
        "RETAILFACE_DETECTION_THREADS": "1",
        "RETAILFACE_DETECTION_PROVIDER": "cpu",
    }
    stack = LocalStack(runtime, ports=ports, extra_env={"detection": extra})
    process = stack.start("detection")
    try:
        assert stack.wait_serving("detection") == "SERVING"
        limits = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
        channel = grpc.insecure_channel(process.target, options=limits)
        yield DetectionServer(
            stack,
            process,
            channel,
            detection_pb2_grpc.DetectionServiceStub(channel),
            (("authorization", f"Bearer {runtime.tokens['service']}"),),
            max_batch_frames,
            max_frame_pixels,
        )
        channel.close()
    finally:
        stack.stop_all()
