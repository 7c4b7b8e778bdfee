"""`EventRelay`: visit events reach personalization in order, also across its outages."""

from __future__ import annotations

import threading
import time
from collections import deque

import grpc
import structlog

from retailface.services.gateway.backends import DEGRADED_CODES
from retailface.services.shared.periodic import PeriodicWorker
from retailface.v1 import personalization_pb2, personalization_pb2_grpc

log = structlog.get_logger(__name__)

RETRY_TICK_SECONDS = 0.25  # how often the background pass looks for queued events
FIRST_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 5.0


class EventRelay:
    """Sends visit events to personalization in order; keeps them while it is unreachable.

    `send_now` tries once inline (so the frame's result can carry the offers and alerts it
    produced); on failure the event is queued and a background worker retries with backoff.
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
        self.dropped = 0
        self._backoff = FIRST_BACKOFF_SECONDS
        self._retry_at = 0.0  # monotonic time before which an outage is not retried
        self._worker = PeriodicWorker("event-relay", RETRY_TICK_SECONDS, self._drain)
        self._worker.start()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def send_now(self, event: personalization_pb2.VisitEvent) -> personalization_pb2.VisitEventResult | None:
        if not self.pending:  # keep order: behind a backlog, new events queue too
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
        self._worker.wake()

    def _drain(self) -> None:
        """One pass: sends the queued events in order until none is left or personalization is out."""
        if time.monotonic() < self._retry_at:
            return
        while not self._worker.stopping:
            with self._lock:
                event = self._pending[0] if self._pending else None
            if event is None:
                return
            try:
                self._stub.RecordVisitEvent(event, timeout=self._deadline)
            except grpc.RpcError as error:
                if error.code() in DEGRADED_CODES:
                    self._retry_at = time.monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
                    return
                log.error("visit_event_rejected", event_id=event.event_id, code=error.code().name)
            self._backoff = FIRST_BACKOFF_SECONDS
            with self._lock:
                if self._pending and self._pending[0] is event:
                    self._pending.popleft()

    def close(self, flush_seconds: float = 2.0) -> None:
        deadline = time.monotonic() + flush_seconds
        while self.pending and time.monotonic() < deadline:
            self._worker.wake()
            time.sleep(0.05)
        self._worker.stop(timeout=2)
        if self.pending:
            log.error("visit_events_unsent_at_shutdown", count=self.pending)
