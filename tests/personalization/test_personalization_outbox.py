"""Notifications: at-least-once delivery through a real HTTP webhook, retries, idempotency keys."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from personalization_helpers import STORE, abandon_cart, members_without_online_events, prepare_member, stocked_sku
from sqlalchemy import Engine, select

from retailface.services.personalization import db, outbox
from retailface.services.personalization.domain import Channel, VisitEvent
from retailface.services.personalization.service import Personalization


class Receiver:
    """A webhook receiver on 127.0.0.1 that fails, hangs or succeeds as scripted, and applies each key once."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.lock = threading.Lock()
        self.seen: list[str] = []  # Idempotency-Key of every request, in order
        self.applied: dict[str, dict] = {}  # what the receiving app acted on, once per key
        self.hanging = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                with receiver.lock:
                    receiver.seen.append(key)
                    action = receiver.script.pop(0) if receiver.script else "ok"
                if action == "fail":
                    self.send_response(503)
                    self.end_headers()
                    return
                if action == "hang":  # processes it late: the sender has timed out and will retry
                    receiver.hanging.set()
                    receiver.release.wait(10)
                with receiver.lock:
                    receiver.applied.setdefault(key, body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator:
    receivers: list[Receiver] = []

    def make(script: list[str]) -> Receiver:
        receivers.append(Receiver(script))
        return receivers[-1]

    yield make
    for receiver in receivers:
        receiver.close()


def _statuses(engine: Engine) -> dict[str, tuple[str, int]]:
    with db.read(engine) as conn:
        rows = conn.execute(
            select(
                db.notification_outbox.c.idempotency_key,
                db.notification_outbox.c.status,
                db.notification_outbox.c.attempts,
            )
        ).all()
    return {row.idempotency_key: (row.status, row.attempts) for row in rows}


def test_webhook_retries_after_failures_and_delivers_once_per_key(engine: Engine, receiver_factory) -> None:
    receiver = receiver_factory(["fail", "fail", "hang"])
    worker = outbox.OutboxWorker(
        engine,
        {"webhook": outbox.WebhookChannel(receiver.url, timeout_seconds=0.3)},
        outbox.RetryPolicy(base_seconds=0.01, max_seconds=0.05, max_attempts=10),
    )
    now = time.time()
    with db.write(engine) as conn:
        for number in range(3):
            assert outbox.enqueue(
                engine,
                conn,
                idempotency_key=f"key-{number}",
                member_id="m00001",
                channel="webhook",
                address=f"token-{number}",
                payload={"kind": "offers", "n": number},
                now=now,
            )
        # The same notification queued again (a retried RPC) is not queued twice.
        assert not outbox.enqueue(
            engine,
            conn,
            idempotency_key="key-0",
            member_id="m00001",
            channel="webhook",
            address="token-0",
            payload={"kind": "offers", "n": 0},
            now=now,
        )

    passes = 0
    while any(status != "delivered" for status, _ in _statuses(engine).values()):
        worker.deliver_due(now=time.time() + 3600)  # every retry is due
        passes += 1
        assert passes < 10, _statuses(engine)
    receiver.release.set()

    statuses = _statuses(engine)
    assert statuses["key-0"][1] >= 2  # it failed (503), failed again or hung, and was retried
    assert set(receiver.applied) == {"key-0", "key-1", "key-2"}
    assert {key: body["n"] for key, body in receiver.applied.items()} == {"key-0": 0, "key-1": 1, "key-2": 2}
    assert receiver.applied["key-1"]["address"] == "token-1"
    retried = [key for key in receiver.seen if receiver.seen.count(key) > 1]
    assert retried, "some key was sent more than once, always with the same Idempotency-Key"
    sent = len(receiver.seen)
    worker.deliver_due(now=time.time() + 7200)  # delivered notifications are never sent again
    assert len(receiver.seen) == sent


def test_hanging_webhook_never_blocks_a_call_nor_loses_the_notification(
    engine: Engine, seeded, receiver_factory
) -> None:
    from retailface.services.personalization.recommender import ModelHolder

    receiver = receiver_factory(["hang"])
    worker = outbox.OutboxWorker(
        engine,
        {"webhook": outbox.WebhookChannel(receiver.url, timeout_seconds=0.5), "log": outbox.LogChannel()},
        outbox.RetryPolicy(base_seconds=0.05, max_seconds=0.2),
        poll_seconds=0.05,
    )
    personalization = Personalization(engine, ModelHolder(lambda: seeded.model, 0, initial=seeded.model), worker=worker)
    first, second = members_without_online_events(engine, 2)
    for member_id in (first, second):
        prepare_member(personalization, member_id, channels=(Channel("webhook", f"token-{member_id}"),))
        abandon_cart(personalization, member_id, stocked_sku(engine)[0], f"cart-{member_id}")
    worker.start()
    try:
        personalization.visits.record(VisitEvent("h-1", "entered", STORE, time.time(), member_id=first))
        assert receiver.hanging.wait(10), "the worker posted the first notification"
        # The receiver is stuck on that POST; a visit still completes, and its push is queued.
        result = personalization.visits.record(VisitEvent("h-2", "entered", STORE, time.time(), member_id=second))
        assert result.offers_pushed and not receiver.release.is_set()
        receiver.release.set()
        deadline = time.monotonic() + 20
        while any(status != "delivered" for status, _ in _statuses(engine).values()):
            assert time.monotonic() < deadline, _statuses(engine)
            time.sleep(0.05)
    finally:
        worker.stop()
    assert len(receiver.applied) == 2
    assert {body["member_id"] for body in receiver.applied.values()} == {first, second}


def test_failing_channel_keeps_the_notification_as_dead_never_drops_it(engine: Engine) -> None:
    worker = outbox.OutboxWorker(
        engine,
        {"webhook": outbox.WebhookChannel("http://127.0.0.1:9/unreachable", 0.2)},
        outbox.RetryPolicy(base_seconds=0.01, max_seconds=0.01, max_attempts=3),
    )
    with db.write(engine) as conn:
        outbox.enqueue(
            engine,
            conn,
            idempotency_key="lost?",
            member_id=None,
            channel="webhook",
            address="x",
            payload={"kind": "offers"},
            now=time.time(),
        )
    for _ in range(4):
        worker.deliver_due(now=time.time() + 3600)
    assert _statuses(engine)["lost?"] == ("dead", 3)
