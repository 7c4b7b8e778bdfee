"""What every domain module of personalization shares: its resources, transactions, the audit writer,
member loading and the store and sku checks.

The domain modules (offers, checkout, visits, alerts, purchases, members, catalog, audit) each hold
one `Component` over the same `Resources`; `service.Personalization` composes them.
"""

from __future__ import annotations

import json
import time
import weakref
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from retailface.services.personalization import audit_chain, db
from retailface.services.personalization.alert_bus import AlertBus
from retailface.services.personalization.catalog_cache import CatalogCache
from retailface.services.personalization.changes import ChangeFeed
from retailface.services.personalization.domain import Channel, Consent, Member, Preferences, QuietHours
from retailface.services.personalization.outbox import OutboxWorker
from retailface.services.personalization.recommender import ModelHolder, TrainedModel
from retailface.services.personalization.settings import Settings
from retailface.services.shared.errors import InvalidArgument, NotFound

DAY = 86_400.0

_MEMBER_BY_ID = select(db.members).where(db.members.c.member_id == bindparam("member_id"))
_MEMBER_BY_LOYALTY_NUMBER = select(db.members).where(db.members.c.loyalty_number == bindparam("loyalty_number"))
# The same, keeping the row locked (FOR UPDATE) until the transaction ends: find_member(lock=True).
_LOCKED_MEMBER_BY_ID = _MEMBER_BY_ID.with_for_update()
_LOCKED_MEMBER_BY_LOYALTY_NUMBER = _MEMBER_BY_LOYALTY_NUMBER.with_for_update()
_STORE_EXISTS = select(db.stores.c.store_id).where(db.stores.c.store_id == bindparam("store_id"))
# Stores are never deleted, so a store id found once is known for good: later requests need not ask the
# database again (one round trip less per offer and visit on PostgreSQL). Per engine, i.e. per database.
_KNOWN_STORES: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()


@dataclass
class Resources:
    """The database, the model, the tunables, the catalog copy, the alert bus, the change feed to the
    other replicas and the outbox worker."""

    engine: Engine
    models: ModelHolder
    settings: Settings
    catalog: CatalogCache
    bus: AlertBus
    changes: ChangeFeed
    outbox: OutboxWorker | None = None  # None: notifications are queued, nobody wakes a worker


