"""What the store holds about one member, shown to that member: their activity and the data export.

`activity` is the portal's page: the member's visits (with the zones they dwelt in), the offers pushed
to them with what they did with each, and what they unliked. `export` is the data-subject access
export: one JSON document with everything personalization holds about the member (profile, preferences,
consent and its history, visits and their events, offers, feedback, dislikes, purchases, online events,
notifications, staff alerts, sign-in codes, erasure requests, and the audit rows about them). Face
templates live in matching and are never here; internal fields (code hashes, audit hash chain) are left
out, and every query is bound to the member, so no other member's data can appear. Both are audited.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, select

from retailface.services.personalization import db
from retailface.services.personalization.base import Component, load_member, write_audit

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
EXPORT_FORMAT = "retailface-member-export-v1"
# Feedback as the portal shows it: an unliked category also unlikes the offer.
_FEEDBACK_SHOWN = {
    "unliked": "unliked",
    "unliked_category": "unliked",
    "redeemed": "redeemed",
    "dismissed": "dismissed",
}
# Columns an export leaves out: internal bookkeeping, never data about the member.
_INTERNAL_COLUMNS = frozenset({"code_hash", "prev_hash", "row_hash", "subject_key", "idempotency_key"})


@dataclass(frozen=True)
class MemberVisit:
    visit_id: str
    store_id: str
    started_at: float
    ended_at: float | None
    zones: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PushedOffer:
    offer_id: str
    sku: str
    product_name: str
    store_id: str
    pushed_at: float
    feedback: str  # "", "unliked", "redeemed", "dismissed"


@dataclass
class Activity:
    visits: list[MemberVisit] = field(default_factory=list)
    offers: list[PushedOffer] = field(default_factory=list)
    unliked_skus: list[str] = field(default_factory=list)
    unliked_categories: list[str] = field(default_factory=list)


def _limit(limit: int) -> int:
    return max(1, min(limit or DEFAULT_LIMIT, MAX_LIMIT))


def _visits(conn: Connection, member_id: str, limit: int) -> list[MemberVisit]:
    visits, events = db.visits, db.visit_events
    rows = conn.execute(
        select(visits.c.visit_id, visits.c.store_id, visits.c.started_at, visits.c.ended_at)
        .where(visits.c.member_id == member_id)
        .order_by(visits.c.started_at.desc(), visits.c.visit_id)
        .limit(limit)
    ).all()
    zones: dict[str, list[str]] = {row.visit_id: [] for row in rows}
    if zones:
        for visit_id, zone_id in conn.execute(
            select(events.c.visit_id, events.c.zone_id)
            .where(events.c.visit_id.in_(list(zones)), events.c.member_id == member_id, events.c.zone_id != "")
            .order_by(events.c.at, events.c.event_id)
        ):
            if zone_id not in zones[visit_id]:
                zones[visit_id].append(zone_id)
    return [MemberVisit(r.visit_id, r.store_id, r.started_at, r.ended_at, zones[r.visit_id]) for r in rows]


def _offers(conn: Connection, member_id: str, limit: int) -> list[PushedOffer]:
    deliveries, products, feedback = db.offer_deliveries, db.products, db.offer_feedback
    rows = conn.execute(
        select(
            deliveries.c.offer_id,
            deliveries.c.sku,
            products.c.name,
            deliveries.c.store_id,
            deliveries.c.delivered_at,
            deliveries.c.redeemed_at,
        )
        .select_from(deliveries.outerjoin(products, products.c.sku == deliveries.c.sku))
        .where(deliveries.c.member_id == member_id)
        .order_by(deliveries.c.delivered_at.desc(), deliveries.c.offer_id)
        .limit(limit)
    ).all()
    latest: dict[str, str] = {}
    if rows:
        for offer_id, kind in conn.execute(
            select(feedback.c.offer_id, feedback.c.type)
            .where(feedback.c.member_id == member_id, feedback.c.offer_id.in_([r.offer_id for r in rows]))
            .order_by(feedback.c.at, feedback.c.feedback_id)
        ):
            latest[offer_id] = _FEEDBACK_SHOWN.get(kind, kind)
    return [
        PushedOffer(
            r.offer_id,
            r.sku,
            r.name or "",
            r.store_id,
            r.delivered_at,
            latest.get(r.offer_id, "redeemed" if r.redeemed_at is not None else ""),
        )
        for r in rows
    ]


def _dislikes(conn: Connection, member_id: str, kind: str) -> list[str]:
    dislikes = db.member_dislikes
    query = select(dislikes.c.value).where(dislikes.c.member_id == member_id, dislikes.c.kind == kind)
    return list(conn.execute(query.order_by(dislikes.c.value)).scalars())


def _rows(conn: Connection, table: Table, where: Any, order: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """The rows of `table` matching `where`, as plain dicts without internal columns."""
    result = conn.execute(select(table).where(where).order_by(*order)).mappings()
    return [{key: value for key, value in row.items() if key not in _INTERNAL_COLUMNS} for row in result]


def _decoded(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    """The rows with their JSON text columns decoded."""
    for row in rows:
        for column in columns:
            if isinstance(row.get(column), str):
                row[column] = json.loads(row[column])
    return rows


def _export_document(conn: Connection, member_id: str) -> dict[str, Any]:
    member = db.members.c.member_id == member_id
    profile = _decoded(_rows(conn, db.members, member), "excluded_categories", "favourite_categories", "channels")[0]
    transactions = _rows(conn, db.transactions, db.transactions.c.member_id == member_id, [db.transactions.c.at])
    lines = db.transaction_lines
    bought = select(db.transactions.c.transaction_id).where(db.transactions.c.member_id == member_id)
    purchase_lines = _rows(conn, lines, lines.c.transaction_id.in_(bought), [lines.c.transaction_id, lines.c.id])
    for transaction in transactions:
        transaction["lines"] = [
            {key: line[key] for key in ("sku", "quantity", "unit_price")}
            for line in purchase_lines
            if line["transaction_id"] == transaction["transaction_id"]
        ]

    def of(table: Table, *order: str) -> list[dict[str, Any]]:
        return _rows(conn, table, table.c.member_id == member_id, [table.c[name] for name in order])

    erasures = db.erasure_requests
    return {
        "format": EXPORT_FORMAT,
        "member_id": member_id,
        "exported_at": time.time(),
        "profile": profile,
        "consent_history": of(db.consent_history, "at", "id"),
        "visits": of(db.visits, "started_at", "visit_id"),
        "visit_events": of(db.visit_events, "at", "event_id"),
        "offers": of(db.offer_deliveries, "delivered_at", "offer_id"),
        "offer_feedback": of(db.offer_feedback, "at", "feedback_id"),
        "dislikes": of(db.member_dislikes, "kind", "value"),
        "purchases": transactions,
        "online_events": of(db.online_events, "at", "event_id"),
        "notifications": _decoded(of(db.notification_outbox, "created_at", "id"), "payload"),
        "staff_alerts": of(db.staff_alerts, "raised_at", "alert_id"),
        "sign_in_codes": of(db.member_signin_codes, "issued_at"),
        "erasure_requests": _decoded(of(erasures, "requested_at", "request_id"), "rows_removed"),
        "audit": _decoded(
            _rows(conn, db.audit_log, db.audit_log.c.subject == member_id, [db.audit_log.c.id]), "detail"
        ),
        "not_held_here": "face templates are held by the matching service and are never exported",
    }


class MemberData(Component):
    def activity(self, member_id: str, limit: int = 0, actor: str = "") -> Activity:
        """The member's newest visits and offers (at most `limit` each, 1..500), and what they unliked."""
        limit = _limit(limit)
        with db.write(self.engine) as conn:
            load_member(conn, member_id)
            activity = Activity(
                visits=_visits(conn, member_id, limit),
                offers=_offers(conn, member_id, limit),
                unliked_skus=_dislikes(conn, member_id, "sku"),
                unliked_categories=_dislikes(conn, member_id, "category"),
            )
            write_audit(
                conn,
                actor,
                "read",
                member_id,
                "member activity",
                visits=len(activity.visits),
                offers=len(activity.offers),
            )
        return activity

    def export(self, member_id: str, actor: str = "") -> bytes:
        """Everything held about the member as one UTF-8 JSON document (the data-subject access export)."""
        with db.write(self.engine) as conn:
            load_member(conn, member_id, lock=True)  # one consistent picture of the member
            document = _export_document(conn, member_id)
            sections = {key: len(value) for key, value in document.items() if isinstance(value, list)}
            write_audit(conn, actor, "export", member_id, "data-subject access export", **sections)
        return json.dumps(document, sort_keys=True, default=str, ensure_ascii=False, indent=1).encode()
