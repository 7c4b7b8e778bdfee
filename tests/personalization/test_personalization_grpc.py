"""PersonalizationService over real gRPC in-process: the shared bootstrap, roles, streams and status codes."""

from __future__ import annotations

import json
import queue
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from personalization_helpers import STORE, members_without_online_events
from sqlalchemy import Engine

from retailface.services.personalization import servicer
from retailface.services.shared import config as config_module
from retailface.services.shared.server import RunningServer, start
from retailface.v1 import common_pb2, personalization_pb2, personalization_pb2_grpc

TOKENS = {role: f"{role}-token-0123456789abcdef" for role in ("service", "pos", "staff", "admin", "camera")}


@pytest.fixture
def server(seeded, tmp_path: Path) -> Iterator[RunningServer]:
    database = tmp_path / "grpc.sqlite3"
    shutil.copyfile(seeded.path, database)
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps({role: [token] for role, token in TOKENS.items()}))
    cfg = config_module.load(
        "personalization",
        servicer.SETTINGS,
        argv=[],
        environ={
            "RETAILFACE_INSECURE": "true",
            "RETAILFACE_PORT": "0",
            "RETAILFACE_METRICS_PORT": "0",
            "RETAILFACE_AUTH_TOKENS_FILE": str(tokens_file),
            "RETAILFACE_PERSONALIZATION_DB_URL": f"sqlite:///{database}",
            "RETAILFACE_PERSONALIZATION_MODEL_REFRESH_SECONDS": "0",
            "RETAILFACE_PERSONALIZATION_OUTBOX_POLL_SECONDS": "0.1",
        },
    )
    running = start("personalization", servicer.build(cfg), cfg)
    yield running
    running.shutdown(grace=1)


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        yield chan


def _as(role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[role]}"),)


def _engine(server: RunningServer) -> Engine:
    return server.registration.servicer.service.engine  # type: ignore[attr-defined]


