"""The gateway's view of the backend services: stubs with deadlines, a member/consent cache, and
a relay that keeps visit events while personalization is unreachable and sends them when it is back."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import grpc
import structlog

from retailface.services.shared.channels import open_channel
from retailface.services.shared.config import ServiceConfig
from retailface.v1 import (
    common_pb2,
    detection_pb2_grpc,
    embedding_pb2_grpc,
    matching_pb2_grpc,
    personalization_pb2,
    personalization_pb2_grpc,
)

log = structlog.get_logger(__name__)

# Unavailable or overloaded backends: the gateway degrades instead of failing the whole batch.
DEGRADED_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


@dataclass
class Backends:
    detection: detection_pb2_grpc.DetectionServiceStub
    embedding: embedding_pb2_grpc.EmbeddingServiceStub
    matching: matching_pb2_grpc.MatchingServiceStub
    personalization: personalization_pb2_grpc.PersonalizationServiceStub
    channels: tuple[grpc.Channel, ...]

    @classmethod
    def connect(cls, cfg: ServiceConfig) -> Backends:
        channels = tuple(
            open_channel(cfg.get(f"RETAILFACE_GATEWAY_{name}_ADDR"), cfg)
            for name in ("DETECTION", "EMBEDDING", "MATCHING", "PERSONALIZATION")
        )
        return cls(
            detection_pb2_grpc.DetectionServiceStub(channels[0]),
            embedding_pb2_grpc.EmbeddingServiceStub(channels[1]),
            matching_pb2_grpc.MatchingServiceStub(channels[2]),
            personalization_pb2_grpc.PersonalizationServiceStub(channels[3]),
            channels,
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


@dataclass(frozen=True)
class MemberView:
    """What the gateway may know of a member when deciding whether to identify and greet."""

    member_id: str
    display_name: str
    face_identification: bool
    staff_greeting: bool
    allow_greeting: bool


class MemberCache:
    """Consent and greeting preferences per member, refreshed often.

    Consent changes (revocations above all) must take effect at once, so entries live only
    `ttl` seconds; when personalization is unreachable the last known state is used rather
    than stopping identification, and a member never seen before is not identified.
    """

    def __init__(self, stub: personalization_pb2_grpc.PersonalizationServiceStub, ttl: float, deadline: float):
        self._stub = stub
        self._ttl = ttl
        self._deadline = deadline
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, MemberView | None]] = {}

    def get(self, member_id: str) -> MemberView | None:
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(member_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            member = self._stub.GetMember(
                personalization_pb2.GetMemberRequest(member_id=member_id), timeout=self._deadline
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                view = None
            elif cached is not None:
                log.warning("member_cache_stale", member_id=member_id, code=error.code().name)
                return cached[1]
            else:
                log.warning("member_unknown_personalization_down", member_id=member_id, code=error.code().name)
                return None
        else:
            view = _member_view(member)
        with self._lock:
            self._entries[member_id] = (now, view)
        return view

    def forget(self, member_id: str) -> None:
        with self._lock:
            self._entries.pop(member_id, None)


def _member_view(member: personalization_pb2.Member) -> MemberView:
    active = not member.consent.HasField("revoked_at") and bool(member.consent.policy_version or member.consent.scopes)
    scopes = set(member.consent.scopes) if active else set()
    return MemberView(
        member_id=member.member_id,
        display_name=member.preferences.preferred_name or member.display_name,
        face_identification=common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION in scopes,
        staff_greeting=common_pb2.CONSENT_SCOPE_STAFF_GREETING in scopes,
        allow_greeting=member.preferences.allow_greeting,
    )


class EventRelay:
    """Sends visit events to personalization in order; keeps them while it is unreachable.

    `send_now` tries once inline (so the frame's result can carry the offers and alerts it
    produced); on failure the event is queued and a background thread retries with backoff.
    Events are never dropped silently: the queue is bounded and overflow is logged and counted.
    """

    def __init__(
        self, stub: personalization_pb2_grpc.PersonalizationServiceStub, deadline: float, max_pending: int = 100_000
    ) -> None:
        self._stub = stub
        self._deadline = deadline
        self._pending: deque[personalization_pb2.VisitEvent] = deque()
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._drain, name="event-relay", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def send_now(self, event: personalization_pb2.VisitEvent) -> personalization_pb2.VisitEventResult | None:
        with self._lock:
            backlog = bool(self._pending)
        if not backlog:  # keep order: behind a backlog, new events queue too
            try:
                return self._stub.RecordVisitEvent(event, timeout=self._deadline)
            except grpc.RpcError as error:
                if error.code() not in DEGRADED_CODES:
                    log.error(
                        "visit_event_rejected", event_id=event.event_id, code=error.code().name, details=error.details()
                    )
                    return None
        self._enqueue(event)
        return None

    def _enqueue(self, event: personalization_pb2.VisitEvent) -> None:
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self._pending.popleft()
                self.dropped += 1
                log.error("visit_event_overflow", dropped=self.dropped)
            self._pending.append(event)
        self._wake.set()

    def _drain(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while not self._stop.is_set():
                with self._lock:
                    event = self._pending[0] if self._pending else None
                if event is None:
                    break
                try:
                    self._stub.RecordVisitEvent(event, timeout=self._deadline)
                except grpc.RpcError as error:
                    if error.code() in DEGRADED_CODES:
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                    log.error("visit_event_rejected", event_id=event.event_id, code=error.code().name)
                backoff = 0.1
                with self._lock:
                    if self._pending and self._pending[0] is event:
                        self._pending.popleft()

    def close(self, flush_seconds: float = 2.0) -> None:
        deadline = time.monotonic() + flush_seconds
        while self.pending and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2)
        if self.pending:
            log.error("visit_events_unsent_at_shutdown", count=self.pending)
