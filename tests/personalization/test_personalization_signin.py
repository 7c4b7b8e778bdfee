"""Single-use sign-in codes of the member portal: single use, expiry, bound to the member, erased with them,
never stored, audited or logged in clear."""

from __future__ import annotations

import hashlib
import re
import time

import grpc
import pytest
import structlog
from personalization_helpers import members_without_online_events
from sqlalchemy import Engine, select, update

from retailface.services.personalization import db
from retailface.services.personalization.service import Personalization
from retailface.services.personalization.signin import EXPIRED, UNKNOWN, USED, SignInRefused
from retailface.services.shared.errors import NotFound


@pytest.fixture
def member_id(engine: Engine) -> str:
    return members_without_online_events(engine)[0]


def _refusal(personalization: Personalization, code: str) -> SignInRefused:
    with pytest.raises(SignInRefused) as refused:
        personalization.signin.redeem(code, actor="web")
    return refused.value


def test_a_code_signs_its_member_in(personalization: Personalization, member_id: str) -> None:
    issued = personalization.signin.issue(member_id, actor="privacy:officer-1")
    before = time.time()

    signed_in = personalization.signin.redeem(issued.code, actor="web")

    assert signed_in.member_id == member_id
    assert before + 3600 <= signed_in.session_expires_at <= time.time() + 3600


def test_a_code_opens_one_session_only(personalization: Personalization, member_id: str) -> None:
    issued = personalization.signin.issue(member_id)
    personalization.signin.redeem(issued.code)

    refused = _refusal(personalization, issued.code)

    assert refused.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.message == "this sign-in code was already used: ask for a new one"
    assert refused.message == USED


def test_an_expired_code_is_refused(personalization: Personalization, member_id: str, engine: Engine) -> None:
    issued = personalization.signin.issue(member_id)
    with db.write(engine) as conn:
        codes = db.member_signin_codes
        conn.execute(update(codes).where(codes.c.member_id == member_id).values(expires_at=time.time() - 1))

    refused = _refusal(personalization, issued.code)

    assert (refused.code, refused.message) == (grpc.StatusCode.UNAUTHENTICATED, EXPIRED)
    assert EXPIRED == "this sign-in code has expired: ask for a new one"


@pytest.mark.parametrize("code", ["Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0", "not a code!", ""])
def test_an_unknown_or_malformed_code_gets_one_message(personalization: Personalization, code: str) -> None:
    refused = _refusal(personalization, code)

    assert (refused.code, refused.message) == (grpc.StatusCode.UNAUTHENTICATED, UNKNOWN)


def test_each_code_is_bound_to_the_member_it_was_issued_for(personalization: Personalization, engine: Engine) -> None:
    first, second = members_without_online_events(engine, 2)
    code_of_first = personalization.signin.issue(first).code
    code_of_second = personalization.signin.issue(second).code

    assert personalization.signin.redeem(code_of_second).member_id == second
    assert personalization.signin.redeem(code_of_first).member_id == first


def test_a_code_is_random_url_safe_and_kept_only_as_its_hash(
    personalization: Personalization, member_id: str, engine: Engine
) -> None:
    codes = {personalization.signin.issue(member_id).code for _ in range(3)}

    assert len(codes) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", code) for code in codes)  # 24 random bytes, 192 bits
    with db.read(engine) as conn:
        rows = conn.execute(select(db.member_signin_codes).where(db.member_signin_codes.c.member_id == member_id)).all()
    assert {row.code_hash for row in rows} == {hashlib.sha256(code.encode()).hexdigest() for code in codes}
    stored = {str(value) for row in rows for value in row}
    assert stored.isdisjoint(codes)


def test_validity_defaults_to_the_setting_and_is_capped(personalization: Personalization, member_id: str) -> None:
    now = time.time()
    default = personalization.signin.issue(member_id)
    asked_for_a_week = personalization.signin.issue(member_id, ttl_seconds=7 * 86_400)
    asked_for_two_minutes = personalization.signin.issue(member_id, ttl_seconds=120)

    assert default.expires_at - now == pytest.approx(900, abs=5)
    assert asked_for_a_week.expires_at - now == pytest.approx(86_400, abs=5)
    assert asked_for_two_minutes.expires_at - now == pytest.approx(120, abs=5)


def test_no_code_for_an_unknown_member(personalization: Personalization) -> None:
    with pytest.raises(NotFound, match="unknown member 'nobody'"):
        personalization.signin.issue("nobody")


def test_erasure_deletes_the_members_codes(personalization: Personalization, member_id: str, engine: Engine) -> None:
    unused = personalization.signin.issue(member_id).code
    personalization.signin.redeem(personalization.signin.issue(member_id).code)

    counts = personalization.members.erase(member_id, actor="privacy:officer-1", reason="member request")

    assert counts["member_signin_codes"] == 2
    with db.read(engine) as conn:
        left = conn.execute(select(db.member_signin_codes).where(db.member_signin_codes.c.member_id == member_id)).all()
    assert left == []
    assert _refusal(personalization, unused).message == UNKNOWN


def test_the_code_is_never_audited_or_logged(personalization: Personalization, member_id: str, engine: Engine) -> None:
    with structlog.testing.capture_logs() as logs:
        issued = personalization.signin.issue(member_id, actor="privacy:officer-1")
        personalization.signin.redeem(issued.code, actor="web")
        _refusal(personalization, issued.code)

    with db.read(engine) as conn:
        audit = conn.execute(select(db.audit_log).where(db.audit_log.c.subject == member_id)).all()
    assert [row.action for row in audit[-3:]] == ["signin_issued", "signin", "signin_refused"]
    audited = " ".join(f"{row.actor} {row.action} {row.reason} {row.detail}" for row in audit)
    assert issued.code not in audited
    assert hashlib.sha256(issued.code.encode()).hexdigest() not in audited
    assert [entry["event"] for entry in logs] == ["member_signin_issued", "member_signed_in", "member_signin_refused"]
    assert issued.code not in repr(logs)
