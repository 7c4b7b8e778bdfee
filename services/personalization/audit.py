"""Reading the audit log (entries are written by each module with `base.write_audit`).

Every read of a member, change and identification leaves an entry, never biometric data; reading
the log is itself audited. Each row is hash-chained to the one before it (audit_chain.py, which also
says why erasure keeps the chain valid); `verify_chain` checks the chain and names the first broken row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from retailface.services.personalization import audit_chain, db
from retailface.services.personalization.base import Component, write_audit
from retailface.services.personalization.domain import AuditEntry
from retailface.services.shared.errors import InvalidArgument

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_VERIFY_BATCH = 1000


@dataclass(frozen=True)
class ChainReport:
    rows: int  # rows checked (up to and including the first broken one)
    first_broken_id: int | None  # None: the chain is intact
    reason: str = ""  # why the row is broken: "hash mismatch: ...", "broken link: ...", "missing rows: ..."

    @property
    def intact(self) -> bool:
        return self.first_broken_id is None


def verify_chain(engine: Engine) -> ChainReport:
    """Checks every audit row in id order (its link to the row before, its hash) against the chain head.

    One snapshot: a read transaction (SQLite) or REPEATABLE READ (PostgreSQL), so concurrent appends are
    either wholly in or wholly out of what is checked.
    """
    log, head = db.audit_log, db.audit_chain_head
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        stored = conn.execute(select(head.c.last_id, head.c.row_hash).where(head.c.id == audit_chain.HEAD_ID)).first()
        head_id, head_hash = (stored.last_id, stored.row_hash) if stored else (0, audit_chain.GENESIS)
        page = select(log).order_by(log.c.id).limit(_VERIFY_BATCH)
        rows, prev_id, prev = 0, 0, audit_chain.GENESIS
        while batch := conn.execute(page.where(log.c.id > prev_id)).all():
            for row in batch:
                rows += 1
                if row.prev_hash != prev:
                    before = f"row {prev_id}'s row_hash" if prev_id else "the genesis hash"
                    return ChainReport(rows, row.id, f"broken link: prev_hash does not match {before}")
                if audit_chain.hash_of(row) != row.row_hash:
                    return ChainReport(rows, row.id, "hash mismatch: the row's contents do not match its row_hash")
                if row.id > head_id or (row.id == head_id and row.row_hash != head_hash):
                    return ChainReport(rows, row.id, f"chain head mismatch: the head names row {head_id}")
                prev_id, prev = row.id, row.row_hash
    if head_id != prev_id:
        return ChainReport(
            rows, head_id, f"missing rows: the chain head names row {head_id}, the log ends at row {prev_id}"
        )
    return ChainReport(rows, None)


class AuditLog(Component):
    def query(
        self,
        member_id: str = "",
        since: float | None = None,
        limit: int = 0,
        actor: str = "",
        *,
        performed_by: str = "",
        action: str = "",
        until: float | None = None,
    ) -> list[AuditEntry]:
        """The newest entries first, at most `limit` (1..1000): about one member (or all), by one actor (exact,
        as stored, e.g. "privacy:officer-1"), of one action ("erase", "read", ...), from `since` up to `until`.

        `actor` is who asks (the query is audited); `performed_by` filters on who acted.
        """
        limit = max(1, min(limit or DEFAULT_LIMIT, MAX_LIMIT))
        if since is not None and until is not None and until < since:
            raise InvalidArgument("until must not be before since")
        log = db.audit_log
        query = select(log).order_by(log.c.at.desc(), log.c.id.desc()).limit(limit)
        if member_id:
            query = query.where(log.c.subject == member_id)
        if performed_by:
            query = query.where(log.c.actor == performed_by)
        if action:
            query = query.where(log.c.action == action)
        if since is not None:
            query = query.where(log.c.at >= since)
        if until is not None:
            query = query.where(log.c.at <= until)
        with db.write(self.engine) as conn:
            rows = conn.execute(query).all()
            filters = {"by_actor": performed_by, "of_action": action, "since": since, "until": until}
            used = {key: value for key, value in filters.items() if value not in ("", None)}
            write_audit(conn, actor, "read", member_id or "audit", "audit query", count=len(rows), **used)
        return [AuditEntry(r.at, r.actor, r.action, r.subject, r.reason, r.detail) for r in rows]

    def verify(self, actor: str = "") -> ChainReport:
        """verify_chain, audited (after the check, so the new row is not part of what was checked)."""
        report = verify_chain(self.engine)
        with db.write(self.engine) as conn:
            details = {"rows": report.rows, "first_broken_id": report.first_broken_id}
            write_audit(conn, actor, "read", "audit", "chain verification", **details)
        return report
