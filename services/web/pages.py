"""What every console page shares: the session in its cookie, role checks, CSRF, rendering and error pages."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from retailface.services.shared.auth import Principal, TokenStore
from retailface.services.web import sessions
from retailface.services.web.backend import Backend, failure_of
from retailface.services.web.security import CSRF_FIELD, CSRF_HEADER, SignInGuard, csrf_matches
from retailface.services.web.sessions import Session, SessionCodec
from retailface.services.web.settings import WebSettings

log = structlog.get_logger(__name__)
HERE = Path(__file__).resolve().parent
CLEAR = object()  # request.state.new_session: sign out

# Who may open which console (the services check again, as that person, on every call).
CONSOLE_ROLES: dict[str, frozenset[str]] = {
    "staff": frozenset({"staff", "admin"}),
    "privacy": frozenset({"privacy", "admin"}),
    "analytics": frozenset({"manager", "admin"}),
    "admin": frozenset({"admin"}),
}
HOME_OF_ROLE = {"staff": "/staff", "manager": "/analytics", "privacy": "/privacy", "admin": "/admin"}


class PageError(Exception):
    """Ends a request with an error page (and, for 401, without the session)."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(f"{status} {title}")
        self.status, self.title, self.detail = status, title, detail


class TokenFile:
    """The shared tokens file (role and stores per token), read again when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] = (-1, -1)
        self._store = TokenStore({})
        self._load()

    def _load(self) -> None:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._store = TokenStore.from_file(self.path)
            self._stamp = stamp

    def principal_of(self, token: str) -> Principal | None:
        with self._lock:
            try:
                self._load()
            except (OSError, ValueError) as error:  # a half-written file: keep the last good one
                log.warning("tokens_file_unreadable", error=str(error))
        return self._store.principal_of(token) if token else None


@dataclass
class Consoles:
    """The app's state: settings, sessions, the services, the sign-in guard and the templates."""

    settings: WebSettings
    codec: SessionCodec
    backend: Backend
    guard: SignInGuard
    tokens: TokenFile
    templates: Jinja2Templates = field(default_factory=lambda: Jinja2Templates(directory=str(HERE / "templates")))
    stopping: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.time


def consoles_of(request: Request) -> Consoles:
    return request.app.state.consoles  # type: ignore[no-any-return]


def session_of(request: Request) -> Session:
    return request.state.session  # type: ignore[no-any-return]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def start_session(request: Request, session: Session) -> None:
    request.state.session = session
    request.state.new_session = session


def end_session(request: Request) -> None:
    request.state.new_session = CLEAR


def require_person(request: Request, console: str) -> Session:
    """The signed-in person, if their role may open `console`: else 401 (no session) or 403 (wrong role)."""
    session = session_of(request)
    if session.kind != sessions.PERSON:
        raise PageError(401, "Sign in first", "Your session is missing or has expired.")
    principal = consoles_of(request).tokens.principal_of(session.token)
    if principal is None or principal.role != session.role:
        end_session(request)
        raise PageError(401, "Sign in again", "Your token is no longer valid.")
    if session.role not in CONSOLE_ROLES[console]:
        raise PageError(403, "Not for your role", f"The {console} console is not open to the {session.role} role.")
    return session


def require_member(request: Request) -> Session:
    session = session_of(request)
    if session.kind != sessions.MEMBER or not session.member_id:
        raise PageError(401, "Sign in first", "Use the sign-in link the store sent you; it works once.")
    return session


def actor_of(session: Session) -> str:
    """Who acts, for the audit trail: a fingerprint of the person's token (tokens name no one), or the member."""
    if session.kind == sessions.MEMBER:
        return "member"
    return "web-" + hashlib.sha256(session.token.encode()).hexdigest()[:10]


def require_store(session: Session, store_id: str) -> str:
    if not store_id:
        raise PageError(400, "Choose a store")
    if not session.may_act_for(store_id):
        raise PageError(403, "Not your store", "Your sign-in does not cover this store.")
    return store_id


def default_store(session: Session, requested: str) -> str:
    return requested or (session.stores[0] if session.stores else "")


async def csrf_protect(request: Request) -> None:
    """Every POST (and PUT/PATCH/DELETE) must return the session's CSRF token: else 403."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not csrf_matches(session_of(request).csrf, sent):
        raise PageError(403, "Form expired", "The form's security token is missing or wrong: reload and try again.")


def render(request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
    session = session_of(request)
    base = {
        "request": request,
        "session": session,
        "csrf": session.csrf,
        "nav": navigation(session),
    }
    return consoles_of(request).templates.TemplateResponse(
        request, template, base | (context or {}), status_code=status
    )


def navigation(session: Session) -> list[tuple[str, str]]:
    if session.kind == sessions.MEMBER:
        return [("/member", "My data")]
    if session.kind != sessions.PERSON:
        return []
    links = [
        ("/staff", "Staff screen"),
        ("/privacy", "Privacy office"),
        ("/analytics", "Analytics"),
        ("/admin", "Admin"),
    ]
    return [(href, label) for href, label in links if session.role in CONSOLE_ROLES[href.strip("/")]]


def error_page(request: Request, status: int, title: str, detail: str = "") -> Response:
    response = render(request, "error.html", {"status": status, "title": title, "detail": detail}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="retailface-consoles"'
    return response


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Turns a failed gRPC call into the page's error (401/403/404/400/409/501/503...)."""
    try:
        yield
    except grpc.RpcError as error:
        failure = failure_of(error)
        log.info("backend_call_failed", call=what, code=failure.code)
        raise PageError(failure.status, f"{what}: {failure.code.lower().replace('_', ' ')}", failure.message) from None
