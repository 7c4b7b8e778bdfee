"""Staff alerts: greetings, dissatisfaction at a lane, watchlist matches; the catch-up read and acknowledgements.

Staff learn a member's name only when `consent.recognition` says they may greet them, and never
anything sensitive or about purchases. A dissatisfaction alert is ranked by the member's trailing
spend and raised at most once per shopper within the cool-down. Watchlist alerts are off unless
enabled (watchlist.py), and always need a person to confirm them. Alerts are published on the bus after commit, and
announced to the other replicas, which publish them to the staff screens connected to them (changes.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from retailface.services.personalization import db, dialects
from retailface.services.personalization.base import DAY, Component, require_store, write_audit
from retailface.services.personalization.consent import recognition
from retailface.services.personalization.domain import (
    ALERT_KINDS,
    SCOPE_STAFF_GREETING,
    Member,
    StaffAlert,
    VisitEvent,
)
from retailface.services.shared.errors import InvalidArgument, NotFound, PermissionDenied

_RECENT_VISITS = (
    select(func.count())
    .select_from(db.visits)
    .where(db.visits.c.member_id == bindparam("member_id"), db.visits.c.started_at >= bindparam("since"))
)
_TRAILING_SPEND = select(func.coalesce(func.sum(db.transactions.c.total), 0.0)).where(
    db.transactions.c.member_id == bindparam("member_id"), db.transactions.c.at >= bindparam("since")
)
_RECENT_ALERT = (
    select(db.staff_alerts.c.alert_id)
    .where(
        db.staff_alerts.c.subject_key == bindparam("subject_key"),
        db.staff_alerts.c.kind == bindparam("kind"),
        db.staff_alerts.c.raised_at >= bindparam("since"),
    )
    .limit(1)
)
_INSERT_ALERT = db.staff_alerts.insert()


def withdraw_unseen(conn: Connection, member_id: str) -> int:
    """Withdraws the member's unacknowledged alerts (greeting consent revoked); returns how many."""
    return int(
        conn.execute(
            update(db.staff_alerts)
            .where(db.staff_alerts.c.member_id == member_id, db.staff_alerts.c.acknowledged_at.is_(None))
            .values(withdrawn=True)
        ).rowcount
    )


def lane_label(lane_id: str | None) -> str:
    """'3' -> 'lane 3'; ids that already say so ('lane-3', 'Lane 3') stay as they are."""
    lane = (lane_id or "").strip()
    return lane if lane.lower().startswith("lane") or not lane else f"lane {lane}"


def _new_alert(kind: str, event: VisitEvent, message: str, **fields: Any) -> StaffAlert:
    return StaffAlert(
        alert_id=uuid.uuid4().hex,
        kind=kind,
        store_id=event.store_id,
        message=message,
        raised_at=event.at,
        zone_id=event.zone_id,
        camera_id=event.camera_id,
        track_id=event.track_id,
        **fields,
    )


def _alert_from_row(r: Any) -> StaffAlert:
    """A stored alert as staff see it: the member id only with the name they may greet by."""
    return StaffAlert(
        alert_id=r.alert_id,
        kind=r.kind,
        store_id=r.store_id,
        message=r.message,
        raised_at=r.raised_at,
        zone_id=r.zone_id,
        lane_id=r.lane_id,
        camera_id=r.camera_id,
        member_id=(r.member_id or "") if r.display_name else "",
        display_name=r.display_name,
        priority=r.priority,
        requires_confirmation=r.requires_confirmation,
        track_id=r.track_id,
    )


