"""Notification outbox: at-least-once delivery to members' phones, with idempotency keys.

A notification is written to `notification_outbox` in the same transaction as the change that
caused it (so it is never lost, and never sent for a change that rolled back). A worker thread
sends due notifications through their channel (an HTTP webhook, or the log for the demo); a
failure or a timeout schedules a retry with exponential backoff (capped), and after
`max_attempts` the row is kept as `dead` for an operator, never deleted. The receiver sees the
same Idempotency-Key on every retry of one notification, so it can apply it exactly once.
No RPC ever waits for a channel: enqueueing is a row insert. Several replicas share the table:
each notification is claimed and sent by one of them (`OutboxWorker`).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, Engine, func, select, update

from retailface.services.personalization import db
from retailface.services.shared.periodic import PeriodicWorker

log = structlog.get_logger(__name__)

STATUS_PENDING = "pending"
STATUS_DELIVERED = "delivered"
STATUS_CANCELLED = "cancelled"
STATUS_DEAD = "dead"

OUTBOX_PENDING = Gauge("retailface_outbox_pending", "notifications waiting to be delivered (the backlog)")
OUTBOX_FAILURES = Counter(
    "retailface_outbox_delivery_failures_total", "failed notification delivery attempts", ["channel"]
)


class DeliveryError(Exception):
    """The channel did not accept the notification (the outbox retries it)."""


class NotificationChannel(Protocol):
    def send(self, idempotency_key: str, address: str, payload: Mapping[str, Any]) -> None: ...


class LogChannel:
    """Writes the notification to the service log (the demo's 'phone')."""

    def send(self, idempotency_key: str, address: str, payload: Mapping[str, Any]) -> None:
        log.info(
            "notification_sent",
            channel="log",
            idempotency_key=idempotency_key,
            address=address,
            kind=payload.get("kind"),
            offers=len(payload.get("offers", ())),
        )


class WebhookChannel:
    """POSTs the notification as JSON with an Idempotency-Key header; any non-2xx or timeout fails."""

    def __init__(self, url: str, timeout_seconds: float = 5.0, bearer_token: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://, got {url!r}")
        self.url = url
        self.timeout_seconds = timeout_seconds
        self._bearer_token = bearer_token

    def send(self, idempotency_key: str, address: str, payload: Mapping[str, Any]) -> None:
        body = json.dumps({"address": address, **payload}).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            "User-Agent": "retailface-personalization",
        }
        if self._bearer_token:
            headers["Authorization"] = f"Bearer {self._bearer_token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise DeliveryError(f"webhook answered HTTP {error.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise DeliveryError(f"webhook unreachable: {getattr(error, 'reason', error)}") from None


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    max_attempts: int = 20

    def delay(self, attempts: int) -> float:
        return float(min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1)))


def enqueue(
    engine: Engine,
    conn: Connection,
    *,
    idempotency_key: str,
    member_id: str | None,
    channel: str,
    address: str,
    payload: Mapping[str, Any],
    now: float,
) -> bool:
    """Adds a notification inside the caller's transaction; False when the key was already queued."""
    # RETURNING says whether a row went in, on both dialects (psycopg reports rowcount -1 for this insert).
    inserted = conn.execute(
        db.insert_ignoring_duplicates(engine, db.notification_outbox).returning(db.notification_outbox.c.id),
        {
            "idempotency_key": idempotency_key,
            "member_id": member_id,
            "channel": channel,
            "address": address,
            "payload": json.dumps(payload),
            "status": STATUS_PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "created_at": now,
            "delivered_at": None,
        },
    ).first()
    return inserted is not None


def cancel_pending(conn: Connection, member_id: str) -> int:
    """Cancels the member's undelivered notifications (consent revoked)."""
    result = conn.execute(
        update(db.notification_outbox)
        .where(db.notification_outbox.c.member_id == member_id, db.notification_outbox.c.status == STATUS_PENDING)
        .values(status=STATUS_CANCELLED, last_error="consent revoked")
    )
    return int(result.rowcount)


@dataclass(frozen=True)
class Claim:
    """A notification this worker holds the lease on: nobody else sends it until `next_attempt_at` passes."""

    id: int
    idempotency_key: str
    channel: str
    address: str
    payload: str
    attempts: int  # including this one; it fences the claim: a stale worker's update matches no row


