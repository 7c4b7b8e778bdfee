"""From a frame batch to tracked faces, confirmed identities, store events and actions.

detection -> (faces good enough to identify from) embedding -> per-camera tracker (each track
fuses its recent frames into one probe) -> matching (each probe at the calibrated threshold for
its quality and frame count) -> the track's k-of-n vote -> events -> personalization. Each step
fills in the `FaceWork` of the faces it handled. Each
backend failure degrades the answer instead of failing it: without matching, frames still get
detections and say identification is unavailable; without personalization, identification still
answers and events wait in the relay.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass, field

import grpc
import numpy as np
import structlog

from retailface.services.gateway.backends import DEGRADED_CODES, Backends
from retailface.services.gateway.batching import Batcher
from retailface.services.gateway.cameras import CameraInfo, CameraRegistry
from retailface.services.gateway.events import VisitEvents, store_event
from retailface.services.gateway.members import MemberCache, MemberView, audit_identified
from retailface.services.gateway.relay import EventRelay
from retailface.services.gateway.tracker import (
    CameraTracker,
    FrameUpdate,
    FusedProbe,
    Observation,
    Track,
    TrackerConfig,
    Vote,
)
from retailface.services.shared.errors import InvalidArgument, ServiceError, from_rpc_error
from retailface.services.shared.galleries import MEMBERS_GALLERY
from retailface.services.shared.identifiers import check_id
from retailface.services.shared.metrics import stage_timer
from retailface.v1 import common_pb2, detection_pb2, embedding_pb2, gateway_pb2, matching_pb2, personalization_pb2

log = structlog.get_logger(__name__)


@dataclass
class PipelineConfig:
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    enter_cooldown_seconds: float = 1800.0
    detect_deadline: float = 10.0
    embed_deadline: float = 10.0
    match_deadline: float = 2.0
    batch_max_frames: int = 16  # frames of several cameras merged into one Detect call, at most
    batch_max_chips: int = 64


@dataclass(frozen=True)
class EmbeddedChip:
    """What embedding answered for one face chip."""

    vector: np.ndarray | None  # L2-normalised; None when the chip could not be embedded
    query: common_pb2.Embedding | None  # the same vector as matching is asked, with the model that made it
    attributes: common_pb2.Attributes | None
    model_ms: float  # the chip's share of its call's model time


@dataclass
class FaceWork:
    """One detected face and what the steps after detection learned about it."""

    face: common_pb2.Face
    embedded: EmbeddedChip | None = None  # only faces good enough to identify from are embedded
    track: Track | None = None  # set by tracking
    probe: FusedProbe | None = None  # the track's fused probe after this frame, when this face is matched
    vote: Vote | None = None  # matching's answer for that probe

    @property
    def identifiable(self) -> bool:
        """Good enough to identify from: passes the quality gates and comes with its chip."""
        return self.face.quality.passes and self.face.HasField("chip") and bool(self.face.chip.bgr)

    @property
    def vector(self) -> np.ndarray | None:
        return self.embedded.vector if self.embedded is not None else None

    @property
    def query(self) -> common_pb2.Embedding | None:
        return self.embedded.query if self.embedded is not None else None

    def observation(self) -> Observation:
        attributes = self.embedded.attributes if self.embedded is not None else None
        box = self.face.box
        return Observation(
            box=(box.x, box.y, box.width, box.height),
            quality_passes=self.face.quality.passes and self.vector is not None,
            embedding=self.vector,
            inter_eye_px=self.face.quality.inter_eye_px,
            detection_score=self.face.detection_score,
            emotion=attributes.emotion if attributes is not None else 0,
            attributes=attributes,
        )


@dataclass
class FrameWork:
    """One frame of the batch: its result, filled step by step, and its faces."""

    frame: common_pb2.Frame
    result: gateway_pb2.FrameResult
    faces: list[FaceWork] = field(default_factory=list)
    camera: CameraInfo | None = None  # the registered camera (find_camera)
    at: float = 0.0  # capture time, seconds
    update: FrameUpdate | None = None

    def check_camera_id(self, index: int) -> None:
        """A frame whose camera id is not an id (empty, oversized, control characters) is refused alone."""
        try:
            check_id(self.frame.camera_id, f"frame {index}: camera_id")
        except InvalidArgument as error:
            self.result.camera_id = ""  # never echo what was refused
            self.result.status.CopyFrom(common_pb2.ItemStatus(code=error.code.value[0], message=error.message))

    def find_camera(self, cameras: CameraRegistry) -> None:
        """The frame's registered camera; a frame of an unregistered camera is refused alone (NOT_FOUND)."""
        if self.result.status.code:
            return
        try:
            self.camera = cameras.lookup(self.frame.camera_id)
        except ServiceError as error:
            self.result.status.CopyFrom(common_pb2.ItemStatus(code=error.code.value[0], message=error.message))

    @classmethod
    def of(cls, frame: common_pb2.Frame) -> FrameWork:
        result = gateway_pb2.FrameResult(
            camera_id=frame.camera_id, sequence=frame.sequence, identification_available=True
        )
        return cls(frame, result)


