"""Per-camera face tracking and identity confirmation.

A track follows one face across frames of one camera. Faces are associated to tracks by box
overlap and embedding similarity (Hungarian assignment on a combined cost). A track is
tentative until it has been seen in `min_hits` frames, confirmed afterwards, and lost after
`max_missed_frames` frames or `max_missed_seconds` without a detection; lost tracks are
dropped together with their embeddings, which only ever live in memory.

Each quality-passing frame adds its embedding to the track's fused probe (fusion.py: the
quality-weighted mean of its last `fused_frames` frames). The pipeline matches that probe, at the
calibrated threshold for its quality and frame count, and hands the answer back as the frame's
vote (`vote`). An identity is asserted only when k of the last n votes agree on the same member
with a MATCH decision. If the window later agrees on a different member, the identity is
withdrawn: a wrong name is worse than no name.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from scipy.optimize import linear_sum_assignment

from retailface.services.gateway.fusion import DEFAULT_FUSED_FRAMES, frame_weight, fuse, fused_inter_eye_px


class TrackState(Enum):
    TENTATIVE = 1
    CONFIRMED = 2
    LOST = 3


@dataclass(frozen=True)
class TrackerConfig:
    min_hits: int = 2  # frames before a track is confirmed
    max_missed_frames: int = 15
    max_missed_seconds: float = 2.0
    min_iou: float = 0.15  # below this, boxes alone never associate
    min_similarity: float = 0.35  # embedding cosine that associates a face even when it moved far
    identity_k: int = 3  # k of the last n quality-passing frames must agree...
    identity_n: int = 5  # ...on the same member
    embedding_momentum: float = 0.7  # smoothing of the track's appearance embedding
    fused_frames: int = DEFAULT_FUSED_FRAMES  # quality-passing frames fused into the probe that is matched


@dataclass(frozen=True)
class Observation:
    """One detected face in one frame, with what the pipeline learned about it."""

    box: tuple[float, float, float, float]  # x, y, w, h
    quality_passes: bool
    embedding: np.ndarray | None = None  # L2-normalised; only for quality-passing faces
    inter_eye_px: float = 0.0
    detection_score: float = 1.0
    emotion: int = 0  # common_pb2.Emotion value; 0 when unknown
    attributes: object | None = None  # common_pb2.Attributes, passed through for counting


@dataclass(frozen=True)
class FusedProbe:
    """What the track asks matching: its fused embedding, that probe's quality and its frame count."""

    vector: np.ndarray
    inter_eye_px: float
    frames: int


@dataclass(frozen=True)
class Vote:
    member: str | None  # the member matching named (MATCH), or None
    score: float = 0.0
    calibration: object | None = None  # common_pb2.Calibration of the decision


@dataclass
class Track:
    track_id: str
    box: tuple[float, float, float, float]
    first_seen: float
    last_seen: float
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1
    missed: int = 0
    embedding: np.ndarray | None = None
    # (embedding, weight, inter-eye px) of the last quality-passing frames; only in memory, for the track's life
    frames: deque[tuple[np.ndarray, float, float]] = field(default_factory=deque)
    votes: deque[Vote] = field(default_factory=deque)
    identity: str | None = None
    identity_score: float = 0.0
    identity_agreeing: int = 0
    identity_calibration: object | None = None  # of the latest agreeing vote
    identity_fused_frames: int = 0
    emotions: list[tuple[float, int]] = field(default_factory=list)
    last_attributes: object | None = None

    @property
    def dwell_seconds(self) -> float:
        return max(0.0, self.last_seen - self.first_seen)

    def fused_probe(self) -> FusedProbe | None:
        """The probe of the track's recent quality-passing frames (None before the first)."""
        if not self.frames:
            return None
        vectors = [vector for vector, _, _ in self.frames]
        weights = [weight for _, weight, _ in self.frames]
        inter_eye = [px for _, _, px in self.frames]
        return FusedProbe(fuse(vectors, weights), fused_inter_eye_px(inter_eye, weights), len(self.frames))

    def forget_biometrics(self) -> None:
        """Drops every embedding of the track (it ended)."""
        self.embedding = None
        self.frames.clear()


@dataclass(frozen=True)
class FrameUpdate:
    """What one frame did: the track of each observation, and tracks that ended."""

    assigned: list[Track]  # same order as the observations
    ended: list[Track]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a [n, 4] and b [m, 4] given as x, y, w, h."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return (inter / np.maximum(union, 1e-9)).astype(np.float32)


