"""What chaos asserts once the faults are over: the visit events, offers and staff alerts the cameras
were told about, against what personalization stored (its database, read only) and what a staff
screen received."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import create_engine, select

from retailface.client import Connection, StaffClient
from retailface.services.personalization import db
from retailface.v1 import personalization_pb2


class StaffScreen(threading.Thread):
    """A staff device on the store's alert stream, subscribing again whenever the stream breaks."""

    def __init__(self, connect: Any, store_id: str) -> None:
        super().__init__(name="staff-screen", daemon=True)
        self._connect = connect  # () -> Connection
        self.store_id = store_id
        self.received: list[str] = []
        self.breaks = 0
        self.stop_event = threading.Event()
        self._call: Any = None

    def run(self) -> None:
        while not self.stop_event.is_set():
            connection: Connection = self._connect()
            try:
                self._call = StaffClient(connection, self.store_id).alerts()
                for alert in self._call:
                    self.received.append(alert.alert_id)
            except grpc.RpcError:
                self.breaks += 1
            finally:
                connection.close()
            self.stop_event.wait(0.5)

    def stop(self) -> None:
        self.stop_event.set()
        if self._call is not None:
            self._call.cancel()


def stored(personalization_data: Path, since: float) -> dict[str, list[Any]]:
    """Visit events, offer deliveries and staff alerts personalization holds from `since` (epoch seconds)."""
    engine = create_engine(db.default_url(personalization_data))
    try:
        with engine.connect() as conn:
            events = conn.execute(
                select(
                    db.visit_events.c.event_id,
                    db.visit_events.c.type,
                    db.visit_events.c.camera_id,
                    db.visit_events.c.track_id,
                    db.visit_events.c.member_id,
                    db.visit_events.c.at,
                ).where(db.visit_events.c.at >= since)
            ).all()
            offers = conn.execute(
                select(
                    db.offer_deliveries.c.offer_id, db.offer_deliveries.c.member_id, db.offer_deliveries.c.sku
                ).where(db.offer_deliveries.c.delivered_at >= since)
            ).all()
            alerts = conn.execute(select(db.staff_alerts.c.alert_id).where(db.staff_alerts.c.raised_at >= since)).all()
            visits = conn.execute(
                select(db.visits.c.visit_id, db.visits.c.member_id).where(db.visits.c.started_at >= since)
            ).all()
    finally:
        engine.dispose()
    return {"events": list(events), "offers": list(offers), "alerts": [a[0] for a in alerts], "visits": list(visits)}


def event_type_name(kind: int) -> str:
    return personalization_pb2.VisitEventType.Name(kind).removeprefix("VISIT_EVENT_TYPE_").lower()


def check(
    reported_events: list[tuple[str, int, str, str, int]],
    reported_offers: list[tuple[str, str, str]],
    reported_alerts: list[str],
    received_alerts: list[str],
    db_rows: dict[str, list[Any]],
) -> dict[str, Any]:
    """Counts of every way an invariant could fail (each is 0 when it holds), with the totals checked."""

    # An event is the same event when its camera, type, track and time agree (the gateway's event id
    # is not on the frame result); the database keys events by id, so a re-sent event shows twice here.
    def key(camera: str, kind: str, track: str, at_seconds: float) -> tuple[str, str, str, int]:
        return camera, kind, track, round(at_seconds * 1000)

    stored_keys = Counter(key(e.camera_id, e.type, e.track_id, e.at) for e in db_rows["events"])
    reported_keys = Counter(key(c, event_type_name(t), track, at / 1e9) for c, t, _, track, at in reported_events)
    offer_ids = Counter(offer_id for offer_id, _, _ in reported_offers)
    visits_per_member = Counter(member for _, member in db_rows["visits"] if member)
    pushes = Counter((member, sku) for _, member, sku in db_rows["offers"])
    stored_alerts, received = set(db_rows["alerts"]), set(received_alerts)
    return {
        "visit_events_reported": sum(reported_keys.values()),
        "visit_events_stored": sum(stored_keys.values()),
        "visit_events_lost": sum(1 for k in reported_keys if k not in stored_keys),
        "visit_events_duplicated": sum(n - 1 for n in stored_keys.values() if n > 1),
        "offers_reported": len(reported_offers),
        "offers_reported_twice": sum(n - 1 for n in offer_ids.values() if n > 1),
        # one push of an item per visit at most: more pushes of a (member, sku) than the member's visits is a repeat
        "offers_pushed_twice": sum(max(0, n - visits_per_member[member]) for (member, _), n in pushes.items()),
        "alerts_raised": len(set(reported_alerts)),
        "alerts_not_stored": len(set(reported_alerts) - stored_alerts),
        "alerts_not_received": len(stored_alerts - received),
    }


def wait_for_relay(seconds: float) -> None:
    """The gateway relays visit events asynchronously (bounded queue, retried): give it time to drain."""
    time.sleep(seconds)
