"""Plain types of the personalization logic (no gRPC, no protobuf) and the names it accepts.

Errors are the shared ones (`retailface.services.shared.errors`): the logic raises them, the
bootstrap turns them into statuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCOPE_FACE_IDENTIFICATION = "face_identification"
SCOPE_PERSONALIZED_OFFERS = "personalized_offers"
SCOPE_STAFF_GREETING = "staff_greeting"
SCOPE_ANALYTICS = "analytics"
SCOPES: tuple[str, ...] = (SCOPE_FACE_IDENTIFICATION, SCOPE_PERSONALIZED_OFFERS, SCOPE_STAFF_GREETING, SCOPE_ANALYTICS)

VISIT_EVENT_TYPES = ("entered", "zone_dwell", "checkout", "exited")
ONLINE_EVENT_TYPES = ("viewed", "searched", "added_to_cart", "abandoned_cart", "purchased_online")
FEEDBACK_TYPES = ("unliked", "unliked_category", "redeemed", "dismissed")
CHANNEL_KINDS = ("webhook", "log")
ALERT_KINDS = ("greeting", "dissatisfaction", "watchlist")

SOURCE_ONLINE_INTENT = "online_intent"
SOURCE_PURCHASE_HISTORY = "purchase_history"
SOURCE_SIMILAR_SHOPPERS = "similar_shoppers"
SOURCE_CAMPAIGN = "campaign"
SOURCE_BASKET_COMPLETION = "basket_completion"

IDENTIFIED_BY = ("unspecified", "loyalty_card", "face", "app", "phone_number")


@dataclass(frozen=True)
class QuietHours:
    start_minute: int
    end_minute: int
    timezone: str


@dataclass(frozen=True)
class Channel:
    kind: str
    address: str


@dataclass
class Preferences:
    member_id: str
    allow_greeting: bool = False
    preferred_name: str = ""
    excluded_categories: list[str] = field(default_factory=list)
    favourite_categories: list[str] = field(default_factory=list)
    quiet_hours: QuietHours | None = None
    channels: list[Channel] = field(default_factory=list)
    max_offers_per_visit: int = 0
    timezone: str = "UTC"


@dataclass
class Consent:
    policy_version: str = ""
    scopes: frozenset[str] = frozenset()
    granted_at: float | None = None
    revoked_at: float | None = None
    source: str = ""

    def allows(self, scope: str) -> bool:
        return scope in self.scopes and self.revoked_at is None


@dataclass(frozen=True)
class Recognition:
    """Whether a member may be identified by face and greeted by staff, and by what name (see consent.py)."""

    may_identify: bool = False
    may_greet: bool = False
    greeting_name: str = ""  # empty unless may_greet


@dataclass
class Member:
    member_id: str
    loyalty_number: str = ""
    display_name: str = ""
    home_store_id: str = ""
    consent: Consent = field(default_factory=Consent)
    preferences: Preferences | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Location:
    store_id: str
    aisle: str
    shelf: str
    on_hand: int


@dataclass
class Offer:
    offer_id: str
    sku: str
    product_name: str
    category: str
    price: float
    discount_percent: float
    reason: str
    source: str
    location: Location
    valid_until: float
    score: float
    campaign_id: str = ""


@dataclass
class StaffAlert:
    alert_id: str
    kind: str
    store_id: str
    message: str
    raised_at: float
    zone_id: str = ""
    lane_id: str = ""
    camera_id: str = ""
    member_id: str = ""
    display_name: str = ""
    priority: float = 0.0
    requires_confirmation: bool = False
    track_id: str = ""


@dataclass
class VisitEvent:
    event_id: str
    type: str
    store_id: str
    at: float
    camera_id: str = ""
    zone_id: str = ""
    lane_id: str = ""
    member_id: str = ""
    match_score: float = 0.0
    quality_bin: str = ""  # of the calibrated decision that named the member
    estimated_fpir: float | None = None  # measured for probes like it (None: not told)
    track_id: str = ""
    dwell_seconds: float = 0.0
    negative_fraction: float | None = None  # None: no emotion summary
    emotion_seconds: float | None = None
    age_band: str = ""  # anonymous shoppers only ("18-29", ...; "" unknown): counted in store analytics
    gender: str = ""  # anonymous shoppers only ("female", "male"; "" unknown)


@dataclass
class VisitResult:
    duplicate: bool = False
    offers_pushed: list[Offer] = field(default_factory=list)
    alerts_raised: list[StaffAlert] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class OffersResult:
    offers: list[Offer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class CheckoutResult:
    basket_completions: list[Offer] = field(default_factory=list)
    member_offers: list[Offer] = field(default_factory=list)
    member_id: str = ""
    identified_by: str = "unspecified"
    confirmation_required: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PurchaseLine:
    sku: str
    quantity: int
    unit_price: float


@dataclass
class Purchase:
    transaction_id: str
    store_id: str
    at: float
    lines: list[PurchaseLine]
    lane_id: str = ""
    member_id: str = ""
    loyalty_number: str = ""
    redeemed_offer_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OnlineEvent:
    event_id: str
    member_id: str
    type: str
    at: float
    sku: str = ""
    query: str = ""
    session_id: str = ""


@dataclass(frozen=True)
class ItemOutcome:
    """Per-item result of a batch: code is a grpc.StatusCode name ("OK", "NOT_FOUND"...)."""

    code: str
    message: str = ""


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price: float
    sensitive: bool = False


@dataclass(frozen=True)
class InventoryItem:
    store_id: str
    sku: str
    on_hand: int
    aisle: str = ""
    shelf: str = ""


@dataclass
class Campaign:
    campaign_id: str
    name: str
    discount_percent: float
    skus: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    valid_from: float | None = None
    valid_until: float | None = None
    priority: int = 0
    frequency_cap_per_day: int = 0
    store_ids: list[str] = field(default_factory=list)

    def active(self, store_id: str, now: float) -> bool:
        return (
            (self.valid_from is None or self.valid_from <= now)
            and (self.valid_until is None or now <= self.valid_until)
            and (not self.store_ids or store_id in self.store_ids)
        )


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    action: str
    subject: str
    reason: str
    detail: str


@dataclass(frozen=True)
class ConsentChange:
    """One entry of a member's consent history (consent_history), as the privacy office reads it."""

    at: float
    action: str  # granted | revoked
    scopes: tuple[str, ...]
    policy_version: str
    source: str
    actor: str
    reason: str