class CameraTracker:
    """Tracks of one camera. Not thread-safe: the gateway serialises frames per camera."""

    def __init__(self, camera_id: str, config: TrackerConfig | None = None) -> None:
        self.camera_id = camera_id
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def update(self, observations: Sequence[Observation], timestamp: float) -> FrameUpdate:
        cfg = self.config
        assignment = self._associate(observations)
        assigned: list[Track] = []
        matched_tracks: set[int] = set()
        for index, observation in enumerate(observations):
            track_index = assignment.get(index)
            if track_index is None:
                track = Track(f"{self.camera_id}:{next(self._ids)}", observation.box, timestamp, timestamp)
                self.tracks.append(track)
                matched_tracks.add(len(self.tracks) - 1)
            else:
                track = self.tracks[track_index]
                matched_tracks.add(track_index)
                track.hits += 1
                track.missed = 0
                track.box = observation.box
                track.last_seen = timestamp
            if track.state is TrackState.TENTATIVE and track.hits >= cfg.min_hits:
                track.state = TrackState.CONFIRMED
            self._observe(track, observation, timestamp)
            assigned.append(track)

        ended: list[Track] = []
        for track_index, track in enumerate(self.tracks):
            if track_index in matched_tracks:
                continue
            track.missed += 1
            if track.missed > cfg.max_missed_frames or timestamp - track.last_seen > cfg.max_missed_seconds:
                track.state = TrackState.LOST
                ended.append(track)
        if ended:
            gone = {id(t) for t in ended}
            self.tracks = [t for t in self.tracks if id(t) not in gone]
            for track in ended:  # embeddings of ended tracks are dropped now, never kept
                track.forget_biometrics()
        return FrameUpdate(assigned, ended)

    def close_all(self) -> list[Track]:
        """Ends every track (camera stream closed)."""
        ended, self.tracks = self.tracks, []
        for track in ended:
            track.state = TrackState.LOST
            track.forget_biometrics()
        return ended

    def _associate(self, observations: Sequence[Observation]) -> dict[int, int]:
        if not observations or not self.tracks:
            return {}
        cfg = self.config
        boxes = np.array([o.box for o in observations], dtype=np.float32)
        track_boxes = np.array([t.box for t in self.tracks], dtype=np.float32)
        overlap = iou_matrix(boxes, track_boxes)
        similarity = np.zeros_like(overlap)
        for i, observation in enumerate(observations):
            if observation.embedding is None:
                continue
            for j, track in enumerate(self.tracks):
                if track.embedding is not None:
                    similarity[i, j] = float(np.dot(observation.embedding, track.embedding))
        # Overlap is reliable between consecutive frames; appearance bridges fast motion and gaps.
        score = np.maximum(overlap, np.where(similarity >= cfg.min_similarity, similarity, 0.0))
        rows, cols = linear_sum_assignment(-score)
        return {
            int(r): int(c)
            for r, c in zip(rows, cols, strict=True)
            if overlap[r, c] >= cfg.min_iou or similarity[r, c] >= cfg.min_similarity
        }

    def _observe(self, track: Track, observation: Observation, timestamp: float) -> None:
        cfg = self.config
        if observation.attributes is not None:
            track.last_attributes = observation.attributes
        if observation.emotion:
            track.emotions.append((timestamp, observation.emotion))
        if not observation.quality_passes or observation.embedding is None:
            return  # only quality-passing frames are matched (and vote) or shape the appearance
        if track.embedding is None:
            track.embedding = observation.embedding.astype(np.float32, copy=True)
        else:
            blended = cfg.embedding_momentum * track.embedding + (1 - cfg.embedding_momentum) * observation.embedding
            track.embedding = (blended / max(float(np.linalg.norm(blended)), 1e-9)).astype(np.float32)
        weight = frame_weight(observation.inter_eye_px, observation.detection_score)
        track.frames.append((observation.embedding.astype(np.float32, copy=True), weight, observation.inter_eye_px))
        while len(track.frames) > max(1, cfg.fused_frames):
            track.frames.popleft()

    def vote(self, track: Track, vote: Vote, fused_frames: int = 1) -> bool:
        """Records matching's answer for the track's probe of this frame; True when it newly names someone."""
        cfg = self.config
        track.votes.append(vote)
        while len(track.votes) > cfg.identity_n:
            track.votes.popleft()
        counts = Counter(v.member for v in track.votes if v.member is not None)
        if not counts:
            return False
        member, agreeing = counts.most_common(1)[0]
        if agreeing < cfg.identity_k:
            return False
        if track.identity is not None and track.identity != member:
            # The window now agrees on someone else: withdraw rather than risk a wrong name.
            track.identity = None
            track.identity_score = 0.0
            track.identity_agreeing = 0
            track.identity_calibration = None
            track.votes.clear()
            return False
        newly = track.identity is None
        track.identity = member
        track.identity_score = float(np.mean([v.score for v in track.votes if v.member == member]))
        track.identity_agreeing = agreeing
        if vote.member == member:
            track.identity_calibration = vote.calibration
            track.identity_fused_frames = fused_frames
        return newly
