"""Detection as plain Python: a batch of frames in, faces with landmarks, quality and chips out.

This is what the gRPC servicer calls, and what an in-process caller (the gateway, a benchmark)
can call directly:

    engine = DetectionEngine.from_model(model_path("yunet"), DetectionSettings())
    results = engine.detect([EncodedFrame(jpeg_bytes), RawFrame(640, 480, PixelFormat.BGR8, pixels)])

A batch that is itself invalid (empty, over `max_batch_frames`, bad per-call overrides) raises
InvalidArgument, which fails the whole call; a bad frame gets its own `error` (message starting
with "frame <index>:") and the other frames are still processed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

from retailface.services.detection.alignment import align_face, alignment_matrix
from retailface.services.detection.decoding import Frame, FrameError, decode_frame
from retailface.services.detection.quality import FaceQuality, QualityGates, measure_quality
from retailface.services.detection.yunet import Detections, YuNetDetector
from retailface.services.shared.errors import InvalidArgument
from retailface.services.shared.metrics import stage_timer
from retailface.services.shared.model_identity import ModelIdentity

log = structlog.get_logger(__name__)
SERVICE = "detection"


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
class DetectedFace:
    box: tuple[float, float, float, float]  # x, y, width, height in frame pixels
    landmarks: np.ndarray  # (5, 2) float32, in face_template's order
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
    def __init__(self, detector: YuNetDetector, settings: DetectionSettings) -> None:
        self.detector = detector
        self.settings = settings
        self._count_lock = threading.Lock()
        self._frames_processed = 0
        self._faces_detected = 0

    @classmethod
    def from_model(cls, model_file: Path, settings: DetectionSettings) -> DetectionEngine:
        detector = YuNetDetector(model_file).prepare(
            provider=settings.provider,
            intra_op_threads=settings.intra_op_threads,
            input_width=settings.input_width,
            input_height=settings.input_height,
            score_threshold=settings.score_threshold,
            nms_threshold=settings.nms_threshold,
            max_faces=settings.max_faces_per_frame,
            max_frames_per_run=settings.max_frames_per_run,
        )
        log.info(
            "detector_ready",
            model=model_file.name,
            provider=detector.provider,
            intra_op_threads=detector.intra_op_threads,
            max_frames_per_run=detector.max_frames_per_run,
            input_size=f"{settings.input_width}x{settings.input_height}",
        )
        return cls(detector, settings)

    @property
    def model(self) -> ModelIdentity:
        return self.detector.identity

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
        """One result per frame, in order. Raises InvalidArgument when the batch itself is invalid."""
        self._check_batch(len(frames), score_threshold)
        results = [FrameResult() for _ in frames]
        images: list[np.ndarray] = []
        positions: list[int] = []
        for index, (frame, result) in enumerate(zip(frames, results, strict=True)):
            image: np.ndarray | None = None
            with stage_timer(SERVICE, "decode") as decoding:
                try:
                    image = decode_frame(frame, self.settings.max_frame_pixels)
                except FrameError as error:
                    result.error = f"frame {index}: {error}"
            result.decode_ms = decoding.ms
            if image is None:
                continue
            result.height, result.width = image.shape[:2]
            images.append(image)
            positions.append(index)
        if not images:
            return results

        with stage_timer(SERVICE, "model") as model_run:
            detections = self.detector.detect(images, score_threshold, max_faces_per_frame)
        model_share_ms = model_run.ms / len(images)

        faces_found = 0
        for index, image, found in zip(positions, images, detections, strict=True):
            with stage_timer(SERVICE, "quality_and_chips") as post:
                faces = self._faces(image, found, include_chips)
            result = results[index]
            result.faces = faces
            result.detect_ms = model_share_ms + post.ms
            faces_found += len(faces)
        with self._count_lock:
            self._frames_processed += len(images)
            self._faces_detected += faces_found
        return results

    def _check_batch(self, frame_count: int, score_threshold: float | None) -> None:
        if not frame_count:
            raise InvalidArgument("the batch has no frames: send at least one")
        if frame_count > self.settings.max_batch_frames:
            raise InvalidArgument(
                f"the batch has {frame_count} frames, over the limit of {self.settings.max_batch_frames}: "
                "split it into smaller batches"
            )
        if score_threshold is not None and not 0.0 < score_threshold <= 1.0:
            raise InvalidArgument(f"score_threshold {score_threshold} must be in (0, 1], or 0 for the default")

    def _faces(self, image: np.ndarray, found: Detections, include_chips: bool) -> list[DetectedFace]:
        faces = []
        for box, landmarks, score in zip(found.boxes, found.landmarks, found.scores, strict=True):
            to_chip = alignment_matrix(landmarks)
            quality = measure_quality(image, box, landmarks, float(score), self.settings.gates, to_chip)
            chip = align_face(image, landmarks, to_chip) if include_chips else None
            x, y, w, h = (float(v) for v in box)
            faces.append(DetectedFace((x, y, w, h), landmarks, float(score), quality, chip))
        return faces
