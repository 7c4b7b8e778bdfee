"""Members: enrollment, preferences, consent grants and withdrawals, and erasure.

Consent is a record of scopes granted under a policy version; every grant and withdrawal is kept
in consent_history and the audit log. Withdrawing a scope takes effect at once: queued pushes are
cancelled (personalized_offers) and unseen staff alerts withdrawn (staff_greeting). Erasure deletes
the member's personal data; their purchases stay for accounting, anonymised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Connection, delete, select, update

from retailface.services.personalization import db, dialects, outbox
from retailface.services.personalization.alerts import withdraw_unseen
from retailface.services.personalization.base import (
    Component,
    check_timezone,
    find_member,
    load_member,
    require_store,
    write_audit,
)
from retailface.services.personalization.consent import check_scopes
from retailface.services.personalization.domain import (
    CHANNEL_KINDS,
    SCOPE_PERSONALIZED_OFFERS,
    SCOPE_STAFF_GREETING,
    SCOPES,
    Consent,
    ConsentChange,
    Member,
    Preferences,
)
from retailface.services.personalization.offers import MAX_OFFERS
from retailface.services.shared.errors import AlreadyExists, InvalidArgument
from retailface.services.shared.identifiers import check_id, clean_display_name

log = structlog.get_logger(__name__)

# Tables of a member's personal data, deleted on erasure (transactions are anonymised instead).
PERSONAL_DATA = (
    db.online_events,
    db.offer_feedback,
    db.member_dislikes,
    db.offer_deliveries,
    db.visit_events,
    db.visits,
    db.staff_alerts,
    db.notification_outbox,
    db.consent_history,
    db.member_signin_codes,
)
# How consent_history's actions read in the privacy office.
_CONSENT_ACTIONS = {"grant": "granted", "revoke": "revoked"}


def preference_values(preferences: Preferences) -> dict[str, Any]:
    """The members-table columns of valid preferences (INVALID_ARGUMENT naming what is wrong)."""
    quiet = preferences.quiet_hours
    if quiet is not None:
        if not (0 <= quiet.start_minute < 1440 and 0 <= quiet.end_minute < 1440):
            raise InvalidArgument("quiet hours minutes must be within 0..1439")
        check_timezone(quiet.timezone or "UTC")
    for channel in preferences.channels:
        if channel.kind not in CHANNEL_KINDS:
            raise InvalidArgument(f"channel kind {channel.kind!r} must be one of {', '.join(CHANNEL_KINDS)}")
    if preferences.max_offers_per_visit > MAX_OFFERS:
        raise InvalidArgument(f"max_offers_per_visit must be at most {MAX_OFFERS}")
    timezone = (quiet.timezone if quiet is not None and quiet.timezone else preferences.timezone) or "UTC"
    check_timezone(timezone)
    return {
        "allow_greeting": preferences.allow_greeting,
        "preferred_name": clean_display_name(preferences.preferred_name),
        "excluded_categories": json.dumps(sorted(set(preferences.excluded_categories))),
        "favourite_categories": json.dumps(list(dict.fromkeys(preferences.favourite_categories))),
        "quiet_start_minute": quiet.start_minute if quiet else None,
        "quiet_end_minute": quiet.end_minute if quiet else None,
        "timezone": timezone,
        "channels": json.dumps([{"kind": c.kind, "address": c.address} for c in preferences.channels]),
        "max_offers_per_visit": preferences.max_offers_per_visit,
    }


def _update_member(conn: Connection, member_id: str, **values: Any) -> None:
    conn.execute(update(db.members).where(db.members.c.member_id == member_id).values(**values))


def _record_consent(conn: Connection, member_id: str, action: str, **values: Any) -> None:
    conn.execute(db.consent_history.insert().values(member_id=member_id, action=action, **values))


class Members(Component):
    def get(self, member_id: str = "", loyalty_number: str = "", actor: str = "") -> Member:
        with db.write(self.engine) as conn:
            member = find_member(conn, member_id, loyalty_number)
            write_audit(conn, actor, "read", member.member_id, "member record")
        return member

    def upsert(self, member: Member, actor: str = "") -> Member:
        """Creates or updates a member (enrollment desk, admin tools).

        A consent record with scopes is recorded as a grant (history and audit) when it differs from
        the stored one; an empty one changes nothing: withdrawing consent is RevokeConsent's job.
        """
        check_id(member.member_id, "member_id")
        if member.home_store_id:
            check_id(member.home_store_id, "home_store_id")
        now = time.time()
        with db.write(self.engine) as conn:
            # Replicas creating one member, or giving one loyalty number to two members, wait for each other
            # here (PostgreSQL), so that the checks below see the other's write: never a unique-key failure.
            dialects.lock_key(conn, "member", member.member_id)
            if member.loyalty_number:
                dialects.lock_key(conn, "loyalty_number", member.loyalty_number)
            if member.home_store_id:
                require_store(conn, member.home_store_id)
            if member.loyalty_number:
                owner = conn.execute(
                    select(db.members.c.member_id).where(db.members.c.loyalty_number == member.loyalty_number)
                ).scalar_one_or_none()
                if owner is not None and owner != member.member_id:
                    raise AlreadyExists(f"loyalty number {member.loyalty_number!r} belongs to another member")
            exists = (
                conn.execute(select(db.members.c.member_id).where(db.members.c.member_id == member.member_id)).first()
                is not None
            )
            values: dict[str, Any] = {
                "loyalty_number": member.loyalty_number or None,
                "display_name": clean_display_name(member.display_name),
                "home_store_id": member.home_store_id or None,
                "updated_at": now,
            }
            if member.preferences is not None:
                values.update(preference_values(member.preferences))
            changed = True
            if exists:
                stored = load_member(conn, member.member_id).consent
                _update_member(conn, member.member_id, **values)
                write_audit(conn, actor, "update", member.member_id, "member record", fields=sorted(values))
                changed = (stored.scopes, stored.policy_version, stored.revoked_at is None) != (
                    member.consent.scopes,
                    member.consent.policy_version,
                    True,
                )
            else:
                values.update(member_id=member.member_id, created_at=member.created_at or now)
                conn.execute(db.members.insert().values(**values))
                write_audit(conn, actor, "create", member.member_id, "member record")
            if member.consent.scopes and changed:
                self._grant(conn, member.member_id, member.consent, actor, now)
            return load_member(conn, member.member_id)

    def preferences(self, member_id: str, actor: str = "") -> Preferences:
        member = self.get(member_id, actor=actor)
        assert member.preferences is not None
        return member.preferences

    def update_preferences(self, preferences: Preferences, actor: str = "") -> Preferences:
        with db.write(self.engine) as conn:
            load_member(conn, preferences.member_id, lock=True)
            values = preference_values(preferences)
            _update_member(conn, preferences.member_id, **values, updated_at=time.time())
            write_audit(conn, actor, "update", preferences.member_id, "preferences")
            member = load_member(conn, preferences.member_id)
        assert member.preferences is not None
        return member.preferences

    def grant_consent(self, member_id: str, consent: Consent, actor: str = "") -> Member:
        with db.write(self.engine) as conn:
            load_member(conn, member_id, lock=True)
            self._grant(conn, member_id, consent, actor, time.time())
            return load_member(conn, member_id)

    def _grant(self, conn: Connection, member_id: str, consent: Consent, actor: str, now: float) -> None:
        check_scopes(consent.scopes)
        if not consent.policy_version:
            raise InvalidArgument("consent.policy_version is required (the policy the member agreed to)")
        if not consent.scopes:
            raise InvalidArgument("consent.scopes is empty; use RevokeConsent to withdraw consent")
        scopes = ",".join(s for s in SCOPES if s in consent.scopes)
        _update_member(
            conn,
            member_id,
            consent_policy_version=consent.policy_version,
            consent_scopes=scopes,
            consent_granted_at=consent.granted_at or now,
            consent_revoked_at=None,
            consent_source=consent.source,
            updated_at=now,
        )
        record = {"scopes": scopes, "policy_version": consent.policy_version, "source": consent.source}
        _record_consent(conn, member_id, "grant", **record, actor=actor, at=now)
        write_audit(conn, actor, "consent", member_id, "grant", now, **record)

    def revoke_consent(self, member_id: str, scopes: Sequence[str] = (), actor: str = "", reason: str = "") -> Member:
        """Withdraws scopes (all when empty), effective at once: queued pushes and unseen greetings go too."""
        check_scopes(scopes)
        now = time.time()
        with db.write(self.engine) as conn:
            member = load_member(conn, member_id, lock=True)  # the scopes we narrow are the current ones
            revoked = set(scopes or SCOPES)
            remaining = ",".join(s for s in SCOPES if s in member.consent.scopes and s not in revoked)
            revoked_at = None if remaining else now
            _update_member(conn, member_id, consent_scopes=remaining, consent_revoked_at=revoked_at, updated_at=now)
            policy_version = member.consent.policy_version
            withdrawn_scopes = ",".join(sorted(revoked))
            history = {"scopes": withdrawn_scopes, "policy_version": policy_version, "reason": reason}
            _record_consent(conn, member_id, "revoke", **history, actor=actor, at=now)
            cancelled = outbox.cancel_pending(conn, member_id) if SCOPE_PERSONALIZED_OFFERS in revoked else 0
            withdrawn = withdraw_unseen(conn, member_id) if SCOPE_STAFF_GREETING in revoked else 0
            write_audit(
                conn,
                actor,
                "consent",
                member_id,
                reason or "revoke",
                now,
                scopes=sorted(revoked),
                notifications_cancelled=cancelled,
                alerts_withdrawn=withdrawn,
            )
            return load_member(conn, member_id)

    def consent_history(self, member_id: str, actor: str = "") -> list[ConsentChange]:
        """Every grant and withdrawal of the member's consent, oldest first (audited read)."""
        history = db.consent_history
        with db.write(self.engine) as conn:
            load_member(conn, member_id)
            rows = conn.execute(
                select(history).where(history.c.member_id == member_id).order_by(history.c.at, history.c.id)
            ).all()
            write_audit(conn, actor, "read", member_id, "consent history", changes=len(rows))
        return [
            ConsentChange(
                at=row.at,
                action=_CONSENT_ACTIONS.get(row.action, row.action),
                scopes=tuple(scope for scope in row.scopes.split(",") if scope),
                policy_version=row.policy_version,
                source=row.source,
                actor=row.actor,
                reason=row.reason,
            )
            for row in rows
        ]

    def erase(self, member_id: str, actor: str = "", reason: str = "") -> dict[str, int]:
        """Deletes the member's personal data; purchases stay for accounting, anonymised. Returns counts."""
        counts: dict[str, int] = {}
        with db.write(self.engine) as conn:
            load_member(conn, member_id, lock=True)
            for table in PERSONAL_DATA:
                counts[table.name] = int(conn.execute(delete(table).where(table.c.member_id == member_id)).rowcount)
            counts["transactions_anonymised"] = int(
                conn.execute(
                    update(db.transactions).where(db.transactions.c.member_id == member_id).values(member_id=None)
                ).rowcount
            )
            counts["members"] = int(
                conn.execute(delete(db.members).where(db.members.c.member_id == member_id)).rowcount
            )
            write_audit(conn, actor, "erase", member_id, reason, **counts)
        log.info("member_erased", rows=sum(counts.values()))
        return counts
