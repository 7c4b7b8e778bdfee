"""Schema, engine and transactions of the personalization database (SQLAlchemy Core).

SQLite is the embedded default (one writer: WAL, BEGIN IMMEDIATE, see dialects.py); PostgreSQL
(psycopg 3, `postgresql+psycopg://...`) serves several replicas writing at once. One schema, below,
for both. Times are stored as UTC epoch seconds (double): comparable and portable across dialects.

The tables below are the schema of version 1 (migrations.py brings a database to the newest
version); a later schema change is a new migration that alters them, never an edit of an applied one.

`write()` and `read()` are the only transactions the domain modules use. A database out of reach
(server down, connection lost mid-transaction) surfaces from them as `Unavailable` ("personalization
database unavailable: ...; retry"): the transaction is rolled back whole, and the engine's pool
(pre-ping) reconnects by itself on the next call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    exc,
)

from retailface.services.personalization.dialects import (
    Checkpointer as Checkpointer,
)
from retailface.services.personalization.dialects import (
    configure_sqlite,
    is_unavailable,
    sqlite_write_lock,
)
from retailface.services.personalization.dialects import (
    insert_ignoring_duplicates as insert_ignoring_duplicates,
)
from retailface.services.personalization.dialects import (
    upsert as upsert,
)
from retailface.services.shared.errors import InvalidArgument, Unavailable, first_line

log = structlog.get_logger(__name__)

metadata = MetaData()

stores = Table(
    "stores",
    metadata,
    Column("store_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False, default="UTC"),
)

members = Table(
    "members",
    metadata,
    Column("member_id", String(64), primary_key=True),
    Column("loyalty_number", String(64), unique=True),
    Column("display_name", String(200), nullable=False, default=""),
    Column("home_store_id", String(64), ForeignKey("stores.store_id", ondelete="SET NULL")),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    # Consent record: the scopes in force (comma separated), the policy they were granted under.
    Column("consent_policy_version", String(32), nullable=False, default=""),
    Column("consent_scopes", String(200), nullable=False, default=""),
    Column("consent_granted_at", Double),
    Column("consent_revoked_at", Double),
    Column("consent_source", String(64), nullable=False, default=""),
    # Preferences, as the member states them in the preference portal.
    Column("allow_greeting", Boolean, nullable=False, default=False),
    Column("preferred_name", String(100), nullable=False, default=""),
    Column("excluded_categories", Text, nullable=False, default="[]"),  # JSON list
    Column("favourite_categories", Text, nullable=False, default="[]"),  # JSON list
    Column("quiet_start_minute", Integer),
    Column("quiet_end_minute", Integer),
    Column("timezone", String(64), nullable=False, default="UTC"),
    Column("channels", Text, nullable=False, default="[]"),  # JSON list of {"kind", "address"}
    Column("max_offers_per_visit", Integer, nullable=False, default=0),  # 0: service default
)

consent_history = Table(
    "consent_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE"), nullable=False),
    Column("action", String(16), nullable=False),  # grant | revoke
    Column("scopes", String(200), nullable=False),
    Column("policy_version", String(32), nullable=False, default=""),
    Column("source", String(64), nullable=False, default=""),
    Column("actor", String(100), nullable=False, default=""),
    Column("reason", String(500), nullable=False, default=""),
    Column("at", Double, nullable=False),
    Index("ix_consent_history_member", "member_id", "at"),
)

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("category", String(64), nullable=False),
    Column("sensitive", Boolean, nullable=False, default=False),
    Column("price", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_products_category", "category"),
)

inventory = Table(
    "inventory",
    metadata,
    Column("store_id", String(64), ForeignKey("stores.store_id", ondelete="CASCADE"), primary_key=True),
    Column("sku", String(64), ForeignKey("products.sku", ondelete="CASCADE"), primary_key=True),
    Column("on_hand", Integer, nullable=False, default=0),
    Column("aisle", String(32), nullable=False, default=""),
    Column("shelf", String(32), nullable=False, default=""),
    Column("updated_at", Double, nullable=False),
)

transactions = Table(
    "transactions",
    metadata,
    Column("transaction_id", String(64), primary_key=True),
    Column("store_id", String(64), ForeignKey("stores.store_id"), nullable=False),
    Column("lane_id", String(64), nullable=False, default=""),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="SET NULL")),
    Column("at", Double, nullable=False),
    Column("total", Double, nullable=False, default=0.0),
    Index("ix_transactions_member_at", "member_id", "at"),
)

transaction_lines = Table(
    "transaction_lines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("transaction_id", String(64), ForeignKey("transactions.transaction_id", ondelete="CASCADE"), nullable=False),
    Column("sku", String(64), ForeignKey("products.sku"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Double, nullable=False),
    Index("ix_transaction_lines_transaction", "transaction_id"),
)

online_events = Table(
    "online_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE"), nullable=False),
    Column("type", String(32), nullable=False),  # viewed | searched | added_to_cart | abandoned_cart | purchased_online
    Column("sku", String(64), ForeignKey("products.sku")),
    Column("query", String(200), nullable=False, default=""),
    Column("session_id", String(64), nullable=False, default=""),
    Column("at", Double, nullable=False),
    Index("ix_online_events_member_at", "member_id", "at"),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("skus", Text, nullable=False, default="[]"),
    Column("categories", Text, nullable=False, default="[]"),
    Column("discount_percent", Double, nullable=False),
    Column("valid_from", Double),
    Column("valid_until", Double),
    Column("priority", Integer, nullable=False, default=0),
    Column("frequency_cap_per_day", Integer, nullable=False, default=0),
    Column("store_ids", Text, nullable=False, default="[]"),
    Column("updated_at", Double, nullable=False),
)

offer_deliveries = Table(
    "offer_deliveries",
    metadata,
    Column("offer_id", String(64), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE"), nullable=False),
    Column("store_id", String(64), nullable=False, default=""),
    Column("sku", String(64), nullable=False),
    Column("category", String(64), nullable=False),
    Column("campaign_id", String(64), nullable=False, default=""),
    Column("source", String(32), nullable=False),
    Column("channel", String(32), nullable=False),  # push | app | kiosk | entrance | checkout
    Column("discount_percent", Double, nullable=False),
    Column("reason", String(300), nullable=False),
    Column("delivered_at", Double, nullable=False),
    Column("valid_until", Double, nullable=False),
    Column("redeemed_at", Double),
    Index("ix_offer_deliveries_member_at", "member_id", "delivered_at"),
)

offer_feedback = Table(
    "offer_feedback",
    metadata,
    Column("feedback_id", String(64), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE"), nullable=False),
    Column("offer_id", String(64), nullable=False),
    Column("type", String(32), nullable=False),  # unliked | unliked_category | redeemed | dismissed
    Column("at", Double, nullable=False),
    Index("ix_offer_feedback_member", "member_id"),
)

# What a member never wants offered again: one row per unliked sku or category.
member_dislikes = Table(
    "member_dislikes",
    metadata,
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),  # sku | category
    Column("value", String(64), primary_key=True),
    Column("at", Double, nullable=False),
)

visits = Table(
    "visits",
    metadata,
    Column("visit_id", String(64), primary_key=True),
    Column("store_id", String(64), ForeignKey("stores.store_id"), nullable=False),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE")),
    Column("track_id", String(64), nullable=False, default=""),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double),
    Index("ix_visits_member", "member_id", "started_at"),
    Index("ix_visits_store_track", "store_id", "track_id"),
)

# Visit events keep no face attributes of members; anonymous shoppers' coarse age band and gender (columns added
# below) are only counted for store analytics. Offers are never tailored to demographics.
visit_events = Table(
    "visit_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("visit_id", String(64), ForeignKey("visits.visit_id", ondelete="CASCADE")),
    Column("type", String(16), nullable=False),
    Column("store_id", String(64), nullable=False),
    Column("camera_id", String(64), nullable=False, default=""),
    Column("zone_id", String(64), nullable=False, default=""),
    Column("lane_id", String(64), nullable=False, default=""),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE")),
    Column("track_id", String(64), nullable=False, default=""),
    Column("at", Double, nullable=False),
    Column("dwell_seconds", Double, nullable=False, default=0.0),
    Column("negative_fraction", Double),
    Column("emotion_seconds", Double),
    Index("ix_visit_events_member", "member_id"),
)

staff_alerts = Table(
    "staff_alerts",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # greeting | dissatisfaction | watchlist
    Column("store_id", String(64), nullable=False),
    Column("zone_id", String(64), nullable=False, default=""),
    Column("lane_id", String(64), nullable=False, default=""),
    Column("camera_id", String(64), nullable=False, default=""),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE")),
    Column("subject_key", String(128), nullable=False, default=""),  # member or track, for cool-downs
    Column("display_name", String(100), nullable=False, default=""),
    Column("message", String(300), nullable=False),
    Column("priority", Double, nullable=False, default=0.0),
    Column("requires_confirmation", Boolean, nullable=False, default=False),
    Column("raised_at", Double, nullable=False),
    Column("track_id", String(64), nullable=False, default=""),
    Column("event_id", String(64), nullable=False, default=""),
    Column("acknowledged_at", Double),
    Column("acknowledged_by", String(100), nullable=False, default=""),
    Column("confirmed", Boolean, nullable=False, default=False),
    Column("withdrawn", Boolean, nullable=False, default=False),  # consent revoked before anyone saw it
    Index("ix_staff_alerts_store_raised", "store_id", "raised_at"),
    Index("ix_staff_alerts_subject", "subject_key", "kind", "raised_at"),
)

# Security watchlist subjects (ids the matching service returns); alerts only in stores that enable it.
watchlist = Table(
    "watchlist",
    metadata,
    Column("subject_id", String(64), primary_key=True),
    Column("reason", String(300), nullable=False),
    Column("added_by", String(100), nullable=False),
    Column("added_at", Double, nullable=False),
)

notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE")),
    Column("channel", String(16), nullable=False),  # webhook | log
    Column("address", String(500), nullable=False, default=""),
    Column("payload", Text, nullable=False),  # JSON
    Column("status", String(16), nullable=False),  # pending | delivered | cancelled | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Double, nullable=False),
    Column("last_error", String(500), nullable=False, default=""),
    Column("created_at", Double, nullable=False),
    Column("delivered_at", Double),
    Index("ix_outbox_status_due", "status", "next_attempt_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(32), nullable=False),  # identify | read | update | erase | consent | ...
    Column("subject", String(128), nullable=False),
    Column("reason", String(500), nullable=False, default=""),
    Column("detail", Text, nullable=False, default="{}"),  # JSON, never biometric data
    Column("prev_hash", String(64), nullable=False, server_default=""),  # hash chain: audit_chain.py
    Column("row_hash", String(64), nullable=False, server_default=""),
    Index("ix_audit_subject_at", "subject", "at"),
    Index("ix_audit_at", "at"),
)

# The newest chained audit row (one row, id 1); writers lock it to append (audit_chain.append).
audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", Integer, nullable=False),
    Column("row_hash", String(64), nullable=False),
)


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).expanduser() / 'personalization.sqlite3'}"


def open_engine(url: str, busy_timeout_ms: int = 10_000, auto_checkpoint: bool = True) -> Engine:
    """An engine for `url`; SQLite files get their directory created and the pragmas of dialects.py.

    With auto_checkpoint=False, SQLite no longer copies the WAL back into the database inside the
    commit that crosses 1000 pages (a 10-60 ms stall of that request); run a `Checkpointer`.
    PostgreSQL connections are pinged when taken from the pool, so a restarted server or a killed
    backend costs one reconnect, not a failed call.
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine, busy_timeout_ms, auto_checkpoint)
    return engine


