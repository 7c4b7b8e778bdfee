"""Messages as the pages show them: times, enum names, and the few fields each page may show.

Nothing here passes on a member id to the staff screen, a photo, an embedding or a sensitive purchase:
alerts keep their discreet message, the greeting name (greetings only), where and how urgent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from retailface.v1 import common_pb2, personalization_pb2

SCOPES: dict[int, tuple[str, str]] = {
    common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION: ("face_identification", "Recognise me by my face in the store"),
    common_pb2.CONSENT_SCOPE_PERSONALIZED_OFFERS: ("personalized_offers", "Send me offers picked for me"),
    common_pb2.CONSENT_SCOPE_STAFF_GREETING: ("staff_greeting", "Let staff greet me by name"),
    common_pb2.CONSENT_SCOPE_ANALYTICS: ("analytics", "Count my visits in the store's statistics"),
}
SCOPE_BY_NAME = {name: value for value, (name, _) in SCOPES.items()}
ALERT_KINDS = {
    common_pb2.ALERT_KIND_GREETING: "greeting",
    common_pb2.ALERT_KIND_DISSATISFACTION: "dissatisfaction",
    common_pb2.ALERT_KIND_WATCHLIST: "watchlist",
}
CAMERA_ROLES = {
    personalization_pb2.CAMERA_ROLE_ENTRANCE: "entrance",
    personalization_pb2.CAMERA_ROLE_AISLE: "aisle",
    personalization_pb2.CAMERA_ROLE_LANE: "lane",
}
CAMERA_ROLE_BY_NAME = {name: value for value, name in CAMERA_ROLES.items()}
GENDERS = {common_pb2.GENDER_FEMALE: "female", common_pb2.GENDER_MALE: "male"}
ERASURE_STATUSES = {
    personalization_pb2.ERASURE_STATUS_PENDING: "pending",
    personalization_pb2.ERASURE_STATUS_COMPLETED: "completed",
}


def when(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> float | None:
    """A form's date-time (`2026-12-02T15:40`, UTC) as epoch seconds; None when empty."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def alert(message: common_pb2.StaffAlert) -> dict[str, Any]:
    """What the staff screen gets of an alert: no member id, no photo, no purchase."""
    kind = ALERT_KINDS.get(message.kind, "alert")
    return {
        "id": message.alert_id,
        "kind": kind,
        "name": message.display_name if kind == "greeting" else "",
        "message": message.message,
        "zone": message.zone_id,
        "lane": message.lane_id,
        "camera": message.camera_id,
        "priority": round(float(message.priority), 3),
        "requires_confirmation": bool(message.requires_confirmation),
        "raised_at": iso(message.raised_at),
    }


def scopes_of(record: common_pb2.ConsentRecord) -> set[str]:
    if record.HasField("revoked_at"):
        return set()
    return {SCOPES[value][0] for value in record.scopes if value in SCOPES}


def scope_names(values: Any) -> str:
    return ", ".join(SCOPES[value][0] for value in values if value in SCOPES) or "none"


def minutes_to_clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def clock_to_minutes(value: str) -> int:
    hours, _, minutes = value.partition(":")
    total = int(hours) * 60 + int(minutes or 0)
    if not 0 <= total < 24 * 60:
        raise ValueError(f"{value} is not a time of day")
    return total


def erasure(request: personalization_pb2.ErasureRequest) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "member_ref": request.member_ref,
        "member_id": request.member_id,
        "requested_by": request.requested_by,
        "requested_at": when(request.requested_at),
        "status": ERASURE_STATUSES.get(request.status, "unknown"),
        "completed_at": when(request.completed_at),
        "completed_by": request.completed_by,
        "templates_removed": request.templates_removed,
        "rows_removed": dict(sorted(request.rows_removed.items())),
    }


def audit_entry(entry: personalization_pb2.AuditEntry) -> dict[str, str]:
    return {
        "at": when(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "reason": entry.reason,
        "detail": entry.detail,
    }


def watchlist_entry(entry: personalization_pb2.WatchlistEntry) -> dict[str, str]:
    return {
        "subject_id": entry.subject_id,
        "reason": entry.reason,
        "added_by": entry.added_by,
        "added_at": when(entry.added_at),
        "expires_at": when(entry.expires_at),
        "confirmed_by": entry.confirmed_by,
        "confirmed_at": when(entry.confirmed_at),
    }


def analytics(report: personalization_pb2.StoreAnalytics) -> dict[str, Any]:
    """The aggregates as the charts take them: labels and series, nothing per person."""
    hours = sorted(report.hours, key=lambda hour: hour.hour.seconds)
    demographics: dict[str, dict[str, int]] = {}
    for row in report.demographics:
        band = demographics.setdefault(row.age_band, {"female": 0, "male": 0, "unknown": 0})
        band[GENDERS.get(row.gender, "unknown")] += row.shoppers
    bands = sorted(demographics)
    lanes = sorted(report.lanes, key=lambda lane: lane.lane_id)
    zones = sorted(report.zones, key=lambda zone: zone.zone_id)
    return {
        "store_id": report.store_id,
        "hours": {
            "labels": [hour.hour.ToDatetime(tzinfo=dt.UTC).strftime("%d %H:00") for hour in hours],
            "visits": [hour.visits for hour in hours],
            "anonymous": [hour.anonymous_shoppers for hour in hours],
        },
        "zones": {
            "labels": [zone.zone_id for zone in zones],
            "events": [zone.events for zone in zones],
            "mean": [round(zone.mean_dwell_seconds, 2) for zone in zones],
            "p90": [round(zone.p90_dwell_seconds, 2) for zone in zones],
        },
        "demographics": {
            "labels": bands,
            "female": [demographics[band]["female"] for band in bands],
            "male": [demographics[band]["male"] for band in bands],
            "unknown": [demographics[band]["unknown"] for band in bands],
        },
        "lanes": {
            "labels": [lane.lane_id for lane in lanes],
            "checkouts": [lane.checkouts for lane in lanes],
            "mean_negative": [round(lane.mean_negative, 3) for lane in lanes],
            "alerts": [lane.dissatisfaction_alerts for lane in lanes],
        },
        "offers": {
            "labels": ["pushed", "redeemed", "unliked"],
            "counts": [report.offers.pushed, report.offers.redeemed, report.offers.unliked],
        },
    }
