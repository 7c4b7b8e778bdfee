"""Single-use sign-in codes of the member portal: issued by the privacy office or an admin, redeemed once.

A code is 192 random bits (`secrets`, URL-safe text). Only its SHA-256 is stored, with the member it
was issued for, when it expires and when it was used; the code itself is never stored, logged or
audited. Redeeming marks the code used in the same UPDATE that checks it is unused and unexpired, so
two redeems of one code (even on two replicas at once) open one session. A refused code gets one of
three messages, none of which says whether a member exists: unknown, already used, or expired.
Erasing the member deletes their codes (members.PERSONAL_DATA).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import grpc
import structlog
from sqlalchemy import delete, select, update

from retailface.services.personalization import db
from retailface.services.personalization.base import Component, load_member, write_audit
from retailface.services.shared.errors import InvalidArgument, ServiceError

log = structlog.get_logger(__name__)

CODE_BYTES = 24  # 192 bits; token_urlsafe makes 32 characters of it
_CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")
# Used and expired codes are kept this long (so a late redeem is told why), then deleted on the next issue.
KEEP_SPENT_SECONDS = 86_400.0

UNKNOWN = "this sign-in code is not valid: check it, or ask for a new one"
USED = "this sign-in code was already used: ask for a new one"
EXPIRED = "this sign-in code has expired: ask for a new one"


class SignInRefused(ServiceError):
    """A sign-in code that opens nothing (unknown, used or expired)."""

    code = grpc.StatusCode.UNAUTHENTICATED


@dataclass(frozen=True)
class IssuedCode:
    code: str  # give it to the member; it is not kept anywhere
    member_id: str
    expires_at: float


@dataclass(frozen=True)
class SignedIn:
    member_id: str
    session_expires_at: float  # the session the code opens must end by then


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class MemberSignIn(Component):
    def issue(self, member_id: str, ttl_seconds: float = 0, actor: str = "") -> IssuedCode:
        """A new code for the member, valid `ttl_seconds` (0: the default; capped by the settings)."""
        if ttl_seconds < 0:
            raise InvalidArgument("ttl_seconds must be 0 (the default) or positive")
        ttl = min(ttl_seconds or self.settings.member_signin_ttl_seconds, self.settings.member_signin_max_ttl_seconds)
        code = secrets.token_urlsafe(CODE_BYTES)
        now = time.time()
        codes = db.member_signin_codes
        with db.write(self.engine) as conn:
            load_member(conn, member_id)
            conn.execute(delete(codes).where(codes.c.expires_at < now - KEEP_SPENT_SECONDS))
            conn.execute(
                codes.insert().values(
                    code_hash=code_hash(code), member_id=member_id, issued_at=now, expires_at=now + ttl, used_at=None
                )
            )
            write_audit(conn, actor, "signin_issued", member_id, "member portal sign-in code", now, ttl_seconds=ttl)
        log.info("member_signin_issued", ttl_seconds=ttl)
        return IssuedCode(code, member_id, now + ttl)

    def redeem(self, code: str, actor: str = "") -> SignedIn:
        """The member the code was issued for; the code is spent. SignInRefused when it opens nothing."""
        if not _CODE_PATTERN.fullmatch(code):
            log.info("member_signin_refused", why="malformed")
            raise SignInRefused(UNKNOWN)
        hashed = code_hash(code)
        now = time.time()
        codes = db.member_signin_codes
        refusal = ""
        with db.write(self.engine) as conn:
            spent = conn.execute(
                update(codes)
                .where(codes.c.code_hash == hashed, codes.c.used_at.is_(None), codes.c.expires_at > now)
                .values(used_at=now)
            ).rowcount
            row = conn.execute(select(codes.c.member_id, codes.c.used_at).where(codes.c.code_hash == hashed)).first()
            if row is None:
                refusal = UNKNOWN
            elif not spent:
                refusal = USED if row.used_at is not None else EXPIRED
                write_audit(conn, actor, "signin_refused", row.member_id, refusal, now)
            else:
                write_audit(conn, actor, "signin", row.member_id, "member portal sign-in", now)
        if refusal:  # raised after the commit, so that the refusal stays in the audit log
            log.info("member_signin_refused", why=refusal.split(":")[0])
            raise SignInRefused(refusal)
        assert row is not None
        log.info("member_signed_in")
        return SignedIn(row.member_id, now + self.settings.member_session_seconds)
