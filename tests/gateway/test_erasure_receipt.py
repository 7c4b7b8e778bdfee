"""The gateway's EraseMember records the receipt of the erasure with personalization and returns it."""

from __future__ import annotations

import grpc
import pytest
from gateway_fakes import FakeDetection, FakeEmbedding, FakeMatching, FakePersonalization, backends, member, unit

from retailface.services.gateway.members import MemberCache
from retailface.services.gateway.orchestration import MemberOperations
from retailface.services.gateway.servicer import METHOD_ROLES
from retailface.services.shared.errors import InvalidArgument, ServiceError
from retailface.v1 import gateway_pb2, personalization_pb2


@pytest.fixture
def personalization() -> FakePersonalization:
    fake = FakePersonalization({"m-lena": member("m-lena", may_identify=True, may_greet=True, greeting_name="Lena")})
    fake.erasure_requests["req-1"] = "web:member"
    return fake


@pytest.fixture
def matching() -> FakeMatching:
    return FakeMatching({"m-lena": unit(1)})


@pytest.fixture
def operations(personalization: FakePersonalization, matching: FakeMatching) -> MemberOperations:
    stubs = backends(FakeDetection({}), FakeEmbedding({}), matching, personalization)
    return MemberOperations(stubs, MemberCache(stubs.personalization, ttl=60.0, deadline=1.0), deadline=1.0)


def _erase(operations: MemberOperations, request_id: str = "") -> gateway_pb2.EraseMemberResponse:
    return operations.erase(
        gateway_pb2.EraseMemberRequest(member_id="m-lena", actor="officer-1", reason="asked", request_id=request_id)
    )


def test_the_response_carries_the_receipt_of_the_request(operations: MemberOperations) -> None:
    erased = _erase(operations, "req-1")

    receipt = erased.receipt
    assert (receipt.request_id, receipt.requested_by, receipt.completed_by) == ("req-1", "web:member", "officer-1")
    assert receipt.status == personalization_pb2.ERASURE_STATUS_COMPLETED
    assert (receipt.templates_removed, dict(receipt.rows_removed)) == (2, {"members": 1})


def test_the_receipt_is_recorded_after_templates_and_data_are_gone(
    operations: MemberOperations, personalization: FakePersonalization, matching: FakeMatching
) -> None:
    _erase(operations, "req-1")

    asked = personalization.receipts_asked
    assert [(r.request_id, r.member_id, r.actor) for r in asked] == [("req-1", "m-lena", "officer-1")]
    assert (asked[0].templates_removed, dict(asked[0].rows_removed)) == (2, {"members": 1})
    assert [erased.subject_id for erased in matching.erased] == ["m-lena"]


def test_an_erasure_without_a_request_gets_one_recorded(operations: MemberOperations) -> None:
    erased = _erase(operations)

    assert erased.receipt.request_id == "recorded-on-completion"
    assert erased.receipt.requested_by == "officer-1"


def test_a_receipt_that_cannot_be_recorded_says_the_member_was_erased(
    operations: MemberOperations, matching: FakeMatching
) -> None:
    with pytest.raises(ServiceError) as failed:
        _erase(operations, "req-unknown")

    assert failed.value.code == grpc.StatusCode.NOT_FOUND
    assert failed.value.message == (
        "member 'm-lena' was erased (2 templates, 1 rows), but the receipt was not recorded: "
        "unknown erasure request 'req-unknown'; record it with personalization's CompleteErasure"
    )
    assert [erased.subject_id for erased in matching.erased] == ["m-lena"]


def test_a_malformed_request_id_is_refused_before_anything_is_erased(
    operations: MemberOperations, matching: FakeMatching
) -> None:
    with pytest.raises(InvalidArgument, match="request_id 'no spaces' is not a valid id"):
        _erase(operations, "no spaces")

    assert matching.erased == []


def test_the_privacy_office_may_erase() -> None:
    assert METHOD_ROLES["EraseMember"] == frozenset({"admin", "privacy"})
