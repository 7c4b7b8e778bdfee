"""Gateway servicer: the front door for cameras, kiosks, POS systems, staff devices and admin tools.

Thin: frame batches go to the FramePipeline; enrollment, erasure and the POS/staff calls are
short orchestrations of the backend services. Roles per method are part of the contract.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import deque
from collections.abc import Iterator

import grpc
import structlog

from retailface.services.gateway.downstream import DEGRADED_CODES, Backends, EventRelay, MemberCache
from retailface.services.gateway.pipeline import FramePipeline, PipelineConfig, load_cameras
from retailface.services.gateway.tracker import TrackerConfig
from retailface.services.shared.config import (
    ServiceConfig,
    Setting,
    parse_path,
    parse_positive_float,
    parse_positive_int,
)
from retailface.services.shared.server import Registration
from retailface.v1 import (
    common_pb2,
    detection_pb2,
    embedding_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    matching_pb2,
    personalization_pb2,
)

log = structlog.get_logger(__name__)
audit = structlog.get_logger("audit")

SETTINGS: list[Setting] = [
    Setting("RETAILFACE_GATEWAY_DETECTION_ADDR", str, "127.0.0.1:50051", "detection service address"),
    Setting("RETAILFACE_GATEWAY_EMBEDDING_ADDR", str, "127.0.0.1:50052", "embedding service address"),
    Setting("RETAILFACE_GATEWAY_MATCHING_ADDR", str, "127.0.0.1:50053", "matching service address"),
    Setting("RETAILFACE_GATEWAY_PERSONALIZATION_ADDR", str, "127.0.0.1:50054", "personalization service address"),
    Setting(
        "RETAILFACE_GATEWAY_CAMERAS_FILE",
        parse_path,
        None,
        'JSON camera map: {"entrance-1": {"store_id": "s1", "role": "entrance|aisle|lane", "zone_id": "...", '
        '"lane_id": "..."}}',
    ),
    Setting(
        "RETAILFACE_GATEWAY_IDENTITY_K",
        parse_positive_int,
        3,
        "an identity needs K of the last N quality-passing frames of a track to agree",
    ),
    Setting("RETAILFACE_GATEWAY_IDENTITY_N", parse_positive_int, 5, "window N of the K-of-N identity rule"),
    Setting("RETAILFACE_GATEWAY_TRACK_MIN_HITS", parse_positive_int, 2, "frames before a track is confirmed"),
    Setting(
        "RETAILFACE_GATEWAY_TRACK_MAX_MISSED_SECONDS",
        parse_positive_float,
        2.0,
        "a track is lost after this long without a detection",
    ),
    Setting(
        "RETAILFACE_GATEWAY_ENTER_COOLDOWN_SECONDS",
        parse_positive_float,
        1800.0,
        "one `entered` event per member and store within this time",
    ),
    Setting(
        "RETAILFACE_GATEWAY_STREAM_QUEUE",
        parse_positive_int,
        4,
        "frame batches queued per camera stream; older batches are dropped when the pipeline falls behind",
    ),
    Setting(
        "RETAILFACE_GATEWAY_BATCH_MAX_FRAMES",
        parse_positive_int,
        16,
        "frames of concurrent camera batches merged into one Detect call, at most (<= detection's batch limit)",
    ),
    Setting(
        "RETAILFACE_GATEWAY_BATCH_MAX_CHIPS",
        parse_positive_int,
        64,
        "face chips of concurrent batches merged into one Embed call, at most (<= embedding's batch limit)",
    ),
    Setting(
        "RETAILFACE_GATEWAY_MEMBER_CACHE_SECONDS",
        parse_positive_float,
        2.0,
        "how long consent and greeting preferences are cached (revocations take effect within this time)",
    ),
    Setting(
        "RETAILFACE_GATEWAY_DEADLINE_SECONDS",
        parse_positive_float,
        10.0,
        "deadline of each downstream call (detection, embedding, personalization)",
    ),
    Setting(
        "RETAILFACE_GATEWAY_MATCH_DEADLINE_SECONDS",
        parse_positive_float,
        1.0,
        "deadline of a gallery search; past it, frames are answered without identification",
    ),
]

END_OF_STREAM = "end-of-stream"  # request id of the last result of a stream, with its tracks' final events

METHOD_ROLES: dict[str, frozenset[str]] = {
    "ProcessFrames": frozenset({"camera"}),
    "StreamFrames": frozenset({"camera"}),
    "IdentifyOnce": frozenset({"camera", "pos"}),
    "EnrollMember": frozenset({"admin"}),
    "EraseMember": frozenset({"admin"}),
    "ListGalleries": frozenset({"admin"}),
    "GetCheckoutOffers": frozenset({"pos"}),
    "RecordPurchase": frozenset({"pos"}),
    "StreamStaffAlerts": frozenset({"staff"}),
}


def _forward_error(context: grpc.ServicerContext, error: grpc.RpcError, what: str) -> None:
    code = error.code()
    if code in DEGRADED_CODES:
        context.abort(grpc.StatusCode.UNAVAILABLE, f"{what} is unavailable: {error.details()}")
    context.abort(code, error.details() or what)


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self, backends: Backends, pipeline: FramePipeline, members: MemberCache, queue_size: int, deadline: float
    ) -> None:
        self.backends = backends
        self.pipeline = pipeline
        self.members = members
        self.queue_size = queue_size
        self.deadline = deadline

    # ------------------------------------------------------------------ cameras

    def ProcessFrames(
        self, request: gateway_pb2.FrameBatch, context: grpc.ServicerContext
    ) -> gateway_pb2.FrameBatchResult:
        if not request.frames:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the batch has no frames")
        if not request.request_id:
            request.request_id = uuid.uuid4().hex
        try:
            return self.pipeline.process(request)
        except grpc.RpcError as error:
            _forward_error(context, error, "detection")
            raise

    def StreamFrames(
        self, request_iterator: Iterator[gateway_pb2.FrameBatch], context: grpc.ServicerContext
    ) -> Iterator[gateway_pb2.FrameBatchResult]:
        # A bounded queue between the camera and the pipeline: when the pipeline falls behind, the
        # oldest batches are dropped (and counted) so memory and latency stay bounded.
        queue: deque[gateway_pb2.FrameBatch] = deque()
        state = {"dropped": 0, "done": False}
        cameras: set[str] = set()
        ready = threading.Condition()

        def read() -> None:
            try:
                for batch in request_iterator:
                    with ready:
                        if len(queue) >= self.queue_size:
                            state["dropped"] += len(queue.popleft().frames)
                        queue.append(batch)
                        ready.notify()
            except grpc.RpcError:
                pass  # the camera went away
            finally:
                with ready:
                    state["done"] = True
                    ready.notify()

        reader = threading.Thread(target=read, name="stream-reader", daemon=True)
        reader.start()
        try:
            while context.is_active():
                with ready:
                    while not queue and not state["done"]:
                        ready.wait(timeout=1.0)
                    if not queue and state["done"]:
                        break
                    batch = queue.popleft()
                    dropped = state["dropped"]
                if not batch.request_id:
                    batch.request_id = uuid.uuid4().hex
                cameras.update(frame.camera_id for frame in batch.frames)
                if not batch.frames:
                    yield gateway_pb2.FrameBatchResult(request_id=batch.request_id, dropped_frames=dropped)
                    continue
                try:
                    result = self.pipeline.process(batch)
                except grpc.RpcError as error:  # a bad batch answers for itself; the stream goes on
                    code = error.code()
                    status = common_pb2.ItemStatus(code=code.value[0], message=error.details() or "")
                    result = gateway_pb2.FrameBatchResult(
                        request_id=batch.request_id,
                        results=[
                            gateway_pb2.FrameResult(status=status, camera_id=f.camera_id, sequence=f.sequence)
                            for f in batch.frames
                        ],
                    )
                result.dropped_frames = dropped
                yield result
            if context.is_active():
                # The camera closed its stream: its tracks end now, and their events (zone dwell,
                # checkout, anonymous visits) come back in one last result.
                final = gateway_pb2.FrameBatchResult(request_id=END_OF_STREAM, dropped_frames=state["dropped"])
                final.results.extend(self.pipeline.end_camera(camera_id) for camera_id in sorted(cameras))
                cameras.clear()
                yield final
        finally:
            for camera_id in cameras:  # cancelled: the events are still sent to personalization
                self.pipeline.end_camera(camera_id)

    def IdentifyOnce(
        self, request: gateway_pb2.IdentifyOnceRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.IdentifyOnceResponse:
        face = self._single_face(request.frame, context, "the frame")
        response = gateway_pb2.IdentifyOnceResponse(decision=matching_pb2.DECISION_NO_MATCH)
        if not face.quality.passes:
            response.notes.append("the face does not pass the quality gates: " + _gates(face.quality))
            return response
        embedding = self._embed_one(face, context)
        try:
            found = self.backends.matching.Search(
                matching_pb2.SearchRequest(gallery="members", queries=[embedding], top_k=2), timeout=self.deadline
            ).results[0]
        except grpc.RpcError as error:
            _forward_error(context, error, "matching")
            raise
        response.decision = found.decision
        if found.decision != matching_pb2.DECISION_MATCH:
            return response
        candidate = found.candidates[0]
        member = self.members.get(candidate.subject_id)
        if member is None or not member.face_identification:
            response.decision = matching_pb2.DECISION_NO_MATCH
            response.notes.append("no active consent for face identification")
            return response
        audit.info(
            "identified",
            member_id=member.member_id,
            context=request.context or "kiosk",
            store_id=request.store_id,
            score=round(candidate.score, 4),
            method="IdentifyOnce",
        )
        response.identity.member_id = member.member_id
        response.identity.score = candidate.score
        response.identity.agreeing_frames = 1
        response.identity.window_frames = 1
        if member.allow_greeting and member.staff_greeting:
            response.identity.display_name = member.display_name
        try:
            offers = self.backends.personalization.GetOffers(
                personalization_pb2.GetOffersRequest(
                    member_id=member.member_id, store_id=request.store_id, context=request.context or "kiosk"
                ),
                timeout=self.deadline,
            )
            response.offers.extend(offers.offers)
            response.notes.extend(offers.notes)
        except grpc.RpcError as error:
            response.notes.append(f"offers unavailable: {error.code().name}")
        return response

    # ------------------------------------------------------------------ admin

    def EnrollMember(
        self, request: gateway_pb2.EnrollMemberRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.EnrollMemberResponse:
        member = request.member
        if not member.member_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "member.member_id is required")
        if common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION not in member.consent.scopes:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the consent record must include the face_identification scope to enroll photos",
            )
        if not request.photos:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no photos: send one or more photos with one face each")
        frames = [common_pb2.Frame(encoded=photo, camera_id="enrollment") for photo in request.photos]
        try:
            detected = self.backends.detection.Detect(
                detection_pb2.DetectRequest(frames=frames, include_chips=True), timeout=self.deadline
            )
        except grpc.RpcError as error:
            _forward_error(context, error, "detection")
            raise
        response = gateway_pb2.EnrollMemberResponse(member_id=member.member_id)
        chips, photo_results = [], []
        for index, (photo, result) in enumerate(zip(request.photos, detected.results, strict=True)):
            outcome = gateway_pb2.PhotoResult(index=index)
            if result.status.code != 0:
                outcome.status.CopyFrom(result.status)
            elif len(result.faces) != 1:
                found = "no face" if not result.faces else f"{len(result.faces)} faces"
                outcome.status.CopyFrom(
                    common_pb2.ItemStatus(
                        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                        message=f"photo {index}: {found} found; enrollment needs exactly one face",
                    )
                )
            else:
                face = result.faces[0]
                outcome.quality.CopyFrom(face.quality)
                if not face.quality.passes:
                    outcome.status.CopyFrom(
                        common_pb2.ItemStatus(
                            code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                            message=f"photo {index}: the face fails the quality gates ({_gates(face.quality)})",
                        )
                    )
                else:
                    outcome.template_id = f"{member.member_id}:{hashlib.sha256(photo).hexdigest()[:16]}"
                    chips.append(face.chip)
            photo_results.append(outcome)
        response.photos.extend(photo_results)
        if not chips:
            problems = "; ".join(p.status.message for p in photo_results)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no usable photo: {problems}")
        try:
            embedded = self.backends.embedding.Embed(embedding_pb2.EmbedRequest(chips=chips), timeout=self.deadline)
            self.backends.personalization.UpsertMember(member, timeout=self.deadline)
            templates = [
                matching_pb2.Template(template_id=p.template_id, embedding=r.embedding)
                for p, r in zip([p for p in photo_results if p.template_id], embedded.results, strict=True)
            ]
            enrolled = self.backends.matching.Enroll(
                matching_pb2.EnrollRequest(
                    gallery="members",
                    subject_id=member.member_id,
                    templates=templates,
                    tags=["consent:face_identification"],
                ),
                timeout=self.deadline,
            )
        except grpc.RpcError as error:
            _forward_error(context, error, "enrollment")
            raise
        self.members.forget(member.member_id)
        response.templates_added = enrolled.added
        audit.info("enrolled", member_id=member.member_id, templates=enrolled.added, actor=request.actor)
        return response

    def EraseMember(
        self, request: gateway_pb2.EraseMemberRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.EraseMemberResponse:
        if not request.member_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "member_id is required")
        try:
            # Templates first: from the next frame on, the person cannot be matched any more.
            erased = self.backends.matching.EraseSubject(
                matching_pb2.EraseSubjectRequest(gallery="", subject_id=request.member_id), timeout=self.deadline
            )
            self.members.forget(request.member_id)
            removed = self.backends.personalization.EraseMember(
                personalization_pb2.EraseMemberDataRequest(
                    member_id=request.member_id, actor=request.actor, reason=request.reason
                ),
                timeout=self.deadline,
            )
        except grpc.RpcError as error:
            _forward_error(context, error, "erasure")
            raise
        self.members.forget(request.member_id)
        audit.info(
            "erased",
            member_id=request.member_id,
            actor=request.actor,
            reason=request.reason,
            templates=erased.templates_removed,
        )
        return gateway_pb2.EraseMemberResponse(
            templates_removed=erased.templates_removed, rows_removed=dict(removed.rows_removed)
        )

    def ListGalleries(
        self, request: matching_pb2.ListGalleriesRequest, context: grpc.ServicerContext
    ) -> matching_pb2.ListGalleriesResponse:
        try:
            return self.backends.matching.ListGalleries(request, timeout=self.deadline)
        except grpc.RpcError as error:
            _forward_error(context, error, "matching")
            raise

    # ------------------------------------------------------------------ POS and staff

    def GetCheckoutOffers(
        self, request: personalization_pb2.CheckoutOffersRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.CheckoutOffersResponse:
        try:
            return self.backends.personalization.GetCheckoutOffers(request, timeout=self.deadline)
        except grpc.RpcError as error:
            _forward_error(context, error, "personalization")
            raise

    def RecordPurchase(
        self, request: personalization_pb2.Purchase, context: grpc.ServicerContext
    ) -> personalization_pb2.RecordPurchaseResponse:
        try:
            return self.backends.personalization.RecordPurchase(request, timeout=self.deadline)
        except grpc.RpcError as error:
            _forward_error(context, error, "personalization")
            raise

    def StreamStaffAlerts(
        self, request: personalization_pb2.StaffAlertsRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.StaffAlert]:
        stream = self.backends.personalization.StreamStaffAlerts(request)
        context.add_callback(stream.cancel)
        try:
            yield from stream
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                _forward_error(context, error, "personalization")

    # ------------------------------------------------------------------ helpers

    def _single_face(self, frame: common_pb2.Frame, context: grpc.ServicerContext, what: str) -> common_pb2.Face:
        try:
            result = self.backends.detection.Detect(
                detection_pb2.DetectRequest(frames=[frame], include_chips=True), timeout=self.deadline
            ).results[0]
        except grpc.RpcError as error:
            _forward_error(context, error, "detection")
            raise
        if result.status.code != 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, result.status.message)
        if not result.faces:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no face found in {what}")
        return max(result.faces, key=lambda face: face.box.width * face.box.height)

    def _embed_one(self, face: common_pb2.Face, context: grpc.ServicerContext) -> common_pb2.Embedding:
        try:
            result = self.backends.embedding.Embed(
                embedding_pb2.EmbedRequest(chips=[face.chip]), timeout=self.deadline
            ).results[0]
        except grpc.RpcError as error:
            _forward_error(context, error, "embedding")
            raise
        return result.embedding


def _gates(quality: common_pb2.FaceQuality) -> str:
    names = [common_pb2.QualityGate.Name(gate).removeprefix("QUALITY_GATE_").lower() for gate in quality.failed_gates]
    return ", ".join(names) or "unknown"


def build(config: ServiceConfig) -> Registration:
    deadline = float(config.get("RETAILFACE_GATEWAY_DEADLINE_SECONDS"))
    backends = Backends.connect(config)
    members = MemberCache(
        backends.personalization, float(config.get("RETAILFACE_GATEWAY_MEMBER_CACHE_SECONDS")), deadline
    )
    relay = EventRelay(backends.personalization, deadline)
    tracker = TrackerConfig(
        min_hits=int(config.get("RETAILFACE_GATEWAY_TRACK_MIN_HITS")),
        max_missed_seconds=float(config.get("RETAILFACE_GATEWAY_TRACK_MAX_MISSED_SECONDS")),
        identity_k=int(config.get("RETAILFACE_GATEWAY_IDENTITY_K")),
        identity_n=int(config.get("RETAILFACE_GATEWAY_IDENTITY_N")),
    )
    if tracker.identity_k > tracker.identity_n:
        raise ValueError("RETAILFACE_GATEWAY_IDENTITY_K must not exceed RETAILFACE_GATEWAY_IDENTITY_N")
    pipeline = FramePipeline(
        backends,
        members,
        relay,
        PipelineConfig(
            tracker=tracker,
            cameras=load_cameras(config.get("RETAILFACE_GATEWAY_CAMERAS_FILE")),
            enter_cooldown_seconds=float(config.get("RETAILFACE_GATEWAY_ENTER_COOLDOWN_SECONDS")),
            detect_deadline=deadline,
            embed_deadline=deadline,
            match_deadline=float(config.get("RETAILFACE_GATEWAY_MATCH_DEADLINE_SECONDS")),
            batch_max_frames=int(config.get("RETAILFACE_GATEWAY_BATCH_MAX_FRAMES")),
            batch_max_chips=int(config.get("RETAILFACE_GATEWAY_BATCH_MAX_CHIPS")),
        ),
    )
    servicer = GatewayServicer(
        backends, pipeline, members, int(config.get("RETAILFACE_GATEWAY_STREAM_QUEUE")), deadline
    )

    def stop() -> None:
        pipeline.close()
        relay.close()
        backends.close()

    return Registration(
        servicer=servicer,
        add_to_server=gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
        service_name="retailface.v1.GatewayService",
        method_roles=METHOD_ROLES,
        on_stop=stop,
    )