def test_offers_alerts_and_errors_over_grpc(server: RunningServer, channel: grpc.Channel) -> None:
    stub = personalization_pb2_grpc.PersonalizationServiceStub(channel)
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

    entered = stub.RecordVisitEvent(
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
    assert [a.kind for a in entered.alerts_raised] == [common_pb2.ALERT_KIND_GREETING]
    assert entered.offers_pushed and all(o.location.aisle and o.reason for o in entered.offers_pushed)
    alert = received.get(timeout=10)
    assert alert.alert_id == entered.alerts_raised[0].alert_id and alert.display_name == "Noor"
    stream.cancel()

    duplicate = stub.RecordVisitEvent(
        personalization_pb2.VisitEvent(
            event_id="g-1", type=personalization_pb2.VISIT_EVENT_TYPE_ENTERED, store_id=STORE, member_id=member_id
        ),
        metadata=_as("service"),
        timeout=10,
    )
    assert duplicate.duplicate and not duplicate.offers_pushed

    # A screen that connects later catches up on unacknowledged alerts; acknowledged ones are gone.
    late = stub.StreamStaffAlerts(
        personalization_pb2.StaffAlertsRequest(store_id=STORE), metadata=_as("staff"), timeout=10
    )
    assert next(late).alert_id == alert.alert_id
    late.cancel()
    stub.AcknowledgeAlert(
        personalization_pb2.AcknowledgeAlertRequest(alert_id=alert.alert_id, staff_id="s-1"),
        metadata=_as("staff"),
        timeout=10,
    )
    after_ack = stub.StreamStaffAlerts(
        personalization_pb2.StaffAlertsRequest(store_id=STORE), metadata=_as("staff"), timeout=1.0
    )
    with pytest.raises(grpc.RpcError) as ended:
        next(after_ack)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    basket = [personalization_pb2.BasketLine(sku=entered.offers_pushed[0].sku, quantity=1)]
    checkout = stub.GetCheckoutOffers(
        personalization_pb2.CheckoutOffersRequest(
            store_id=STORE,
            lane_id="lane-1",
            member_id=member_id,
            basket=basket,
            identified_by=common_pb2.IDENTIFICATION_METHOD_FACE,
        ),
        metadata=_as("pos"),
        timeout=10,
    )
    assert checkout.confirmation_required and checkout.member_id == member_id

    purchase = personalization_pb2.Purchase(
        transaction_id="pos-g-1",
        store_id=STORE,
        member_id=member_id,
        lines=[personalization_pb2.PurchaseLine(sku=basket[0].sku, quantity=1, unit_price=2.0)],
    )
    assert not stub.RecordPurchase(purchase, metadata=_as("pos"), timeout=10).duplicate
    assert stub.RecordPurchase(purchase, metadata=_as("pos"), timeout=10).duplicate

    stub.RevokeConsent(
        personalization_pb2.RevokeConsentRequest(member_id=member_id, actor="app"), metadata=_as("service"), timeout=10
    )
    offers = stub.GetOffers(
        personalization_pb2.GetOffersRequest(member_id=member_id, store_id=STORE), metadata=_as("service"), timeout=10
    )
    assert not offers.offers and "personalized_offers" in offers.notes[0]

    audit = stub.QueryAudit(
        personalization_pb2.AuditQuery(member_id=member_id, limit=50), metadata=_as("admin"), timeout=10
    )
    assert {"identify", "read", "consent"} <= {entry.action for entry in audit.entries}

    erased = stub.EraseMember(
        personalization_pb2.EraseMemberDataRequest(member_id=member_id, actor="dpo"), metadata=_as("admin"), timeout=10
    )
    assert erased.rows_removed["members"] == 1


def test_status_codes_and_roles_over_grpc(channel: grpc.Channel) -> None:
    stub = personalization_pb2_grpc.PersonalizationServiceStub(channel)
    cases = [
        (
            lambda: stub.GetOffers(
                personalization_pb2.GetOffersRequest(member_id="nobody", store_id=STORE),
                metadata=_as("service"),
                timeout=10,
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: stub.GetOffers(
                personalization_pb2.GetOffersRequest(member_id="m00001", store_id="store-99"),
                metadata=_as("service"),
                timeout=10,
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: stub.SetInventory(
                personalization_pb2.SetInventoryRequest(
                    items=[personalization_pb2.InventoryItem(store_id=STORE, sku="SKU-NOPE", on_hand=1)]
                ),
                metadata=_as("admin"),
                timeout=10,
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: stub.RecordVisitEvent(
                personalization_pb2.VisitEvent(event_id="x", store_id=STORE), metadata=_as("service"), timeout=10
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: stub.EraseMember(
                personalization_pb2.EraseMemberDataRequest(member_id="m00001"), metadata=_as("pos"), timeout=10
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            lambda: stub.GetCheckoutOffers(
                personalization_pb2.CheckoutOffersRequest(store_id=STORE), metadata=_as("camera"), timeout=10
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            lambda: stub.UpsertProducts(
                personalization_pb2.UpsertProductsRequest(), metadata=_as("service"), timeout=10
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            lambda: stub.GetMember(personalization_pb2.GetMemberRequest(member_id="m00001"), timeout=10),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
    ]
    for call, code in cases:
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert error.value.code() == code, error.value.details()
    events = stub.IngestOnlineEvents(
        personalization_pb2.IngestOnlineEventsRequest(
            events=[
                personalization_pb2.OnlineEvent(
                    event_id="w-1",
                    member_id="m00001",
                    sku="SKU-00001",
                    type=personalization_pb2.ONLINE_EVENT_TYPE_VIEWED,
                ),
                personalization_pb2.OnlineEvent(
                    event_id="w-1",
                    member_id="m00001",
                    sku="SKU-00001",
                    type=personalization_pb2.ONLINE_EVENT_TYPE_VIEWED,
                ),
                personalization_pb2.OnlineEvent(
                    event_id="w-2",
                    member_id="nobody",
                    sku="SKU-00001",
                    type=personalization_pb2.ONLINE_EVENT_TYPE_VIEWED,
                ),
            ]
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
