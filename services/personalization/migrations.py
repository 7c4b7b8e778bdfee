"""Versioned migrations of the personalization database, safe when several replicas start at once.

Migrations are ordered functions recorded in `schema_migrations`; a database is brought to the
newest version at start-up, each migration in its own transaction. Append only: a schema change is
a new migration, never an edit of an applied one. One schema definition (db.py) serves both dialects.

Several replicas starting together all call `migrate`. Each migration runs in a transaction that
first takes the migration lock (PostgreSQL: a transaction-scoped advisory lock; SQLite: the write
lock of BEGIN IMMEDIATE), then reads which versions are applied, and applies its migration only if
it is missing. The first replica applies it; the others wait on the lock, then see it recorded and
skip it. DDL is transactional on both, so a replica killed mid-migration leaves nothing half done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog
from sqlalchemy import Column, Connection, Double, Engine, Integer, MetaData, String, Table, insert, inspect, select
from sqlalchemy import text as sql_text
from sqlalchemy import update as sql_update
from sqlalchemy.schema import CreateColumn

from retailface.services.personalization import audit_chain, db, dialects

log = structlog.get_logger(__name__)

schema_migrations = Table(
    "schema_migrations",
    MetaData(),
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", Double, nullable=False),
)


def _v1_initial_schema(conn: Connection) -> None:
    db.metadata.create_all(conn)


def _v2_audit_hash_chain(conn: Connection) -> None:
    audit_chain.migrate(conn, db.audit_log, db.audit_chain_head)


# Existing watchlist entries get this long to be reviewed (confirmed, given a real expiry, or removed).
V3_WATCHLIST_GRACE_SECONDS = 30 * 86_400.0
_V3_COLUMNS = {
    db.stores: ("watchlist_enabled", "updated_at"),
    db.watchlist: ("expires_at", "confirmed_by", "confirmed_at"),
    db.visit_events: ("age_band", "gender"),
}


def _v3_stores_cameras_watchlist_expiry(conn: Connection) -> None:
    """The camera registry, per-store watchlist flags, watchlist expiry and confirmation, anonymous demographics.

    A database made by migration 1 after these were declared has them already: only what is missing is made.
    Watchlist entries without an expiry get one (V3_WATCHLIST_GRACE_SECONDS from now) and stay unconfirmed.
    """
    inspector = inspect(conn)
    for table, names in _V3_COLUMNS.items():
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for name in names:
            if name not in present:
                column = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
                conn.execute(sql_text(f"ALTER TABLE {table.name} ADD COLUMN {column}"))
    db.cameras.create(conn, checkfirst=True)
    db.camera_registry.create(conn, checkfirst=True)
    if conn.execute(select(db.camera_registry.c.id)).first() is None:
        conn.execute(insert(db.camera_registry).values(id=1, version=0))
    conn.execute(
        sql_update(db.watchlist)
        .where(db.watchlist.c.expires_at.is_(None))
        .values(expires_at=time.time() + V3_WATCHLIST_GRACE_SECONDS)
    )


def _v4_member_portal(conn: Connection) -> None:
    """Sign-in codes, erasure requests and service secrets; a new database has them from migration 1."""
    for table in (db.member_signin_codes, db.erasure_requests, db.service_secrets):
        table.create(conn, checkfirst=True)


# Ordered; append only. Each entry: (version, name, function applied inside one transaction).
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _v1_initial_schema),
    (2, "audit hash chain", _v2_audit_hash_chain),
    (3, "stores, cameras and watchlist expiry", _v3_stores_cameras_watchlist_expiry),
    (4, "member sign-in codes and erasure requests", _v4_member_portal),
]


def current_version(engine: Engine) -> int:
    """The newest applied version (0 for an empty database)."""
    with db.read(engine) as conn:
        if not inspect(conn).has_table(schema_migrations.name):
            return 0
        versions = conn.execute(select(schema_migrations.c.version)).scalars().all()
    return max(versions, default=0)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A write transaction that holds the migration lock until it ends."""
    with db.write(engine) as conn:
        dialects.lock_key(conn, "schema_migrations", "personalization")
        schema_migrations.create(conn, checkfirst=True)
        yield conn


def migrate(engine: Engine) -> int:
    """Applies the migrations this database lacks, in order; returns the resulting version."""
    version = current_version(engine)
    for number, name, apply in MIGRATIONS:
        if number <= version:
            continue
        with _locked(engine) as conn:
            applied = set(conn.execute(select(schema_migrations.c.version)).scalars())
            if number in applied:  # another replica applied it while we waited for the lock
                version = number
                continue
            apply(conn)
            conn.execute(insert(schema_migrations).values(version=number, name=name, applied_at=time.time()))
        log.info("migration_applied", version=number, name=name)
        version = number
    return version
