"""Store visits: camera events (entered, zone dwell, checkout, exited), the alerts they raise and
the offers they push to the member's phone.

A face match is used only with the face_identification scope; otherwise the event is kept as an
anonymous one. Pushes need the personalized_offers scope, wait out the member's quiet hours and go
through the outbox (queued in the same transaction, sent by its worker). An event id is recorded
once: a repeated event changes nothing, also when two replicas receive it at the same time (a
transaction-scoped lock on the event id, then the check; the primary key is the last line of defence).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

from sqlalchemy import Connection, bindparam, exists, select, update

from retailface.services.personalization import db, dialects, outbox
from retailface.services.personalization.alerts import StaffAlerts
from retailface.services.personalization.base import Component, Resources, load_member, require_store, write_audit
from retailface.services.personalization.domain import (
    CHANNEL_KINDS,
    SCOPE_FACE_IDENTIFICATION,
    SCOPE_PERSONALIZED_OFFERS,
    VISIT_EVENT_TYPES,
    Channel,
    Member,
    Offer,
    QuietHours,
    VisitEvent,
    VisitResult,
)
from retailface.services.personalization.offers import NOTHING_PASSES, Offers
from retailface.services.personalization.watchlist import alert_refusal
from retailface.services.shared.errors import InvalidArgument, NotFound

PUSH_CHANNEL = "push"

# Whether the event was recorded already (its idempotency key), whether its subject is on the watchlist (and the
# entry unexpired, and confirmed) and whether the store enabled the watchlist: one statement, one round trip to
# PostgreSQL (after the key's lock, so a replica that recorded it is seen).
_WATCHLISTED = db.watchlist.c.subject_id == bindparam("subject_id")
_SEEN_AND_WATCHLISTED = select(
    exists().where(db.visit_events.c.event_id == bindparam("event_id")).label("seen"),
    exists().where(_WATCHLISTED).label("watchlisted"),
    exists().where(_WATCHLISTED, db.watchlist.c.expires_at > bindparam("at")).label("active"),
    exists().where(_WATCHLISTED, db.watchlist.c.confirmed_at.is_not(None)).label("confirmed"),
    exists()
    .where(db.stores.c.store_id == bindparam("store_id"), db.stores.c.watchlist_enabled.is_(True))
    .label("store_watchlist"),
)
_OPEN_VISIT_OF_MEMBER, _OPEN_VISIT_OF_TRACK = (
    select(db.visits.c.visit_id)
    .where(
        db.visits.c.store_id == bindparam("store_id"),
        subject == bindparam("subject"),
        db.visits.c.ended_at.is_(None),
        db.visits.c.started_at >= bindparam("since"),
    )
    .order_by(db.visits.c.started_at.desc())
    .limit(1)
    for subject in (db.visits.c.member_id, db.visits.c.track_id)
)
_VISIT_COLUMNS = ("visit_id", "store_id", "member_id", "track_id", "started_at", "ended_at")
_EVENT_COLUMNS = (
    "event_id",
    "visit_id",
    "type",
    "store_id",
    "camera_id",
    "zone_id",
    "lane_id",
    "member_id",
    "track_id",
    "at",
    "dwell_seconds",
    "negative_fraction",
    "emotion_seconds",
    "age_band",
    "gender",
)
# Binds named for the row they fill ("visit_*", "event_*"): the two inserts share column names.
_INSERT_VISIT = db.visits.insert().values({name: bindparam(f"visit_{name}") for name in _VISIT_COLUMNS})
_INSERT_VISIT_EVENT = db.visit_events.insert().values({name: bindparam(f"event_{name}") for name in _EVENT_COLUMNS})
# PostgreSQL: the visit an event opens goes in with the event (a data-modifying CTE), one round trip for both.
_INSERT_VISIT_WITH_EVENT = _INSERT_VISIT_EVENT.add_cte(_INSERT_VISIT.cte("new_visit"))


def in_quiet_hours(quiet: QuietHours | None, at: float) -> bool:
    if quiet is None or quiet.start_minute == quiet.end_minute:
        return False
    local = dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(quiet.timezone or "UTC"))
    minute = local.hour * 60 + local.minute
    if quiet.start_minute < quiet.end_minute:
        return quiet.start_minute <= minute < quiet.end_minute
    return minute >= quiet.start_minute or minute < quiet.end_minute  # spans midnight


class Visits(Component):
    def __init__(self, resources: Resources, offers: Offers, alerts: StaffAlerts) -> None:
        super().__init__(resources)
        self._offers = offers
        self._alerts = alerts

    def record(self, event: VisitEvent, actor: str = "") -> VisitResult:
        if not event.event_id:
            raise InvalidArgument("event_id is required (it is the idempotency key)")
        if event.type not in VISIT_EVENT_TYPES:
            raise InvalidArgument(f"event type must be one of {', '.join(VISIT_EVENT_TYPES)}")
        result = VisitResult()
        with db.write(self.engine) as conn:
            # Replicas handling the same event (a retried relay) take turns here; the later one sees it.
            dialects.lock_key(conn, "visit_event", event.event_id)
            seen, watchlisted, active, confirmed, store_watchlist = conn.execute(
                _SEEN_AND_WATCHLISTED,
                {"event_id": event.event_id, "subject_id": event.member_id, "at": event.at, "store_id": event.store_id},
            ).one()
            if seen:
                return VisitResult(duplicate=True)
            require_store(conn, event.store_id)
            watchlisted = bool(event.member_id) and bool(watchlisted)
            member = self._identified_member(conn, event, watchlisted, result.notes)
            self._store_event(conn, event, member)
            if watchlisted:
                refusal = alert_refusal(
                    self.settings.watchlist_enabled, event.store_id, store_watchlist, active, confirmed
                )
                if refusal:
                    result.notes.append(refusal)
                else:
                    result.alerts_raised += self._alerts.watchlist(conn, event)
            if event.type == "entered" and member is not None:
                result.alerts_raised += self._alerts.greeting(conn, event, member, result.notes)
                result.offers_pushed = self._push_offers(conn, event, member, result.notes)
            if event.lane_id and event.negative_fraction is not None:
                result.alerts_raised += self._alerts.dissatisfaction(conn, event, member)
            # Last: the audit chain's head row stays locked from here to the commit only.
            if member is not None:
                write_audit(
                    conn,
                    actor,
                    "identify",
                    member.member_id,
                    f"visit {event.type}",
                    event.at,
                    store_id=event.store_id,
                    camera_id=event.camera_id,
                    event_id=event.event_id,
                    match_score=round(event.match_score, 3),
                    quality_bin=event.quality_bin,
                    estimated_fpir=event.estimated_fpir,
                )
            self.changes.alerts_raised(conn, (alert.alert_id for alert in result.alerts_raised))
        self.bus.publish(result.alerts_raised)
        if result.offers_pushed and self.resources.outbox is not None:
            self.resources.outbox.wake()
        return result

    def _identified_member(
        self, conn: Connection, event: VisitEvent, watchlisted: bool, notes: list[str]
    ) -> Member | None:
        """The matched member when they consented to face identification; None for an anonymous event."""
        if not event.member_id:
            return None
        try:
            member = load_member(conn, event.member_id, lock=True)  # frequency caps: see base.find_member
        except NotFound:
            if watchlisted:  # a watchlist subject is not a member
                return None
            raise
        if not member.consent.allows(SCOPE_FACE_IDENTIFICATION):
            notes.append(f"no consent for {SCOPE_FACE_IDENTIFICATION}: the event is recorded as anonymous")
            return None
        return member

    def _store_event(self, conn: Connection, event: VisitEvent, member: Member | None) -> None:
        member_id = member.member_id if member is not None else None
        visit_id, new_visit = self._visit_for(conn, event, member_id)
        row = {
            "event_id": event.event_id,
            "visit_id": visit_id,
            "type": event.type,
            "store_id": event.store_id,
            "camera_id": event.camera_id,
            "zone_id": event.zone_id,
            "lane_id": event.lane_id,
            "member_id": member_id,
            "track_id": event.track_id,
            "at": event.at,
            "dwell_seconds": event.dwell_seconds,
            "negative_fraction": event.negative_fraction,
            "emotion_seconds": event.emotion_seconds,
            # Anonymous shoppers only: a coarse age band and gender, counted (never shown) in store analytics.
            "age_band": event.age_band if member is None else "",
            "gender": event.gender if member is None else "",
        }
        params = {f"event_{name}": value for name, value in row.items()}
        if new_visit is None:
            conn.execute(_INSERT_VISIT_EVENT, params)
            return
        params |= {f"visit_{name}": value for name, value in new_visit.items()}
        if conn.dialect.name == "postgresql":
            conn.execute(_INSERT_VISIT_WITH_EVENT, params)
        else:
            conn.execute(_INSERT_VISIT, params)
            conn.execute(_INSERT_VISIT_EVENT, params)

    def _visit_for(
        self, conn: Connection, event: VisitEvent, member_id: str | None
    ) -> tuple[str | None, dict[str, object] | None]:
        """The visit the event belongs to: the open visit of the member (or track), or a new one (its row, for the
        caller to insert with the event) when the event is an entry or none is open."""
        if event.type != "entered" and (member_id or event.track_id):
            open_visit = conn.execute(
                _OPEN_VISIT_OF_MEMBER if member_id else _OPEN_VISIT_OF_TRACK,
                {
                    "store_id": event.store_id,
                    "subject": member_id or event.track_id,
                    "since": event.at - self.settings.visit_timeout_hours * 3600,
                },
            ).scalar_one_or_none()
            if open_visit is not None:
                if event.type == "exited":
                    conn.execute(update(db.visits).where(db.visits.c.visit_id == open_visit).values(ended_at=event.at))
                return str(open_visit), None
        if event.type == "exited":
            return None, None
        visit_id = uuid.uuid4().hex
        return visit_id, {
            "visit_id": visit_id,
            "store_id": event.store_id,
            "member_id": member_id,
            "track_id": event.track_id,
            "started_at": event.at,
            "ended_at": None,
        }

    def _push_offers(self, conn: Connection, event: VisitEvent, member: Member, notes: list[str]) -> list[Offer]:
        """Offers for the member who just came in, queued for each of their notification channels."""
        assert member.preferences is not None
        if not member.consent.allows(SCOPE_PERSONALIZED_OFFERS):
            notes.append(f"no consent for {SCOPE_PERSONALIZED_OFFERS}: no offers pushed")
            return []
        if in_quiet_hours(member.preferences.quiet_hours, event.at):
            notes.append("quiet hours: no offers pushed")
            return []
        limit = self._offers.limit_for(member, 0)
        offers = self._offers.for_member(conn, member, event.store_id, PUSH_CHANNEL, limit, event.at)
        if not offers:
            notes.append(NOTHING_PASSES)
            return []
        worker = self.resources.outbox
        available = worker.channel_kinds if worker is not None else frozenset(CHANNEL_KINDS)
        payload = _push_payload(member.member_id, event.store_id, offers)
        for channel in member.preferences.channels or [Channel("log", member.member_id)]:
            if channel.kind not in available:
                notes.append(f"channel {channel.kind} is not configured: not notified there")
                continue
            outbox.enqueue(
                self.engine,
                conn,
                idempotency_key=f"visit:{event.event_id}:{channel.kind}:"
                f"{uuid.uuid5(uuid.NAMESPACE_URL, channel.address).hex[:12]}",
                member_id=member.member_id,
                channel=channel.kind,
                address=channel.address,
                payload=payload,
                now=event.at,
            )
        return offers


def _push_payload(member_id: str, store_id: str, offers: list[Offer]) -> dict[str, object]:
    return {
        "kind": "offers",
        "member_id": member_id,
        "store_id": store_id,
        "offers": [
            {
                "offer_id": o.offer_id,
                "sku": o.sku,
                "product_name": o.product_name,
                "discount_percent": o.discount_percent,
                "reason": o.reason,
                "aisle": o.location.aisle,
                "valid_until": o.valid_until,
            }
            for o in offers
        ],
    }
