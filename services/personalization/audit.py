"""Reading the audit log (entries are written by each module with `base.write_audit`).

Every read of a member, change and identification leaves an entry, never biometric data; reading
the log is itself audited.
"""

from __future__ import annotations

from sqlalchemy import select

from retailface.services.personalization import db
from retailface.services.personalization.base import Component, write_audit
from retailface.services.personalization.domain import AuditEntry

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class AuditLog(Component):
    def query(
        self, member_id: str = "", since: float | None = None, limit: int = 0, actor: str = ""
    ) -> list[AuditEntry]:
        """The newest entries first: about one member (or all), since a time, at most `limit` (1..1000)."""
        limit = max(1, min(limit or DEFAULT_LIMIT, MAX_LIMIT))
        log = db.audit_log
        query = select(log).order_by(log.c.at.desc(), log.c.id.desc()).limit(limit)
        if member_id:
            query = query.where(log.c.subject == member_id)
        if since is not None:
            query = query.where(log.c.at >= since)
        with db.write(self.engine) as conn:
            rows = conn.execute(query).all()
            write_audit(conn, actor, "read", member_id or "audit", "audit query", count=len(rows))
        return [AuditEntry(r.at, r.actor, r.action, r.subject, r.reason, r.detail) for r in rows]
