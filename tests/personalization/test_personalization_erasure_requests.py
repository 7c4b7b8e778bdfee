"""Erasure requests: recorded pending, completed with a receipt, named by a stable keyed hash afterwards;
consent history for the privacy office; the audit log's filters."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from personalization_helpers import members_without_online_events, prepare_member
from sqlalchemy import Engine

from retailface.services.personalization.erasure import ErasureRequests
from retailface.services.personalization.service import Personalization
from retailface.services.shared.errors import FailedPrecondition, InvalidArgument, NotFound


@pytest.fixture
def member_id(engine: Engine) -> str:
    return members_without_online_events(engine)[0]


def test_a_request_is_recorded_pending_with_the_member(personalization: Personalization, member_id: str) -> None:
    record = personalization.erasures.request(member_id, actor="web:member", reason="I moved away")

    assert (record.status, record.member_id, record.requested_by) == ("pending", member_id, "web:member")
    assert record.reason == "I moved away"
    assert [r.request_id for r in personalization.erasures.list("pending")] == [record.request_id]


def test_asking_twice_keeps_one_pending_request(personalization: Personalization, member_id: str) -> None:
    first = personalization.erasures.request(member_id, actor="web:member")

    second = personalization.erasures.request(member_id, actor="privacy:officer-1")

    assert second.request_id == first.request_id
    assert len(personalization.erasures.list()) == 1


def test_completion_records_the_receipt_and_forgets_the_member_id(
    personalization: Personalization, member_id: str
) -> None:
    request = personalization.erasures.request(member_id, actor="web:member")
    rows = personalization.members.erase(member_id, actor="service:privacy-1")

    receipt = personalization.erasures.complete(request.request_id, member_id, 3, rows, actor="service:privacy-1")

    assert (receipt.request_id, receipt.status, receipt.member_id) == (request.request_id, "completed", "")
    assert (receipt.templates_removed, receipt.rows_removed, receipt.completed_by) == (3, rows, "service:privacy-1")
    assert receipt.member_ref == request.member_ref
    assert receipt.completed_at is not None and receipt.completed_at <= time.time()
    listed = personalization.erasures.list("completed")
    assert [(r.request_id, r.member_id, r.templates_removed) for r in listed] == [(request.request_id, "", 3)]


def test_an_erasure_without_a_request_records_one(personalization: Personalization, member_id: str) -> None:
    rows = personalization.members.erase(member_id)

    receipt = personalization.erasures.complete("", member_id, 2, rows, actor="privacy:officer-1")

    assert (receipt.status, receipt.requested_by, receipt.templates_removed) == ("completed", "privacy:officer-1", 2)
    assert receipt.member_ref == personalization.erasures.member_ref(member_id)


def test_an_erasure_without_a_request_id_completes_the_pending_request(
    personalization: Personalization, member_id: str
) -> None:
    request = personalization.erasures.request(member_id, actor="web:member")
    personalization.members.erase(member_id)

    receipt = personalization.erasures.complete("", member_id, 1, {"members": 1})

    assert receipt.request_id == request.request_id
    assert personalization.erasures.list("pending") == []


def test_no_receipt_before_the_member_is_erased(personalization: Personalization, member_id: str) -> None:
    request = personalization.erasures.request(member_id)

    with pytest.raises(FailedPrecondition, match=f"member '{member_id}' still has personal data"):
        personalization.erasures.complete(request.request_id, member_id, 0, {})


def test_a_request_is_completed_once(personalization: Personalization, member_id: str) -> None:
    request = personalization.erasures.request(member_id)
    personalization.members.erase(member_id)
    personalization.erasures.complete(request.request_id, member_id, 1, {})

    with pytest.raises(FailedPrecondition, match=f"erasure request '{request.request_id}' is already completed"):
        personalization.erasures.complete(request.request_id, member_id, 1, {})


def test_a_request_completes_for_its_own_member_only(personalization: Personalization, engine: Engine) -> None:
    first, second = members_without_online_events(engine, 2)
    request = personalization.erasures.request(first)

    with pytest.raises(InvalidArgument, match="is for another member than"):
        personalization.erasures.complete(request.request_id, second, 0, {})


def test_an_unknown_request_is_not_found(personalization: Personalization) -> None:
    with pytest.raises(NotFound, match="unknown erasure request 'no-such-request'"):
        personalization.erasures.complete("no-such-request", "", 0, {})


def test_member_ref_is_a_stable_keyed_hash(personalization: Personalization, member_id: str) -> None:
    again = ErasureRequests(personalization.resources)  # another replica of the same database

    assert personalization.erasures.member_ref(member_id) == again.member_ref(member_id)
    assert personalization.erasures.member_ref(member_id) != personalization.erasures.member_ref(member_id + "x")
    assert personalization.erasures.member_ref(member_id) != hashlib.sha256(member_id.encode()).hexdigest()


def test_member_ref_uses_the_configured_key(personalization: Personalization, member_id: str) -> None:
    personalization.settings.member_ref_key = "deployment-key-0123456789"

    expected = hmac.new(b"deployment-key-0123456789", member_id.encode(), hashlib.sha256).hexdigest()
    assert personalization.erasures.member_ref(member_id) == expected


def test_consent_history_lists_grants_and_withdrawals(personalization: Personalization, member_id: str) -> None:
    prepare_member(personalization, member_id, scopes=("face_identification", "staff_greeting"))
    personalization.members.revoke_consent(member_id, ["staff_greeting"], actor="web:member", reason="no greetings")

    history = personalization.members.consent_history(member_id, actor="privacy:officer-1")

    assert [(c.action, c.scopes, c.actor, c.reason) for c in history] == [
        ("granted", ("face_identification", "staff_greeting"), "test", ""),
        ("revoked", ("staff_greeting",), "web:member", "no greetings"),
    ]
    assert (history[0].policy_version, history[0].source) == ("2026-01", "test")


def test_audit_filters_by_actor_action_and_time(personalization: Personalization, member_id: str) -> None:
    start = time.time()
    personalization.members.get(member_id, actor="privacy:officer-1")
    personalization.members.get(member_id, actor="privacy:officer-2")
    middle = time.time()
    time.sleep(0.01)
    personalization.erasures.request(member_id, actor="privacy:officer-1")

    by_officer = personalization.audit.query(member_id, performed_by="privacy:officer-1")
    requested = personalization.audit.query(member_id, action="erasure_requested")
    before_middle = personalization.audit.query(member_id, since=start, until=middle)

    assert [(e.actor, e.action) for e in by_officer] == [
        ("privacy:officer-1", "erasure_requested"),
        ("privacy:officer-1", "read"),
    ]
    assert [e.actor for e in requested] == ["privacy:officer-1"]
    assert [e.actor for e in before_middle] == ["privacy:officer-2", "privacy:officer-1"]


def test_audit_refuses_a_window_that_ends_before_it_starts(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="until must not be before since"):
        personalization.audit.query(since=200.0, until=100.0)
