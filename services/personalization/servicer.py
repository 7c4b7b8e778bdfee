"""gRPC PersonalizationService: maps protos to the personalization logic and its errors to status codes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import timestamp_pb2

from retailface.services.personalization import db, synthetic
from retailface.services.personalization.alerts import AlertBus
from retailface.services.personalization.catalog import CatalogCache
from retailface.services.personalization.domain import (
    AlreadyExistsError,
    Campaign,
    Channel,
    Consent,
    InvalidArgumentError,
    InventoryItem,
    Member,
    NotFoundError,
    Offer,
    OnlineEvent,
    Preferences,
    Product,
    Purchase,
    PurchaseLine,
    QuietHours,
    StaffAlert,
    VisitEvent,
)
from retailface.services.personalization.outbox import (
    LogChannel,
    NotificationChannel,
    OutboxWorker,
    RetryPolicy,
    WebhookChannel,
)
from retailface.services.personalization.recommender import ModelHolder, train
from retailface.services.personalization.service import PersonalizationService, Settings
from retailface.services.shared.config import (
    ServiceConfig,
    Setting,
    parse_bool,
    parse_path,
    parse_positive_float,
    parse_positive_int,
    parse_unit_float,
)
from retailface.services.shared.metrics import stage_timer
from retailface.services.shared.server import Registration
from retailface.v1 import common_pb2, personalization_pb2, personalization_pb2_grpc

log = structlog.get_logger(__name__)
SERVICE = "personalization"
P = "RETAILFACE_PERSONALIZATION_"


def parse_non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError(f"expected a number >= 0, got {raw}")
    return value


def parse_percent(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 90:
        raise ValueError(f"expected a discount percent in [0, 90], got {raw}")
    return value


SETTINGS: list[Setting] = [
    Setting(
        f"{P}DATA_DIR",
        parse_path,
        Path("~/.local/share/retailface/personalization"),
        "directory of the default SQLite database (personalization.sqlite3)",
    ),
    Setting(
        f"{P}DB_URL",
        str,
        None,
        "SQLAlchemy database URL (default: SQLite in the data dir; e.g. postgresql+psycopg://user@host/db)",
        secret=True,
    ),
    Setting(
        f"{P}SQLITE_CHECKPOINT_SECONDS",
        parse_non_negative_float,
        1.0,
        "SQLite: checkpoint the WAL in the background this often (0: inside commits, SQLite's default)",
    ),
    Setting(
        f"{P}SYNTHETIC_SCALE",
        str,
        "none",
        "fill an empty database with synthetic retail data at start-up (demo)",
        choices=("none", "small", "full"),
    ),
    Setting(f"{P}SYNTHETIC_SEED", int, 7, "seed of the synthetic data"),
    Setting(
        f"{P}WEBHOOK_URL",
        str,
        None,
        "URL that receives member notifications as JSON POSTs with an Idempotency-Key header (unset: log only)",
    ),
    Setting(f"{P}WEBHOOK_TIMEOUT_SECONDS", parse_positive_float, 5.0, "timeout of one webhook POST"),
    Setting(f"{P}OUTBOX_POLL_SECONDS", parse_positive_float, 1.0, "how often the outbox worker looks for due items"),
    Setting(
        f"{P}OUTBOX_RETRY_BASE_SECONDS",
        parse_positive_float,
        2.0,
        "first retry delay of a failed notification (doubles per attempt)",
    ),
    Setting(f"{P}OUTBOX_RETRY_MAX_SECONDS", parse_positive_float, 600.0, "longest retry delay"),
    Setting(
        f"{P}OUTBOX_MAX_ATTEMPTS",
        parse_positive_int,
        30,
        "attempts before a notification is parked as dead (kept for an operator, never dropped)",
    ),
    Setting(
        f"{P}MODEL_REFRESH_SECONDS",
        parse_non_negative_float,
        900.0,
        "retrain the recommender in the background this often (0: only at start-up)",
    ),
    Setting(
        f"{P}CATALOG_RELOAD_SECONDS",
        parse_non_negative_float,
        60.0,
        "reload the in-memory catalog, stock and campaigns this often (0: only on this service's writes)",
    ),
    Setting(f"{P}OFFERS_PER_VISIT", parse_positive_int, 3, "offers per visit or request when the member set none"),
    Setting(
        f"{P}FREQUENCY_CAP_PER_DAY",
        parse_positive_int,
        2,
        "times one item may be offered to one member in 24 hours (campaigns may set their own cap)",
    ),
    Setting(f"{P}INTENT_WINDOW_DAYS", parse_positive_float, 21.0, "online views and carts younger than this count"),
    Setting(f"{P}INTENT_DISCOUNT_PERCENT", parse_percent, 20.0, "discount on items seen or carted online"),
    Setting(
        f"{P}DEFAULT_DISCOUNT_PERCENT",
        parse_percent,
        10.0,
        "discount of history, similar-shopper and basket offers outside campaigns",
    ),
    Setting(
        f"{P}DISSATISFACTION_NEGATIVE_FRACTION",
        parse_unit_float,
        0.6,
        "share of negative-expression frames at a lane that raises a dissatisfaction alert",
    ),
    Setting(
        f"{P}DISSATISFACTION_SECONDS",
        parse_non_negative_float,
        5.0,
        "how long the negative expression must have been observed",
    ),
    Setting(
        f"{P}ALERT_COOLDOWN_SECONDS",
        parse_non_negative_float,
        300.0,
        "at most one dissatisfaction alert per shopper within this time",
    ),
    Setting(
        f"{P}ALERT_CATCHUP_SECONDS",
        parse_non_negative_float,
        900.0,
        "unacknowledged alerts this recent are replayed to a staff screen that connects",
    ),
    Setting(
        f"{P}WATCHLIST_ENABLED",
        parse_bool,
        False,
        "raise watchlist alerts (security; always need a person to confirm). Off by default",
    ),
]

# The gateway calls with role "service" on behalf of cameras, POS systems, staff devices and
# enrollment desks, so "service" may call everything it proxies; admin may call everything.
ROLES_POS = frozenset({"pos", "service", "admin"})
ROLES_STAFF = frozenset({"staff", "service", "admin"})
ROLES_SERVICE = frozenset({"service", "admin"})
ROLES_ADMIN = frozenset({"admin"})
METHOD_ROLES: dict[str, frozenset[str]] = {
    "RecordVisitEvent": ROLES_SERVICE,
    "GetOffers": ROLES_SERVICE,
    "GetCheckoutOffers": ROLES_POS,
    "RecordPurchase": ROLES_POS,
    "IngestOnlineEvents": ROLES_SERVICE,
    "Feedback": ROLES_SERVICE,
    "GetPreferences": ROLES_SERVICE,
    "UpdatePreferences": ROLES_SERVICE,
    "UpsertMember": ROLES_SERVICE,  # the gateway's EnrollMember
    "GetMember": ROLES_SERVICE,
    "GrantConsent": ROLES_SERVICE,
    "RevokeConsent": ROLES_SERVICE,
    "EraseMember": ROLES_SERVICE,  # the gateway's EraseMember (face templates and personal data together)
    "UpsertProducts": ROLES_ADMIN,
    "SetInventory": ROLES_ADMIN,
    "UpsertCampaign": ROLES_ADMIN,
    "StreamStaffAlerts": ROLES_STAFF,
    "AcknowledgeAlert": ROLES_STAFF,
    "QueryAudit": ROLES_ADMIN,
}

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
SCOPE_ENUMS = {name: value for value, name in SCOPES.items()}
IDENTIFIED_BY = {
    common_pb2.IDENTIFICATION_METHOD_UNSPECIFIED: "unspecified",
    common_pb2.IDENTIFICATION_METHOD_LOYALTY_CARD: "loyalty_card",
    common_pb2.IDENTIFICATION_METHOD_FACE: "face",
    common_pb2.IDENTIFICATION_METHOD_APP: "app",
    common_pb2.IDENTIFICATION_METHOD_PHONE_NUMBER: "phone_number",
}
IDENTIFIED_BY_ENUMS = {name: value for value, name in IDENTIFIED_BY.items()}
SOURCES = {
    "online_intent": common_pb2.OFFER_SOURCE_ONLINE_INTENT,
    "purchase_history": common_pb2.OFFER_SOURCE_PURCHASE_HISTORY,
    "similar_shoppers": common_pb2.OFFER_SOURCE_SIMILAR_SHOPPERS,
    "campaign": common_pb2.OFFER_SOURCE_CAMPAIGN,
    "basket_completion": common_pb2.OFFER_SOURCE_BASKET_COMPLETION,
}
ALERT_KINDS = {
    "greeting": common_pb2.ALERT_KIND_GREETING,
    "dissatisfaction": common_pb2.ALERT_KIND_DISSATISFACTION,
    "watchlist": common_pb2.ALERT_KIND_WATCHLIST,
}
ALERT_KIND_NAMES = {value: name for name, value in ALERT_KINDS.items()}


def _seconds(timestamp: timestamp_pb2.Timestamp, default: float | None) -> float | None:
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return default
    return timestamp.seconds + timestamp.nanos / 1e9


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromNanoseconds(round(seconds * 1e9))
    return timestamp


def _caller(actor: str = "") -> str:
    """The audit actor: who the request names, else the caller's authenticated role."""
    role = structlog.contextvars.get_contextvars().get("role")
    return f"{role}:{actor}" if actor and role else actor or str(role or "unknown")


