"""From a frame batch to tracked faces, confirmed identities, store events and actions.

detection -> (quality-passing faces) embedding -> matching -> per-camera tracker -> events ->
personalization. Each backend failure degrades the answer instead of failing it: without
matching, frames still get detections and say identification is unavailable; without
personalization, identification still answers and events wait in the relay.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from retailface.services.gateway.batching import Batcher
from retailface.services.gateway.downstream import DEGRADED_CODES, Backends, EventRelay, MemberCache
from retailface.services.gateway.tracker import CameraTracker, Observation, Track, TrackerConfig, TrackState
from retailface.services.shared.metrics import stage_timer
from retailface.v1 import (
    common_pb2,
    detection_pb2,
    embedding_pb2,
    gateway_pb2,
    matching_pb2,
    personalization_pb2,
)

log = structlog.get_logger(__name__)
audit = structlog.get_logger("audit")

NEGATIVE_EMOTIONS = frozenset(
    {common_pb2.EMOTION_ANGRY, common_pb2.EMOTION_DISGUST, common_pb2.EMOTION_FEAR, common_pb2.EMOTION_SAD}
)
MEMBERS_GALLERY = "members"


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
        if role not in {"entrance", "aisle", "lane"}:
            raise ValueError(f"{path}: camera {camera_id}: role {role!r} is not entrance, aisle or lane")
        cameras[camera_id] = CameraInfo(
            camera_id, info.get("store_id", ""), role, info.get("zone_id", ""), info.get("lane_id", "")
        )
    return cameras


@dataclass
class PipelineConfig:
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    cameras: dict[str, CameraInfo] = field(default_factory=dict)
    enter_cooldown_seconds: float = 1800.0
    detect_deadline: float = 10.0
    embed_deadline: float = 10.0
    match_deadline: float = 2.0
    batch_max_frames: int = 16  # frames of several cameras merged into one Detect call, at most
    batch_max_chips: int = 64


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _status(code: grpc.StatusCode, message: str = "") -> common_pb2.ItemStatus:
    return common_pb2.ItemStatus(code=code.value[0], message=message)


class FramePipeline:
    def __init__(self, backends: Backends, members: MemberCache, relay: EventRelay, config: PipelineConfig) -> None:
        self.backends = backends
        self.members = members
        self.relay = relay
        self.config = config
        self._trackers: dict[str, CameraTracker] = {}
        self._camera_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        # Several cameras' frames and chips go out in one backend call when they arrive together.
        self._detect_batcher: Batcher[common_pb2.Frame, detection_pb2.FrameFaces] = Batcher(
            "detection", self._detect_call, config.batch_max_frames, workers=2
        )
        self._embed_batcher: Batcher[common_pb2.AlignedChip, tuple[embedding_pb2.ChipResult, float, Any]] = Batcher(
            "embedding", self._embed_call, config.batch_max_chips, workers=2
        )
        # (store, member) -> time of the last `entered`
        self._entered: dict[tuple[str, str], float] = {}
        # camera -> its info as last seen in frames, for the events raised after its stream ends
        self._camera_info: dict[str, CameraInfo] = {}

    # ------------------------------------------------------------------ per batch

    def process(self, batch: gateway_pb2.FrameBatch) -> gateway_pb2.FrameBatchResult:
        started = time.perf_counter()
        timings = gateway_pb2.StageTimings()
        frames = list(batch.frames)
        results = [
            gateway_pb2.FrameResult(camera_id=f.camera_id, sequence=f.sequence, identification_available=True)
            for f in frames
        ]
        with stage_timer("gateway", "detect"):
            detected = self._detect(frames, results, timings)
        timings.decode_detect_ms = (time.perf_counter() - started) * 1000

        # Faces good enough to identify from: only these are embedded and searched.
        chips: list[common_pb2.AlignedChip] = []
        owners: list[tuple[int, int]] = []
        for frame_index, frame_faces in enumerate(detected):
            for face_index, face in enumerate(frame_faces):
                if face.quality.passes and face.HasField("chip") and face.chip.bgr:
                    chips.append(face.chip)
                    owners.append((frame_index, face_index))

        mark = time.perf_counter()
        with stage_timer("gateway", "embed"):
            embeddings, attributes = self._embed(chips, timings)
        timings.embed_ms = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        with stage_timer("gateway", "match"):
            matches, matching_ok = self._match(embeddings)
        timings.match_ms = (time.perf_counter() - mark) * 1000
        if not matching_ok:
            for result in results:
                result.identification_available = False

        per_face: dict[tuple[int, int], int] = {owner: i for i, owner in enumerate(owners)}
        mark = time.perf_counter()
        personalize_ms = 0.0
        for frame_index, frame in enumerate(frames):
            result = results[frame_index]
            if result.status.code != 0:
                continue
            observations = []
            for face_index, face in enumerate(detected[frame_index]):
                chip_index = per_face.get((frame_index, face_index))
                embedding = embeddings[chip_index] if chip_index is not None and embeddings is not None else None
                member, score = (
                    matches[chip_index] if chip_index is not None and chip_index < len(matches) else (None, 0.0)
                )
                attrs = attributes[chip_index] if chip_index is not None and attributes else None
                observations.append(
                    Observation(
                        box=(face.box.x, face.box.y, face.box.width, face.box.height),
                        quality_passes=face.quality.passes and embedding is not None,
                        embedding=embedding,
                        match_member=member,
                        match_score=score,
                        emotion=attrs.emotion if attrs is not None else 0,
                        attributes=attrs,
                    )
                )
            personalize_ms += self._track_frame(frame, detected[frame_index], observations, result)
        timings.track_ms = (time.perf_counter() - mark) * 1000 - personalize_ms
        timings.personalize_ms = personalize_ms
        timings.total_ms = (time.perf_counter() - started) * 1000
        return gateway_pb2.FrameBatchResult(request_id=batch.request_id, results=results, timings=timings)

    def _detect_call(self, frames: list[common_pb2.Frame]) -> list[detection_pb2.FrameFaces]:
        request = detection_pb2.DetectRequest(frames=frames, include_chips=True)
        return list(self.backends.detection.Detect(request, timeout=self.config.detect_deadline).results)

    def _embed_call(self, chips: list[common_pb2.AlignedChip]) -> list[tuple[embedding_pb2.ChipResult, float, Any]]:
        request = embedding_pb2.EmbedRequest(chips=chips, include_attributes=True)
        response = self.backends.embedding.Embed(request, timeout=self.config.embed_deadline)
        share = (response.embed_ms + response.attributes_ms) / max(1, len(chips))  # model time per chip
        return [(item, share, response.model) for item in response.results]

    def close(self) -> None:
        self._detect_batcher.close()
        self._embed_batcher.close()

    def _detect(
        self,
        frames: Sequence[common_pb2.Frame],
        results: list[gateway_pb2.FrameResult],
        timings: gateway_pb2.StageTimings,
    ) -> list[list[common_pb2.Face]]:
        detected: list[list[common_pb2.Face]] = [[] for _ in frames]
        try:
            frame_results = self._detect_batcher.submit(list(frames))
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise  # the batch itself is invalid: the caller gets the same answer
            for result in results:
                result.status.CopyFrom(
                    _status(grpc.StatusCode.UNAVAILABLE, f"detection unavailable: {error.details()}")
                )
            return detected
        for index, frame_faces in enumerate(frame_results):
            timings.decode_ms += frame_faces.decode_ms
            timings.detect_model_ms += frame_faces.detect_ms
            results[index].status.CopyFrom(frame_faces.status)
            detected[index] = list(frame_faces.faces)
        return detected

    def _embed(
        self, chips: list[common_pb2.AlignedChip], timings: gateway_pb2.StageTimings
    ) -> tuple[np.ndarray | None, list[common_pb2.Attributes | None]]:
        if not chips:
            return np.zeros((0, 128), dtype=np.float32), []
        try:
            embedded = self._embed_batcher.submit(chips)
        except grpc.RpcError as error:
            if error.code() not in DEGRADED_CODES:
                raise
            log.warning("embedding_unavailable", code=error.code().name)
            return None, []
        timings.embed_model_ms = sum(share for _, share, _ in embedded)
        vectors = []
        attributes: list[common_pb2.Attributes | None] = []
        self._model = (embedded[0][2].model_id, embedded[0][2].version)
        for item, _, _ in embedded:
            ok = item.status.code == 0 and len(item.embedding.values) > 0
            vectors.append(np.asarray(item.embedding.values, dtype=np.float32) if ok else None)
            attributes.append(item.attributes if item.HasField("attributes") else None)
        dim = next((len(v) for v in vectors if v is not None), 128)
        matrix = np.stack([v if v is not None else np.full(dim, np.nan, np.float32) for v in vectors])
        return matrix, attributes

    def _match(self, embeddings: np.ndarray | None) -> tuple[list[tuple[str | None, float]], bool]:
        if embeddings is None:
            return [], False
        if len(embeddings) == 0:
            return [], True
        valid = [i for i in range(len(embeddings)) if not np.isnan(embeddings[i, 0])]
        model_id, version = getattr(self, "_model", ("", ""))
        queries = [
            common_pb2.Embedding(values=embeddings[i].tolist(), model_id=model_id, model_version=version) for i in valid
        ]
        matches: list[tuple[str | None, float]] = [(None, 0.0)] * len(embeddings)
        if not queries:
            return matches, True
        try:
            response = self.backends.matching.Search(
                matching_pb2.SearchRequest(gallery=MEMBERS_GALLERY, queries=queries, top_k=2),
                timeout=self.config.match_deadline,
            )
        except grpc.RpcError as error:
            log.warning("matching_unavailable", code=error.code().name, details=error.details())
            return matches, False
        for i, result in zip(valid, response.results, strict=True):
            if result.decision == matching_pb2.DECISION_MATCH and result.candidates:
                matches[i] = (result.candidates[0].subject_id, result.candidates[0].score)
        return matches, True

    # ------------------------------------------------------------------ tracking and events

    def _camera(self, frame: common_pb2.Frame) -> CameraInfo:
        info = self.config.cameras.get(frame.camera_id)
        if info is None:
            return CameraInfo(frame.camera_id, frame.store_id, "aisle", frame.camera_id, "")
        if frame.store_id and not info.store_id:
            return CameraInfo(info.camera_id, frame.store_id, info.role, info.zone_id, info.lane_id)
        return info

    def _tracker(self, camera_id: str) -> tuple[CameraTracker, threading.Lock]:
        with self._lock:
            if camera_id not in self._trackers:
                self._trackers[camera_id] = CameraTracker(camera_id, self.config.tracker)
                self._camera_locks[camera_id] = threading.Lock()
            return self._trackers[camera_id], self._camera_locks[camera_id]

    def _track_frame(
        self,
        frame: common_pb2.Frame,
        faces: list[common_pb2.Face],
        observations: list[Observation],
        result: gateway_pb2.FrameResult,
    ) -> float:
        camera = self._camera(frame)
        self._camera_info[frame.camera_id] = camera
        now = frame.captured_at.ToNanoseconds() / 1e9 if frame.HasField("captured_at") else time.time()
        tracker, lock = self._tracker(frame.camera_id)
        with lock:
            update = tracker.update(observations, now)
        events: list[personalization_pb2.VisitEvent] = []
        for face, track in zip(faces, update.assigned, strict=True):
            tracked = gateway_pb2.TrackedFace(track_id=track.track_id, track_state=track.state.value)
            tracked.face.CopyFrom(face)
            tracked.face.ClearField("chip")  # chips are biometric: never leave the pipeline
            tracked.face.track_id = track.track_id
            if track.last_attributes is not None:
                tracked.attributes.CopyFrom(track.last_attributes)
            member = self._allowed_identity(track)
            if member is not None:
                tracked.identity.member_id = member.member_id
                tracked.identity.score = track.identity_score
                tracked.identity.agreeing_frames = track.identity_agreeing
                tracked.identity.window_frames = self.config.tracker.identity_n
                if member.allow_greeting and member.staff_greeting:
                    tracked.identity.display_name = member.display_name
                if track.newly_identified:
                    audit.info(
                        "identified",
                        member_id=member.member_id,
                        camera_id=camera.camera_id,
                        store_id=camera.store_id,
                        track_id=track.track_id,
                        score=round(track.identity_score, 4),
                        agreeing_frames=track.identity_agreeing,
                    )
                    events += self._on_identified(camera, track, now)
            result.faces.append(tracked)
        for track in update.ended:
            events += self._on_track_end(camera, track, now)
        return self._emit(events, result)

    def _allowed_identity(self, track: Track):  # type: ignore[no-untyped-def]
        if track.identity is None:
            return None
        member = self.members.get(track.identity)
        if member is None or not member.face_identification:
            return None  # no active consent for identification: an anonymous shopper
        return member

    def _on_identified(self, camera: CameraInfo, track: Track, now: float) -> list[personalization_pb2.VisitEvent]:
        events = []
        if camera.role == "entrance":
            key = (camera.store_id, track.identity or "")
            last = self._entered.get(key)
            if last is None or now - last >= self.config.enter_cooldown_seconds:
                self._entered[key] = now
                events.append(self._event(personalization_pb2.VISIT_EVENT_TYPE_ENTERED, camera, track, now))
        return events

    def _on_track_end(self, camera: CameraInfo, track: Track, now: float) -> list[personalization_pb2.VisitEvent]:
        if track.hits < self.config.tracker.min_hits:
            return []  # a flicker, not a shopper
        member = self._allowed_identity(track)
        events = []
        if camera.role == "entrance" and member is None:
            events.append(self._event(personalization_pb2.VISIT_EVENT_TYPE_ENTERED, camera, track, now))
        if camera.zone_id and camera.role != "entrance":
            event = self._event(personalization_pb2.VISIT_EVENT_TYPE_ZONE_DWELL, camera, track, now)
            event.dwell_seconds = track.dwell_seconds
            events.append(event)
        if camera.role == "lane":
            event = self._event(personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT, camera, track, now)
            event.emotion.CopyFrom(_emotion_summary(track))
            events.append(event)
        return events

    def _event(self, kind: int, camera: CameraInfo, track: Track, now: float) -> personalization_pb2.VisitEvent:
        member = self._allowed_identity(track)
        event = personalization_pb2.VisitEvent(
            event_id=uuid.uuid4().hex,
            type=kind,
            store_id=camera.store_id,
            camera_id=camera.camera_id,
            zone_id=camera.zone_id,
            lane_id=camera.lane_id,
            track_id=track.track_id,
            at=_timestamp(now),
        )
        if member is not None:
            event.member_id = member.member_id
            event.match_score = track.identity_score
        elif track.last_attributes is not None:
            event.attributes.CopyFrom(track.last_attributes)  # anonymous shoppers: attributes only
        return event

    def _emit(self, events: list[personalization_pb2.VisitEvent], result: gateway_pb2.FrameResult) -> float:
        started = time.perf_counter()
        for event in events:
            result.events.append(
                gateway_pb2.StoreEvent(
                    type=event.type,
                    track_id=event.track_id,
                    member_id=event.member_id,
                    zone_id=event.zone_id,
                    lane_id=event.lane_id,
                    dwell_seconds=event.dwell_seconds,
                    emotion=event.emotion,
                    at=event.at,
                )
            )
            with stage_timer("gateway", "personalize"):
                outcome = self.relay.send_now(event)
            if outcome is not None:
                result.offers_pushed.extend(outcome.offers_pushed)
                result.alerts_raised.extend(outcome.alerts_raised)
        return (time.perf_counter() - started) * 1000

    def end_camera(self, camera_id: str) -> gateway_pb2.FrameResult:
        """The camera's stream closed: end its tracks; their events are sent and returned."""
        result = gateway_pb2.FrameResult(camera_id=camera_id, identification_available=True)
        with self._lock:
            tracker = self._trackers.pop(camera_id, None)
            lock = self._camera_locks.pop(camera_id, None)
        if tracker is None or lock is None:
            return result
        with lock:
            ended = tracker.close_all()
        camera = self._camera_info.pop(camera_id, None) or self.config.cameras.get(camera_id, CameraInfo(camera_id))
        events = [event for track in ended for event in self._on_track_end(camera, track, track.last_seen)]
        self._emit(events, result)
        return result


def _emotion_summary(track: Track) -> personalization_pb2.EmotionSummary:
    if not track.emotions:
        return personalization_pb2.EmotionSummary()
    labels = [label for _, label in track.emotions]
    dominant = max(set(labels), key=labels.count)
    negative = sum(1 for label in labels if label in NEGATIVE_EMOTIONS) / len(labels)
    seconds = track.emotions[-1][0] - track.emotions[0][0]
    return personalization_pb2.EmotionSummary(dominant=dominant, negative_fraction=negative, seconds=seconds)


__all__ = ["CameraInfo", "FramePipeline", "PipelineConfig", "TrackState", "load_cameras"]
