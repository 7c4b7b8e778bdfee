"""What the web tests share: tokens per role (staff and manager scoped to one store), the consoles wired to
a personalization server, and signing in through the pages as a browser would."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from fastapi.testclient import TestClient

from retailface.services.shared.auth_limiter import AuthLimiter
from retailface.services.shared.server import RunningServer
from retailface.services.web.backend import Backend
from retailface.services.web.pages import Consoles, TokenFile
from retailface.services.web.security import SignInGuard
from retailface.services.web.sessions import SessionCodec
from retailface.services.web.settings import WebSettings
from retailface.v1 import personalization_pb2, personalization_pb2_grpc

STORE, OTHER_STORE = "store-01", "store-02"
MEMBER = "m-web-1"
TOKENS = {
    "service": "service-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef",
    "privacy": "privacy-token-0123456789abcdef",
    "web": "web-token-0123456789abcdef",
    "camera": "camera-token-0123456789abcdef",
    "staff": "staff-token-0123456789abcdef",
    "manager": "manager-token-0123456789abcdef",
}
SCOPED = {"staff", "manager"}  # these two act for STORE only


class Clock:
    """The web's clock, moved by the tests (session expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._time = time.time

    def __call__(self) -> float:
        return self._time() + self.offset


def metadata(role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[role]}"),)


def make_consoles(personalization: RunningServer, tokens_file: Path, clock: Clock, tls: bool = False) -> Consoles:
    target = f"127.0.0.1:{personalization.port}"
    settings = WebSettings(
        http_port=0,
        gateway_addr="127.0.0.1:9",  # no gateway in these tests: the staff stream is tested end to end
        personalization_addr=target,
        web_token=TOKENS["web"],
        session_key=bytes(range(32)),
        session_seconds=600.0,
        member_session_seconds=300.0,
        public_url="http://testserver",
        tls=tls,
    )
    return Consoles(
        settings=settings,
        codec=SessionCodec(settings.session_key, clock),
        backend=Backend(grpc.insecure_channel("127.0.0.1:9"), grpc.insecure_channel(target), TOKENS["web"]),
        guard=SignInGuard(AuthLimiter(max_failures=3, window=60.0, lockout=30.0, lockout_max=60.0)),
        tokens=TokenFile(tokens_file),
        clock=clock,
    )


def csrf_of(client: TestClient, path: str = "/sign-in") -> str:
    """The CSRF token the page at `path` carries (every page has it in a meta tag)."""
    html = client.get(path).text
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def sign_in(client: TestClient, role: str) -> str:
    """Signs in with the role's token; returns the session's CSRF token."""
    response = client.post("/sign-in", data={"token": TOKENS[role], "csrf_token": csrf_of(client)})
    assert response.status_code == 303, response.text
    return csrf_of(client)


def issue_code(stub: personalization_pb2_grpc.PersonalizationServiceStub, ttl_seconds: int = 0) -> str:
    request = personalization_pb2.IssueMemberSignInRequest(member_id=MEMBER, actor="officer", ttl_seconds=ttl_seconds)
    return str(stub.IssueMemberSignIn(request, metadata=metadata("privacy"), timeout=10).code)


def sign_in_member(client: TestClient, stub: personalization_pb2_grpc.PersonalizationServiceStub) -> str:
    code = issue_code(stub)
    response = client.post("/member/sign-in", data={"code": code, "csrf_token": csrf_of(client)})
    assert response.status_code == 303, response.text
    return csrf_of(client, "/member")