def offer_message(offer: Offer) -> common_pb2.Offer:
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
        valid_until=_timestamp(offer.valid_until),
        score=offer.score,
    )


def alert_message(alert: StaffAlert) -> common_pb2.StaffAlert:
    return common_pb2.StaffAlert(
        alert_id=alert.alert_id,
        kind=ALERT_KINDS[alert.kind],
        store_id=alert.store_id,
        zone_id=alert.zone_id,
        lane_id=alert.lane_id,
        camera_id=alert.camera_id,
        member_id=alert.member_id,
        display_name=alert.display_name,
        message=alert.message,
        priority=alert.priority,
        requires_confirmation=alert.requires_confirmation,
        raised_at=_timestamp(alert.raised_at),
        track_id=alert.track_id,
    )


def preferences_message(preferences: Preferences) -> personalization_pb2.MemberPreferences:
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


def preferences_from(message: personalization_pb2.MemberPreferences) -> Preferences:
    quiet = None
    if message.HasField("quiet_hours") and message.quiet_hours.start_minute != message.quiet_hours.end_minute:
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
        timezone=message.quiet_hours.timezone
        if message.HasField("quiet_hours") and message.quiet_hours.timezone
        else "UTC",
    )


def consent_from(message: common_pb2.ConsentRecord) -> Consent:
    unknown = [scope for scope in message.scopes if scope not in SCOPES]
    if unknown:
        raise InvalidArgumentError(f"unknown consent scope values {unknown}")
    return Consent(
        policy_version=message.policy_version,
        scopes=frozenset(SCOPES[s] for s in message.scopes),
        granted_at=_seconds(message.granted_at, None),
        source=message.source,
    )


