"""The admin console (role admin): stores (timezone, watchlist switch), cameras and watchlist entries.

Each change is an RPC of personalization's, which checks the role and audits it under the admin's token.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from retailface.services.web import views
from retailface.services.web.pages import PageError, actor_of, calling, consoles_of, render, require_person

router = APIRouter()
Id = Annotated[str, Form(min_length=1, max_length=128)]
Text = Annotated[str, Form(max_length=200)]


def _back(anchor: str) -> Response:
    return RedirectResponse(f"/admin#{anchor}", status_code=303)


@router.get("/admin")
def admin_page(request: Request) -> Response:
    session = require_person(request, "admin")
    client = consoles_of(request).backend.admin(session.token)
    with calling("ListStores"):
        stores = client.stores()
    with calling("ListCameras"):
        cameras = [
            {
                "camera_id": camera.camera_id,
                "store_id": camera.store_id,
                "role": views.CAMERA_ROLES.get(camera.role, "unspecified"),
                "zone_id": camera.zone_id,
                "lane_id": camera.lane_id,
            }
            for camera in client.cameras()
        ]
    with calling("ListWatchlist"):
        watchlist = [views.watchlist_entry(entry) for entry in client.watchlist(include_expired=True)]
    context = {"stores": stores, "cameras": cameras, "watchlist": watchlist, "roles": list(views.CAMERA_ROLE_BY_NAME)}
    return render(request, "admin.html", context)


@router.post("/admin/stores")
def save_store(
    request: Request, store_id: Id, name: Text = "", timezone: Text = "UTC", watchlist_enabled: Text = ""
) -> Response:
    session = require_person(request, "admin")
    with calling("UpsertStore"):
        consoles_of(request).backend.admin(session.token).upsert_store(
            store_id.strip(), name.strip(), timezone.strip() or "UTC", watchlist_enabled == "on", actor_of(session)
        )
    return _back("stores")


@router.post("/admin/cameras")
def register_camera(
    request: Request, camera_id: Id, store_id: Id, role: Text = "entrance", zone_id: Text = "", lane_id: Text = ""
) -> Response:
    session = require_person(request, "admin")
    if role not in views.CAMERA_ROLE_BY_NAME:
        raise PageError(400, "A camera's role is entrance, aisle or lane")
    with calling("RegisterCamera"):
        consoles_of(request).backend.admin(session.token).register_camera(
            camera_id.strip(),
            store_id.strip(),
            views.CAMERA_ROLE_BY_NAME[role],
            zone_id.strip(),
            lane_id.strip(),
            actor_of(session),
        )
    return _back("cameras")


@router.post("/admin/cameras/remove")
def remove_camera(request: Request, camera_id: Id) -> Response:
    session = require_person(request, "admin")
    with calling("RemoveCamera"):
        consoles_of(request).backend.admin(session.token).remove_camera(camera_id.strip(), actor_of(session))
    return _back("cameras")


@router.post("/admin/watchlist")
def save_watchlist_entry(
    request: Request,
    subject_id: Id,
    reason: Text = "",
    days: Annotated[int, Form(ge=1, le=365)] = 30,
    confirm: Text = "",
) -> Response:
    session = require_person(request, "admin")
    with calling("UpsertWatchlistEntry"):
        consoles_of(request).backend.admin(session.token).upsert_watchlist_entry(
            subject_id.strip(),
            reason.strip(),
            0.0 if confirm == "on" else time.time() + days * 86_400.0,
            actor_of(session),
            confirm=confirm == "on",
        )
    return _back("watchlist")


@router.post("/admin/watchlist/remove")
def remove_watchlist_entry(request: Request, subject_id: Id, reason: Text = "") -> Response:
    session = require_person(request, "admin")
    with calling("RemoveWatchlistEntry"):
        consoles_of(request).backend.admin(session.token).remove_watchlist_entry(
            subject_id.strip(), actor_of(session), reason.strip() or "removed in the admin console"
        )
    return _back("watchlist")