@dataclass
class _CameraState:
    """One camera's tracks; frames of one camera are tracked one at a time."""

    tracker: CameraTracker
    info: CameraInfo  # as last seen in its frames, for the events raised after its stream ends
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_frame: float = field(default_factory=time.monotonic)  # when its latest frame was tracked


def _ms_since(mark: float) -> float:
    return (time.perf_counter() - mark) * 1000


class FramePipeline:
    def __init__(
        self,
        backends: Backends,
        members: MemberCache,
        relay: EventRelay,
        config: PipelineConfig,
        cameras: CameraRegistry,
    ) -> None:
        self.backends = backends
        self.cameras = cameras
        self.members = members
        self.relay = relay
        self.config = config
        self.events = VisitEvents(config.enter_cooldown_seconds, config.tracker.min_hits)
        self._cameras: dict[str, _CameraState] = {}
        self._lock = threading.Lock()
        # Several cameras' frames and chips go out in one backend call when they arrive together.
        self._detect_batcher: Batcher[common_pb2.Frame, detection_pb2.FrameFaces] = Batcher(
            "detection", self._detect_call, config.batch_max_frames, workers=2
        )
        self._embed_batcher: Batcher[common_pb2.AlignedChip, EmbeddedChip] = Batcher(
            "embedding", self._embed_call, config.batch_max_chips, workers=2
        )

    def close(self) -> None:
        self._detect_batcher.close()
        self._embed_batcher.close()

    # ------------------------------------------------------------------ per batch

    def process(self, batch: gateway_pb2.FrameBatch) -> gateway_pb2.FrameBatchResult:
        """The batch's result: one FrameResult per frame, in order.

        A batch without a request id is given one first, on the batch itself, so that an answer
        the caller writes for it (a stream's failed batch) carries the same id.
        """
        if not batch.request_id:
            batch.request_id = uuid.uuid4().hex
        if not batch.frames:
            return gateway_pb2.FrameBatchResult(request_id=batch.request_id)
        started = time.perf_counter()
        timings = gateway_pb2.StageTimings()
        frames = [FrameWork.of(frame) for frame in batch.frames]
        for index, frame in enumerate(frames):
            frame.check_camera_id(index)
            frame.find_camera(self.cameras)
        with stage_timer("gateway", "detect"):
            self._detect([frame for frame in frames if frame.result.status.code == 0], timings)
        timings.decode_detect_ms = _ms_since(started)

        faces = [face for frame in frames for face in frame.faces if face.identifiable]
        mark = time.perf_counter()
        with stage_timer("gateway", "embed"):
            identification = self._embed(faces, timings)
        timings.embed_ms = _ms_since(mark)

        tracked = [frame for frame in frames if frame.result.status.code == 0]
        with self._camera_locks(tracked):
            mark = time.perf_counter()
            with stage_timer("gateway", "track"):
                for frame in tracked:
                    self._update_tracks(frame)
            track_ms = _ms_since(mark)
            mark = time.perf_counter()
            with stage_timer("gateway", "match"):
                identification = identification and self._match(tracked)
            timings.match_ms = _ms_since(mark)
            mark = time.perf_counter()
            personalize_ms = 0.0
            for frame in frames:
                frame.result.identification_available = identification
            for frame in tracked:
                personalize_ms += self._conclude(frame)
        timings.track_ms = track_ms + _ms_since(mark) - personalize_ms
        timings.personalize_ms = personalize_ms
        timings.total_ms = _ms_since(started)
        return gateway_pb2.FrameBatchResult(
            request_id=batch.request_id, results=[frame.result for frame in frames], timings=timings
        )

    def _detect(self, frames: list[FrameWork], timings: gateway_pb2.StageTimings) -> None:
        """Fills each frame's status and faces; without detection, frames say it is unavailable."""
        if not frames:
            return
        try:
            answers = self._detect_batcher.submit([frame.frame for frame in frames])
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise from_rpc_error(error, "detection") from error  # the batch itself is invalid
            status = common_pb2.ItemStatus(
                code=grpc.StatusCode.UNAVAILABLE.value[0], message=f"detection unavailable: {error.details()}"
            )
            for frame in frames:
                frame.result.status.CopyFrom(status)
            return
        for frame, answer in zip(frames, answers, strict=True):
            timings.decode_ms += answer.decode_ms
            timings.detect_model_ms += answer.detect_ms
            frame.result.status.CopyFrom(answer.status)
            frame.faces = [FaceWork(face) for face in answer.faces]

    def _detect_call(self, frames: list[common_pb2.Frame]) -> list[detection_pb2.FrameFaces]:
        request = detection_pb2.DetectRequest(frames=frames, include_chips=True)
        return list(self.backends.detection.Detect(request, timeout=self.config.detect_deadline).results)

    def _embed(self, faces: list[FaceWork], timings: gateway_pb2.StageTimings) -> bool:
        """Embeds the faces' chips; False when embedding is out (nobody can be identified)."""
        if not faces:
            return True
        try:
            embedded = self._embed_batcher.submit([face.face.chip for face in faces])
        except grpc.RpcError as error:
            if error.code() not in DEGRADED_CODES:
                raise from_rpc_error(error, "embedding") from error
            log.warning("embedding_unavailable", code=error.code().name)
            return False
        for face, chip in zip(faces, embedded, strict=True):
            face.embedded = chip
        timings.embed_model_ms = sum(chip.model_ms for chip in embedded)
        return True

    def _embed_call(self, chips: list[common_pb2.AlignedChip]) -> list[EmbeddedChip]:
        request = embedding_pb2.EmbedRequest(chips=chips, include_attributes=True)
        response = self.backends.embedding.Embed(request, timeout=self.config.embed_deadline)
        share = (response.embed_ms + response.attributes_ms) / max(1, len(chips))  # model time per chip
        return [_embedded_chip(item, response.model, share) for item in response.results]

    def _match(self, frames: list[FrameWork]) -> bool:
        """Searches the members gallery for every fused probe; each answer becomes its face's vote.

        Returns False when matching is out (nobody votes).
        """
        probes = [face for frame in frames for face in frame.faces if face.probe is not None]
        if not probes:
            return True
        request = matching_pb2.SearchRequest(
            gallery=MEMBERS_GALLERY, top_k=2, min_sequence=self.backends.seen.newest(MEMBERS_GALLERY)
        )
        for face in probes:
            assert face.probe is not None and face.query is not None
            request.queries.append(
                common_pb2.Embedding(
                    values=face.probe.vector.tolist(),
                    model_id=face.query.model_id,
                    model_version=face.query.model_version,
                )
            )
            request.probe_qualities.append(
                matching_pb2.ProbeQuality(inter_eye_px=face.probe.inter_eye_px, frames=face.probe.frames)
            )
        try:
            response = self.backends.matching.Search(request, timeout=self.config.match_deadline)
        except grpc.RpcError as error:
            log.warning("matching_unavailable", code=error.code().name, details=error.details())
            return False
        for face, found in zip(probes, response.results, strict=True):
            matched = found.decision == matching_pb2.DECISION_MATCH and bool(found.candidates)
            face.vote = Vote(
                found.candidates[0].subject_id if matched else None,
                found.candidates[0].score if matched else 0.0,
                found.calibration if found.HasField("calibration") else None,
            )
        return True

    # ------------------------------------------------------------------ tracking and events

    def _camera_state(self, camera: CameraInfo) -> _CameraState:
        with self._lock:
            state = self._cameras.get(camera.camera_id)
            if state is None:
                state = _CameraState(CameraTracker(camera.camera_id, self.config.tracker), camera)
                self._cameras[camera.camera_id] = state
            state.info = camera
            state.last_frame = time.monotonic()
            return state

    def _camera_locks(self, frames: list[FrameWork]) -> contextlib.ExitStack:
        """Holds the lock of every camera in the batch (in camera id order) from tracking to the votes."""
        for frame in frames:
            captured = frame.frame.captured_at
            frame.at = captured.ToNanoseconds() / 1e9 if frame.frame.HasField("captured_at") else time.time()
        stack = contextlib.ExitStack()
        states = {frame.camera.camera_id: self._camera_state(frame.camera) for frame in frames if frame.camera}
        for camera_id in sorted(states):
            stack.enter_context(states[camera_id].lock)
        return stack

    def _update_tracks(self, frame: FrameWork) -> None:
        """Assigns the frame's faces to tracks; a quality-passing face takes its track's fused probe."""
        assert frame.camera is not None
        state = self._camera_state(frame.camera)
        observations = [face.observation() for face in frame.faces]
        frame.update = state.tracker.update(observations, frame.at)
        for face, observation, track in zip(frame.faces, observations, frame.update.assigned, strict=True):
            face.track = track
            if observation.quality_passes:
                face.probe = track.fused_probe()

    def _conclude(self, frame: FrameWork) -> float:
        """Records the frame's votes, names the identified faces, raises and sends the frame's events.

        Returns the milliseconds spent sending events to personalization.
        """
        assert frame.camera is not None and frame.update is not None
        camera, now = frame.camera, frame.at
        tracker = self._camera_state(camera).tracker
        named_now = {  # tracks whose identity this frame's votes asserted: a name is news on that frame only
            id(face.track)
            for face in frame.faces
            if face.vote is not None
            and face.track is not None
            and face.probe is not None
            and tracker.vote(face.track, face.vote, face.probe.frames)
        }
        events: list[personalization_pb2.VisitEvent] = []
        for face in frame.faces:
            track = face.track
            assert track is not None
            member = self._identifiable(track)
            tracked = self._tracked_face(face.face, track, member)
            frame.result.faces.append(tracked)
            if member is not None and id(track) in named_now:
                where = {"camera_id": camera.camera_id, "store_id": camera.store_id, "track_id": track.track_id}
                audit_identified(tracked.identity, **where)
                events += self.events.identified(camera, track, member, now)
        for track in frame.update.ended:
            events += self.events.ended(camera, track, self._identifiable(track), now)
        return self._emit(events, frame.result)

    def _identifiable(self, track: Track) -> MemberView | None:
        """The track's member when they may be identified; None for an anonymous shopper."""
        return self.members.identifiable(track.identity) if track.identity is not None else None

    def _tracked_face(self, face: common_pb2.Face, track: Track, member: MemberView | None) -> gateway_pb2.TrackedFace:
        tracked = gateway_pb2.TrackedFace(track_id=track.track_id, track_state=track.state.value)
        tracked.face.CopyFrom(face)
        tracked.face.ClearField("chip")  # chips are biometric: never leave the pipeline
        tracked.face.track_id = track.track_id
        if track.last_attributes is not None:
            tracked.attributes.CopyFrom(track.last_attributes)
        if member is not None:
            window = self.config.tracker.identity_n
            tracked.identity.CopyFrom(
                member.identity(
                    track.identity_score,
                    track.identity_agreeing,
                    window,
                    track.identity_calibration,  # type: ignore[arg-type]  # common_pb2.Calibration from the vote
                    track.identity_fused_frames,
                )
            )
        return tracked

    def _emit(self, events: list[personalization_pb2.VisitEvent], result: gateway_pb2.FrameResult) -> float:
        """Sends the events to personalization and adds them, with what they triggered, to the result."""
        started = time.perf_counter()
        for event in events:
            result.events.append(store_event(event))
            with stage_timer("gateway", "personalize"):
                outcome = self.relay.send_now(event)
            if outcome is not None:
                result.offers_pushed.extend(outcome.offers_pushed)
                result.alerts_raised.extend(outcome.alerts_raised)
        return _ms_since(started)

    def end_idle_cameras(self, idle_seconds: float) -> list[str]:
        """Ends the tracks of cameras that sent no frame for `idle_seconds` (a stream that broke and
        did not come back): their events are sent, and their embeddings dropped. Returns the cameras."""
        now = time.monotonic()
        with self._lock:
            idle = [camera_id for camera_id, state in self._cameras.items() if now - state.last_frame > idle_seconds]
        for camera_id in idle:
            self.end_camera(camera_id)
        return idle

    def end_camera(self, camera_id: str) -> gateway_pb2.FrameResult:
        """The camera's stream closed: end its tracks; their events are sent and returned."""
        result = gateway_pb2.FrameResult(camera_id=camera_id, identification_available=True)
        with self._lock:
            state = self._cameras.pop(camera_id, None)
        if state is None:
            return result
        with state.lock:
            ended = state.tracker.close_all()
        events = [
            event
            for track in ended
            for event in self.events.ended(state.info, track, self._identifiable(track), track.last_seen)
        ]
        self._emit(events, result)
        return result


def _embedded_chip(item: embedding_pb2.ChipResult, model: common_pb2.ModelInfo, model_ms: float) -> EmbeddedChip:
    attributes = item.attributes if item.HasField("attributes") else None
    if item.status.code != 0 or not item.embedding.values:
        return EmbeddedChip(None, None, attributes, model_ms)
    query = common_pb2.Embedding(values=item.embedding.values, model_id=model.model_id, model_version=model.version)
    return EmbeddedChip(np.asarray(item.embedding.values, dtype=np.float32), query, attributes, model_ms)
