"""Helpers shared by the personalization tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, select

from retailface.services.personalization import db
from retailface.services.personalization.domain import SCOPES, Channel, Consent, OnlineEvent, Preferences
from retailface.services.personalization.service import Personalization

STORE = "store-01"


def prepare_member(
    svc: Personalization,
    member_id: str,
    *,
    scopes: tuple[str, ...] = SCOPES,
    channels: tuple[Channel, ...] = (),
    **preferences: object,
) -> None:
    """Sets a member's consent and preferences to a known state (no quiet hours, nothing excluded)."""
    svc.members.grant_consent(
        member_id, Consent(policy_version="2026-01", scopes=frozenset(scopes), source="test"), actor="test"
    )
    values = {"allow_greeting": True, "preferred_name": "Ava", "channels": list(channels), **preferences}
    svc.members.update_preferences(Preferences(member_id=member_id, **values), actor="test")  # type: ignore[arg-type]


def stocked_sku(engine: Engine, store_id: str = STORE, sensitive: bool = False, skip: int = 0) -> tuple[str, str, str]:
    """(sku, category, aisle) of a product in stock at the store."""
    with db.read(engine) as conn:
        row = conn.execute(
            select(db.products.c.sku, db.products.c.category, db.inventory.c.aisle)
            .join(db.inventory, db.inventory.c.sku == db.products.c.sku)
            .where(
                db.inventory.c.store_id == store_id, db.inventory.c.on_hand > 0, db.products.c.sensitive.is_(sensitive)
            )
            .order_by(db.products.c.sku)
            .offset(skip)
            .limit(1)
        ).one()
    return row.sku, row.category, row.aisle


def abandon_cart(svc: Personalization, member_id: str, sku: str, event_id: str, at: float | None = None) -> None:
    at = time.time() - 3600 if at is None else at
    outcomes = svc.purchases.ingest_online_events(
        [
            OnlineEvent(f"{event_id}-add", member_id, "added_to_cart", at - 60, sku=sku, session_id=event_id),
            OnlineEvent(event_id, member_id, "abandoned_cart", at, sku=sku, session_id=event_id),
        ]
    )
    assert [o.code for o in outcomes] == ["OK", "OK"]


def members_without_online_events(engine: Engine, count: int = 1) -> list[str]:
    """Members with purchase history but no online behaviour (so a test's own events rank first)."""
    with db.read(engine) as conn:
        busy = select(db.online_events.c.member_id).distinct()
        rows = conn.execute(
            select(db.transactions.c.member_id)
            .where(db.transactions.c.member_id.is_not(None), db.transactions.c.member_id.not_in(busy))
            .group_by(db.transactions.c.member_id)
            .order_by(db.transactions.c.member_id)
            .limit(count)
        ).scalars()
        return list(rows)


def on_hand(engine: Engine, store_id: str, sku: str) -> int:
    with db.read(engine) as conn:
        value = conn.execute(
            select(db.inventory.c.on_hand).where(db.inventory.c.store_id == store_id, db.inventory.c.sku == sku)
        ).scalar_one_or_none()
    return int(value or 0)
