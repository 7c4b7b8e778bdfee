"""PersonalizationService over real gRPC in-process: the shared bootstrap, roles, streams and status codes."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from in_process import start_personalization
from personalization_helpers import STORE, members_without_online_events
from sqlalchemy import Engine

from retailface.services.shared.server import RunningServer
from retailface.v1 import common_pb2, personalization_pb2, personalization_pb2_grpc

TOKENS = {role: f"{role}-token-0123456789abcdef" for role in ("service", "pos", "staff", "admin", "camera")}
Stub = personalization_pb2_grpc.PersonalizationServiceStub


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    environ = {
        "RETAILFACE_PERSONALIZATION_DB_URL": database_url,
        "RETAILFACE_PERSONALIZATION_OUTBOX_POLL_SECONDS": "0.1",
    }
    running = start_personalization(tmp_path, {role: [token] for role, token in TOKENS.items()}, environ)
    yield running
    running.shutdown(grace=1)


@pytest.fixture
def stub(server: RunningServer) -> Iterator[Stub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Stub(channel)


def _as(role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[role]}"),)


def _engine(server: RunningServer) -> Engine:
    return server.registration.servicer.personalization.engine  # type: ignore[attr-defined]


@pytest.fixture
def member_id(server: RunningServer, stub: Stub) -> str:
    """A member with purchase history who consented to identification, offers and greetings as "Noor"."""
    member_id = members_without_online_events(_engine(server))[0]
    stub.GrantConsent(
        personalization_pb2.GrantConsentRequest(
            member_id=member_id,
            actor="desk-1",
            consent=common_pb2.ConsentRecord(
                policy_version="2026-01",
                source="kiosk",
                scopes=[
                    common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION,
                    common_pb2.CONSENT_SCOPE_PERSONALIZED_OFFERS,
                    common_pb2.CONSENT_SCOPE_STAFF_GREETING,
                ],
            ),
        ),
        metadata=_as("service"),
        timeout=10,
    )
    stub.UpdatePreferences(
        personalization_pb2.MemberPreferences(member_id=member_id, allow_greeting=True, preferred_name="Noor"),
        metadata=_as("service"),
        timeout=10,
    )
    return member_id


def _enter(stub: Stub, member_id: str) -> personalization_pb2.VisitEventResult:
    return stub.RecordVisitEvent(
        personalization_pb2.VisitEvent(
            event_id="g-1",
            type=personalization_pb2.VISIT_EVENT_TYPE_ENTERED,
            store_id=STORE,
            member_id=member_id,
            camera_id="entrance-1",
            track_id="t-1",
        ),
        metadata=_as("service"),
        timeout=10,
    )


@pytest.fixture
def entered(stub: Stub, member_id: str) -> personalization_pb2.VisitEventResult:
    """The member walked in: greeting raised, offers pushed."""
    return _enter(stub, member_id)


def test_entry_greeting_reaches_a_connected_staff_screen(stub: Stub, member_id: str) -> None:
    # A store screen connects first and receives alerts as they are raised.
    received: queue.Queue[common_pb2.StaffAlert] = queue.Queue()
    stream = stub.StreamStaffAlerts(personalization_pb2.StaffAlertsRequest(store_id=STORE), metadata=_as("staff"))

    def read_stream() -> None:
        try:
            for alert in stream:
                received.put(alert)
        except grpc.RpcError as error:  # cancelled at the end of the test
            assert error.code() == grpc.StatusCode.CANCELLED

    # Whether the alert is raised before or after the subscription registers, the screen gets it
    # (live, or from the catch-up of unacknowledged alerts).
    threading.Thread(target=read_stream, daemon=True).start()
    entered = _enter(stub, member_id)
    assert [a.kind for a in entered.alerts_raised] == [common_pb2.ALERT_KIND_GREETING]
    alert = received.get(timeout=10)
    stream.cancel()
    assert alert.alert_id == entered.alerts_raised[0].alert_id
    assert alert.display_name == "Noor" and alert.message.startswith("Noor just came in")


def test_entry_pushes_offers_located_in_the_store(entered: personalization_pb2.VisitEventResult) -> None:
    assert entered.offers_pushed
    for offer in entered.offers_pushed:
        assert offer.location.store_id == STORE and offer.location.aisle
        assert f"aisle {offer.location.aisle}" in offer.reason


def test_repeated_visit_event_is_a_duplicate(
    stub: Stub, member_id: str, entered: personalization_pb2.VisitEventResult
) -> None:
    duplicate = stub.RecordVisitEvent(
        personalization_pb2.VisitEvent(
            event_id="g-1", type=personalization_pb2.VISIT_EVENT_TYPE_ENTERED, store_id=STORE, member_id=member_id
        ),
        metadata=_as("service"),
        timeout=10,
    )
    assert duplicate.duplicate and not duplicate.offers_pushed and not duplicate.alerts_raised


def test_late_screen_catches_up_on_unacknowledged_alerts(
    stub: Stub, entered: personalization_pb2.VisitEventResult
) -> None:
    late = stub.StreamStaffAlerts(
        personalization_pb2.StaffAlertsRequest(store_id=STORE), metadata=_as("staff"), timeout=10
    )
    assert next(late).alert_id == entered.alerts_raised[0].alert_id
    late.cancel()


def test_acknowledged_alert_is_not_replayed(stub: Stub, entered: personalization_pb2.VisitEventResult) -> None:
    stub.AcknowledgeAlert(
        personalization_pb2.AcknowledgeAlertRequest(alert_id=entered.alerts_raised[0].alert_id, staff_id="s-1"),
        metadata=_as("staff"),
        timeout=10,
    )
    after_ack = stub.StreamStaffAlerts(
        personalization_pb2.StaffAlertsRequest(store_id=STORE), metadata=_as("staff"), timeout=1.0
    )
    with pytest.raises(grpc.RpcError) as ended:
        next(after_ack)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_checkout_by_face_needs_confirmation(
    stub: Stub, member_id: str, entered: personalization_pb2.VisitEventResult
) -> None:
    checkout = stub.GetCheckoutOffers(
        personalization_pb2.CheckoutOffersRequest(
            store_id=STORE,
            lane_id="lane-1",
            member_id=member_id,
            basket=[personalization_pb2.BasketLine(sku=entered.offers_pushed[0].sku, quantity=1)],
            identified_by=common_pb2.IDENTIFICATION_METHOD_FACE,
        ),
        metadata=_as("pos"),
        timeout=10,
    )
    assert checkout.confirmation_required and checkout.member_id == member_id
    assert checkout.identified_by == common_pb2.IDENTIFICATION_METHOD_FACE


def test_repeated_purchase_is_a_duplicate(
    stub: Stub, member_id: str, entered: personalization_pb2.VisitEventResult
) -> None:
    purchase = personalization_pb2.Purchase(
        transaction_id="pos-g-1",
        store_id=STORE,
        member_id=member_id,
        lines=[personalization_pb2.PurchaseLine(sku=entered.offers_pushed[0].sku, quantity=1, unit_price=2.0)],
    )
    assert not stub.RecordPurchase(purchase, metadata=_as("pos"), timeout=10).duplicate
    assert stub.RecordPurchase(purchase, metadata=_as("pos"), timeout=10).duplicate


def test_revoked_consent_stops_offers(stub: Stub, member_id: str) -> None:
    stub.RevokeConsent(
        personalization_pb2.RevokeConsentRequest(member_id=member_id, actor="app"), metadata=_as("service"), timeout=10
    )
    offers = stub.GetOffers(
        personalization_pb2.GetOffersRequest(member_id=member_id, store_id=STORE), metadata=_as("service"), timeout=10
    )
    assert list(offers.offers) == []
    assert list(offers.notes) == ["no consent for personalized_offers: no personalized offers"]


def test_member_carries_its_recognition(stub: Stub, member_id: str) -> None:
    def recognition() -> personalization_pb2.Recognition:
        request = personalization_pb2.GetMemberRequest(member_id=member_id)
        return stub.GetMember(request, metadata=_as("service"), timeout=10).recognition

    assert recognition() == personalization_pb2.Recognition(may_identify=True, may_greet=True, greeting_name="Noor")
    stub.RevokeConsent(
        personalization_pb2.RevokeConsentRequest(member_id=member_id, scopes=[common_pb2.CONSENT_SCOPE_STAFF_GREETING]),
        metadata=_as("service"),
        timeout=10,
    )
    assert recognition() == personalization_pb2.Recognition(may_identify=True, may_greet=False, greeting_name="")


def test_audit_records_identification_reads_and_consent(
    stub: Stub, member_id: str, entered: personalization_pb2.VisitEventResult
) -> None:
    stub.GetMember(personalization_pb2.GetMemberRequest(member_id=member_id), metadata=_as("service"), timeout=10)
    audit = stub.QueryAudit(
        personalization_pb2.AuditQuery(member_id=member_id, limit=50), metadata=_as("admin"), timeout=10
    )
    assert {"identify", "read", "consent"} <= {entry.action for entry in audit.entries}
    assert {entry.subject for entry in audit.entries} == {member_id}


def test_an_identification_is_audited_with_its_measured_error_rate(stub: Stub, member_id: str) -> None:
    stub.RecordVisitEvent(
        personalization_pb2.VisitEvent(
            event_id="g-cal",
            type=personalization_pb2.VISIT_EVENT_TYPE_ENTERED,
            store_id=STORE,
            member_id=member_id,
            match_score=0.61,
            identification=common_pb2.Calibration(quality_bin="24-32px", estimated_fpir=0.0008, threshold=0.52),
        ),
        metadata=_as("service"),
        timeout=10,
    )
    audit = stub.QueryAudit(
        personalization_pb2.AuditQuery(member_id=member_id, limit=50), metadata=_as("admin"), timeout=10
    )
    (identify,) = [json.loads(entry.detail) for entry in audit.entries if entry.action == "identify"]
    assert (identify["match_score"], identify["quality_bin"], identify["estimated_fpir"]) == (0.61, "24-32px", 0.0008)


def test_erased_member_is_gone(stub: Stub, member_id: str) -> None:
    erased = stub.EraseMember(
        personalization_pb2.EraseMemberDataRequest(member_id=member_id, actor="dpo"), metadata=_as("admin"), timeout=10
    )
    assert erased.rows_removed["members"] == 1
    with pytest.raises(grpc.RpcError) as error:
        stub.GetMember(personalization_pb2.GetMemberRequest(member_id=member_id), metadata=_as("service"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


STATUS_CASES: dict[str, tuple[Callable[[Stub], object], grpc.StatusCode]] = {
    "offers for an unknown member": (
        lambda stub: stub.GetOffers(
            personalization_pb2.GetOffersRequest(member_id="nobody", store_id=STORE),
            metadata=_as("service"),
            timeout=10,
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "offers at an unknown store": (
        lambda stub: stub.GetOffers(
            personalization_pb2.GetOffersRequest(member_id="m00001", store_id="store-99"),
            metadata=_as("service"),
            timeout=10,
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "inventory of an unknown sku": (
        lambda stub: stub.SetInventory(
            personalization_pb2.SetInventoryRequest(
                items=[personalization_pb2.InventoryItem(store_id=STORE, sku="SKU-NOPE", on_hand=1)]
            ),
            metadata=_as("admin"),
            timeout=10,
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "visit event without a type": (
        lambda stub: stub.RecordVisitEvent(
            personalization_pb2.VisitEvent(event_id="x", store_id=STORE), metadata=_as("service"), timeout=10
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "erasure by a till": (
        lambda stub: stub.EraseMember(
            personalization_pb2.EraseMemberDataRequest(member_id="m00001"), metadata=_as("pos"), timeout=10
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "checkout offers for a camera": (
        lambda stub: stub.GetCheckoutOffers(
            personalization_pb2.CheckoutOffersRequest(store_id=STORE), metadata=_as("camera"), timeout=10
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "catalog change by a service": (
        lambda stub: stub.UpsertProducts(
            personalization_pb2.UpsertProductsRequest(), metadata=_as("service"), timeout=10
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "call without a token": (
        lambda stub: stub.GetMember(personalization_pb2.GetMemberRequest(member_id="m00001"), timeout=10),
        grpc.StatusCode.UNAUTHENTICATED,
    ),
}


@pytest.mark.parametrize(("call", "code"), STATUS_CASES.values(), ids=STATUS_CASES.keys())
def test_status_codes_and_roles_over_grpc(stub: Stub, call: Callable[[Stub], object], code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as error:
        call(stub)
    assert error.value.code() == code, error.value.details()


def test_online_events_report_a_status_per_event(stub: Stub) -> None:
    def viewed(event_id: str, member_id: str) -> personalization_pb2.OnlineEvent:
        return personalization_pb2.OnlineEvent(
            event_id=event_id, member_id=member_id, sku="SKU-00001", type=personalization_pb2.ONLINE_EVENT_TYPE_VIEWED
        )

    events = stub.IngestOnlineEvents(
        personalization_pb2.IngestOnlineEventsRequest(
            events=[viewed("w-1", "m00001"), viewed("w-1", "m00001"), viewed("w-2", "nobody")]
        ),
        metadata=_as("service"),
        timeout=10,
    )
    assert (events.accepted, events.duplicates) == (1, 1)
    assert [s.code for s in events.statuses] == [
        0,
        grpc.StatusCode.ALREADY_EXISTS.value[0],
        grpc.StatusCode.NOT_FOUND.value[0],
    ]
