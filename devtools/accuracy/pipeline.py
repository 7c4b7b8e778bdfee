"""The services' own path from an image to an embedding: YuNet detection, quality gates, alignment, SFace.

It calls the plain engines the detection and embedding services run (`DetectionEngine`,
`EmbeddingEngine`), with the detection service's default settings and gates, so a probe here is what
the gateway would get for the same frame. A photo of the datasets has one person: the largest face
found is that person's (`n_faces` says how many were found, for the enrollment refusal rate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from retailface.services.detection.alignment import alignment_matrix
from retailface.services.detection.decoding import PixelFormat, RawFrame
from retailface.services.detection.engine import DetectedFace, DetectionEngine, DetectionSettings
from retailface.services.detection.quality import outside_fraction
from retailface.services.embedding.engine import EmbeddingEngine, EmbeddingSettings
from retailface.services.shared.model_files import model_path
from retailface.services.shared.model_identity import ModelIdentity

EMBED_BATCH = 16
# The services' sources whose behaviour a cached probe depends on (their text is part of the cache key).
SERVICE_SOURCES = (
    "detection/engine.py",
    "detection/yunet.py",
    "detection/yunet_graph.py",
    "detection/quality.py",
    "detection/alignment.py",
    "embedding/embedder.py",
    "embedding/chips.py",
    "shared/face_template.py",
)


@dataclass(frozen=True)
class FaceRecord:
    """What the pipeline made of one image (all measures NaN and no embedding when no face was found)."""

    n_faces: int
    box: np.ndarray  # (4,) x, y, width, height
    landmarks: np.ndarray  # (5, 2)
    score: float
    inter_eye_px: float
    sharpness: float
    brightness: float
    yaw_deg: float
    pitch_deg: float
    outside: float  # how far the face leaves the frame (quality.outside_fraction; the TRUNCATED gate's measure)
    failed_gates: int  # bit (1 << gate) for each failed detection.quality.QualityGate
    embedding: np.ndarray | None  # (dim,) float32, unit length

    @property
    def found(self) -> bool:
        return self.embedding is not None


def gate_bits(face: DetectedFace) -> int:
    return sum(1 << int(gate) for gate in face.quality.failed_gates)


def _no_face() -> FaceRecord:
    nan = float("nan")
    return FaceRecord(0, np.full(4, np.nan), np.full((5, 2), np.nan), nan, nan, nan, nan, nan, nan, nan, 0, None)


class FacePipeline:
    def __init__(self, threads: int = 1, detection: DetectionSettings | None = None) -> None:
        settings = detection or DetectionSettings()
        self.detection_settings = replace(settings, intra_op_threads=threads)
        self.detector = DetectionEngine.from_model(model_path("yunet"), self.detection_settings)
        self.embedder = EmbeddingEngine(EmbeddingSettings(attributes=False, intra_op_threads=threads))

    @property
    def detector_model(self) -> ModelIdentity:
        return self.detector.model

    @property
    def embedder_model(self) -> ModelIdentity:
        return self.embedder.model

    def settings_key(self) -> str:
        """What a probe depends on besides its pixels: models, detection settings (gates included), sources."""
        s = self.detection_settings
        digest = hashlib.sha256()
        parts = (
            self.detector_model.sha256,
            self.embedder_model.sha256,
            repr((s.input_width, s.input_height, s.score_threshold, s.nms_threshold, s.max_faces_per_frame, s.gates)),
        )
        for part in parts:
            digest.update(part.encode() + b"\n")
        services = Path(__file__).resolve().parents[2] / "services"
        for relative in SERVICE_SOURCES:
            digest.update(relative.encode() + b"\n" + (services / relative).read_bytes())
        return digest.hexdigest()

    def run(self, images: Sequence[np.ndarray], known: dict[str, np.ndarray] | None = None) -> list[FaceRecord]:
        """One record per BGR image: its largest face, measured and gated as the detection service does.

        `known` maps a chip's SHA-1 to its embedding: chips found there are not embedded again, and
        the new ones are added to it (the embedding depends on the chip's pixels only).
        """
        faces: list[DetectedFace | None] = []
        counts: list[int] = []
        outside: list[float] = []
        step = self.detection_settings.max_batch_frames
        for start in range(0, len(images), step):
            batch = images[start : start + step]
            for image, result in zip(batch, self.detector.detect([frame_of(i) for i in batch]), strict=True):
                if result.error is not None:
                    raise ValueError(result.error)
                counts.append(len(result.faces))
                face = max(result.faces, key=lambda f: f.box[2] * f.box[3]) if result.faces else None
                faces.append(face)
                outside.append(_outside(face, image) if face is not None else float("nan"))
        known = {} if known is None else known
        digests = [chip_digest(face.chip) if face is not None else "" for face in faces]
        missing = list(dict.fromkeys(d for d in digests if d and d not in known))
        chips = {d: face.chip for d, face in zip(digests, faces, strict=True) if d in missing and face is not None}
        for start in range(0, len(missing), EMBED_BATCH):
            todo = missing[start : start + EMBED_BATCH]
            outcome = self.embedder.embed([chips[d] for d in todo])
            for digest, result in zip(todo, outcome.results, strict=True):
                if result.embedding is None:
                    raise ValueError(f"embedding failed: {result.error}")
                known[digest] = np.asarray(result.embedding, dtype=np.float32)
        records: list[FaceRecord] = []
        for face, count, digest, out in zip(faces, counts, digests, outside, strict=True):
            if face is None:
                records.append(replace(_no_face(), n_faces=count))
                continue
            q = face.quality
            records.append(
                FaceRecord(
                    n_faces=count,
                    box=np.asarray(face.box, dtype=np.float64),
                    landmarks=np.asarray(face.landmarks, dtype=np.float64),
                    score=face.score,
                    inter_eye_px=q.inter_eye_px,
                    sharpness=q.sharpness,
                    brightness=q.brightness,
                    yaw_deg=q.yaw_deg,
                    pitch_deg=q.pitch_deg,
                    outside=out,
                    failed_gates=gate_bits(face),
                    embedding=known[digest],
                )
            )
        return records


def chip_digest(chip: np.ndarray | None) -> str:
    if chip is None:
        raise ValueError("the detection engine returned a face without its chip")
    return hashlib.sha1(np.ascontiguousarray(chip).tobytes(), usedforsecurity=False).hexdigest()


def _outside(face: DetectedFace, image: np.ndarray) -> float:
    box = np.asarray(face.box, dtype=np.float64)
    return outside_fraction(box, alignment_matrix(face.landmarks), image.shape[1], image.shape[0])


def frame_of(image: np.ndarray) -> RawFrame:
    height, width = image.shape[:2]
    return RawFrame(width, height, PixelFormat.BGR8, np.ascontiguousarray(image).tobytes())