def member_message(member: Member) -> personalization_pb2.Member:
    consent = member.consent
    return personalization_pb2.Member(
        member_id=member.member_id,
        loyalty_number=member.loyalty_number,
        display_name=member.display_name,
        home_store_id=member.home_store_id,
        consent=common_pb2.ConsentRecord(
            policy_version=consent.policy_version,
            scopes=[SCOPE_ENUMS[s] for s in sorted(consent.scopes)],
            granted_at=_timestamp(consent.granted_at),
            revoked_at=_timestamp(consent.revoked_at),
            source=consent.source,
        ),
        preferences=preferences_message(member.preferences) if member.preferences else None,
        created_at=_timestamp(member.created_at),
    )


F = TypeVar("F", bound=Callable[..., Any])


def _domain_errors(method: F) -> F:
    """Maps the logic's errors to status codes with their messages."""

    @wraps(method)
    def call(self: PersonalizationServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except NotFoundError as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        except InvalidArgumentError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except AlreadyExistsError as error:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(error))

    return call  # type: ignore[return-value]


class PersonalizationServicer(personalization_pb2_grpc.PersonalizationServiceServicer):
    def __init__(self, service: PersonalizationService, poll_seconds: float = 0.5) -> None:
        self.service = service
        self._poll_seconds = poll_seconds

    @_domain_errors
    def RecordVisitEvent(self, request: personalization_pb2.VisitEvent, context: grpc.ServicerContext) -> Any:
        if request.type not in VISIT_TYPES:
            raise InvalidArgumentError("type must be ENTERED, ZONE_DWELL, CHECKOUT or EXITED")
        emotion = request.emotion if request.HasField("emotion") else None
        event = VisitEvent(
            event_id=request.event_id,
            type=VISIT_TYPES[request.type],
            store_id=request.store_id,
            at=_seconds(request.at, time.time()) or time.time(),
            camera_id=request.camera_id,
            zone_id=request.zone_id,
            lane_id=request.lane_id,
            member_id=request.member_id,
            match_score=request.match_score,
            track_id=request.track_id,
            dwell_seconds=request.dwell_seconds,
            negative_fraction=emotion.negative_fraction if emotion else None,
            emotion_seconds=emotion.seconds if emotion else None,
        )
        # Face attributes (age, gender) are deliberately not passed on: no demographic tailoring.
        with stage_timer(SERVICE, "record_visit_event"):
            result = self.service.record_visit_event(event, actor=_caller())
        return personalization_pb2.VisitEventResult(
            duplicate=result.duplicate,
            offers_pushed=[offer_message(o) for o in result.offers_pushed],
            alerts_raised=[alert_message(a) for a in result.alerts_raised],
            notes=result.notes,
        )

    @_domain_errors
    def GetOffers(self, request: personalization_pb2.GetOffersRequest, context: grpc.ServicerContext) -> Any:
        with stage_timer(SERVICE, "get_offers"):
            result = self.service.get_offers(
                request.member_id, request.store_id, request.context, request.limit, actor=_caller()
            )
        return personalization_pb2.GetOffersResponse(
            offers=[offer_message(o) for o in result.offers], notes=result.notes
        )

    @_domain_errors
    def GetCheckoutOffers(
        self, request: personalization_pb2.CheckoutOffersRequest, context: grpc.ServicerContext
    ) -> Any:
        for line in request.basket:
            if not line.sku:
                raise InvalidArgumentError("every basket line needs a sku")
        if request.identified_by not in IDENTIFIED_BY:
            raise InvalidArgumentError(f"unknown identified_by value {request.identified_by}")
        with stage_timer(SERVICE, "get_checkout_offers"):
            result = self.service.get_checkout_offers(
                request.store_id,
                request.lane_id,
                [(line.sku, line.quantity or 1) for line in request.basket],
                member_id=request.member_id,
                loyalty_number=request.loyalty_number,
                identified_by=IDENTIFIED_BY[request.identified_by],
                limit=request.limit,
                actor=_caller(),
            )
        return personalization_pb2.CheckoutOffersResponse(
            basket_completions=[offer_message(o) for o in result.basket_completions],
            member_offers=[offer_message(o) for o in result.member_offers],
            member_id=result.member_id,
            identified_by=IDENTIFIED_BY_ENUMS[result.identified_by],
            confirmation_required=result.confirmation_required,
            notes=result.notes,
        )

    @_domain_errors
    def RecordPurchase(self, request: personalization_pb2.Purchase, context: grpc.ServicerContext) -> Any:
        purchase = Purchase(
            transaction_id=request.transaction_id,
            store_id=request.store_id,
            at=_seconds(request.at, time.time()) or time.time(),
            lines=[PurchaseLine(line.sku, line.quantity, line.unit_price) for line in request.lines],
            lane_id=request.lane_id,
            member_id=request.member_id,
            loyalty_number=request.loyalty_number,
            redeemed_offer_ids=list(request.redeemed_offer_ids),
        )
        duplicate = self.service.record_purchase(purchase, actor=_caller())
        return personalization_pb2.RecordPurchaseResponse(duplicate=duplicate)

    @_domain_errors
    def IngestOnlineEvents(
        self, request: personalization_pb2.IngestOnlineEventsRequest, context: grpc.ServicerContext
    ) -> Any:
        now = time.time()
        events = [
            OnlineEvent(
                event_id=e.event_id,
                member_id=e.member_id,
                type=ONLINE_TYPES.get(e.type, "unspecified"),
                at=_seconds(e.at, now) or now,
                sku=e.sku,
                query=e.query,
                session_id=e.session_id,
            )
            for e in request.events
        ]
        with stage_timer(SERVICE, "ingest_online_events"):
            outcomes = self.service.ingest_online_events(events)
        statuses = [common_pb2.ItemStatus(code=grpc.StatusCode[o.code].value[0], message=o.message) for o in outcomes]
        return personalization_pb2.IngestOnlineEventsResponse(
            accepted=sum(o.code == "OK" for o in outcomes),
            duplicates=sum(o.code == "ALREADY_EXISTS" for o in outcomes),
            statuses=statuses,
        )

    @_domain_errors
    def Feedback(self, request: personalization_pb2.OfferFeedback, context: grpc.ServicerContext) -> Any:
        if request.type not in FEEDBACK_TYPES:
            raise InvalidArgumentError("type must be UNLIKED, UNLIKED_CATEGORY, REDEEMED or DISMISSED")
        self.service.feedback(
            request.feedback_id,
            request.member_id,
            request.offer_id,
            FEEDBACK_TYPES[request.type],
            _seconds(request.at, None),
            actor=_caller(),
        )
        return personalization_pb2.FeedbackResponse()

    @_domain_errors
    def GetPreferences(self, request: personalization_pb2.GetPreferencesRequest, context: grpc.ServicerContext) -> Any:
        return preferences_message(self.service.get_preferences(request.member_id, actor=_caller()))

    @_domain_errors
    def UpdatePreferences(self, request: personalization_pb2.MemberPreferences, context: grpc.ServicerContext) -> Any:
        if not request.member_id:
            raise InvalidArgumentError("member_id is required")
        return preferences_message(self.service.update_preferences(preferences_from(request), actor=_caller()))

    @_domain_errors
    def UpsertMember(self, request: personalization_pb2.Member, context: grpc.ServicerContext) -> Any:
        member = Member(
            member_id=request.member_id,
            loyalty_number=request.loyalty_number,
            display_name=request.display_name,
            home_store_id=request.home_store_id,
            consent=consent_from(request.consent),
            preferences=preferences_from(request.preferences) if request.HasField("preferences") else None,
            created_at=_seconds(request.created_at, 0.0) or 0.0,
        )
        if member.preferences is not None:
            member.preferences.member_id = member.member_id
        return member_message(self.service.upsert_member(member, actor=_caller()))

    @_domain_errors
    def GetMember(self, request: personalization_pb2.GetMemberRequest, context: grpc.ServicerContext) -> Any:
        return member_message(self.service.get_member(request.member_id, request.loyalty_number, actor=_caller()))

    @_domain_errors
    def GrantConsent(self, request: personalization_pb2.GrantConsentRequest, context: grpc.ServicerContext) -> Any:
        if not request.member_id:
            raise InvalidArgumentError("member_id is required")
        return member_message(
            self.service.grant_consent(request.member_id, consent_from(request.consent), actor=_caller(request.actor))
        )

    @_domain_errors
    def RevokeConsent(self, request: personalization_pb2.RevokeConsentRequest, context: grpc.ServicerContext) -> Any:
        if not request.member_id:
            raise InvalidArgumentError("member_id is required")
        unknown = [scope for scope in request.scopes if scope not in SCOPES]
        if unknown:
            raise InvalidArgumentError(f"unknown consent scope values {unknown}")
        return member_message(
            self.service.revoke_consent(
                request.member_id,
                [SCOPES[s] for s in request.scopes],
                actor=_caller(request.actor),
                reason=request.reason,
            )
        )

    @_domain_errors
    def EraseMember(self, request: personalization_pb2.EraseMemberDataRequest, context: grpc.ServicerContext) -> Any:
        if not request.member_id:
            raise InvalidArgumentError("member_id is required")
        counts = self.service.erase_member(request.member_id, actor=_caller(request.actor), reason=request.reason)
        return personalization_pb2.EraseMemberDataResponse(rows_removed=counts)

    @_domain_errors
    def UpsertProducts(self, request: personalization_pb2.UpsertProductsRequest, context: grpc.ServicerContext) -> Any:
        count = self.service.upsert_products(
            [Product(p.sku, p.name, p.category, p.price, p.sensitive) for p in request.products], actor=_caller()
        )
        return personalization_pb2.UpsertProductsResponse(upserted=count)

    @_domain_errors
    def SetInventory(self, request: personalization_pb2.SetInventoryRequest, context: grpc.ServicerContext) -> Any:
        count = self.service.set_inventory(
            [InventoryItem(i.store_id, i.sku, i.on_hand, i.aisle, i.shelf) for i in request.items], actor=_caller()
        )
        return personalization_pb2.SetInventoryResponse(updated=count)

    @_domain_errors
    def UpsertCampaign(self, request: personalization_pb2.Campaign, context: grpc.ServicerContext) -> Any:
        campaign = self.service.upsert_campaign(
            Campaign(
                campaign_id=request.campaign_id,
                name=request.name,
                discount_percent=request.discount_percent,
                skus=list(request.skus),
                categories=list(request.categories),
                valid_from=_seconds(request.valid_from, None),
                valid_until=_seconds(request.valid_until, None),
                priority=request.priority,
                frequency_cap_per_day=request.frequency_cap_per_day,
                store_ids=list(request.store_ids),
            ),
            actor=_caller(),
        )
        response = personalization_pb2.Campaign()
        response.CopyFrom(request)
        response.campaign_id = campaign.campaign_id
        return response

    def StreamStaffAlerts(
        self, request: personalization_pb2.StaffAlertsRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.StaffAlert]:
        unknown = [kind for kind in request.kinds if kind not in ALERT_KIND_NAMES]
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown alert kinds {unknown}")
        kinds = [ALERT_KIND_NAMES[kind] for kind in request.kinds]
        # Subscribe before the catch-up read so that nothing raised in between is missed.
        subscription = self.service.bus.subscribe(request.store_id, kinds)
        try:
            try:
                recent = self.service.recent_alerts(request.store_id, kinds)
            except NotFoundError as error:
                context.abort(grpc.StatusCode.NOT_FOUND, str(error))
            except InvalidArgumentError as error:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            sent: set[str] = set()
            for alert in recent:
                sent.add(alert.alert_id)
                yield alert_message(alert)
            while context.is_active() and not subscription.closed:
                alert = subscription.get(self._poll_seconds)
                if alert is not None and alert.alert_id not in sent:
                    sent.add(alert.alert_id)
                    yield alert_message(alert)
        finally:
            subscription.close()

    @_domain_errors
    def AcknowledgeAlert(
        self, request: personalization_pb2.AcknowledgeAlertRequest, context: grpc.ServicerContext
    ) -> Any:
        self.service.acknowledge_alert(
            request.alert_id, request.staff_id, request.confirmed, actor=_caller(request.staff_id)
        )
        return personalization_pb2.AcknowledgeAlertResponse()

    @_domain_errors
    def QueryAudit(self, request: personalization_pb2.AuditQuery, context: grpc.ServicerContext) -> Any:
        entries = self.service.query_audit(
            request.member_id, _seconds(request.since, None), request.limit, actor=_caller()
        )
        return personalization_pb2.AuditQueryResponse(
            entries=[
                personalization_pb2.AuditEntry(
                    at=_timestamp(e.at),
                    actor=e.actor,
                    action=e.action,
                    subject=e.subject,
                    reason=e.reason,
                    detail=e.detail,
                )
                for e in entries
            ]
        )


