"""Erasure requests and their receipts (the privacy office).

A member (through the portal) or an officer asks for erasure: `request` records a pending request. The
gateway's EraseMember carries it out (face templates in matching, personal data here) and then calls
`complete`, which records the receipt: templates and rows removed, by whom and when. From then on the
request no longer holds the member id, only `member_ref`, an HMAC-SHA256 of the member id under a key of
the deployment (the MEMBER_REF_KEY setting, else a random key made once and kept in the database): the
same member always gets the same ref, so an officer who is asked "was member X erased?" can check, but the
receipt names no one by itself. An erasure carried out without a prior request records one on completion.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update

from retailface.services.personalization import db, dialects
from retailface.services.personalization.base import Component, load_member, write_audit
from retailface.services.shared.errors import FailedPrecondition, InvalidArgument, NotFound
from retailface.services.shared.identifiers import check_id

PENDING = "pending"
COMPLETED = "completed"
STATUSES = (PENDING, COMPLETED)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_KEY_NAME = "member_ref_key"


@dataclass(frozen=True)
class ErasureRecord:
    request_id: str
    member_ref: str
    member_id: str  # while pending only; "" once completed
    requested_by: str
    requested_at: float
    status: str
    reason: str = ""
    completed_at: float | None = None
    completed_by: str = ""
    templates_removed: int = 0
    rows_removed: dict[str, int] = field(default_factory=dict)


def _record(row: Any) -> ErasureRecord:
    return ErasureRecord(
        request_id=row.request_id,
        member_ref=row.member_ref,
        member_id=row.member_id or "",
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        status=row.status,
        reason=row.reason,
        completed_at=row.completed_at,
        completed_by=row.completed_by,
        templates_removed=row.templates_removed,
        rows_removed={str(k): int(v) for k, v in json.loads(row.rows_removed or "{}").items()},
    )


def _check_counts(templates_removed: int, rows_removed: Mapping[str, int]) -> dict[str, int]:
    if templates_removed < 0:
        raise InvalidArgument("templates_removed must be 0 or more")
    counts = {str(table): int(count) for table, count in rows_removed.items()}
    negative = sorted(table for table, count in counts.items() if count < 0)
    if negative:
        raise InvalidArgument(f"rows_removed[{negative[0]!r}] must be 0 or more")
    return counts


class ErasureRequests(Component):
    _key: bytes | None = None

    def member_ref(self, member_id: str) -> str:
        """The keyed hash that names the member in erasure records: stable per deployment, names no one."""
        return hmac.new(self._ref_key(), member_id.encode(), hashlib.sha256).hexdigest()

    def _ref_key(self) -> bytes:
        if self.settings.member_ref_key:
            return self.settings.member_ref_key.encode()
        if self._key is None:
            secrets_table = db.service_secrets
            with db.write(self.engine) as conn:
                candidate = {"name": _KEY_NAME, "value": secrets.token_hex(32)}
                conn.execute(db.insert_ignoring_duplicates(self.engine, secrets_table).values(**candidate))
                stored = conn.execute(
                    select(secrets_table.c.value).where(secrets_table.c.name == _KEY_NAME)
                ).scalar_one()
            self._key = stored.encode()
        return self._key

    def request(self, member_id: str, actor: str = "", reason: str = "") -> ErasureRecord:
        """Records a pending erasure request for the member; an already pending one is returned as it is."""
        check_id(member_id, "member_id")
        ref = self.member_ref(member_id)
        requests = db.erasure_requests
        with db.write(self.engine) as conn:
            load_member(conn, member_id)
            dialects.lock_key(conn, "erasure_request", ref)  # two replicas never record two pending requests
            pending = self._pending(conn, ref)
            if pending is not None:
                return pending
            request_id = uuid.uuid4().hex
            conn.execute(
                requests.insert().values(
                    request_id=request_id,
                    member_ref=ref,
                    member_id=member_id,
                    requested_by=actor or "unknown",
                    requested_at=time.time(),
                    reason=reason[:500],
                    status=PENDING,
                )
            )
            write_audit(conn, actor, "erasure_requested", member_id, reason, request_id=request_id)
            return self._get(conn, request_id)

    def list(self, status: str = "", limit: int = 0) -> list[ErasureRecord]:
        """The newest requests first, of one status ("pending", "completed") or all, at most `limit` (1..1000)."""
        if status and status not in STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(STATUSES)} (or empty for every status)")
        requests = db.erasure_requests
        query = select(requests).order_by(requests.c.requested_at.desc(), requests.c.request_id)
        if status:
            query = query.where(requests.c.status == status)
        with db.read(self.engine) as conn:
            rows = conn.execute(query.limit(max(1, min(limit or DEFAULT_LIMIT, MAX_LIMIT)))).all()
        return [_record(row) for row in rows]

    def complete(
        self,
        request_id: str,
        member_id: str,
        templates_removed: int,
        rows_removed: Mapping[str, int],
        actor: str = "",
    ) -> ErasureRecord:
        """Records the receipt of a carried-out erasure and drops the member id from the request.

        Without a request id, the member's pending request is completed, or a completed one recorded.
        The member must be erased already: a receipt never describes an erasure that did not happen.
        """
        counts = _check_counts(templates_removed, rows_removed)
        self._ref_key()  # made (once) before the transaction below, which must not open a second one
        requests = db.erasure_requests
        now = time.time()
        with db.write(self.engine) as conn:
            if request_id:
                check_id(request_id, "request_id")
                row = conn.execute(
                    select(requests).where(requests.c.request_id == request_id).with_for_update()
                ).first()
                if row is None:
                    raise NotFound(f"unknown erasure request {request_id!r}")
                if member_id and self.member_ref(member_id) != row.member_ref:
                    raise InvalidArgument(f"erasure request {request_id!r} is for another member than {member_id!r}")
                member_id = member_id or row.member_id or ""
                record = _record(row)
            else:
                check_id(member_id, "member_id (or request_id)")
                ref = self.member_ref(member_id)
                dialects.lock_key(conn, "erasure_request", ref)
                record = self._pending(conn, ref) or self._insert_unrequested(conn, ref, actor, now)
            if record.status == COMPLETED:
                raise FailedPrecondition(f"erasure request {record.request_id!r} is already completed")
            if member_id and self._member_exists(conn, member_id):
                raise FailedPrecondition(
                    f"member {member_id!r} still has personal data: erase them (gateway EraseMember) before "
                    "recording the receipt"
                )
            conn.execute(
                update(requests)
                .where(requests.c.request_id == record.request_id)
                .values(
                    status=COMPLETED,
                    member_id=None,
                    completed_at=now,
                    completed_by=actor or "unknown",
                    templates_removed=templates_removed,
                    rows_removed=json.dumps(counts, sort_keys=True),
                )
            )
            write_audit(
                conn,
                actor,
                "erasure_completed",
                member_id or record.member_ref,
                "erasure receipt",
                now,
                request_id=record.request_id,
                member_ref=record.member_ref,
                templates_removed=templates_removed,
                rows_removed=sum(counts.values()),
            )
            return self._get(conn, record.request_id)

    def _insert_unrequested(self, conn: Connection, ref: str, actor: str, now: float) -> ErasureRecord:
        """A request for an erasure that was carried out without one (completed by the caller)."""
        request_id = uuid.uuid4().hex
        conn.execute(
            db.erasure_requests.insert().values(
                request_id=request_id,
                member_ref=ref,
                member_id=None,
                requested_by=actor or "unknown",
                requested_at=now,
                reason="erased without a prior request",
                status=PENDING,
            )
        )
        return self._get(conn, request_id)

    @staticmethod
    def _member_exists(conn: Connection, member_id: str) -> bool:
        members = db.members
        return conn.execute(select(members.c.member_id).where(members.c.member_id == member_id)).first() is not None

    @staticmethod
    def _pending(conn: Connection, ref: str) -> ErasureRecord | None:
        requests = db.erasure_requests
        row = conn.execute(
            select(requests)
            .where(requests.c.member_ref == ref, requests.c.status == PENDING)
            .order_by(requests.c.requested_at)
            .limit(1)
        ).first()
        return _record(row) if row is not None else None

    @staticmethod
    def _get(conn: Connection, request_id: str) -> ErasureRecord:
        return _record(
            conn.execute(select(db.erasure_requests).where(db.erasure_requests.c.request_id == request_id)).one()
        )