class StaffAlerts(Component):
    def greeting(self, conn: Connection, event: VisitEvent, member: Member, notes: list[str]) -> list[StaffAlert]:
        """A discreet welcome for staff: the name the member allows, their favourite non-sensitive category."""
        allowed = recognition(member)
        if not allowed.may_greet:
            notes.append(f"no consent for {SCOPE_STAFF_GREETING}: no greeting")
            return []
        assert member.preferences is not None
        sensitive = self.catalog_cache.snapshot.sensitive_categories
        favourite = next((c for c in member.preferences.favourite_categories if c not in sensitive), "")
        context = f"; enjoys {favourite.replace('_', ' ')}" if favourite else ""
        visits = conn.execute(
            _RECENT_VISITS, {"member_id": member.member_id, "since": event.at - 30 * DAY}
        ).scalar_one()
        regular = "a regular here" if visits >= 3 else "welcome them in"
        name = allowed.greeting_name
        alert = _new_alert(
            "greeting",
            event,
            f"{name} just came in ({regular}{context}).",
            member_id=member.member_id,
            display_name=name,
            priority=1.0,
        )
        return [self._insert(conn, alert, f"member:{member.member_id}", event.event_id)]

    def dissatisfaction(self, conn: Connection, event: VisitEvent, member: Member | None) -> list[StaffAlert]:
        """An alert when a shopper at a lane looked unhappy long enough; once per shopper per cool-down."""
        assert event.negative_fraction is not None
        if (
            event.negative_fraction < self.settings.dissatisfaction_negative_fraction
            or (event.emotion_seconds or 0.0) < self.settings.dissatisfaction_min_seconds
        ):
            return []
        subject_key = f"member:{member.member_id}" if member else f"track:{event.store_id}:{event.track_id}"
        if member is None and not event.track_id:
            subject_key = f"lane:{event.store_id}:{event.lane_id}"
        since = event.at - self.settings.alert_cooldown_seconds
        dialects.lock_key(conn, "alert_subject", subject_key)  # one alert per cool-down across replicas
        recent = conn.execute(
            _RECENT_ALERT, {"subject_key": subject_key, "kind": "dissatisfaction", "since": since}
        ).first()
        if recent is not None:
            return []
        priority = 0.0
        display_name = ""
        shown_member_id = ""
        if member is not None:
            priority = round(self._trailing_spend(conn, member.member_id, event.at), 2)
            allowed = recognition(member)
            if allowed.may_greet:
                display_name, shown_member_id = allowed.greeting_name, member.member_id
        who = display_name or "A shopper"
        alert = _new_alert(
            "dissatisfaction",
            event,
            f"{who} at {lane_label(event.lane_id)} may need help; please check in discreetly.",
            lane_id=event.lane_id,
            member_id=shown_member_id,
            display_name=display_name,
            priority=priority,
        )
        member_id = member.member_id if member is not None else None
        return [self._insert(conn, alert, subject_key, event.event_id, member_id)]

    def watchlist(self, conn: Connection, event: VisitEvent) -> list[StaffAlert]:
        """A possible watchlist match: never named, always to be confirmed by a person."""
        alert = _new_alert(
            "watchlist",
            event,
            "Possible watchlist match. A person must confirm it before anyone acts.",
            lane_id=event.lane_id,
            priority=100.0,
            requires_confirmation=True,
        )
        subject = f"watchlist:{event.member_id}"
        write_audit(
            conn,
            "personalization",
            "identify",
            subject,
            "watchlist alert",
            event.at,
            store_id=event.store_id,
            event_id=event.event_id,
        )
        return [self._insert(conn, alert, subject, event.event_id)]

    def _trailing_spend(self, conn: Connection, member_id: str, now: float) -> float:
        since = now - self.settings.trailing_spend_days * DAY
        return float(conn.execute(_TRAILING_SPEND, {"member_id": member_id, "since": since}).scalar_one())

    def _insert(
        self, conn: Connection, alert: StaffAlert, subject_key: str, event_id: str, member_id: str | None = None
    ) -> StaffAlert:
        """Stores the alert; `member_id` is kept for erasure and consent withdrawal even when not shown."""
        conn.execute(
            _INSERT_ALERT,
            {
                "alert_id": alert.alert_id,
                "kind": alert.kind,
                "store_id": alert.store_id,
                "zone_id": alert.zone_id,
                "lane_id": alert.lane_id,
                "camera_id": alert.camera_id,
                "member_id": member_id or alert.member_id or None,
                "subject_key": subject_key,
                "display_name": alert.display_name,
                "message": alert.message,
                "priority": alert.priority,
                "requires_confirmation": alert.requires_confirmation,
                "raised_at": alert.raised_at,
                "track_id": alert.track_id,
                "event_id": event_id,
            },
        )
        return alert

    def recent(self, store_id: str, kinds: Iterable[str] = (), now: float | None = None) -> list[StaffAlert]:
        """Unacknowledged alerts raised in the catch-up window, oldest first (a screen that just connected)."""
        kinds = list(kinds)
        unknown = [kind for kind in kinds if kind not in ALERT_KINDS]
        if unknown:
            raise InvalidArgument(f"unknown alert kinds {unknown}; kinds are {', '.join(ALERT_KINDS)}")
        now = time.time() if now is None else now
        alerts = db.staff_alerts
        query = (
            select(alerts)
            .where(
                alerts.c.store_id == store_id,
                alerts.c.acknowledged_at.is_(None),
                alerts.c.withdrawn.is_(False),
                alerts.c.raised_at >= now - self.settings.alert_catchup_seconds,
            )
            .order_by(alerts.c.raised_at)
        )
        if kinds:
            query = query.where(alerts.c.kind.in_(kinds))
        with db.read(self.engine) as conn:
            require_store(conn, store_id)
            rows = conn.execute(query).all()
        return [_alert_from_row(r) for r in rows]

    def by_ids(self, alert_ids: Iterable[str]) -> list[StaffAlert]:
        """Stored alerts by id, oldest first, except withdrawn ones (raised on another replica: changes.py)."""
        alerts = db.staff_alerts
        query = (
            select(alerts)
            .where(alerts.c.alert_id.in_(list(alert_ids)), alerts.c.withdrawn.is_(False))
            .order_by(alerts.c.raised_at, alerts.c.alert_id)
        )
        with db.read(self.engine) as conn:
            return [_alert_from_row(r) for r in conn.execute(query)]

    def acknowledge(
        self, alert_id: str, staff_id: str, confirmed: bool, actor: str = "", stores: frozenset[str] = frozenset()
    ) -> None:
        """Records who acknowledged (and confirmed) the alert; `stores`: those the caller acts for (empty: all)."""
        if not alert_id:
            raise InvalidArgument("alert_id is required")
        alerts = db.staff_alerts
        with db.write(self.engine) as conn:
            row = conn.execute(select(alerts.c.kind, alerts.c.store_id).where(alerts.c.alert_id == alert_id)).first()
            if row is None:
                raise NotFound(f"unknown alert {alert_id!r}")
            if stores and row.store_id not in stores:
                raise PermissionDenied(
                    f"alert {alert_id!r} is for store {row.store_id!r}; this token acts for store "
                    f"{', '.join(sorted(stores))} only"
                )
            conn.execute(
                update(db.staff_alerts)
                .where(db.staff_alerts.c.alert_id == alert_id)
                .values(acknowledged_at=time.time(), acknowledged_by=staff_id, confirmed=bool(confirmed))
            )
            details = {"staff_id": staff_id, "confirmed": bool(confirmed)}
            write_audit(conn, actor or staff_id, "acknowledge", f"alert:{alert_id}", row.kind, **details)