def settings_from(config: ServiceConfig) -> Settings:
    default_discount = float(config.get(f"{P}DEFAULT_DISCOUNT_PERCENT"))
    return Settings(
        offers_per_visit=int(config.get(f"{P}OFFERS_PER_VISIT")),
        frequency_cap_per_day=int(config.get(f"{P}FREQUENCY_CAP_PER_DAY")),
        intent_window_days=float(config.get(f"{P}INTENT_WINDOW_DAYS")),
        intent_discount_percent=float(config.get(f"{P}INTENT_DISCOUNT_PERCENT")),
        history_discount_percent=default_discount,
        similar_discount_percent=default_discount,
        basket_discount_percent=default_discount,
        dissatisfaction_negative_fraction=float(config.get(f"{P}DISSATISFACTION_NEGATIVE_FRACTION")),
        dissatisfaction_min_seconds=float(config.get(f"{P}DISSATISFACTION_SECONDS")),
        alert_cooldown_seconds=float(config.get(f"{P}ALERT_COOLDOWN_SECONDS")),
        alert_catchup_seconds=float(config.get(f"{P}ALERT_CATCHUP_SECONDS")),
        watchlist_enabled=bool(config.get(f"{P}WATCHLIST_ENABLED")),
    )


def build(config: ServiceConfig) -> Registration:
    url = config.get(f"{P}DB_URL") or db.default_url(config.get(f"{P}DATA_DIR"))
    checkpoint_seconds = float(config.get(f"{P}SQLITE_CHECKPOINT_SECONDS"))
    engine = db.open_engine(url, auto_checkpoint=checkpoint_seconds == 0)
    checkpointer = db.Checkpointer(engine, checkpoint_seconds)
    version = db.migrate(engine)
    scale = config.get(f"{P}SYNTHETIC_SCALE")
    if scale != "none":
        try:
            synthetic.generate(engine, int(config.get(f"{P}SYNTHETIC_SEED")), scale)
        except ValueError:
            log.info("synthetic_data_skipped", reason="the database already has members")
    catalog = CatalogCache(engine, float(config.get(f"{P}CATALOG_RELOAD_SECONDS")))
    catalog.reload()
    models = ModelHolder(lambda: train(engine), float(config.get(f"{P}MODEL_REFRESH_SECONDS")))
    models.refresh()
    channels: dict[str, NotificationChannel] = {"log": LogChannel()}
    webhook_url = config.get(f"{P}WEBHOOK_URL")
    if webhook_url:
        channels["webhook"] = WebhookChannel(webhook_url, float(config.get(f"{P}WEBHOOK_TIMEOUT_SECONDS")))
    worker = OutboxWorker(
        engine,
        channels,
        RetryPolicy(
            float(config.get(f"{P}OUTBOX_RETRY_BASE_SECONDS")),
            float(config.get(f"{P}OUTBOX_RETRY_MAX_SECONDS")),
            int(config.get(f"{P}OUTBOX_MAX_ATTEMPTS")),
        ),
        poll_seconds=float(config.get(f"{P}OUTBOX_POLL_SECONDS")),
    )
    service = PersonalizationService(engine, models, settings_from(config), AlertBus(), worker, catalog)
    catalog.start()
    models.start()
    worker.start()
    if checkpoint_seconds > 0:
        checkpointer.start()
    log.info(
        "personalization_ready",
        schema_version=version,
        dialect=engine.dialect.name,
        webhook=bool(webhook_url),
        watchlist=service.settings.watchlist_enabled,
    )

    def on_stop() -> None:
        service.close()
        worker.stop()
        models.stop()
        catalog.stop()
        checkpointer.stop()
        engine.dispose()

    return Registration(
        servicer=PersonalizationServicer(service),
        add_to_server=personalization_pb2_grpc.add_PersonalizationServiceServicer_to_server,
        service_name="retailface.v1.PersonalizationService",
        method_roles=METHOD_ROLES,
        on_stop=on_stop,
    )
