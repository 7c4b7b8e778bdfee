"""Proto <-> domain conversions of the personalization service: `<thing>_from_proto`, `<thing>_to_proto`.

Conversions do not validate: an enum number with no name passes on as its digits and the domain
refuses it with the list of names it accepts, so that each field is checked in one place.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import grpc
from google.protobuf import timestamp_pb2

from retailface.services.personalization.analytics import age_band
from retailface.services.personalization.audit import ChainReport
from retailface.services.personalization.consent import recognition
from retailface.services.personalization.domain import (
    AuditEntry,
    Campaign,
    Channel,
    CheckoutResult,
    Consent,
    InventoryItem,
    ItemOutcome,
    Member,
    Offer,
    OffersResult,
    OnlineEvent,
    Preferences,
    Product,
    Purchase,
    PurchaseLine,
    QuietHours,
    StaffAlert,
    VisitEvent,
    VisitResult,
)
from retailface.services.shared.errors import InvalidArgument
from retailface.v1 import common_pb2, personalization_pb2

VISIT_TYPES = {
    personalization_pb2.VISIT_EVENT_TYPE_ENTERED: "entered",
    personalization_pb2.VISIT_EVENT_TYPE_ZONE_DWELL: "zone_dwell",
    personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT: "checkout",
    personalization_pb2.VISIT_EVENT_TYPE_EXITED: "exited",
}
ONLINE_TYPES = {
    personalization_pb2.ONLINE_EVENT_TYPE_VIEWED: "viewed",
    personalization_pb2.ONLINE_EVENT_TYPE_SEARCHED: "searched",
    personalization_pb2.ONLINE_EVENT_TYPE_ADDED_TO_CART: "added_to_cart",
    personalization_pb2.ONLINE_EVENT_TYPE_ABANDONED_CART: "abandoned_cart",
    personalization_pb2.ONLINE_EVENT_TYPE_PURCHASED_ONLINE: "purchased_online",
}
FEEDBACK_TYPES = {
    personalization_pb2.FEEDBACK_TYPE_UNLIKED: "unliked",
    personalization_pb2.FEEDBACK_TYPE_UNLIKED_CATEGORY: "unliked_category",
    personalization_pb2.FEEDBACK_TYPE_REDEEMED: "redeemed",
    personalization_pb2.FEEDBACK_TYPE_DISMISSED: "dismissed",
}
SCOPES = {
    common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION: "face_identification",
    common_pb2.CONSENT_SCOPE_PERSONALIZED_OFFERS: "personalized_offers",
    common_pb2.CONSENT_SCOPE_STAFF_GREETING: "staff_greeting",
    common_pb2.CONSENT_SCOPE_ANALYTICS: "analytics",
}
IDENTIFIED_BY = {
    common_pb2.IDENTIFICATION_METHOD_UNSPECIFIED: "unspecified",
    common_pb2.IDENTIFICATION_METHOD_LOYALTY_CARD: "loyalty_card",
    common_pb2.IDENTIFICATION_METHOD_FACE: "face",
    common_pb2.IDENTIFICATION_METHOD_APP: "app",
    common_pb2.IDENTIFICATION_METHOD_PHONE_NUMBER: "phone_number",
}
SOURCES = {
    "online_intent": common_pb2.OFFER_SOURCE_ONLINE_INTENT,
    "purchase_history": common_pb2.OFFER_SOURCE_PURCHASE_HISTORY,
    "similar_shoppers": common_pb2.OFFER_SOURCE_SIMILAR_SHOPPERS,
    "campaign": common_pb2.OFFER_SOURCE_CAMPAIGN,
    "basket_completion": common_pb2.OFFER_SOURCE_BASKET_COMPLETION,
}
ALERT_KINDS = {
    common_pb2.ALERT_KIND_GREETING: "greeting",
    common_pb2.ALERT_KIND_DISSATISFACTION: "dissatisfaction",
    common_pb2.ALERT_KIND_WATCHLIST: "watchlist",
}
GENDERS = {common_pb2.GENDER_FEMALE: "female", common_pb2.GENDER_MALE: "male"}  # anonymous shoppers' counts
_SCOPE_ENUMS = {name: value for value, name in SCOPES.items()}
_IDENTIFIED_BY_ENUMS = {name: value for value, name in IDENTIFIED_BY.items()}
_ALERT_KIND_ENUMS = {name: value for value, name in ALERT_KINDS.items()}


def name_from_proto(names: Mapping[int, str], value: int) -> str:
    """The domain name of an enum value; one without a name passes on as its digits (the domain refuses it)."""
    return names.get(value, str(value))


def names_from_proto(names: Mapping[int, str], values: Sequence[int]) -> list[str]:
    return [name_from_proto(names, value) for value in values]


# The range of a google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS = -62135596800, 253402300799


def time_from_proto(timestamp: timestamp_pb2.Timestamp, default: float | None) -> float | None:
    """Epoch seconds; `default` for an unset timestamp; INVALID_ARGUMENT outside the Timestamp range."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return default
    if not (MIN_TIMESTAMP_SECONDS <= timestamp.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= timestamp.nanos < 10**9):
        raise InvalidArgument(
            f"timestamp of {timestamp.seconds} s and {timestamp.nanos} ns is not a valid Timestamp "
            "(0001-01-01 to 9999-12-31 UTC, nanos in [0, 999999999])"
        )
    return timestamp.seconds + timestamp.nanos / 1e9


