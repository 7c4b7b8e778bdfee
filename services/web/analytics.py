"""Store analytics (roles manager and admin): visits per hour, dwell per zone, anonymous shoppers by age band
and gender, checkout sentiment per lane, offers pushed, redeemed and unliked. Aggregates only.

The page draws its charts (Chart.js, static/vendor) from /analytics/data, the same numbers GetStoreAnalytics
returned to this person, and lists them in tables too.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from retailface.services.web import views
from retailface.services.web.pages import (
    PageError,
    calling,
    consoles_of,
    default_store,
    render,
    require_person,
    require_store,
)

router = APIRouter()
MAX_HOURS = 24 * 31


def _report(request: Request, store: str, hours: int) -> dict[str, object]:
    session = require_person(request, "analytics")
    store_id = require_store(session, default_store(session, store))
    if not 1 <= hours <= MAX_HOURS:
        raise PageError(400, f"Hours are 1 to {MAX_HOURS}")
    consoles = consoles_of(request)
    with calling("GetStoreAnalytics"):
        report = consoles.backend.analytics(session.token).store(store_id, since=consoles.clock() - hours * 3600.0)
    return views.analytics(report)


@router.get("/analytics")
def analytics_page(request: Request, store: str = "", hours: int = 24) -> Response:
    session = require_person(request, "analytics")
    if not default_store(session, store):
        return render(request, "choose_store.html", {"action": "/analytics", "title": "Store analytics"})
    data = _report(request, store, hours)
    return render(request, "analytics.html", {"data": data, "hours": hours, "generated": time.strftime("%H:%M:%S")})


@router.get("/analytics/data")
def analytics_data(request: Request, store: str = "", hours: int = 24) -> Response:
    return JSONResponse(_report(request, store, hours))