@contextmanager
def unavailable_on_outage(dialect: str) -> Iterator[None]:
    """Turns "the database is out of reach" into `Unavailable`, and a value the database cannot store (PostgreSQL's
    data exceptions: NUL in text, too long for its column, out of range) into `InvalidArgument`; any other error
    passes as it is."""
    try:
        yield
    except exc.DBAPIError as error:
        if isinstance(error, exc.DataError):
            raise InvalidArgument(f"a value in the request cannot be stored: {first_line(error)}") from error
        if not is_unavailable(error, dialect):
            raise
        log.warning("personalization_database_unavailable", dialect=dialect, error=first_line(error))
        raise Unavailable(f"personalization database unavailable: {first_line(error)}; retry") from error


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction; on SQLite it takes the write lock at BEGIN (no lock-upgrade failures).

    SQLite has one writer at a time. Writers of this process queue on a Python lock, which hands
    over at once, instead of SQLite's busy handler, which polls with sleeps of 1 ms and more;
    other processes still meet the busy timeout. PostgreSQL writers run side by side (READ
    COMMITTED); what must not interleave takes a lock (dialects.py).
    """
    if engine.dialect.name != "sqlite":
        with unavailable_on_outage(engine.dialect.name), engine.connect() as conn, conn.begin():
            yield conn
        return
    with sqlite_write_lock(engine), engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    with unavailable_on_outage(engine.dialect.name), engine.connect() as conn, conn.begin():
        yield conn


# ---------------------------------------------------------------- member portal and privacy office (migration 4)

# Single-use sign-in codes of the member portal (signin.py): only the code's SHA-256 is kept.
member_signin_codes = Table(
    "member_signin_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.member_id", ondelete="CASCADE"), nullable=False),
    Column("issued_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("used_at", Double),
    Index("ix_member_signin_codes_member", "member_id"),
)

# Erasure requests and their receipts (erasure.py); member_ref (a keyed hash) outlives the member id.
erasure_requests = Table(
    "erasure_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("member_ref", String(64), nullable=False),
    Column("member_id", String(64)),  # while pending only
    Column("requested_by", String(100), nullable=False),
    Column("requested_at", Double, nullable=False),
    Column("reason", String(500), nullable=False, default=""),
    Column("status", String(16), nullable=False),  # pending | completed
    Column("completed_at", Double),
    Column("completed_by", String(100), nullable=False, default=""),
    Column("templates_removed", Integer, nullable=False, default=0),
    Column("rows_removed", Text, nullable=False, default="{}"),  # JSON {table: rows}
    Index("ix_erasure_requests_status", "status", "requested_at"),
    Index("ix_erasure_requests_member_ref", "member_ref"),
)

# Keys the service makes once per database when none is configured (erasure.py's member_ref key).
service_secrets = Table(
    "service_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)


# ---------------------------------------------------------------- stores, cameras and watchlist expiry (migration 3)
stores.append_column(Column("watchlist_enabled", Boolean, nullable=False, default=False, server_default="0"))
stores.append_column(Column("updated_at", Double))
# Entries expire (required for new ones) and alert only once confirmed by a second person (not added_by).
watchlist.append_column(Column("expires_at", Double))
watchlist.append_column(Column("confirmed_by", String(100), nullable=False, default="", server_default=""))
watchlist.append_column(Column("confirmed_at", Double))
# Anonymous shoppers' events only (member_id NULL): coarse age band and gender, for aggregate counts.
visit_events.append_column(Column("age_band", String(8), nullable=False, default="", server_default=""))
visit_events.append_column(Column("gender", String(8), nullable=False, default="", server_default=""))
cameras = Table(
    "cameras",
    metadata,
    Column("camera_id", String(128), primary_key=True),
    Column("store_id", String(64), ForeignKey("stores.store_id"), nullable=False),
    Column("role", String(16), nullable=False),  # entrance | aisle | lane
    Column("zone_id", String(128), nullable=False, default=""),
    Column("lane_id", String(128), nullable=False, default=""),
    Column("updated_at", Double, nullable=False),
)
# One row (id 1), bumped by every camera change: readers (the gateway) tell a stale copy by it.
camera_registry = Table(
    "camera_registry",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)
