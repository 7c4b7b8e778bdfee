"""The audit log's hash chain: how a row is hashed, appended and how a log written before the chain is chained.

Every audit row stores `prev_hash` (the row_hash of the row before it; 64 zeros for the first) and
`row_hash`, the hex SHA-256 of the canonical serialisation of (id, at, actor, action, subject, reason,
detail, prev_hash): a compact JSON array, ASCII only, `at` as the float it is stored as, prefixed with a
format tag. Editing any field of a row breaks that row's hash; deleting a row breaks the next row's link;
deleting the newest rows is caught against the chain head (`audit_chain_head`, one row: the id and hash of
the newest row). `audit.verify_chain` checks all of it and names the first broken row.

Concurrency: a writer first moves the head on (UPDATE ... RETURNING: its last_id + 1 is the new row's
id, its row_hash the new row's prev_hash), then inserts the row and sets the head's hash, all in the
caller's write transaction. On PostgreSQL the head's row lock serialises audit writers (after a wait, READ
COMMITTED re-reads the updated head, so two writers never chain onto the same row); on SQLite `db.write`
holds the database's one write lock from BEGIN IMMEDIATE to commit, which is stronger.

Erasure does not touch the audit log: `members.erase` deletes personal data from the tables in
`members.PERSONAL_DATA` and records itself as one more audit row ("erase"); earlier rows (which hold no
biometric or profile data, only the member id as subject) stay as written, so their hashes, and the chain,
stay valid. If a future redaction must rewrite audit rows, it must not silently re-chain; that would need
a redactable digest per field, which this format (hashing the fields themselves) does not offer.

The chain detects edits made without recomputing it; someone who can rewrite the whole table and the head
can forge a consistent chain, so an export of the head hash elsewhere is what anchors it in time.

Only pure hashing and statements over the tables it is handed live here (db.py's migration uses it, so it
cannot import db).
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, insert, inspect, select, update

GENESIS = "0" * 64
HEAD_ID = 1
_FORMAT = "retailface-audit-v1"
FIELDS = ("at", "actor", "action", "subject", "reason", "detail")
ROW_COLUMNS = ("id", *FIELDS, "prev_hash", "row_hash")
_MIGRATION_BATCH = 1000


def row_hash(row_id: int, at: float, actor: str, action: str, subject: str, reason: str, detail: str, prev: str) -> str:
    """Hex SHA-256 of the row's canonical serialisation (see the module docstring)."""
    canonical = json.dumps(
        [_FORMAT, int(row_id), float(at), actor, action, subject, reason, detail, prev],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def hash_of(row: Any) -> str:
    """row_hash of an audit_log row as read back (all columns but row_hash)."""
    return row_hash(row.id, row.at, row.actor, row.action, row.subject, row.reason, row.detail, row.prev_hash)


@functools.cache
def _statements(log: Table, head: Table) -> tuple[Any, Any, Any, Any]:
    """append's statements, built once per table pair (SQLAlchemy then reuses their compiled form)."""
    take_id = (
        update(head)
        .where(head.c.id == HEAD_ID)
        .values(last_id=head.c.last_id + 1)
        .returning(head.c.last_id, head.c.row_hash)
    )
    move_head = update(head).where(head.c.id == HEAD_ID).values(row_hash=bindparam("new_head_hash"))
    # Binds named apart from the columns: the head's columns must not pick up the row's values (id).
    add_row = insert(log).values({name: bindparam(f"row_{name}") for name in ROW_COLUMNS})
    # PostgreSQL: the head's new hash rides on the insert (a data-modifying CTE), one round trip for both.
    add_row_moving_head = add_row.add_cte(move_head.cte("moved_head"))
    return take_id, move_head, add_row, add_row_moving_head


def append(conn: Connection, log: Table, head: Table, values: dict[str, Any]) -> int:
    """Inserts one audit row (values: FIELDS) chained onto the head, inside the caller's write transaction.

    The head hands out the row's id (its last_id + 1) under its row lock, so the row goes in with its hash
    at once: two statements on PostgreSQL, three on SQLite.
    """
    take_id, move_head, add_row, add_row_moving_head = _statements(log, head)
    values = {**values, "at": float(values["at"])}  # hashed as the double the column returns
    row_id, prev = conn.execute(take_id).one()
    digest = row_hash(row_id, prev=prev, **values)
    row = {f"row_{name}": value for name, value in values.items()}
    row |= {"row_id": row_id, "row_prev_hash": prev, "row_row_hash": digest, "new_head_hash": digest}
    if conn.dialect.name == "postgresql":
        conn.execute(add_row_moving_head, row)
    else:
        conn.execute(add_row, row)
        conn.execute(move_head, row)
    return int(row_id)


def migrate(conn: Connection, log: Table, head: Table) -> int:
    """Adds the chain columns and the head where missing and chains the existing rows in id order.

    Returns the number of rows chained. A database created at this schema already has the columns and
    the head table (version 1 creates the tables from the current metadata); only what is missing is added.
    """
    present = {column["name"] for column in inspect(conn).get_columns(log.name)}
    for name in ("prev_hash", "row_hash"):
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE {log.name} ADD COLUMN {name} VARCHAR(64) NOT NULL DEFAULT ''")
    head.create(conn, checkfirst=True)
    link = update(log).where(log.c.id == bindparam("row_id")).values(prev_hash=bindparam("p"), row_hash=bindparam("h"))
    prev, last_id, chained = GENESIS, 0, 0
    page = select(log.c.id, *(log.c[name] for name in FIELDS)).order_by(log.c.id).limit(_MIGRATION_BATCH)
    while rows := conn.execute(page.where(log.c.id > last_id)).all():
        links = []
        for row in rows:
            digest = row_hash(row.id, row.at, row.actor, row.action, row.subject, row.reason, row.detail, prev)
            links.append({"row_id": row.id, "p": prev, "h": digest})
            prev, last_id = digest, row.id
        conn.execute(link, links)
        chained += len(links)
    conn.execute(delete(head))
    conn.execute(insert(head).values(id=HEAD_ID, last_id=last_id, row_hash=prev))
    return chained
