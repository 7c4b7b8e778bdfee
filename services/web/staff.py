"""The staff screen: one store's live greetings, dissatisfaction alerts (ranked) and watchlist alerts.

The page opens /staff/events, a server-sent event stream fed by the gateway's StreamStaffAlerts called with
the person's own token; each alert goes out the moment it arrives. Acknowledging or confirming one is a POST
(with the CSRF token) that calls AcknowledgeAlert as that person. Alerts carry what they allow and nothing
more: a greeting name, a discreet message, the zone or lane; never a member id, a photo or a purchase.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from retailface.services.web import views
from retailface.services.web.backend import failure_of
from retailface.services.web.pages import (
    PageError,
    actor_of,
    calling,
    consoles_of,
    default_store,
    render,
    require_person,
    require_store,
)

router = APIRouter()
KEEPALIVE_SECONDS = 15.0
POLL_SECONDS = 0.5


@router.get("/staff")
def staff_page(request: Request, store: str = "") -> Response:
    session = require_person(request, "staff")
    store_id = default_store(session, store)
    if not store_id:
        return render(request, "choose_store.html", {"action": "/staff", "title": "Staff screen"})
    require_store(session, store_id)
    return render(request, "staff.html", {"store_id": store_id})


def _pump(call: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
    """Moves the gRPC stream's alerts (a blocking iterator) onto the event loop's queue."""

    def put(item: tuple[str, dict[str, Any]]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the page was closed
            loop.call_soon_threadsafe(queue.put_nowait, item)

    try:
        for message in call:
            put(("alert", views.alert(message)))
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            failure = failure_of(error)
            put(("failure", {"status": failure.status, "code": failure.code, "message": failure.message}))
    finally:
        put(("end", {}))


@router.get("/staff/events")
async def staff_events(request: Request, store: str = "") -> Response:
    session = require_person(request, "staff")
    store_id = require_store(session, default_store(session, store))
    consoles = consoles_of(request)
    call = consoles.backend.staff(session.token, store_id).alerts()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    threading.Thread(target=_pump, args=(call, asyncio.get_running_loop(), queue), daemon=True).start()

    async def stream() -> AsyncIterator[str]:
        idle = 0.0
        try:
            yield "retry: 2000\n\n"
            while not consoles.stopping.is_set() and not await request.is_disconnected():
                try:
                    kind, data = await asyncio.wait_for(queue.get(), timeout=POLL_SECONDS)
                except TimeoutError:
                    idle += POLL_SECONDS
                    if idle >= KEEPALIVE_SECONDS:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                    continue
                if kind == "end":
                    break
                idle = 0.0
                yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
        finally:
            call.cancel()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


@router.post("/staff/acknowledge")
def acknowledge(
    request: Request,
    alert_id: Annotated[str, Form(max_length=128)],
    store: Annotated[str, Form(max_length=128)] = "",
    confirmed: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    session = require_person(request, "staff")
    store_id = require_store(session, default_store(session, store))
    if not alert_id:
        raise PageError(400, "Which alert?")
    with calling("AcknowledgeAlert"):
        consoles_of(request).backend.staff(session.token, store_id).acknowledge(
            alert_id, actor_of(session), confirmed=confirmed in ("1", "true", "on")
        )
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"acknowledged": alert_id, "confirmed": confirmed in ("1", "true", "on")})
    return RedirectResponse(f"/staff?store={store_id}", status_code=303)
