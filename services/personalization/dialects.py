"""What differs between the two databases personalization runs on: SQLite (embedded) and PostgreSQL.

SQLite: one writer at a time. Connections get WAL, foreign keys and a busy timeout; write
transactions take the write lock up front (BEGIN IMMEDIATE) behind a per-engine Python lock, and
a `Checkpointer` can move WAL checkpoints off the request path. Row locks, advisory locks and
notifications are no-ops there: the one write lock is stronger than any of them, and there is one
process to tell.

PostgreSQL: many writers (several replicas) at READ COMMITTED. Invariants that a check-then-write
would break under concurrency use a lock: a row lock on the member (`FOR UPDATE`, rendered by
SQLAlchemy on PostgreSQL only), a transaction-scoped advisory lock on an idempotency key
(`lock_key`), `FOR UPDATE SKIP LOCKED` for the outbox claim. Changes other replicas must see are
announced with `NOTIFY` (`notify`), delivered when the transaction commits. A lost connection or a
server that is down is an OperationalError/InterfaceError of the driver (`is_unavailable`).
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, event, exc, func, select
from sqlalchemy.dialects import postgresql, sqlite

from retailface.services.shared.periodic import PeriodicWorker

SUPPORTED = ("sqlite", "postgresql")
MAX_NOTIFY_BYTES = 7900  # PostgreSQL refuses payloads of 8000 bytes and more


def _unsupported(dialect: str) -> ValueError:
    return ValueError(f"unsupported database dialect {dialect!r}; use {' or '.join(SUPPORTED)}")


def configure_sqlite(engine: Engine, busy_timeout_ms: int, auto_checkpoint: bool) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below), so pysqlite must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not auto_checkpoint:  # a Checkpointer thread does it, off the request path
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Checkpointer:
    """Checkpoints the SQLite WAL (PASSIVE: never waits for readers or writers); `start()` does it every
    `interval_seconds` in the background. Other dialects have nothing to checkpoint: start() does nothing."""

    def __init__(self, engine: Engine, interval_seconds: float = 1.0) -> None:
        self._engine = engine
        background = engine.dialect.name == "sqlite" and interval_seconds > 0
        self._worker = PeriodicWorker("sqlite-checkpoint", interval_seconds, self.checkpoint) if background else None

    def checkpoint(self) -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def start(self) -> None:
        if self._worker is not None:
            self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()


_SQLITE_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_SQLITE_WRITE_LOCKS_GUARD = threading.Lock()


def sqlite_write_lock(engine: Engine) -> threading.Lock:
    """The per-engine lock that this process's SQLite writers queue on (see db.write)."""
    with _SQLITE_WRITE_LOCKS_GUARD:
        lock = _SQLITE_WRITE_LOCKS.get(engine)
        if lock is None:
            lock = _SQLITE_WRITE_LOCKS[engine] = threading.Lock()
        return lock


def insert_ignoring_duplicates(engine: Engine, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the engine's dialect (built once per dialect and table)."""
    return _insert_ignoring_duplicates(engine.dialect.name, table)


@functools.cache
def _insert_ignoring_duplicates(dialect: str, table: Table) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise _unsupported(dialect)


def upsert(engine: Engine, table: Table) -> Any:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE SET every other column, for the engine's dialect."""
    statement: sqlite.Insert | postgresql.Insert
    if engine.dialect.name == "sqlite":
        statement = sqlite.insert(table)
    elif engine.dialect.name == "postgresql":
        statement = postgresql.insert(table)
    else:
        raise _unsupported(engine.dialect.name)
    keys = [column.name for column in table.primary_key]
    others = {column.name: statement.excluded[column.name] for column in table.columns if column.name not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=others)


def greatest(engine: Engine) -> Any:
    """The SQL function of the larger of its arguments (SQLite's two-argument max, GREATEST elsewhere)."""
    return func.max if engine.dialect.name == "sqlite" else func.greatest


_ADVISORY_XACT_LOCK = select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("lock_name"), 0)))


def lock_key(conn: Connection, namespace: str, key: str) -> None:
    """Serialises the transactions that handle one idempotency key, until commit (PostgreSQL).

    A transaction-scoped advisory lock on a 64-bit hash of "namespace:key": a second transaction with
    the same key waits here until the first commits or rolls back, and (READ COMMITTED) its next
    statement sees what the first wrote. A hash collision only makes two keys wait for each other.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_ADVISORY_XACT_LOCK, {"lock_name": f"{namespace}:{key}"})


def notify(conn: Connection, channel: str, payload: Mapping[str, Any]) -> None:
    """Announces a change to the other replicas' listeners when the transaction commits (PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > MAX_NOTIFY_BYTES:
        raise ValueError(f"notification on {channel} is {len(text)} bytes; send less (at most {MAX_NOTIFY_BYTES})")
    conn.execute(select(func.pg_notify(channel, text)))


def is_unavailable(error: BaseException, dialect: str) -> bool:
    """Whether a database error means "the database is out of reach now; retry" rather than a bug.

    On PostgreSQL: a lost or refused connection (OperationalError, InterfaceError, or any error
    SQLAlchemy flagged as a disconnect), a server shutting down, and the conflicts a retry resolves
    (deadlock, serialization failure: also OperationalError in psycopg). SQLite keeps its errors.
    """
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return dialect == "postgresql" and isinstance(error, exc.OperationalError | exc.InterfaceError)
