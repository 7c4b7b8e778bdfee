"""The security watchlist: subjects of the matching service's watchlist gallery (never member ids), each with a
reason, who added it, a required expiry, and the second person who confirmed it.

An entry raises alerts only when all hold (`alert_refusal` says which does not):
- the global kill switch RETAILFACE_PERSONALIZATION_WATCHLIST_ENABLED is on (it is by default);
- the store enabled the watchlist (`stores.watchlist_enabled`, off by default);
- a second person, other than the one who added it, confirmed the entry (four eyes);
- it has not expired (entries expire at most MAX_DAYS after they are added or changed).

Changing an entry's reason or expiry is a new proposal: it is added again by whoever changed it and needs a
new confirmation. Every change is audited with its actor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from retailface.services.personalization import db
from retailface.services.personalization.base import DAY, Component, write_audit
from retailface.services.shared.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from retailface.services.shared.identifiers import check_id

MAX_DAYS = 365  # an entry lives at most this long without being renewed
MAX_REASON_LENGTH = 300


@dataclass(frozen=True)
class WatchlistEntry:
    subject_id: str
    reason: str
    added_by: str
    added_at: float
    expires_at: float
    confirmed_by: str = ""
    confirmed_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at <= now

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


def person(actor: str) -> str:
    """Who the actor names, without the role the servicer puts in front ("admin:alice" -> "alice")."""
    return actor.rpartition(":")[2]


def alert_refusal(kill_switch_on: bool, store_id: str, store_enabled: bool, active: bool, confirmed: bool) -> str:
    """Why a watchlisted subject raises no alert here (a note for the caller); "" when it raises one."""
    if not kill_switch_on:
        return "watchlist alerts are off in every store (RETAILFACE_PERSONALIZATION_WATCHLIST_ENABLED)"
    if not store_enabled:
        return f"watchlist alerts are off in store {store_id} (UpsertStore with watchlist_enabled turns them on)"
    if not active:
        return "the watchlist entry expired: no alert"
    if not confirmed:
        return "the watchlist entry awaits confirmation by a second person: no alert"
    return ""


def _entry_from_row(row: Any) -> WatchlistEntry:
    return WatchlistEntry(
        subject_id=row.subject_id,
        reason=row.reason,
        added_by=row.added_by,
        added_at=row.added_at,
        expires_at=row.expires_at if row.expires_at is not None else row.added_at,
        confirmed_by=row.confirmed_by or "",
        confirmed_at=row.confirmed_at,
    )


def _find(conn: Connection, subject_id: str) -> WatchlistEntry | None:
    row = conn.execute(select(db.watchlist).where(db.watchlist.c.subject_id == subject_id)).first()
    return _entry_from_row(row) if row is not None else None


def _require_actor(actor: str) -> None:
    if not person(actor):
        raise InvalidArgument("actor is required: name the person who makes this watchlist change")


class Watchlist(Component):
    def upsert(self, subject_id: str, reason: str, expires_at: float | None, actor: str) -> WatchlistEntry:
        """Adds the entry, or changes its reason and expiry (which then needs a new confirmation)."""
        check_id(subject_id, "subject_id")
        _require_actor(actor)
        reason = " ".join(reason.split())
        if not reason:
            raise InvalidArgument("reason is required (why this subject is on the watchlist)")
        if len(reason) > MAX_REASON_LENGTH:
            raise InvalidArgument(f"reason is longer than {MAX_REASON_LENGTH} characters; shorten it")
        now = time.time()
        if expires_at is None:
            raise InvalidArgument(f"expires_at is required: entries expire, at most {MAX_DAYS} days from now")
        if expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        if expires_at > now + MAX_DAYS * DAY:
            raise InvalidArgument(f"expires_at is too far ahead: at most {MAX_DAYS} days from now")
        entry = WatchlistEntry(subject_id, reason, actor, now, expires_at)
        with db.write(self.engine) as conn:
            existed = _find(conn, subject_id) is not None
            conn.execute(
                db.upsert(self.engine, db.watchlist).values(
                    subject_id=subject_id,
                    reason=reason,
                    added_by=actor,
                    added_at=now,
                    expires_at=expires_at,
                    confirmed_by="",
                    confirmed_at=None,
                )
            )
            write_audit(
                conn,
                actor,
                "update",
                f"watchlist:{subject_id}",
                reason,
                now,
                change="changed" if existed else "added",
                expires_at=expires_at,
            )
        return entry

    def confirm(self, subject_id: str, actor: str) -> WatchlistEntry:
        """A second person confirms the entry; the person who added it cannot."""
        check_id(subject_id, "subject_id")
        _require_actor(actor)
        now = time.time()
        with db.write(self.engine) as conn:
            entry = _find(conn, subject_id)
            if entry is None:
                raise NotFound(f"subject {subject_id!r} is not on the watchlist")
            if entry.expired(now):
                raise FailedPrecondition(f"the entry for {subject_id!r} expired: add it again with a new expiry")
            if person(actor) == person(entry.added_by):
                raise PermissionDenied(f"{person(actor)} added this entry: a second person must confirm it (four eyes)")
            if entry.confirmed:
                raise FailedPrecondition(f"the entry for {subject_id!r} was confirmed already by {entry.confirmed_by}")
            conn.execute(
                update(db.watchlist)
                .where(db.watchlist.c.subject_id == subject_id)
                .values(confirmed_by=actor, confirmed_at=now)
            )
            write_audit(conn, actor, "confirm", f"watchlist:{subject_id}", entry.reason, now, added_by=entry.added_by)
        return WatchlistEntry(
            entry.subject_id, entry.reason, entry.added_by, entry.added_at, entry.expires_at, actor, now
        )

    def remove(self, subject_id: str, actor: str, reason: str = "") -> None:
        check_id(subject_id, "subject_id")
        _require_actor(actor)
        with db.write(self.engine) as conn:
            if _find(conn, subject_id) is None:
                raise NotFound(f"subject {subject_id!r} is not on the watchlist")
            conn.execute(db.watchlist.delete().where(db.watchlist.c.subject_id == subject_id))
            write_audit(conn, actor, "remove", f"watchlist:{subject_id}", reason or "removed from the watchlist")

    def entries(self, include_expired: bool = False, now: float | None = None) -> list[WatchlistEntry]:
        """The entries, soonest expiry first; expired ones only when asked for."""
        now = time.time() if now is None else now
        query = select(db.watchlist).order_by(db.watchlist.c.expires_at, db.watchlist.c.subject_id)
        if not include_expired:
            query = query.where(db.watchlist.c.expires_at > now)
        with db.read(self.engine) as conn:
            rows = conn.execute(query).all()
        return [_entry_from_row(row) for row in rows]
