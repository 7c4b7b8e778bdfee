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


# Ordered; append only. Each entry: (version, name, function applied inside one transaction).
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _v1_initial_schema),
    (2, "audit hash chain", _v2_audit_hash_chain),
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
