"""The admin RPCs over real gRPC: stores, cameras, the watchlist and store analytics; roles, and tokens scoped to
stores (a manager reads its stores' analytics only; staff see and acknowledge their store's alerts only)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from in_process import start_personalization

from retailface.client import admin_cli
from retailface.services.shared.server import RunningServer
from retailface.v1 import common_pb2, personalization_pb2, personalization_pb2_grpc

STORE, OTHER_STORE = "store-01", "store-02"
ROLES = ("service", "staff", "manager", "privacy", "web", "admin", "camera", "pos")
TOKENS = {role: f"{role}-token-0123456789abcdef" for role in ROLES}
SCOPED = {  # tokens that act for store-01 only
    "store-manager": ("manager", f"manager-{STORE}-0123456789abcdef"),
    "store-staff": ("staff", f"staff-{STORE}-0123456789abcdef"),
}
Stub = personalization_pb2_grpc.PersonalizationServiceStub
pb = personalization_pb2


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    tokens: dict[str, list[object]] = {role: [token] for role, token in TOKENS.items()}
    for role, token in SCOPED.values():
        tokens[role].append({"token": token, "stores": [STORE]})
    running = start_personalization(tmp_path, tokens, {"RETAILFACE_PERSONALIZATION_DB_URL": database_url})
    yield running
    running.shutdown(grace=1)


@pytest.fixture
def stub(server: RunningServer) -> Iterator[Stub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Stub(channel)


def _as(who: str) -> tuple[tuple[str, str], ...]:
    token = SCOPED[who][1] if who in SCOPED else TOKENS[who]
    return (("authorization", f"Bearer {token}"),)


def _refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value


def _at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


LANE_CAMERA = pb.Camera(
    camera_id="lane-cam-3", store_id=STORE, role=pb.CAMERA_ROLE_LANE, zone_id="checkout", lane_id="3", actor="lea"
)


def test_an_admin_registers_a_camera_the_gateway_then_lists(stub: Stub) -> None:
    before = stub.ListCameras(pb.ListCamerasRequest(), metadata=_as("service"), timeout=10).version
    stub.RegisterCamera(LANE_CAMERA, metadata=_as("admin"), timeout=10)
    listed = stub.ListCameras(pb.ListCamerasRequest(store_id=STORE), metadata=_as("service"), timeout=10)
    assert [(c.camera_id, c.role, c.zone_id, c.lane_id) for c in listed.cameras] == [
        ("lane-cam-3", pb.CAMERA_ROLE_LANE, "checkout", "3")
    ]
    assert listed.version == before + 1


def test_a_camera_without_a_role_is_invalid(stub: Stub) -> None:
    camera = pb.Camera(camera_id="door-1", store_id=STORE)
    error = _refused(lambda: stub.RegisterCamera(camera, metadata=_as("admin"), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "camera role must be one of entrance, aisle, lane (got '')"


def test_an_admin_creates_a_store_that_staff_can_list(stub: Stub) -> None:
    store = pb.Store(store_id="store-77", name="Lyon", timezone="Europe/Paris", actor="lea")
    created = stub.UpsertStore(store, metadata=_as("admin"), timeout=10)
    assert (created.store_id, created.timezone, created.watchlist_enabled, created.actor) == (
        "store-77",
        "Europe/Paris",
        False,
        "",
    )
    listed = stub.ListStores(pb.ListStoresRequest(), metadata=_as("staff"), timeout=10)
    assert "store-77" in [s.store_id for s in listed.stores]


def test_a_token_scoped_to_a_store_lists_only_that_store(stub: Stub) -> None:
    listed = stub.ListStores(pb.ListStoresRequest(), metadata=_as("store-manager"), timeout=10)
    assert [s.store_id for s in listed.stores] == [STORE]


DENIED = {
    "store change by a manager": lambda s: s.UpsertStore(pb.Store(store_id="s9", name="x"), metadata=_as("manager")),
    "camera registration by staff": lambda s: s.RegisterCamera(LANE_CAMERA, metadata=_as("staff")),
    "camera removal by the gateway": lambda s: s.RemoveCamera(pb.RemoveCameraRequest(), metadata=_as("service")),
    "camera list for staff": lambda s: s.ListCameras(pb.ListCamerasRequest(), metadata=_as("staff")),
    "store list for a camera": lambda s: s.ListStores(pb.ListStoresRequest(), metadata=_as("camera")),
    "watchlist for a manager": lambda s: s.ListWatchlist(pb.ListWatchlistRequest(), metadata=_as("manager")),
    "watchlist change by the web": lambda s: s.UpsertWatchlistEntry(pb.WatchlistEntry(), metadata=_as("web")),
    "watchlist removal by staff": lambda s: s.RemoveWatchlistEntry(
        pb.RemoveWatchlistEntryRequest(), metadata=_as("staff")
    ),
    "analytics for privacy": lambda s: s.GetStoreAnalytics(
        pb.StoreAnalyticsRequest(store_id=STORE), metadata=_as("privacy")
    ),
}


@pytest.mark.parametrize("call", DENIED.values(), ids=DENIED.keys())
def test_roles_outside_a_methods_list_are_denied(stub: Stub, call: Callable[[Stub], object]) -> None:
    assert _refused(lambda: call(stub)).code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_manager_reads_the_analytics_of_its_store(stub: Stub) -> None:
    report = stub.GetStoreAnalytics(pb.StoreAnalyticsRequest(store_id=STORE), metadata=_as("store-manager"), timeout=10)
    assert report.store_id == STORE


def test_a_manager_of_one_store_may_not_read_another(stub: Stub) -> None:
    request = pb.StoreAnalyticsRequest(store_id=OTHER_STORE)
    error = _refused(lambda: stub.GetStoreAnalytics(request, metadata=_as("store-manager"), timeout=10))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "this manager token acts for store store-01 only, not for store 'store-02'"


def test_staff_of_one_store_may_not_stream_another_stores_alerts(stub: Stub) -> None:
    stream = stub.StreamStaffAlerts(pb.StaffAlertsRequest(store_id=OTHER_STORE), metadata=_as("store-staff"))
    error = _refused(lambda: next(iter(stream)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "this staff token acts for store store-01 only, not for store 'store-02'"


def _dissatisfaction_alert(stub: Stub, store_id: str) -> str:
    event = pb.VisitEvent(
        event_id=f"unhappy-{store_id}",
        type=pb.VISIT_EVENT_TYPE_CHECKOUT,
        store_id=store_id,
        lane_id="3",
        track_id="t-9",
        emotion=pb.EmotionSummary(negative_fraction=0.9, seconds=5),
    )
    return stub.RecordVisitEvent(event, metadata=_as("service"), timeout=10).alerts_raised[0].alert_id


def test_staff_of_one_store_may_not_acknowledge_another_stores_alert(stub: Stub) -> None:
    alert_id = _dissatisfaction_alert(stub, OTHER_STORE)
    request = pb.AcknowledgeAlertRequest(alert_id=alert_id, staff_id="kim")
    error = _refused(lambda: stub.AcknowledgeAlert(request, metadata=_as("store-staff"), timeout=10))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "this token acts for store store-01 only" in error.details()


def test_staff_acknowledge_their_own_stores_alert(stub: Stub) -> None:
    alert_id = _dissatisfaction_alert(stub, STORE)
    request = pb.AcknowledgeAlertRequest(alert_id=alert_id, staff_id="kim")
    stub.AcknowledgeAlert(request, metadata=_as("store-staff"), timeout=10)


def test_a_watchlist_entry_is_added_by_one_person_and_confirmed_by_another(stub: Stub) -> None:
    expires = _at(time.time() + 7 * 86_400)
    entry = pb.WatchlistEntry(subject_id="wl-1", reason="report 2026-11", expires_at=expires, actor="lea")
    added = stub.UpsertWatchlistEntry(entry, metadata=_as("admin"), timeout=10)
    assert (added.added_by, added.confirmed_by) == ("admin:lea", "")
    confirm = pb.WatchlistEntry(subject_id="wl-1", confirm=True, actor="omar")
    confirmed = stub.UpsertWatchlistEntry(confirm, metadata=_as("privacy"), timeout=10)
    assert confirmed.confirmed_by == "privacy:omar" and confirmed.HasField("confirmed_at")
    listed = stub.ListWatchlist(pb.ListWatchlistRequest(), metadata=_as("privacy"), timeout=10).entries
    assert [(e.subject_id, e.reason, e.confirmed_by) for e in listed] == [("wl-1", "report 2026-11", "privacy:omar")]


def test_the_person_who_added_an_entry_may_not_confirm_it(stub: Stub) -> None:
    expires = _at(time.time() + 7 * 86_400)
    entry = pb.WatchlistEntry(subject_id="wl-1", reason="report 2026-11", expires_at=expires, actor="lea")
    stub.UpsertWatchlistEntry(entry, metadata=_as("admin"), timeout=10)
    confirm = pb.WatchlistEntry(subject_id="wl-1", confirm=True, actor="lea")
    error = _refused(lambda: stub.UpsertWatchlistEntry(confirm, metadata=_as("privacy"), timeout=10))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_anonymous_attributes_sent_by_the_gateway_are_counted_by_age_band_and_gender(stub: Stub) -> None:
    hour = (int(time.time()) // 3600 + 72) * 3600  # ahead of the seed's data
    for index in range(3):
        event = pb.VisitEvent(
            event_id=f"anon-{index}",
            type=pb.VISIT_EVENT_TYPE_ENTERED,
            store_id=STORE,
            track_id=f"t-{index}",
            at=_at(hour + 60 * index),
            attributes=common_pb2.Attributes(age_years=33.0, age_confidence=0.7, gender=common_pb2.GENDER_FEMALE),
        )
        stub.RecordVisitEvent(event, metadata=_as("service"), timeout=10)
    request = pb.StoreAnalyticsRequest(store_id=STORE, since=_at(hour), until=_at(hour + 3600))
    report = stub.GetStoreAnalytics(request, metadata=_as("manager"), timeout=10)
    assert [(d.age_band, d.gender, d.shoppers) for d in report.demographics] == [("30-44", common_pb2.GENDER_FEMALE, 3)]
    assert [(h.hour.seconds, h.visits, h.anonymous_shoppers) for h in report.hours] == [(hour, 0, 3)]


def test_the_admin_command_line_imports_a_camera_map(
    server: RunningServer, stub: Stub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    camera_map = tmp_path / "cameras.json"
    camera_map.write_text(
        json.dumps(
            {
                "s1-entrance-1": {"store_id": STORE, "role": "entrance", "zone_id": "entrance"},
                "s1-lane-1": {"store_id": STORE, "role": "lane", "zone_id": "checkout", "lane_id": "lane-1"},
            }
        )
    )
    connection = ["--gateway", f"127.0.0.1:{server.port}", "--insecure", "--token", TOKENS["admin"]]
    assert admin_cli.main([*connection, "import-cameras", str(camera_map)]) == 0
    listed = stub.ListCameras(pb.ListCamerasRequest(store_id=STORE), metadata=_as("admin"), timeout=10)
    assert [(c.camera_id, c.role, c.lane_id) for c in listed.cameras] == [
        ("s1-entrance-1", pb.CAMERA_ROLE_ENTRANCE, ""),
        ("s1-lane-1", pb.CAMERA_ROLE_LANE, "lane-1"),
    ]
    assert "registered s1-lane-1" in capsys.readouterr().out
