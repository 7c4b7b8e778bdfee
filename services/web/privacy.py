"""The privacy office (roles privacy and admin): consent records and history, erasures with receipts, audit
search with export, data-subject access exports, sign-in links for members, and the watchlist.

Member ids travel only in POST bodies, never in URLs. Every call goes as the officer (their token), so the
services audit it under them.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from retailface.services.web import views
from retailface.services.web.pages import PageError, actor_of, calling, consoles_of, render, require_person

router = APIRouter()
AUDIT_FIELDS = ("at", "actor", "action", "subject", "reason", "detail")
MemberId = Annotated[str, Form(min_length=1, max_length=128)]


@router.get("/privacy")
def office(request: Request) -> Response:
    session = require_person(request, "privacy")
    client = consoles_of(request).backend.privacy(session.token)
    with calling("ListErasureRequests"):
        requests = [views.erasure(item) for item in client.erasure_requests(limit=100)]
    with calling("ListWatchlist"):
        watchlist = [views.watchlist_entry(entry) for entry in client.watchlist(include_expired=True)]
    return render(request, "privacy.html", {"erasures": requests, "watchlist": watchlist})


@router.post("/privacy/member")
def member_record(request: Request, member_id: MemberId) -> Response:
    session = require_person(request, "privacy")
    client = consoles_of(request).backend.privacy(session.token)
    with calling("GetMember"):
        member = client.member(member_id.strip())
    with calling("ListConsentHistory"):
        history = client.consent_history(member.member_id)
    changes = [
        {
            "at": views.when(change.at),
            "action": change.action,
            "scopes": views.scope_names(change.scopes),
            "policy_version": change.policy_version,
            "source": change.source,
            "actor": change.actor,
            "reason": change.reason,
        }
        for change in history
    ]
    context = {
        "member": member,
        "consent_scopes": views.scope_names(member.consent.scopes) if not member.consent.HasField("revoked_at") else "",
        "granted_at": views.when(member.consent.granted_at),
        "revoked_at": views.when(member.consent.revoked_at),
        "changes": changes,
    }
    return render(request, "privacy_member.html", context)


@router.post("/privacy/erase")
def erase(
    request: Request,
    member_id: MemberId,
    request_id: Annotated[str, Form(max_length=128)] = "",
    reason: Annotated[str, Form(max_length=300)] = "",
    confirm: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    session = require_person(request, "privacy")
    if confirm != "on":
        raise PageError(400, "Tick the box to confirm the erasure")
    client = consoles_of(request).backend.privacy(session.token)
    with calling("EraseMember"):
        response = client.erase(
            member_id.strip(), actor_of(session), reason or "erasure request", request_id=request_id.strip()
        )
    receipt = views.erasure(response.receipt) if response.HasField("receipt") else None
    context = {
        "receipt": receipt,
        "templates_removed": response.templates_removed,
        "rows_removed": dict(sorted(response.rows_removed.items())),
    }
    return render(request, "privacy_receipt.html", context)


@router.post("/privacy/audit")
def audit_search(
    request: Request,
    member_id: Annotated[str, Form(max_length=128)] = "",
    actor: Annotated[str, Form(max_length=128)] = "",
    action: Annotated[str, Form(max_length=64)] = "",
    since: Annotated[str, Form(max_length=32)] = "",
    until: Annotated[str, Form(max_length=32)] = "",
    limit: Annotated[int, Form(ge=1, le=5000)] = 200,
    export: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    session = require_person(request, "privacy")
    try:
        since_at, until_at = views.parse_time(since), views.parse_time(until)
    except ValueError:
        raise PageError(400, "Times are YYYY-MM-DDTHH:MM (UTC)") from None
    client = consoles_of(request).backend.privacy(session.token)
    with calling("QueryAudit"):
        entries = [
            views.audit_entry(entry)
            for entry in client.audit(member_id.strip(), actor.strip(), action.strip(), since_at, until_at, limit)
        ]
    if export == "json":
        return Response(
            json.dumps(entries, indent=2),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="audit.json"'},
        )
    if export == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=AUDIT_FIELDS)
        writer.writeheader()
        writer.writerows(entries)
        return Response(
            buffer.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    query = {"member_id": member_id, "actor": actor, "action": action, "since": since, "until": until, "limit": limit}
    return render(request, "privacy_audit.html", {"entries": entries, "query": query})


@router.post("/privacy/export")
def access_export(request: Request, member_id: MemberId) -> Response:
    session = require_person(request, "privacy")
    with calling("ExportMemberData"):
        document = consoles_of(request).backend.privacy(session.token).export(member_id.strip(), actor_of(session))
    return Response(
        document,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="subject-access-export.json"'},
    )


@router.post("/privacy/sign-in-link")
def sign_in_link(request: Request, member_id: MemberId) -> Response:
    session = require_person(request, "privacy")
    consoles = consoles_of(request)
    with calling("IssueMemberSignIn"):
        issued = consoles.backend.privacy(session.token).issue_sign_in(member_id.strip(), actor_of(session))
    link = f"{consoles.settings.public_url}/member/sign-in?{urlencode({'code': issued.code})}"
    return render(request, "privacy_link.html", {"link": link, "expires_at": views.when(issued.expires_at)})
