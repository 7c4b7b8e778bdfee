"""Detection as plain Python: a batch of frames in, faces with landmarks, quality and chips out.

This is what the gRPC servicer calls, and what an in-process caller (the gateway, a benchmark)
can call directly:

    engine = DetectionEngine.from_model(model_path("yunet"), DetectionSettings())
    results = engine.detect([EncodedFrame(jpeg_bytes), RawFrame(640, 480, PixelFormat.BGR8, pixels)])

A batch that is itself invalid (empty, over `max_batch_frames`, bad per-call overrides) raises
BatchError; a bad frame gets its own `error` (message starting with "frame <index>:") and the
other frames are still processed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

from retailface.services.detection.alignment import align_face, alignment_matrix
from retailface.services.detection.decoding import Frame, FrameError, decode_frame
from retailface.services.detection.quality import FaceQuality, QualityGates, measure_quality
from retailface.services.detection.yunet import Detections, YuNetDetector
from retailface.services.shared.metrics import stage_timer

log = structlog.get_logger(__name__)
SERVICE = "detection"
MODEL_ID = "yunet"
MODEL_VERSION = "2023mar"


class BatchError(ValueError):
    """The request as a whole is invalid (INVALID_ARGUMENT for the call)."""


@dataclass(frozen=True)
class DetectionSettings:
    input_width: int = 1280
    input_height: int = 1280
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    max_faces_per_frame: int = 200
    max_batch_frames: int = 32
    max_frame_pixels: int = 4096 * 4096
    intra_op_threads: int = 0  # 0: one per core
    provider: str = "auto"
    max_frames_per_run: int = 0  # 0: one frame per onnxruntime run on CPU, the whole batch on CUDA
    gates: QualityGates = field(default_factory=QualityGates)


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    version: str
    sha256: str


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x, y, width, height in frame pixels
    landmarks: np.ndarray  # (5, 2) float32, right eye, left eye, nose, right mouth corner, left mouth corner
    score: float
    quality: FaceQuality
    chip: np.ndarray | None  # (112, 112, 3) uint8 BGR, aligned to the ArcFace template


@dataclass
class FrameResult:
    error: str | None = None  # "frame <i>: <problem>" when the frame could not be used
    faces: list[DetectedFace] = field(default_factory=list)
    width: int = 0
    height: int = 0
    decode_ms: float = 0.0
    # The frame's share of the batched model run (split evenly over the frames of its run) plus its
    # own post-processing (quality measures and chips).
    detect_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class EngineStats:
    provider: str
    intra_op_threads: int
    input_width: int
    input_height: int
    frames_processed: int
    faces_detected: int
    max_batch_frames: int
    max_frame_pixels: int


class DetectionEngine:
    def __init__(self, detector: YuNetDetector, settings: DetectionSettings, model: ModelInfo) -> None:
        self.detector = detector
        self.settings = settings
        self.model = model
        self._count_lock = threading.Lock()
        self._frames_processed = 0
        self._faces_detected = 0

    @classmethod
    def from_model(cls, model_file: Path, settings: DetectionSettings) -> DetectionEngine:
        detector = YuNetDetector(
            model_file,
            input_width=settings.input_width,
            input_height=settings.input_height,
            score_threshold=settings.score_threshold,
            nms_threshold=settings.nms_threshold,
            max_faces=settings.max_faces_per_frame,
            intra_op_threads=settings.intra_op_threads,
            provider=settings.provider,
            max_frames_per_run=settings.max_frames_per_run,
        )
        digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
        log.info(
            "detector_ready",
            model=model_file.name,
            provider=detector.provider,
            intra_op_threads=detector.intra_op_threads,
            max_frames_per_run=detector.max_frames_per_run,
            input_size=f"{settings.input_width}x{settings.input_height}",
        )
        return cls(detector, settings, ModelInfo(MODEL_ID, MODEL_VERSION, digest))

    def stats(self) -> EngineStats:
        with self._count_lock:
            frames, faces = self._frames_processed, self._faces_detected
        return EngineStats(
            provider=self.detector.provider,
            intra_op_threads=self.detector.intra_op_threads,
            input_width=self.settings.input_width,
            input_height=self.settings.input_height,
            frames_processed=frames,
            faces_detected=faces,
            max_batch_frames=self.settings.max_batch_frames,
            max_frame_pixels=self.settings.max_frame_pixels,
        )

    def detect(
        self,
        frames: Sequence[Frame],
        *,
        include_chips: bool = True,
        score_threshold: float | None = None,
        max_faces_per_frame: int | None = None,
    ) -> list[FrameResult]:
        """One result per frame, in order. Raises BatchError when the batch itself is invalid."""
        if not frames:
            raise BatchError("the batch has no frames: send at least one")
        if len(frames) > self.settings.max_batch_frames:
            raise BatchError(
                f"the batch has {len(frames)} frames, over the limit of {self.settings.max_batch_frames}: "
                "split it into smaller batches"
            )
        if score_threshold is not None and not 0.0 < score_threshold <= 1.0:
            raise BatchError(f"score_threshold {score_threshold} must be in (0, 1], or 0 for the default")

        results = [FrameResult() for _ in frames]
        images: list[np.ndarray] = []
        positions: list[int] = []
        for index, frame in enumerate(frames):
            start = time.perf_counter()
            try:
                with stage_timer(SERVICE, "decode"):
                    image = decode_frame(frame, self.settings.max_frame_pixels)
            except FrameError as error:
                results[index].error = f"frame {index}: {error}"
                continue
            finally:
                results[index].decode_ms = (time.perf_counter() - start) * 1000
            results[index].height, results[index].width = image.shape[:2]
            images.append(image)
            positions.append(index)
        if not images:
            return results

        start = time.perf_counter()
        with stage_timer(SERVICE, "model"):
            detections = self.detector.detect(images, score_threshold, max_faces_per_frame)
        model_share_ms = (time.perf_counter() - start) * 1000 / len(images)

        faces_found = 0
        for index, image, found in zip(positions, images, detections, strict=True):
            start = time.perf_counter()
            with stage_timer(SERVICE, "quality_and_chips"):
                faces = self._faces(image, found, include_chips)
            result = results[index]
            result.faces = faces
            result.detect_ms = model_share_ms + (time.perf_counter() - start) * 1000
            faces_found += len(faces)
        with self._count_lock:
            self._frames_processed += len(images)
            self._faces_detected += faces_found
        return results

    def _faces(self, image: np.ndarray, found: Detections, include_chips: bool) -> list[DetectedFace]:
        faces = []
        for box, landmarks, score in zip(found.boxes, found.landmarks, found.scores, strict=True):
            to_chip = alignment_matrix(landmarks)
            quality = measure_quality(image, box, landmarks, float(score), self.settings.gates, to_chip)
            chip = align_face(image, landmarks, to_chip) if include_chips else None
            x, y, w, h = (float(v) for v in box)
            faces.append(DetectedFace((x, y, w, h), landmarks, float(score), quality, chip))
        return faces
