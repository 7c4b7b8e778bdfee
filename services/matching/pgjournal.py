"""The galleries' log and snapshots in PostgreSQL, shared by every matching replica of a chain.

The records are today's file records, sealed by the service (AES-256-GCM, crypto.py) before they
reach the database, which never holds a plaintext embedding or id::

    matching_heads            (gallery) -> the last sequence written; its row lock orders the writers
    matching_log              (gallery, sequence) -> one sealed change (context "log|<gallery>")
    matching_snapshots        (gallery, sequence) -> a complete snapshot at that sequence, its record count
    matching_snapshot_records (gallery, sequence, position) -> its sealed records ("snapshot|<gallery>|<seq>")
    matching_key_check        one sealed record: proves the configured key is the database's key

A write locks its gallery's head row, reads what other replicas appended since this replica's
position (the store applies it first), inserts its record at head + 1 and NOTIFYs
`retailface_matching_log` in the same transaction: other replicas hear of it at commit. A snapshot is
written by one replica at a time (a session advisory lock per gallery), in one transaction that also
deletes older snapshots and the log it covers; a replica that was behind that point finds a gap in the
log (`LogGapError`) and reloads from the snapshot.

A lost connection is `DatabaseUnavailableError` (UNAVAILABLE): the write was not made (or, when the
commit itself was cut, may have been: the follower applies it if it was), and the next call reconnects.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
import structlog
from psycopg import sql

from retailface.services.matching.crypto import RecordCipher, open_record
from retailface.services.matching.errors import DatabaseUnavailableError, KeyConfigError, LogGapError, StartupError
from retailface.services.matching.journal import Change, Loaded, LogWriter
from retailface.services.matching.snapshots import SnapshotMeta, TemplateChunk, parse_snapshot, snapshot_frames
from retailface.services.shared.errors import first_line

log = structlog.get_logger(__name__)

T = TypeVar("T")

CHANNEL = "retailface_matching_log"  # NOTIFY payload: "<gallery> <sequence>"
KEY_CHECK_TEXT = b"retailface matching database key check v1"
KEY_CHECK_CONTEXT = "key-check|postgresql"
APPLICATION = "retailface-matching"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS matching_heads (
        gallery text PRIMARY KEY,
        sequence bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS matching_log (
        gallery text NOT NULL,
        sequence bigint NOT NULL,
        record bytea NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (gallery, sequence))""",
    """CREATE TABLE IF NOT EXISTS matching_snapshots (
        gallery text NOT NULL,
        sequence bigint NOT NULL,
        records integer NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (gallery, sequence))""",
    """CREATE TABLE IF NOT EXISTS matching_snapshot_records (
        gallery text NOT NULL,
        sequence bigint NOT NULL,
        position integer NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (gallery, sequence, position))""",
    # Sealed records do not compress: store them out of line without trying.
    "ALTER TABLE matching_log ALTER COLUMN record SET STORAGE EXTERNAL",
    "ALTER TABLE matching_snapshot_records ALTER COLUMN record SET STORAGE EXTERNAL",
    """CREATE TABLE IF NOT EXISTS matching_key_check (
        id integer PRIMARY KEY CHECK (id = 1),
        record bytea NOT NULL)""",
]


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    digest = hashlib.blake2b("|".join(("retailface.matching", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _unavailable(error: psycopg.Error, doing: str) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(
        f"matching's PostgreSQL (RETAILFACE_MATCHING_DB_URL) cannot be reached while {doing}: {first_line(error)}; "
        "retry once it is back"
    )


class MatchingDatabase:
    """The database every gallery's journal shares: its URL, its schema and its key check."""

    def __init__(self, conninfo: str, cipher: RecordCipher) -> None:
        self.conninfo = conninfo
        self.cipher = cipher
        try:
            with self.connect() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema"),))  # replicas start at once
                for statement in SCHEMA:
                    conn.execute(statement)
        except psycopg.OperationalError as error:
            raise StartupError(
                f"cannot reach matching's PostgreSQL (RETAILFACE_MATCHING_DB_URL): {first_line(error)}"
            ) from error

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, autocommit=True, application_name=APPLICATION)

    def check_key(self) -> bool:
        """Raises KeyConfigError when the key does not open the database's key check; True when there is none."""
        with self.connect() as conn:
            row = conn.execute("SELECT record FROM matching_key_check WHERE id = 1").fetchone()
        if row is None:
            return True
        try:
            text = open_record(self.cipher, KEY_CHECK_CONTEXT, 0, bytes(row[0]), "the database's key check")
        except StartupError as error:
            raise KeyConfigError(
                "the key in RETAILFACE_MATCHING_KEY_FILE is not the key the galleries in RETAILFACE_MATCHING_DB_URL "
                "were written with; configure the original key (the database cannot be read without it)"
            ) from error
        if text != KEY_CHECK_TEXT:
            raise KeyConfigError("matching_key_check does not hold a RetailFace matching key check")
        return False

    def write_key_check(self) -> None:
        """Claims the database for the key, once every gallery decrypted with it."""
        record = self.cipher.seal(KEY_CHECK_CONTEXT, 0, KEY_CHECK_TEXT)
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO matching_key_check (id, record) VALUES (1, %s) ON CONFLICT (id) DO NOTHING", (record,)
            )


class PostgresJournal:
    """One gallery's log and snapshots in the shared database; writes ordered by its head row's lock."""

    shared = True

    def __init__(self, database: MatchingDatabase, gallery: str, dim: int) -> None:
        self._db = database
        self._cipher = database.cipher
        self._gallery = gallery
        self._dim = dim
        self._log_context = f"log|{gallery}"
        self._conn: psycopg.Connection | None = None  # the store's write lock serialises its users
        self._conn_lock = threading.Lock()
        self._snapshot_sequence: int | None = None
        with self._connection("starting") as conn:
            conn.execute(
                "INSERT INTO matching_heads (gallery, sequence) VALUES (%s, 0) ON CONFLICT (gallery) DO NOTHING",
                (gallery,),
            )

    @contextmanager
    def _connection(self, doing: str) -> Iterator[psycopg.Connection]:
        """The journal's connection (reopened after a loss); a lost connection becomes UNAVAILABLE."""
        with self._conn_lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = self._db.connect()
                yield self._conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                self._discard()
                raise _unavailable(error, doing) from error

    def _read(self, doing: str, query: Callable[[psycopg.Connection], T]) -> T:
        """A read, once more on a new connection when the kept one turns out dead (the server restarted since
        its last use: a connection learns that only when used). A write is never repeated: its first try may
        have committed."""
        try:
            with self._connection(doing) as conn:
                return query(conn)
        except DatabaseUnavailableError:
            with self._connection(doing) as conn:
                return query(conn)

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # ------------------------------------------------------------ reading

    def _open_change(self, sequence: int, record: bytes) -> Change:
        where = f"PostgreSQL matching_log {self._gallery} {sequence}"
        return Change(sequence, open_record(self._cipher, self._log_context, sequence, record, where))

    def _changes(self, conn: psycopg.Connection, after: int, head: int) -> list[Change]:
        """Records after `after` up to `head`, checked gap-free."""
        if head <= after:
            return []
        with conn.cursor(binary=True) as cursor:
            rows = cursor.execute(
                "SELECT sequence, record FROM matching_log WHERE gallery = %s AND sequence > %s AND sequence <= %s "
                "ORDER BY sequence",
                (self._gallery, after, head),
            ).fetchall()
        if len(rows) != head - after or (rows and rows[0][0] != after + 1):
            raise LogGapError(
                f"gallery {self._gallery}: changes {after + 1}..{head} are no longer all in the log "
                "(a newer snapshot covers them)"
            )
        return [self._open_change(int(sequence), bytes(record)) for sequence, record in rows]

    def load(self) -> Loaded:
        """The newest snapshot and the log after it, read in one consistent view of the database."""

        def query(conn: psycopg.Connection) -> tuple[tuple[SnapshotMeta, list[TemplateChunk]] | None, list[Change]]:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            try:
                with conn.transaction():
                    snapshot = self._read_snapshot(conn)
                    (head,) = conn.execute(
                        "SELECT sequence FROM matching_heads WHERE gallery = %s", (self._gallery,)
                    ).fetchone() or (0,)
                    return snapshot, self._changes(conn, snapshot[0].sequence if snapshot else 0, int(head))
            finally:
                if not conn.broken:
                    conn.isolation_level = None

        snapshot, changes = self._read("loading the gallery", query)
        self._snapshot_sequence = snapshot[0].sequence if snapshot else None
        return Loaded(snapshot, changes, f"PostgreSQL gallery {self._gallery}")

    def _read_snapshot(self, conn: psycopg.Connection) -> tuple[SnapshotMeta, list[TemplateChunk]] | None:
        row = conn.execute(
            "SELECT sequence, records FROM matching_snapshots WHERE gallery = %s ORDER BY sequence DESC LIMIT 1",
            (self._gallery,),
        ).fetchone()
        if row is None:
            return None
        sequence, count = int(row[0]), int(row[1])
        context = f"snapshot|{self._gallery}|{sequence}"
        where = f"PostgreSQL snapshot {sequence} of gallery {self._gallery}"
        plaintexts: list[bytes] = []
        with conn.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT position, record FROM matching_snapshot_records WHERE gallery = %s AND sequence = %s "
                "ORDER BY position",
                (self._gallery, sequence),
            )
            for position, record in cursor:
                if position != len(plaintexts):
                    raise LogGapError(f"{where}: record {len(plaintexts)} is missing")
                plaintexts.append(open_record(self._cipher, context, int(position), bytes(record), where))
        if len(plaintexts) != count:
            raise LogGapError(f"{where}: {len(plaintexts)} records of {count}")
        return parse_snapshot(plaintexts, self._gallery, self._dim, where)

    def changes_after(self, applied: int) -> list[Change]:
        def query(conn: psycopg.Connection) -> list[Change]:
            row = conn.execute("SELECT sequence FROM matching_heads WHERE gallery = %s", (self._gallery,)).fetchone()
            return self._changes(conn, applied, int(row[0]) if row else 0)

        return self._read("following the log", query)

    # ------------------------------------------------------------ writing

    @contextmanager
    def writing(self, applied: int) -> Iterator[LogWriter]:
        with self._connection("writing a change") as conn, conn.transaction():
            (head,) = conn.execute(
                "SELECT sequence FROM matching_heads WHERE gallery = %s FOR UPDATE", (self._gallery,)
            ).fetchone()
            writer = LogWriter(pending=self._changes(conn, applied, int(head)), head=int(head))
            yield writer
            if writer.appended:
                conn.execute(
                    "UPDATE matching_heads SET sequence = %s WHERE gallery = %s", (writer.appended, self._gallery)
                )
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._gallery} {writer.appended}"))

    def append(self, writer: LogWriter, plaintext: bytes) -> int:
        if writer.appended:
            raise RuntimeError("one change per writing() block")
        assert self._conn is not None, "append() runs inside writing()"
        sequence = writer.head + 1
        self._conn.execute(
            "INSERT INTO matching_log (gallery, sequence, record) VALUES (%s, %s, %s)",
            (self._gallery, sequence, self._cipher.seal(self._log_context, sequence, plaintext)),
        )
        writer.appended = sequence
        return sequence

    # ------------------------------------------------------------ snapshots

    def snapshot_sequence(self) -> int | None:
        return self._snapshot_sequence

    def refresh_snapshot_sequence(self) -> int | None:
        """Reads the newest snapshot's sequence (another replica may have written it)."""
        row = self._read(
            "reading the snapshots",
            lambda conn: conn.execute(
                "SELECT max(sequence) FROM matching_snapshots WHERE gallery = %s", (self._gallery,)
            ).fetchone(),
        )
        self._snapshot_sequence = int(row[0]) if row and row[0] is not None else None
        return self._snapshot_sequence

    def prepare_snapshot(self) -> None:
        pass  # the log needs no rotation: the snapshot's transaction deletes what it covers

    def write_snapshot(self, meta: SnapshotMeta, templates: TemplateChunk) -> bool:
        """One replica at a time (a session advisory lock); False when another wrote one as new, or is writing."""
        lock = lock_key("snapshot", self._gallery)
        try:
            with self._db.connect() as conn:
                (locked,) = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()
                if not locked:
                    return False
                try:
                    with conn.transaction():
                        written = self._replace_snapshot(conn, meta, templates)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
        except psycopg.OperationalError as error:
            raise _unavailable(error, "writing a snapshot") from error
        return written

    def _replace_snapshot(self, conn: psycopg.Connection, meta: SnapshotMeta, templates: TemplateChunk) -> bool:
        """Inside one transaction: the new snapshot in, the older snapshots and the log it covers out."""
        (newest,) = conn.execute(
            "SELECT max(sequence) FROM matching_snapshots WHERE gallery = %s", (self._gallery,)
        ).fetchone()
        if newest is not None and int(newest) >= meta.sequence:
            self._snapshot_sequence = int(newest)
            return False
        frames = snapshot_frames(self._cipher, meta, templates, f"snapshot|{self._gallery}|{meta.sequence}")
        count = self._copy_records(conn, meta.sequence, frames)
        conn.execute(
            "INSERT INTO matching_snapshots (gallery, sequence, records) VALUES (%s, %s, %s)",
            (self._gallery, meta.sequence, count),
        )
        for table in ("matching_snapshot_records", "matching_snapshots"):
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE gallery = %s AND sequence < %s").format(sql.Identifier(table)),
                (self._gallery, meta.sequence),
            )
        conn.execute("DELETE FROM matching_log WHERE gallery = %s AND sequence <= %s", (self._gallery, meta.sequence))
        self._snapshot_sequence = meta.sequence
        return True

    def _copy_records(self, conn: psycopg.Connection, sequence: int, frames: Iterable[bytes]) -> int:
        count = 0
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "COPY matching_snapshot_records (gallery, sequence, position, record) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "int8", "int4", "bytea"])
            for frame in frames:
                copy.write_row((self._gallery, sequence, count, frame))
                count += 1
        return count

    def finish_snapshot(self, sequence: int) -> int:
        return 0  # deleted by the snapshot's own transaction

    def close(self) -> None:
        with self._conn_lock:
            self._discard()