def _time_or_now(timestamp: timestamp_pb2.Timestamp) -> float:
    return time_from_proto(timestamp, None) or time.time()


def time_to_proto(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    timestamp = timestamp_pb2.Timestamp()
    # A time derived from a stored one (an offer's expiry after a visit in 9999) may pass the range's end.
    seconds = min(max(seconds, MIN_TIMESTAMP_SECONDS), MAX_TIMESTAMP_SECONDS)
    timestamp.FromNanoseconds(round(seconds * 1e9))
    return timestamp


def visit_event_from_proto(message: personalization_pb2.VisitEvent) -> VisitEvent:
    # Face attributes are never used for offers. An anonymous shopper's are kept as a coarse age band and gender,
    # counted in store analytics (analytics.py); visits.py drops them for an identified member.
    emotion = message.emotion if message.HasField("emotion") else None
    attributes = message.attributes if message.HasField("attributes") and not message.member_id else None
    return VisitEvent(
        event_id=message.event_id,
        type=name_from_proto(VISIT_TYPES, message.type),
        store_id=message.store_id,
        at=_time_or_now(message.at),
        camera_id=message.camera_id,
        zone_id=message.zone_id,
        lane_id=message.lane_id,
        member_id=message.member_id,
        match_score=message.match_score,
        quality_bin=message.identification.quality_bin,
        estimated_fpir=message.identification.estimated_fpir if message.HasField("identification") else None,
        track_id=message.track_id,
        dwell_seconds=message.dwell_seconds,
        negative_fraction=emotion.negative_fraction if emotion else None,
        emotion_seconds=emotion.seconds if emotion else None,
        age_band=age_band(attributes.age_years, attributes.age_confidence) if attributes else "",
        gender=GENDERS.get(attributes.gender, "") if attributes else "",
    )


def visit_result_to_proto(result: VisitResult) -> personalization_pb2.VisitEventResult:
    return personalization_pb2.VisitEventResult(
        duplicate=result.duplicate,
        offers_pushed=[offer_to_proto(o) for o in result.offers_pushed],
        alerts_raised=[alert_to_proto(a) for a in result.alerts_raised],
        notes=result.notes,
    )


def offer_to_proto(offer: Offer) -> common_pb2.Offer:
    return common_pb2.Offer(
        offer_id=offer.offer_id,
        campaign_id=offer.campaign_id,
        sku=offer.sku,
        product_name=offer.product_name,
        category=offer.category,
        price=offer.price,
        discount_percent=offer.discount_percent,
        reason=offer.reason,
        source=SOURCES.get(offer.source, common_pb2.OFFER_SOURCE_UNSPECIFIED),
        location=common_pb2.ProductLocation(
            store_id=offer.location.store_id,
            aisle=offer.location.aisle,
            shelf=offer.location.shelf,
            on_hand=offer.location.on_hand,
        ),
        valid_until=time_to_proto(offer.valid_until),
        score=offer.score,
    )


def offers_result_to_proto(result: OffersResult) -> personalization_pb2.GetOffersResponse:
    return personalization_pb2.GetOffersResponse(offers=[offer_to_proto(o) for o in result.offers], notes=result.notes)


def checkout_result_to_proto(result: CheckoutResult) -> personalization_pb2.CheckoutOffersResponse:
    return personalization_pb2.CheckoutOffersResponse(
        basket_completions=[offer_to_proto(o) for o in result.basket_completions],
        member_offers=[offer_to_proto(o) for o in result.member_offers],
        member_id=result.member_id,
        identified_by=_IDENTIFIED_BY_ENUMS[result.identified_by],
        confirmation_required=result.confirmation_required,
        notes=result.notes,
    )


def basket_from_proto(lines: Sequence[personalization_pb2.BasketLine]) -> list[tuple[str, int]]:
    return [(line.sku, line.quantity or 1) for line in lines]


def alert_to_proto(alert: StaffAlert) -> common_pb2.StaffAlert:
    return common_pb2.StaffAlert(
        alert_id=alert.alert_id,
        kind=_ALERT_KIND_ENUMS[alert.kind],
        store_id=alert.store_id,
        zone_id=alert.zone_id,
        lane_id=alert.lane_id,
        camera_id=alert.camera_id,
        member_id=alert.member_id,
        display_name=alert.display_name,
        message=alert.message,
        priority=alert.priority,
        requires_confirmation=alert.requires_confirmation,
        raised_at=time_to_proto(alert.raised_at),
        track_id=alert.track_id,
    )


def purchase_from_proto(message: personalization_pb2.Purchase) -> Purchase:
    return Purchase(
        transaction_id=message.transaction_id,
        store_id=message.store_id,
        at=_time_or_now(message.at),
        lines=[PurchaseLine(line.sku, line.quantity, line.unit_price) for line in message.lines],
        lane_id=message.lane_id,
        member_id=message.member_id,
        loyalty_number=message.loyalty_number,
        redeemed_offer_ids=list(message.redeemed_offer_ids),
    )


def online_event_from_proto(message: personalization_pb2.OnlineEvent, now: float) -> OnlineEvent:
    return OnlineEvent(
        event_id=message.event_id,
        member_id=message.member_id,
        type=name_from_proto(ONLINE_TYPES, message.type),
        at=time_from_proto(message.at, now) or now,
        sku=message.sku,
        query=message.query,
        session_id=message.session_id,
    )


def outcomes_to_proto(outcomes: Sequence[ItemOutcome]) -> personalization_pb2.IngestOnlineEventsResponse:
    return personalization_pb2.IngestOnlineEventsResponse(
        accepted=sum(o.code == "OK" for o in outcomes),
        duplicates=sum(o.code == "ALREADY_EXISTS" for o in outcomes),
        statuses=[common_pb2.ItemStatus(code=grpc.StatusCode[o.code].value[0], message=o.message) for o in outcomes],
    )


def preferences_to_proto(preferences: Preferences) -> personalization_pb2.MemberPreferences:
    quiet = preferences.quiet_hours
    return personalization_pb2.MemberPreferences(
        member_id=preferences.member_id,
        allow_greeting=preferences.allow_greeting,
        preferred_name=preferences.preferred_name,
        excluded_categories=preferences.excluded_categories,
        favourite_categories=preferences.favourite_categories,
        quiet_hours=personalization_pb2.QuietHours(
            start_minute=quiet.start_minute, end_minute=quiet.end_minute, timezone=quiet.timezone
        )
        if quiet
        else None,
        channels=[
            personalization_pb2.NotificationChannel(kind=c.kind, address=c.address) for c in preferences.channels
        ],
        max_offers_per_visit=preferences.max_offers_per_visit,
    )


def preferences_from_proto(message: personalization_pb2.MemberPreferences) -> Preferences:
    has_quiet = message.HasField("quiet_hours")
    quiet = None
    if has_quiet and message.quiet_hours.start_minute != message.quiet_hours.end_minute:
        quiet = QuietHours(
            message.quiet_hours.start_minute, message.quiet_hours.end_minute, message.quiet_hours.timezone or "UTC"
        )
    return Preferences(
        member_id=message.member_id,
        allow_greeting=message.allow_greeting,
        preferred_name=message.preferred_name,
        excluded_categories=list(message.excluded_categories),
        favourite_categories=list(message.favourite_categories),
        quiet_hours=quiet,
        channels=[Channel(c.kind, c.address) for c in message.channels],
        max_offers_per_visit=message.max_offers_per_visit,
        timezone=message.quiet_hours.timezone if has_quiet and message.quiet_hours.timezone else "UTC",
    )


def consent_from_proto(message: common_pb2.ConsentRecord) -> Consent:
    return Consent(
        policy_version=message.policy_version,
        scopes=frozenset(names_from_proto(SCOPES, message.scopes)),
        granted_at=time_from_proto(message.granted_at, None),
        source=message.source,
    )


def consent_to_proto(consent: Consent) -> common_pb2.ConsentRecord:
    return common_pb2.ConsentRecord(
        policy_version=consent.policy_version,
        scopes=[_SCOPE_ENUMS[s] for s in sorted(consent.scopes)],
        granted_at=time_to_proto(consent.granted_at),
        revoked_at=time_to_proto(consent.revoked_at),
        source=consent.source,
    )


def member_from_proto(message: personalization_pb2.Member) -> Member:
    preferences = None
    if message.HasField("preferences"):  # they belong to this member, whatever member_id they carry
        preferences = replace(preferences_from_proto(message.preferences), member_id=message.member_id)
    return Member(
        member_id=message.member_id,
        loyalty_number=message.loyalty_number,
        display_name=message.display_name,
        home_store_id=message.home_store_id,
        consent=consent_from_proto(message.consent),
        preferences=preferences,
        created_at=time_from_proto(message.created_at, 0.0) or 0.0,
    )


def member_to_proto(member: Member) -> personalization_pb2.Member:
    """The member with `recognition` filled from the consent rules (the gateway reads it, never re-derives it)."""
    allowed = recognition(member)
    return personalization_pb2.Member(
        member_id=member.member_id,
        loyalty_number=member.loyalty_number,
        display_name=member.display_name,
        home_store_id=member.home_store_id,
        consent=consent_to_proto(member.consent),
        preferences=preferences_to_proto(member.preferences) if member.preferences else None,
        created_at=time_to_proto(member.created_at),
        recognition=personalization_pb2.Recognition(
            may_identify=allowed.may_identify, may_greet=allowed.may_greet, greeting_name=allowed.greeting_name
        ),
    )


def product_from_proto(message: personalization_pb2.Product) -> Product:
    return Product(message.sku, message.name, message.category, message.price, message.sensitive)


def inventory_item_from_proto(message: personalization_pb2.InventoryItem) -> InventoryItem:
    return InventoryItem(message.store_id, message.sku, message.on_hand, message.aisle, message.shelf)


def campaign_from_proto(message: personalization_pb2.Campaign) -> Campaign:
    return Campaign(
        campaign_id=message.campaign_id,
        name=message.name,
        discount_percent=message.discount_percent,
        skus=list(message.skus),
        categories=list(message.categories),
        valid_from=time_from_proto(message.valid_from, None),
        valid_until=time_from_proto(message.valid_until, None),
        priority=message.priority,
        frequency_cap_per_day=message.frequency_cap_per_day,
        store_ids=list(message.store_ids),
    )


def audit_entry_to_proto(entry: AuditEntry) -> personalization_pb2.AuditEntry:
    return personalization_pb2.AuditEntry(
        at=time_to_proto(entry.at),
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        reason=entry.reason,
        detail=entry.detail,
    )


def chain_report_to_proto(report: ChainReport) -> personalization_pb2.VerifyAuditChainResponse:
    return personalization_pb2.VerifyAuditChainResponse(
        rows_checked=report.rows,
        intact=report.intact,
        first_broken_id=report.first_broken_id or 0,
        reason=report.reason,
    )
