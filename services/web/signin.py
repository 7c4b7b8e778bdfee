"""Signing in and out: people with their token from the tokens file, members with a single-use code."""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from retailface.services.web import sessions
from retailface.services.web.backend import failure_of
from retailface.services.web.pages import (
    HOME_OF_ROLE,
    PageError,
    client_address,
    consoles_of,
    end_session,
    render,
    session_of,
    start_session,
)
from retailface.services.web.security import SIGN_INS

router = APIRouter()
MAX_TOKEN_CHARS = 512
MAX_CODE_CHARS = 256


def home_of(session: sessions.Session) -> str:
    if session.kind == sessions.MEMBER:
        return "/member"
    if session.kind == sessions.PERSON:
        return HOME_OF_ROLE.get(session.role, "/")
    return "/sign-in"


@router.get("/")
def index(request: Request) -> Response:
    return RedirectResponse(home_of(session_of(request)), status_code=303)


@router.get("/sign-in")
def sign_in_page(request: Request) -> Response:
    return render(request, "sign_in.html")


def _refuse_locked(request: Request, kind: str) -> None:
    wait = consoles_of(request).guard.locked_for(client_address(request), kind)
    if wait:
        raise PageError(429, "Too many failed sign-ins", f"Try again in {wait} s.")


@router.post("/sign-in")
def sign_in(request: Request, token: Annotated[str, Form(max_length=MAX_TOKEN_CHARS)] = "") -> Response:
    consoles = consoles_of(request)
    _refuse_locked(request, "person")
    principal = consoles.tokens.principal_of(token.strip())
    if principal is None:
        consoles.guard.failed(client_address(request), "person", "unknown")
        return render(request, "sign_in.html", {"error": "That token is not valid."}, status=401)
    if principal.role not in sessions.PEOPLE_ROLES:
        consoles.guard.failed(client_address(request), "person", "role")
        return render(request, "sign_in.html", {"error": "That token is not for people."}, status=403)
    session = sessions.person(
        principal.role, principal.stores, token.strip(), consoles.settings.session_seconds, consoles.clock
    )
    start_session(request, session)
    SIGN_INS.labels(principal.role).inc()
    return RedirectResponse(home_of(session), status_code=303)


@router.post("/sign-out")
def sign_out(request: Request) -> Response:
    end_session(request)
    return RedirectResponse("/sign-in", status_code=303)


@router.get("/member/sign-in")
def member_sign_in_page(request: Request, code: str = "") -> Response:
    """The page a member's link opens: it POSTs the code at once (static/js/autosubmit.js), so it leaves the URL."""
    return render(request, "member_sign_in.html", {"code": code[:MAX_CODE_CHARS]})


@router.post("/member/sign-in")
def member_sign_in(request: Request, code: Annotated[str, Form(max_length=MAX_CODE_CHARS)] = "") -> Response:
    consoles = consoles_of(request)
    _refuse_locked(request, "member")
    if not code.strip():
        consoles.guard.failed(client_address(request), "member", "code")
        raise PageError(401, "Sign-in link not valid", "The link has no code.")
    try:
        redeemed = consoles.backend.portal().redeem(code.strip())
    except grpc.RpcError as error:
        failure = failure_of(error)
        if failure.status in (400, 401, 404, 409):  # unknown, expired or already used: the member's link is spent
            consoles.guard.failed(client_address(request), "member", "code")
            raise PageError(401, "Sign-in link not valid", "This link has expired or was already used.") from None
        raise PageError(failure.status, "Sign-in unavailable", failure.message) from None
    limit = consoles.clock() + consoles.settings.member_session_seconds
    code_limit = redeemed.expires_at.seconds if redeemed.HasField("expires_at") else limit
    session = sessions.member(redeemed.member_id, min(limit, float(code_limit)))
    start_session(request, session)
    SIGN_INS.labels("member").inc()
    return RedirectResponse("/member", status_code=303)
