"""The member portal: what the store holds about the signed-in member, and their say over it.

The member id comes only from the session (a redeemed single-use code); the browser never sends one.
The calls go with the web's own token (role web). Each change is made in personalization at once, so the
next frame and the next offer follow it.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from retailface.services.web import views
from retailface.services.web.pages import PageError, calling, consoles_of, end_session, render, require_member
from retailface.v1 import common_pb2

router = APIRouter()
DEFAULT_POLICY = "2026-01"


def _back(note: str = "") -> Response:
    return RedirectResponse("/member" + (f"#{note}" if note else ""), status_code=303)


@router.get("/member")
def portal(request: Request) -> Response:
    session = require_member(request)
    portal_client = consoles_of(request).backend.portal()
    with calling("GetMember"):
        member = portal_client.member(session.member_id)
    with calling("GetMemberActivity"):
        activity = portal_client.activity(session.member_id)
    preferences = member.preferences
    quiet = preferences.quiet_hours
    has_quiet = quiet.start_minute != quiet.end_minute
    context = {
        "member": member,
        "preferences": preferences,
        "quiet": {
            "set": has_quiet,
            "start": views.minutes_to_clock(quiet.start_minute) if has_quiet else "",
            "end": views.minutes_to_clock(quiet.end_minute) if has_quiet else "",
            "timezone": quiet.timezone,
        },
        "scopes": [(name, label, name in views.scopes_of(member.consent)) for name, label in views.SCOPES.values()],
        "visits": [
            {
                "store_id": visit.store_id,
                "started_at": views.when(visit.started_at),
                "ended_at": views.when(visit.ended_at),
                "zones": ", ".join(visit.zones),
            }
            for visit in activity.visits
        ],
        "offers": [
            {
                "offer_id": offer.offer_id,
                "sku": offer.sku,
                "product_name": offer.product_name or offer.sku,
                "store_id": offer.store_id,
                "pushed_at": views.when(offer.pushed_at),
                "feedback": offer.feedback,
            }
            for offer in activity.offers
        ],
        "unliked_skus": list(activity.unliked_skus),
        "unliked_categories": list(activity.unliked_categories),
    }
    return render(request, "member.html", context)


@router.post("/member/preferences")
def save_preferences(
    request: Request,
    preferred_name: Annotated[str, Form(max_length=80)] = "",
    allow_greeting: Annotated[str, Form(max_length=8)] = "",
    max_offers: Annotated[int, Form(ge=0, le=20)] = 0,
    excluded_categories: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    session = require_member(request)
    portal_client = consoles_of(request).backend.portal()
    with calling("GetMember"):
        preferences = portal_client.member(session.member_id).preferences
    preferences.member_id = session.member_id
    preferences.preferred_name = preferred_name.strip()
    preferences.allow_greeting = allow_greeting == "on"
    preferences.max_offers_per_visit = max_offers
    del preferences.excluded_categories[:]
    preferences.excluded_categories.extend(
        sorted({part.strip().lower() for part in excluded_categories.split(",") if part.strip()})
    )
    with calling("UpdatePreferences"):
        portal_client.update_preferences(preferences)
    return _back("preferences")


@router.post("/member/quiet-hours")
def save_quiet_hours(
    request: Request,
    start: Annotated[str, Form(max_length=5)] = "",
    end: Annotated[str, Form(max_length=5)] = "",
    timezone: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    session = require_member(request)
    portal_client = consoles_of(request).backend.portal()
    with calling("GetMember"):
        preferences = portal_client.member(session.member_id).preferences
    preferences.member_id = session.member_id
    if not start and not end:
        preferences.ClearField("quiet_hours")
    else:
        try:
            preferences.quiet_hours.start_minute = views.clock_to_minutes(start)
            preferences.quiet_hours.end_minute = views.clock_to_minutes(end)
        except ValueError as error:
            raise PageError(400, "Quiet hours need a start and an end (HH:MM)", str(error)) from None
        preferences.quiet_hours.timezone = timezone.strip() or "UTC"
    with calling("UpdatePreferences"):
        portal_client.update_preferences(preferences)
    return _back("quiet-hours")


@router.post("/member/consent")
async def save_consent(request: Request) -> Response:
    session = require_member(request)
    form = await request.form()
    wanted = {value for value in form.getlist("scope") if isinstance(value, str) and value in views.SCOPE_BY_NAME}
    portal_client = consoles_of(request).backend.portal()

    def apply() -> None:
        with calling("GetMember"):
            consent = portal_client.member(session.member_id).consent
        current = views.scopes_of(consent)
        removed, added = current - wanted, wanted - current
        if removed:
            with calling("RevokeConsent"):
                portal_client.revoke(
                    session.member_id,
                    [views.SCOPE_BY_NAME[name] for name in sorted(removed)],
                    actor="member",
                    reason="withdrawn in the member portal",
                )
        if added:
            record = common_pb2.ConsentRecord(
                policy_version=consent.policy_version or DEFAULT_POLICY,
                scopes=[views.SCOPE_BY_NAME[name] for name in sorted(wanted)],
                source="member-portal",
            )
            record.granted_at.GetCurrentTime()
            with calling("GrantConsent"):
                portal_client.grant(session.member_id, record, actor="member")

    await run_in_threadpool(apply)
    return _back("consent")


@router.post("/member/unlike")
def unlike(
    request: Request,
    offer_id: Annotated[str, Form(max_length=128)] = "",
    sku: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    session = require_member(request)
    if not offer_id and not sku:
        raise PageError(400, "Which offer or product?")
    with calling("Feedback"):
        consoles_of(request).backend.portal().unlike(session.member_id, offer_id=offer_id, sku=sku, at=time.time())
    return _back("offers")


@router.post("/member/export")
def export(request: Request) -> Response:
    session = require_member(request)
    with calling("ExportMemberData"):
        document = consoles_of(request).backend.portal().export(session.member_id, actor="member")
    return Response(
        document,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-retailface-data.json"'},
    )


@router.post("/member/erasure")
def request_erasure(
    request: Request,
    confirm: Annotated[str, Form(max_length=8)] = "",
    reason: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    session = require_member(request)
    if confirm != "on":
        raise PageError(400, "Tick the box to confirm", "Erasure removes your membership data for good.")
    with calling("RequestErasure"):
        erasure = (
            consoles_of(request)
            .backend.portal()
            .request_erasure(session.member_id, reason or "requested in the member portal", actor="member")
        )
    end_session(request)
    return render(request, "member_erasure.html", {"erasure": views.erasure(erasure)})