class Component:
    """Base of the classes over the shared resources (the domain classes and their facade), by name."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    @property
    def engine(self) -> Engine:
        return self.resources.engine

    @property
    def settings(self) -> Settings:
        return self.resources.settings

    @property
    def catalog_cache(self) -> CatalogCache:
        return self.resources.catalog

    @property
    def bus(self) -> AlertBus:
        return self.resources.bus

    @property
    def changes(self) -> ChangeFeed:
        return self.resources.changes

    @property
    def model(self) -> TrainedModel | None:
        return self.resources.models.model


def write_audit(
    conn: Connection, actor: str, action: str, subject: str, reason: str = "", now: float | None = None, **detail: Any
) -> None:
    """Adds an audit entry inside the caller's write transaction (never biometric data in `detail`).

    The one writer of audit rows: it chains each row onto the previous one (audit_chain.py).
    """
    audit_chain.append(
        conn,
        db.audit_log,
        db.audit_chain_head,
        {
            "at": time.time() if now is None else now,
            "actor": actor or "unknown",
            "action": action,
            "subject": subject,
            "reason": reason,
            "detail": json.dumps(detail, sort_keys=True, default=str),
        },
    )


def check_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"unknown IANA timezone {name!r} (e.g. 'Europe/Berlin')") from None


def require_store(conn: Connection, store_id: str) -> None:
    """INVALID_ARGUMENT without a store id, NOT_FOUND for an unknown one."""
    if not store_id:
        raise InvalidArgument("store_id is required")
    known = _KNOWN_STORES.setdefault(conn.engine, set())
    if store_id in known:
        return
    if conn.execute(_STORE_EXISTS, {"store_id": store_id}).first() is None:
        raise NotFound(f"unknown store {store_id!r}")
    known.add(store_id)


def known_skus(conn: Connection, skus: Iterable[str]) -> set[str]:
    """Those of `skus` that are in the catalog."""
    return set(conn.execute(select(db.products.c.sku).where(db.products.c.sku.in_(set(skus)))).scalars())


def require_skus(conn: Connection, skus: Iterable[str]) -> None:
    """NOT_FOUND naming the first sku that is not in the catalog."""
    skus = list(skus)
    known = known_skus(conn, skus)
    missing = [sku for sku in skus if sku not in known]
    if missing:
        raise NotFound(f"unknown sku {missing[0]!r}")


def load_member(conn: Connection, member_id: str, lock: bool = False) -> Member:
    """The member; with `lock`, their row stays locked until the transaction ends (see `find_member`)."""
    if not member_id:
        raise InvalidArgument("member_id is required")
    row = conn.execute(_LOCKED_MEMBER_BY_ID if lock else _MEMBER_BY_ID, {"member_id": member_id}).first()
    if row is None:
        raise NotFound(f"unknown member {member_id!r}")
    return _member_from_row(row)


def find_member(conn: Connection, member_id: str = "", loyalty_number: str = "", lock: bool = False) -> Member:
    """The member by id, else by loyalty number.

    `lock=True` (SELECT ... FOR UPDATE on PostgreSQL; SQLite's write lock already serialises writers)
    is how a write that depends on what the member has had so far stays right with several replicas
    writing at once: frequency caps, consent changes. A second transaction for the same member waits
    until the first commits, and then (READ COMMITTED) reads what it wrote, such as the offers it
    delivered. A row lock was chosen over a unique constraint (a cap is a count in a sliding 24-hour
    window, which no constraint expresses) and over SERIALIZABLE (a retry would re-run the whole call,
    with its new offer ids and notifications). Lock order, to stay free of deadlocks: the member row
    first, then the audit chain head (write_audit), which every caller takes after this.
    """
    if member_id:
        return load_member(conn, member_id, lock)
    if not loyalty_number:
        raise InvalidArgument("member_id (or loyalty_number) is required")
    statement = _LOCKED_MEMBER_BY_LOYALTY_NUMBER if lock else _MEMBER_BY_LOYALTY_NUMBER
    row = conn.execute(statement, {"loyalty_number": loyalty_number}).first()
    if row is None:
        raise NotFound(f"unknown loyalty number {loyalty_number!r}")
    return _member_from_row(row)


def _loads(text: str | None) -> list[Any]:
    return list(json.loads(text)) if text else []


def _member_from_row(row: Any) -> Member:
    quiet = None
    if row.quiet_start_minute is not None and row.quiet_end_minute is not None:
        quiet = QuietHours(row.quiet_start_minute, row.quiet_end_minute, row.timezone)
    preferences = Preferences(
        member_id=row.member_id,
        allow_greeting=bool(row.allow_greeting),
        preferred_name=row.preferred_name,
        excluded_categories=_loads(row.excluded_categories),
        favourite_categories=_loads(row.favourite_categories),
        quiet_hours=quiet,
        channels=[Channel(c["kind"], c.get("address", "")) for c in _loads(row.channels)],
        max_offers_per_visit=row.max_offers_per_visit,
        timezone=row.timezone,
    )
    consent = Consent(
        policy_version=row.consent_policy_version,
        scopes=frozenset(s for s in row.consent_scopes.split(",") if s),
        granted_at=row.consent_granted_at,
        revoked_at=row.consent_revoked_at,
        source=row.consent_source,
    )
    return Member(
        member_id=row.member_id,
        loyalty_number=row.loyalty_number or "",
        display_name=row.display_name,
        home_store_id=row.home_store_id or "",
        consent=consent,
        preferences=preferences,
        created_at=row.created_at,
    )