class OutboxWorker:
    """Drains the outbox in a background thread: a pass at start, then every `poll_seconds` or when woken.

    `deliver_due()` is one pass (tests call it directly); passes of one worker never overlap.

    Several replicas each run a worker on the same table; each notification is sent by one of them.
    A worker claims one due row at a time in a short transaction: `SELECT ... FOR UPDATE SKIP LOCKED`
    (a row another replica is claiming is skipped, not waited for), then pushes its `next_attempt_at`
    `lease_seconds` ahead and counts the attempt. The row is then not due for anyone while this
    worker sends it, outside any transaction. Success marks it delivered; failure schedules the
    retry. A worker that dies mid-way (claimed, never completed) leaves the row pending: once the
    lease has passed it is due again and another worker sends it, with the same Idempotency-Key.
    The lease must outlast one send (the channel's timeout); the completion only applies while the
    row still carries this claim's attempt number. SQLite renders no FOR UPDATE: its one write lock
    serialises the claims.
    """

    def __init__(
        self,
        engine: Engine,
        channels: Mapping[str, NotificationChannel],
        policy: RetryPolicy,
        poll_seconds: float = 1.0,
        batch_size: int = 50,
        lease_seconds: float = 60.0,
    ) -> None:
        self._engine = engine
        self._channels = dict(channels)
        self._policy = policy
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds
        self._pass_lock = threading.Lock()  # one pass at a time in this process
        self._worker = PeriodicWorker("personalization-outbox", poll_seconds, self._background_pass, run_first=True)

    @property
    def channel_kinds(self) -> frozenset[str]:
        return frozenset(self._channels)

    def deliver_due(self, now: float | None = None) -> int:
        """Sends every due notification once (at most `batch_size`); returns how many were delivered."""
        with self._pass_lock:
            now = time.time() if now is None else now
            attempted: list[int] = []
            delivered = 0
            while len(attempted) < self._batch_size and not self._worker.stopping:
                claim = self.claim(now, exclude=attempted)
                if claim is None:
                    break
                attempted.append(claim.id)
                delivered += self._attempt(claim)
            return delivered

    def claim(self, now: float | None = None, exclude: Sequence[int] = ()) -> Claim | None:
        """Takes the lease on the most overdue pending notification (None when nothing is due)."""
        now = time.time() if now is None else now
        outbox = db.notification_outbox
        due = (
            select(
                outbox.c.id,
                outbox.c.idempotency_key,
                outbox.c.channel,
                outbox.c.address,
                outbox.c.payload,
                outbox.c.attempts,
            )
            .where(outbox.c.status == STATUS_PENDING, outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if exclude:
            due = due.where(outbox.c.id.not_in(exclude))
        with db.write(self._engine) as conn:
            row = conn.execute(due).first()
            if row is None:
                return None
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(next_attempt_at=now + self._lease_seconds, attempts=row.attempts + 1)
            )
        return Claim(row.id, row.idempotency_key, row.channel, row.address, row.payload, row.attempts + 1)

    def _complete(self, claim: Claim, **values: Any) -> bool:
        """Applies the outcome of a claim's attempt, unless another worker has re-claimed the row since."""
        outbox = db.notification_outbox
        with db.write(self._engine) as conn:
            result = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == claim.id,
                    outbox.c.attempts == claim.attempts,
                    outbox.c.status == STATUS_PENDING,
                )
                .values(**values)
            )
        if not result.rowcount:
            log.warning("notification_claim_lost", idempotency_key=claim.idempotency_key, attempts=claim.attempts)
        return bool(result.rowcount)

    def _attempt(self, claim: Claim) -> int:
        channel = self._channels.get(claim.channel)
        try:
            if channel is None:
                raise DeliveryError(f"channel {claim.channel!r} is not configured")
            channel.send(claim.idempotency_key, claim.address, json.loads(claim.payload))
        except Exception as error:  # any failure of a channel is retried; it must never kill the worker
            OUTBOX_FAILURES.labels(claim.channel).inc()
            dead = claim.attempts >= self._policy.max_attempts
            self._complete(
                claim,
                last_error=str(error)[:500],
                next_attempt_at=time.time() + self._policy.delay(claim.attempts),
                status=STATUS_DEAD if dead else STATUS_PENDING,
            )
            log.warning(
                "notification_failed",
                idempotency_key=claim.idempotency_key,
                channel=claim.channel,
                attempts=claim.attempts,
                error=str(error),
                dead=dead,
            )
            return 0
        self._complete(claim, status=STATUS_DELIVERED, delivered_at=time.time(), last_error="")
        return 1

    def pending(self) -> int:
        outbox = db.notification_outbox
        with db.read(self._engine) as conn:
            count = conn.execute(select(func.count()).where(outbox.c.status == STATUS_PENDING)).scalar_one()
        return int(count)

    def _background_pass(self) -> None:
        self.deliver_due()
        OUTBOX_PENDING.set(self.pending())

    def wake(self) -> None:
        """Runs a pass now (something was just queued) instead of at the next poll."""
        self._worker.wake()

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._worker.stop(timeout)
