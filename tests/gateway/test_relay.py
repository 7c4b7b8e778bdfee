"""EventRelay: events reach personalization in order, also when it was out for a while."""

from __future__ import annotations

import time

import grpc
from gateway_fakes import FakePersonalization, FakeRpcError

from retailface.services.gateway.relay import EventRelay
from retailface.v1 import personalization_pb2


def _event(event_id: str) -> personalization_pb2.VisitEvent:
    return personalization_pb2.VisitEvent(event_id=event_id, store_id="s1")


def _wait_until_sent(relay: EventRelay, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while relay.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert relay.pending == 0, "the queued events were never sent"


def test_events_sent_while_personalization_is_out_arrive_later_in_order() -> None:
    personalization = FakePersonalization({})
    relay = EventRelay(personalization, deadline=1.0)  # type: ignore[arg-type]
    try:
        assert relay.send_now(_event("a")) is not None  # sent inline: its result comes back
        personalization.error = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")
        assert relay.send_now(_event("b")) is None and relay.send_now(_event("c")) is None
        assert relay.pending == 2
        time.sleep(0.3)  # retried with backoff meanwhile, still out
        assert relay.pending == 2
        personalization.error = None
        assert relay.send_now(_event("d")) is None  # behind a backlog, a new event waits its turn
        _wait_until_sent(relay)
        assert [event.event_id for event in personalization.events] == ["a", "b", "c", "d"]
    finally:
        relay.close()


def test_an_event_personalization_rejects_is_logged_and_not_queued() -> None:
    personalization = FakePersonalization({})
    relay = EventRelay(personalization, deadline=1.0)  # type: ignore[arg-type]
    try:
        personalization.error = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "no store")
        assert relay.send_now(_event("bad")) is None
        assert relay.pending == 0 and relay.dropped == 0
    finally:
        relay.close()


def test_a_full_queue_gives_up_its_oldest_event_and_counts_it() -> None:
    personalization = FakePersonalization({})
    personalization.error = FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    relay = EventRelay(personalization, deadline=1.0, max_pending=2)  # type: ignore[arg-type]
    try:
        for event_id in ("a", "b", "c"):
            relay.send_now(_event(event_id))
        assert relay.pending == 2 and relay.dropped == 1
        personalization.error = None
        _wait_until_sent(relay)
        assert [event.event_id for event in personalization.events] == ["b", "c"]
    finally:
        relay.close()
