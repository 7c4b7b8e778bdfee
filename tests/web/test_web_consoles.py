"""Each console's pages do what they say, checked in the personalization service that the pages called."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient
from web_helpers import MEMBER, STORE, metadata, sign_in, sign_in_member

from retailface.services.web.views import analytics as analytics_view
from retailface.v1 import common_pb2, personalization_pb2, personalization_pb2_grpc

Stub = personalization_pb2_grpc.PersonalizationServiceStub


def _member(stub: Stub) -> personalization_pb2.Member:
    return stub.GetMember(
        personalization_pb2.GetMemberRequest(member_id=MEMBER), metadata=metadata("admin"), timeout=10
    )


@pytest.fixture
def member_csrf(client: TestClient, stub: Stub) -> str:
    return sign_in_member(client, stub)


def test_the_portal_shows_the_members_preferences(client: TestClient, member_csrf: str) -> None:
    response = client.get("/member")

    assert (response.status_code, 'id="allow-greeting" checked' in response.text) == (200, True)


def test_the_member_turns_greetings_off(client: TestClient, stub: Stub, member_csrf: str) -> None:
    form = {"csrf_token": member_csrf, "preferred_name": "Lena", "max_offers": "2", "excluded_categories": ""}

    response = client.post("/member/preferences", data=form)

    preferences = _member(stub).preferences
    assert (response.status_code, preferences.allow_greeting, preferences.max_offers_per_visit) == (303, False, 2)


def test_the_member_sets_quiet_hours(client: TestClient, stub: Stub, member_csrf: str) -> None:
    form = {"csrf_token": member_csrf, "start": "21:30", "end": "07:00", "timezone": "Europe/Paris"}

    client.post("/member/quiet-hours", data=form)

    quiet = _member(stub).preferences.quiet_hours
    assert (quiet.start_minute, quiet.end_minute, quiet.timezone) == (21 * 60 + 30, 7 * 60, "Europe/Paris")


def test_the_member_withdraws_one_consent_scope(client: TestClient, stub: Stub, member_csrf: str) -> None:
    form = {"csrf_token": member_csrf, "scope": ["face_identification", "personalized_offers"]}

    client.post("/member/consent", data=form)

    assert sorted(_member(stub).consent.scopes) == [
        common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION,
        common_pb2.CONSENT_SCOPE_PERSONALIZED_OFFERS,
    ]


def test_the_member_unlikes_a_product(client: TestClient, stub: Stub, member_csrf: str) -> None:
    stub.UpsertProducts(
        personalization_pb2.UpsertProductsRequest(
            products=[personalization_pb2.Product(sku="web-scarf", name="Scarf", category="apparel", price=20.0)]
        ),
        metadata=metadata("admin"),
        timeout=10,
    )

    client.post("/member/unlike", data={"csrf_token": member_csrf, "sku": "web-scarf"})

    activity = stub.GetMemberActivity(
        personalization_pb2.MemberActivityRequest(member_id=MEMBER), metadata=metadata("web"), timeout=10
    )
    assert "web-scarf" in list(activity.unliked_skus)


def test_the_member_downloads_their_data_as_json(client: TestClient, member_csrf: str) -> None:
    response = client.post("/member/export", data={"csrf_token": member_csrf})

    assert (response.headers["content-type"], MEMBER in response.text) == ("application/json", True)
    json.loads(response.text)


def test_the_member_never_names_another_member(client: TestClient, stub: Stub, member_csrf: str) -> None:
    response = client.post("/member/export", data={"csrf_token": member_csrf, "member_id": "m-someone-else"})

    assert json.dumps(json.loads(response.text)).count("m-someone-else") == 0


def test_the_officer_sees_the_consent_history(client: TestClient) -> None:
    csrf = sign_in(client, "privacy")

    response = client.post("/privacy/member", data={"csrf_token": csrf, "member_id": MEMBER})

    assert (response.status_code, 'id="consent-history"' in response.text, "face_identification" in response.text) == (
        200,
        True,
        True,
    )


def test_the_officer_exports_an_audit_search_as_csv(client: TestClient) -> None:
    csrf = sign_in(client, "privacy")

    response = client.post("/privacy/audit", data={"csrf_token": csrf, "member_id": MEMBER, "export": "csv"})

    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert (response.headers["content-type"].split(";")[0], {row["subject"] for row in rows}) == ("text/csv", {MEMBER})


def test_the_officer_searches_the_audit_by_kind(client: TestClient) -> None:
    csrf = sign_in(client, "privacy")

    response = client.post("/privacy/audit", data={"csrf_token": csrf, "action": "consent", "export": "json"})

    assert {entry["action"] for entry in json.loads(response.text)} == {"consent"}


def test_the_officer_issues_a_portal_link_that_signs_the_member_in(client: TestClient) -> None:
    csrf = sign_in(client, "privacy")
    page = client.post("/privacy/sign-in-link", data={"csrf_token": csrf, "member_id": MEMBER}).text
    link = page.split('id="sign-in-link">')[1].split("<")[0]
    code = link.split("code=")[1]
    client.post("/sign-out", data={"csrf_token": csrf})
    member_csrf = client.get("/member/sign-in").text.split('name="csrf-token" content="')[1].split('"')[0]

    response = client.post("/member/sign-in", data={"csrf_token": member_csrf, "code": code})

    assert (link.startswith("http://testserver/member/sign-in?code="), response.status_code) == (True, 303)


def test_the_analytics_data_are_the_services_numbers(client: TestClient, stub: Stub) -> None:
    sign_in(client, "manager")

    data = client.get(f"/analytics/data?store={STORE}").json()

    since = personalization_pb2.StoreAnalyticsRequest(store_id=STORE)
    since.since.FromSeconds(0)
    report = stub.GetStoreAnalytics(since, metadata=metadata("admin"), timeout=10)
    assert data["offers"] == analytics_view(report)["offers"]


def test_the_analytics_page_has_a_canvas_per_chart(client: TestClient) -> None:
    sign_in(client, "manager")

    html = client.get(f"/analytics?store={STORE}").text

    assert [name for name in ("hours", "zones", "demographics", "lanes", "offers") if f'id="chart-{name}"' in html] == [
        "hours",
        "zones",
        "demographics",
        "lanes",
        "offers",
    ]


def test_the_admin_registers_a_camera(client: TestClient, stub: Stub) -> None:
    csrf = sign_in(client, "admin")
    form = {"csrf_token": csrf, "camera_id": "web-lane-9", "store_id": STORE, "role": "lane", "zone_id": "checkout"}

    client.post("/admin/cameras", data=form | {"lane_id": "9"})

    cameras = stub.ListCameras(
        personalization_pb2.ListCamerasRequest(store_id=STORE), metadata=metadata("admin"), timeout=10
    )
    registered = {(c.camera_id, c.role, c.lane_id) for c in cameras.cameras}
    assert ("web-lane-9", personalization_pb2.CAMERA_ROLE_LANE, "9") in registered


def test_the_admin_creates_a_store_with_its_timezone(client: TestClient, stub: Stub) -> None:
    csrf = sign_in(client, "admin")

    client.post(
        "/admin/stores",
        data={"csrf_token": csrf, "store_id": "web-store-7", "name": "Paris", "timezone": "Europe/Paris"},
    )

    stores = stub.ListStores(personalization_pb2.ListStoresRequest(), metadata=metadata("admin"), timeout=10).stores
    assert {store.store_id: store.timezone for store in stores}["web-store-7"] == "Europe/Paris"


def test_the_admin_adds_a_watchlist_entry_that_the_office_lists(client: TestClient) -> None:
    csrf = sign_in(client, "admin")
    client.post("/admin/watchlist", data={"csrf_token": csrf, "subject_id": "wl-web-1", "reason": "theft", "days": "7"})
    client.post("/sign-out", data={"csrf_token": csrf})
    sign_in(client, "privacy")

    html = client.get("/privacy").text

    assert ("wl-web-1" in html, "theft" in html, "not confirmed" in html) == (True, True, True)


def test_the_member_requests_erasure_and_the_office_sees_it_pending(
    client: TestClient, stub: Stub, member_csrf: str
) -> None:
    page = client.post("/member/erasure", data={"csrf_token": member_csrf, "confirm": "on"}).text
    request_id = page.split('id="request-id">')[1].split("<")[0]

    pending = stub.ListErasureRequests(
        personalization_pb2.ListErasureRequestsRequest(status=personalization_pb2.ERASURE_STATUS_PENDING),
        metadata=metadata("privacy"),
        timeout=10,
    )
    assert request_id in {request.request_id for request in pending.requests}


def _unhappy_checkout(stub: Stub, store_id: str, event_id: str) -> str:
    """A shopper who looked unhappy at lane 3 for 8 s: personalization raises a dissatisfaction alert."""
    event = personalization_pb2.VisitEvent(
        event_id=event_id,
        type=personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT,
        store_id=store_id,
        camera_id="lane-3",
        zone_id="checkout",
        lane_id="3",
        track_id=f"track-{event_id}",
        emotion=personalization_pb2.EmotionSummary(dominant=common_pb2.EMOTION_ANGRY, negative_fraction=0.9, seconds=8),
    )
    event.at.GetCurrentTime()
    result = stub.RecordVisitEvent(event, metadata=metadata("service"), timeout=10)
    return str(result.alerts_raised[0].alert_id)


def test_staff_confirm_an_alert_and_personalization_records_it(client: TestClient, stub: Stub) -> None:
    alert_id = _unhappy_checkout(stub, STORE, "web-unhappy-1")
    csrf = sign_in(client, "staff")

    response = client.post(
        "/staff/acknowledge",
        data={"alert_id": alert_id, "store": STORE, "confirmed": "1"},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )

    audit = stub.QueryAudit(
        personalization_pb2.AuditQuery(action="acknowledge", limit=50), metadata=metadata("admin"), timeout=10
    )
    recorded = [json.loads(entry.detail) for entry in audit.entries if entry.subject == f"alert:{alert_id}"]
    assert (response.json(), [entry["confirmed"] for entry in recorded]) == (
        {"acknowledged": alert_id, "confirmed": True},
        [True],
    )


def test_staff_cannot_acknowledge_another_stores_alert_the_service_refuses_it(client: TestClient, stub: Stub) -> None:
    foreign_alert = _unhappy_checkout(stub, "store-02", "web-unhappy-2")
    csrf = sign_in(client, "staff")

    response = client.post(
        "/staff/acknowledge",
        data={"alert_id": foreign_alert, "store": STORE},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )

    assert response.status_code == 403


def test_the_officer_downloads_a_subject_access_export(client: TestClient) -> None:
    csrf = sign_in(client, "privacy")

    response = client.post("/privacy/export", data={"csrf_token": csrf, "member_id": MEMBER})

    assert (response.headers["content-disposition"], MEMBER in response.text) == (
        'attachment; filename="subject-access-export.json"',
        True,
    )


def test_the_officer_searches_the_audit_within_a_time_window(client: TestClient) -> None:
    csrf = sign_in(client, "privacy")
    window = {"since": "2020-01-01T00:00", "until": "2020-01-02T00:00", "export": "json"}

    response = client.post("/privacy/audit", data={"csrf_token": csrf, "member_id": MEMBER} | window)

    assert json.loads(response.text) == []
