"""Gateway servicer: the front door for cameras, kiosks, POS systems, staff devices and admin tools.

Thin: frame batches go to the FramePipeline (streams through `frame_stream`), identification
from one frame, enrollment and erasure to `MemberOperations`; the POS, staff and gallery calls
are passed on to the backend that answers them. Roles per method are part of the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from retailface.services.gateway.backends import Backends
from retailface.services.gateway.cameras import CameraRegistry, list_cameras
from retailface.services.gateway.frame_stream import serve_stream
from retailface.services.gateway.members import MemberCache
from retailface.services.gateway.orchestration import MemberOperations
from retailface.services.gateway.pipeline import FramePipeline, PipelineConfig
from retailface.services.gateway.relay import EventRelay
from retailface.services.gateway.tracker import TrackerConfig
from retailface.services.shared.config import (
    ServiceConfig,
    Setting,
    parse_positive_float,
    parse_positive_int,
)
from retailface.services.shared.errors import InvalidArgument, calling, from_rpc_error
from retailface.services.shared.periodic import PeriodicWorker
from retailface.services.shared.server import Registration
from retailface.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, matching_pb2, personalization_pb2

Reply = TypeVar("Reply")

SETTINGS: list[Setting] = [
    Setting("RETAILFACE_GATEWAY_DETECTION_ADDR", str, "127.0.0.1:50051", "detection service address"),
    Setting("RETAILFACE_GATEWAY_EMBEDDING_ADDR", str, "127.0.0.1:50052", "embedding service address"),
    Setting("RETAILFACE_GATEWAY_MATCHING_ADDR", str, "127.0.0.1:50053", "matching service address"),
    Setting("RETAILFACE_GATEWAY_PERSONALIZATION_ADDR", str, "127.0.0.1:50054", "personalization service address"),
    Setting(
        "RETAILFACE_GATEWAY_CAMERAS_REFRESH_SECONDS",
        parse_positive_float,
        5.0,
        "how often the cameras registered in personalization (RegisterCamera) are reloaded; a frame of a camera "
        "not yet known reloads them at once (at most once a second)",
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
        "RETAILFACE_GATEWAY_CAMERA_IDLE_SECONDS",
        parse_positive_float,
        10.0,
        "a camera that sends no frame for this long (its stream broke and did not resume) has its tracks "
        "ended: their events are sent and their embeddings dropped",
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

METHOD_ROLES: dict[str, frozenset[str]] = {
    "ProcessFrames": frozenset({"camera"}),
    "StreamFrames": frozenset({"camera"}),
    "IdentifyOnce": frozenset({"camera", "pos"}),
    "EnrollMember": frozenset({"admin"}),
    "EraseMember": frozenset({"admin", "privacy"}),  # the privacy office erases with a receipt
    "ListGalleries": frozenset({"admin"}),
    "GetCheckoutOffers": frozenset({"pos"}),
    "RecordPurchase": frozenset({"pos"}),
    "StreamStaffAlerts": frozenset({"staff"}),
}


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self,
        backends: Backends,
        pipeline: FramePipeline,
        operations: MemberOperations,
        queue_size: int,
        deadline: float,
    ) -> None:
        self.backends = backends
        self.pipeline = pipeline
        self.operations = operations
        self.queue_size = queue_size
        self.deadline = deadline

    # ------------------------------------------------------------------ cameras

    def ProcessFrames(
        self, request: gateway_pb2.FrameBatch, context: grpc.ServicerContext
    ) -> gateway_pb2.FrameBatchResult:
        if not request.frames:
            raise InvalidArgument("the batch has no frames")
        return self.pipeline.process(request)

    def StreamFrames(
        self, request_iterator: Iterator[gateway_pb2.FrameBatch], context: grpc.ServicerContext
    ) -> Iterator[gateway_pb2.FrameBatchResult]:
        yield from serve_stream(self.pipeline, request_iterator, self.queue_size, context.is_active)

    def IdentifyOnce(
        self, request: gateway_pb2.IdentifyOnceRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.IdentifyOnceResponse:
        return self.operations.identify_once(request)

    # ------------------------------------------------------------------ admin

    def EnrollMember(
        self, request: gateway_pb2.EnrollMemberRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.EnrollMemberResponse:
        return self.operations.enroll(request)

    def EraseMember(
        self, request: gateway_pb2.EraseMemberRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.EraseMemberResponse:
        return self.operations.erase(request)

    def ListGalleries(
        self, request: matching_pb2.ListGalleriesRequest, context: grpc.ServicerContext
    ) -> matching_pb2.ListGalleriesResponse:
        return self._pass_on("matching", self.backends.matching.ListGalleries, request)

    # ------------------------------------------------------------------ POS and staff

    def GetCheckoutOffers(
        self, request: personalization_pb2.CheckoutOffersRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.CheckoutOffersResponse:
        return self._pass_on("personalization", self.backends.personalization.GetCheckoutOffers, request)

    def RecordPurchase(
        self, request: personalization_pb2.Purchase, context: grpc.ServicerContext
    ) -> personalization_pb2.RecordPurchaseResponse:
        return self._pass_on("personalization", self.backends.personalization.RecordPurchase, request)

    def StreamStaffAlerts(
        self, request: personalization_pb2.StaffAlertsRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.StaffAlert]:
        stream = self.backends.personalization.StreamStaffAlerts(request)
        context.add_callback(stream.cancel)
        try:
            yield from stream
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:  # cancelled: the staff device went away
                raise from_rpc_error(error, "personalization") from error

    def _pass_on(self, service: str, call: Callable[..., Reply], request: Any) -> Reply:
        """The backend's answer to the same request, within the gateway's deadline."""
        with calling(service):
            return call(request, timeout=self.deadline)


def build(config: ServiceConfig) -> Registration:
    deadline = float(config.get("RETAILFACE_GATEWAY_DEADLINE_SECONDS"))
    backends = Backends.connect(config)
    members = MemberCache(
        backends.personalization, float(config.get("RETAILFACE_GATEWAY_MEMBER_CACHE_SECONDS")), deadline
    )
    relay = EventRelay(backends.personalization, deadline)
    cameras = CameraRegistry(
        list_cameras(backends.personalization, deadline),
        float(config.get("RETAILFACE_GATEWAY_CAMERAS_REFRESH_SECONDS")),
    )
    cameras.start()
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
            enter_cooldown_seconds=float(config.get("RETAILFACE_GATEWAY_ENTER_COOLDOWN_SECONDS")),
            detect_deadline=deadline,
            embed_deadline=deadline,
            match_deadline=float(config.get("RETAILFACE_GATEWAY_MATCH_DEADLINE_SECONDS")),
            batch_max_frames=int(config.get("RETAILFACE_GATEWAY_BATCH_MAX_FRAMES")),
            batch_max_chips=int(config.get("RETAILFACE_GATEWAY_BATCH_MAX_CHIPS")),
        ),
        cameras,
    )
    servicer = GatewayServicer(
        backends,
        pipeline,
        MemberOperations(backends, members, deadline),
        int(config.get("RETAILFACE_GATEWAY_STREAM_QUEUE")),
        deadline,
    )

    idle_seconds = float(config.get("RETAILFACE_GATEWAY_CAMERA_IDLE_SECONDS"))
    reaper = PeriodicWorker("gateway-idle-cameras", 1.0, lambda: pipeline.end_idle_cameras(idle_seconds))
    reaper.start()

    def stop() -> None:
        reaper.stop()
        cameras.stop()
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
