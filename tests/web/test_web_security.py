"""The consoles' security, each refusal with its status: CSRF, missing or expired sessions, wrong roles,
foreign stores, member codes expired or reused, failed sign-ins limited and counted; headers and cookies."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from web_helpers import OTHER_STORE, STORE, TOKENS, Clock, csrf_of, issue_code, make_consoles, sign_in

from retailface.services.shared.server import RunningServer
from retailface.services.web.app import create_app
from retailface.services.web.pages import Consoles
from retailface.services.web.security import CSP
from retailface.services.web.sessions import COOKIE_NAME
from retailface.v1 import personalization_pb2_grpc

TEMPLATES = Path(__file__).resolve().parents[2] / "services" / "web" / "templates"


def _failures(kind: str, reason: str) -> float:
    value = REGISTRY.get_sample_value("retailface_web_sign_in_failures_total", {"kind": kind, "reason": reason})
    return value or 0.0


def test_a_post_without_the_csrf_token_is_refused_with_403(client: TestClient) -> None:
    sign_in(client, "privacy")

    response = client.post("/privacy/member", data={"member_id": "m-web-1"})

    assert response.status_code == 403


def test_a_post_with_another_sessions_csrf_token_is_refused_with_403(client: TestClient, consoles: Consoles) -> None:
    with TestClient(create_app(consoles)) as other:
        foreign_token = csrf_of(other)
    sign_in(client, "privacy")

    response = client.post("/privacy/member", data={"member_id": "m-web-1", "csrf_token": foreign_token})

    assert response.status_code == 403


def test_every_post_route_checks_the_csrf_token(client: TestClient) -> None:
    sign_in(client, "admin")
    posts = sorted(
        route.path
        for route in client.app.routes  # type: ignore[attr-defined]
        if "POST" in getattr(route, "methods", set())
    )

    statuses = {path: client.post(path, data={"member_id": "m-web-1"}).status_code for path in posts}

    assert statuses == dict.fromkeys(posts, 403)


def test_the_csrf_token_in_a_header_is_accepted(client: TestClient) -> None:
    csrf = sign_in(client, "privacy")

    response = client.post("/privacy/member", data={"member_id": "m-web-1"}, headers={"X-CSRF-Token": csrf})

    assert response.status_code == 200


def test_a_console_without_a_session_is_refused_with_401(client: TestClient) -> None:
    assert client.get("/privacy").status_code == 401


def test_an_expired_session_is_refused_with_401(client: TestClient, clock: Clock) -> None:
    sign_in(client, "privacy")
    clock.offset = 601.0  # the session lasts 600 s

    assert client.get("/privacy").status_code == 401


def test_an_altered_session_cookie_is_no_session(client: TestClient) -> None:
    sign_in(client, "privacy")
    sealed = client.cookies[COOKIE_NAME]
    client.cookies.set(COOKIE_NAME, sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:])

    assert client.get("/privacy").status_code == 401


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("staff", "/privacy"),
        ("staff", "/analytics"),
        ("manager", "/admin"),
        ("privacy", "/staff"),
        ("manager", "/staff"),
    ],
)
def test_a_wrong_role_is_refused_with_403(client: TestClient, role: str, path: str) -> None:
    sign_in(client, role)

    assert client.get(path).status_code == 403


def test_a_member_session_does_not_open_the_staff_consoles(
    client: TestClient, stub: personalization_pb2_grpc.PersonalizationServiceStub
) -> None:
    client.post("/member/sign-in", data={"code": issue_code(stub), "csrf_token": csrf_of(client)})

    assert client.get("/privacy").status_code == 401


def test_staff_of_another_store_are_refused_the_staff_screen_with_403(client: TestClient) -> None:
    sign_in(client, "staff")

    assert client.get(f"/staff?store={OTHER_STORE}").status_code == 403


def test_staff_of_another_store_are_refused_its_alert_stream_with_403(client: TestClient) -> None:
    sign_in(client, "staff")

    assert client.get(f"/staff/events?store={OTHER_STORE}").status_code == 403


def test_staff_of_the_store_get_its_screen(client: TestClient) -> None:
    sign_in(client, "staff")

    response = client.get(f"/staff?store={STORE}")

    assert (response.status_code, f'data-store="{STORE}"' in response.text) == (200, True)


def test_a_manager_of_another_store_is_refused_its_analytics_with_403(client: TestClient) -> None:
    sign_in(client, "manager")

    assert client.get(f"/analytics/data?store={OTHER_STORE}").status_code == 403


def test_an_unknown_token_is_refused_with_401_and_counted(client: TestClient) -> None:
    before = _failures("person", "unknown")

    response = client.post("/sign-in", data={"token": "not-a-token-at-all-0000", "csrf_token": csrf_of(client)})

    assert (response.status_code, _failures("person", "unknown") - before) == (401, 1.0)


def test_a_camera_token_does_not_sign_in_to_the_consoles(client: TestClient) -> None:
    response = client.post("/sign-in", data={"token": TOKENS["camera"], "csrf_token": csrf_of(client)})

    assert response.status_code == 403


def test_failed_sign_ins_lock_the_address_out_with_429(client: TestClient) -> None:
    csrf = csrf_of(client)
    for _ in range(3):  # the guard locks an address out after 3 failures
        client.post("/sign-in", data={"token": "wrong-token-0123456789", "csrf_token": csrf})
    before = _failures("person", "locked")

    response = client.post("/sign-in", data={"token": TOKENS["admin"], "csrf_token": csrf})

    assert (response.status_code, _failures("person", "locked") - before) == (429, 1.0)


def test_a_member_code_signs_the_member_in(
    client: TestClient, stub: personalization_pb2_grpc.PersonalizationServiceStub
) -> None:
    response = client.post("/member/sign-in", data={"code": issue_code(stub), "csrf_token": csrf_of(client)})

    assert (response.status_code, response.headers["location"]) == (303, "/member")


def test_a_reused_member_code_is_refused_with_401(
    client: TestClient, consoles: Consoles, stub: personalization_pb2_grpc.PersonalizationServiceStub
) -> None:
    code = issue_code(stub)
    client.post("/member/sign-in", data={"code": code, "csrf_token": csrf_of(client)})

    with TestClient(create_app(consoles)) as second_browser:
        response = second_browser.post("/member/sign-in", data={"code": code, "csrf_token": csrf_of(second_browser)})

    assert response.status_code == 401


def test_an_expired_member_code_is_refused_with_401(
    client: TestClient, stub: personalization_pb2_grpc.PersonalizationServiceStub
) -> None:
    code = issue_code(stub, ttl_seconds=1)
    time.sleep(1.5)

    response = client.post("/member/sign-in", data={"code": code, "csrf_token": csrf_of(client)})

    assert response.status_code == 401


def test_the_member_link_page_carries_the_code_in_a_form_that_posts_it(client: TestClient) -> None:
    response = client.get("/member/sign-in?code=abcdefghijklmnop1234")

    form = re.search(r'<form method="post" action="/member/sign-in"[^>]*>', response.text)
    assert (form is not None, 'value="abcdefghijklmnop1234"' in response.text) == (True, True)


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    headers = client.get("/sign-in").headers

    assert (
        headers["content-security-policy"],
        headers["x-frame-options"],
        headers["referrer-policy"],
        headers["x-content-type-options"],
    ) == (CSP, "DENY", "no-referrer", "nosniff")


def test_the_policy_allows_no_inline_script_or_style() -> None:
    assert ("'unsafe-inline'" in CSP, "default-src 'self'" in CSP, "frame-ancestors 'none'" in CSP) == (
        False,
        True,
        True,
    )


def test_no_template_has_an_inline_script_style_or_handler() -> None:
    offenders = {
        path.name: found
        for path in sorted(TEMPLATES.glob("*.html"))
        if (
            found := re.findall(
                r"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=", path.read_text(), flags=re.IGNORECASE
            )
        )
    }

    assert offenders == {}


def test_the_session_cookie_is_http_only_and_same_site_strict(client: TestClient) -> None:
    response = client.post("/sign-in", data={"token": TOKENS["privacy"], "csrf_token": csrf_of(client)})
    cookie = response.headers["set-cookie"].lower()

    assert ("httponly" in cookie, "samesite=strict" in cookie, "secure" in cookie) == (True, True, False)


def test_the_session_cookie_is_secure_over_https(personalization: RunningServer, tokens_file: Path) -> None:
    consoles = make_consoles(personalization, tokens_file, Clock(), tls=True)
    with TestClient(create_app(consoles), base_url="https://testserver", follow_redirects=False) as browser:
        response = browser.post("/sign-in", data={"token": TOKENS["privacy"], "csrf_token": csrf_of(browser)})

    assert "; secure" in response.headers["set-cookie"].lower()


def test_the_session_cookie_does_not_show_the_token(client: TestClient) -> None:
    client.post("/sign-in", data={"token": TOKENS["privacy"], "csrf_token": csrf_of(client)})

    assert TOKENS["privacy"] not in client.cookies[COOKIE_NAME]


def test_signing_out_ends_the_session(client: TestClient) -> None:
    csrf = sign_in(client, "privacy")
    client.post("/sign-out", data={"csrf_token": csrf})

    assert client.get("/privacy").status_code == 401
