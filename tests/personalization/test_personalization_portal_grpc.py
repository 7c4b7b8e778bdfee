"""The member portal and privacy office RPCs over real gRPC: who may call what, and the flows the consoles use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from in_process import start_personalization
from personalization_helpers import STORE, abandon_cart, members_without_online_events, prepare_member, stocked_sku

from retailface.client import admin_cli
from retailface.services.shared.server import RunningServer
from retailface.v1 import common_pb2, personalization_pb2, personalization_pb2_grpc

ROLES = ("service", "staff", "admin", "privacy", "web")
TOKENS = {role: f"{role}-token-0123456789abcdef" for role in ROLES}
Stub = personalization_pb2_grpc.PersonalizationServiceStub
_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")  # the in-process server's log lines


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    tokens = {role: [token] for role, token in TOKENS.items()}
    running = start_personalization(tmp_path, tokens, {"RETAILFACE_PERSONALIZATION_DB_URL": database_url})
    yield running
    running.shutdown(grace=1)


@pytest.fixture
def stub(server: RunningServer) -> Iterator[Stub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Stub(channel)


@pytest.fixture
def member_id(server: RunningServer) -> str:
    return members_without_online_events(server.registration.servicer.personalization.engine)[0]  # type: ignore[attr-defined]


def _as(role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[role]}"),)


def _issue(stub: Stub, member_id: str, role: str = "privacy") -> str:
    request = personalization_pb2.IssueMemberSignInRequest(member_id=member_id, actor="officer-1")
    return str(stub.IssueMemberSignIn(request, metadata=_as(role), timeout=10).code)


def _denied(call: grpc.UnaryUnaryMultiCallable, request: object, role: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as denied:
        call(request, metadata=_as(role), timeout=10)
    return denied.value


def test_the_web_console_redeems_a_code_once(stub: Stub, member_id: str) -> None:
    code = _issue(stub, member_id)
    redeem = personalization_pb2.RedeemMemberSignInRequest(code=code)

    signed_in = stub.RedeemMemberSignIn(redeem, metadata=_as("web"), timeout=10)
    again = _denied(stub.RedeemMemberSignIn, redeem, "web")

    assert signed_in.member_id == member_id
    assert (again.code(), again.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "this sign-in code was already used: ask for a new one",
    )


def test_a_staff_token_can_neither_redeem_nor_export(stub: Stub, member_id: str) -> None:
    code = _issue(stub, member_id)

    redeem = _denied(stub.RedeemMemberSignIn, personalization_pb2.RedeemMemberSignInRequest(code=code), "staff")
    export = _denied(stub.ExportMemberData, personalization_pb2.ExportMemberDataRequest(member_id=member_id), "staff")

    assert redeem.code() == export.code() == grpc.StatusCode.PERMISSION_DENIED
    assert export.details() == "role 'staff' may not call ExportMemberData; allowed: admin, privacy, web"
    # The code the staff token could not redeem still works for the portal.
    redeemed = stub.RedeemMemberSignIn(
        personalization_pb2.RedeemMemberSignInRequest(code=code), metadata=_as("web"), timeout=10
    )
    assert redeemed.member_id == member_id


def test_the_web_console_cannot_issue_codes_or_read_the_privacy_office(stub: Stub, member_id: str) -> None:
    issue = _denied(stub.IssueMemberSignIn, personalization_pb2.IssueMemberSignInRequest(member_id=member_id), "web")
    listing = _denied(stub.ListErasureRequests, personalization_pb2.ListErasureRequestsRequest(), "web")
    audit = _denied(stub.QueryAudit, personalization_pb2.AuditQuery(member_id=member_id), "web")

    assert [issue.code(), listing.code(), audit.code()] == [grpc.StatusCode.PERMISSION_DENIED] * 3


def test_the_member_unlikes_a_product_through_the_portal(stub: Stub, server: RunningServer, member_id: str) -> None:
    logic = server.registration.servicer.personalization  # type: ignore[attr-defined]
    prepare_member(logic, member_id)
    sku, _, _ = stocked_sku(logic.engine)
    abandon_cart(logic, member_id, sku, "cart-grpc")

    stub.Feedback(
        personalization_pb2.OfferFeedback(member_id=member_id, sku=sku, type=personalization_pb2.FEEDBACK_TYPE_UNLIKED),
        metadata=_as("web"),
        timeout=10,
    )

    offers = stub.GetOffers(
        personalization_pb2.GetOffersRequest(member_id=member_id, store_id=STORE, context="app", limit=20),
        metadata=_as("service"),
        timeout=10,
    )
    activity = stub.GetMemberActivity(
        personalization_pb2.MemberActivityRequest(member_id=member_id), metadata=_as("web"), timeout=10
    )
    assert sku not in {offer.sku for offer in offers.offers}
    assert list(activity.unliked_skus) == [sku]


def test_the_privacy_office_sees_consent_history_and_searches_the_audit(stub: Stub, member_id: str) -> None:
    stub.RevokeConsent(
        personalization_pb2.RevokeConsentRequest(
            member_id=member_id, scopes=[common_pb2.CONSENT_SCOPE_STAFF_GREETING], actor="member", reason="no thanks"
        ),
        metadata=_as("web"),
        timeout=10,
    )

    history = stub.ListConsentHistory(
        personalization_pb2.ConsentHistoryRequest(member_id=member_id), metadata=_as("privacy"), timeout=10
    )
    audit = stub.QueryAudit(
        personalization_pb2.AuditQuery(member_id=member_id, action="consent", actor="web:member"),
        metadata=_as("privacy"),
        timeout=10,
    )

    revoked = history.changes[-1]
    assert (revoked.action, list(revoked.scopes), revoked.actor, revoked.reason) == (
        "revoked",
        [common_pb2.CONSENT_SCOPE_STAFF_GREETING],
        "web:member",
        "no thanks",
    )
    assert [(e.actor, e.action, e.reason) for e in audit.entries] == [("web:member", "consent", "no thanks")]


def test_a_requested_erasure_is_completed_with_a_receipt(stub: Stub, member_id: str) -> None:
    requested = stub.RequestErasure(
        personalization_pb2.RequestErasureRequest(member_id=member_id, actor="member", reason="leaving"),
        metadata=_as("web"),
        timeout=10,
    )
    pending = stub.ListErasureRequests(
        personalization_pb2.ListErasureRequestsRequest(status=personalization_pb2.ERASURE_STATUS_PENDING),
        metadata=_as("privacy"),
        timeout=10,
    )
    removed = stub.EraseMember(
        personalization_pb2.EraseMemberDataRequest(member_id=member_id, actor="officer-1"),
        metadata=_as("service"),
        timeout=10,
    )

    receipt = stub.CompleteErasure(
        personalization_pb2.CompleteErasureRequest(
            request_id=requested.request_id,
            member_id=member_id,
            actor="officer-1",
            templates_removed=2,
            rows_removed=removed.rows_removed,
        ),
        metadata=_as("service"),
        timeout=10,
    )

    assert [(r.request_id, r.member_id, r.requested_by) for r in pending.requests] == [
        (requested.request_id, member_id, "web:member")
    ]
    assert (receipt.status, receipt.member_id, receipt.completed_by) == (
        personalization_pb2.ERASURE_STATUS_COMPLETED,
        "",
        "service:officer-1",
    )
    assert (receipt.templates_removed, dict(receipt.rows_removed)) == (2, dict(removed.rows_removed))
    assert receipt.member_ref == requested.member_ref


def test_the_export_is_one_json_document(stub: Stub, member_id: str) -> None:
    exported = stub.ExportMemberData(
        personalization_pb2.ExportMemberDataRequest(member_id=member_id, actor="member"),
        metadata=_as("web"),
        timeout=10,
    )

    document = json.loads(exported.json_document.decode("utf-8"))
    assert (document["format"], document["member_id"], document["profile"]["member_id"]) == (
        "retailface-member-export-v1",
        member_id,
        member_id,
    )


def _admin_cli(server: RunningServer, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    target = f"127.0.0.1:{server.port}"
    code = admin_cli.main(["--insecure", "--token", TOKENS["admin"], *args, "--personalization", target])
    printed = capsys.readouterr().out.splitlines()
    return code, "\n".join(line for line in printed if not _LOG_LINE.match(line))


def test_the_admin_command_line_issues_a_code_that_signs_in(
    stub: Stub, server: RunningServer, member_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _admin_cli(server, capsys, "sign-in-code", "--member-id", member_id)

    code = out.strip().rsplit(" ", 1)[-1]
    assert status == 0
    assert out.startswith(f"sign-in code for {member_id} (single use, expires ")
    redeemed = stub.RedeemMemberSignIn(
        personalization_pb2.RedeemMemberSignInRequest(code=code), metadata=_as("web"), timeout=10
    )
    assert redeemed.member_id == member_id


def test_the_admin_command_line_lists_pending_erasure_requests(
    stub: Stub, server: RunningServer, member_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    requested = stub.RequestErasure(
        personalization_pb2.RequestErasureRequest(member_id=member_id, actor="member"), metadata=_as("web"), timeout=10
    )

    status, out = _admin_cli(server, capsys, "erasure-requests", "--status", "pending")

    assert status == 0
    assert out.startswith(f"{requested.request_id} pending   requested ")
    assert out.strip().endswith(f"by web:member member {member_id}")
