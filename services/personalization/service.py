"""The personalization logic: members and consent, catalog, purchases, online intent, offers, alerts.

Plain Python over the database (db.py), the recommender (recommender.py), the outbox (outbox.py)
and the alert bus (alerts.py); the gRPC servicer only maps messages to these calls.

Privacy rules enforced here, in one place:
- personalized_offers consent gates every personalized offer (pull or push); staff_greeting gates
  greetings; face_identification gates using a face match (visit events, checkout by face). Revoking
  a scope takes effect on the next call and cancels queued notifications and unseen greetings.
- sensitive products are never pushed, never shown at the till, the kiosk or the entrance, never
  named to staff; they can only appear in the member's own app (context "app").
- unliked items and categories, and the member's excluded categories, never come back.
- offers follow purchases and online behaviour only; face attributes (age, gender) are not stored.
- every read of a member, change and identification writes an audit entry (never biometric data).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, bindparam, delete, func, select, update

from retailface.services.personalization import db, outbox
from retailface.services.personalization.alerts import AlertBus
from retailface.services.personalization.catalog import CatalogCache
from retailface.services.personalization.domain import (
    CHANNEL_KINDS,
    FEEDBACK_TYPES,
    IDENTIFIED_BY,
    ONLINE_EVENT_TYPES,
    SCOPE_FACE_IDENTIFICATION,
    SCOPE_PERSONALIZED_OFFERS,
    SCOPE_STAFF_GREETING,
    SCOPES,
    SOURCE_BASKET_COMPLETION,
    SOURCE_CAMPAIGN,
    SOURCE_ONLINE_INTENT,
    SOURCE_PURCHASE_HISTORY,
    SOURCE_SIMILAR_SHOPPERS,
    VISIT_EVENT_TYPES,
    AlreadyExistsError,
    AuditEntry,
    Campaign,
    Channel,
    CheckoutResult,
    Consent,
    InvalidArgumentError,
    InventoryItem,
    ItemOutcome,
    Location,
    Member,
    NotFoundError,
    Offer,
    OffersResult,
    OnlineEvent,
    Preferences,
    Product,
    Purchase,
    QuietHours,
    StaffAlert,
    VisitEvent,
    VisitResult,
)
from retailface.services.personalization.recommender import Candidate, ModelHolder, TrainedModel

log = structlog.get_logger(__name__)

DAY = 86_400.0
PRIVATE_CONTEXTS = frozenset({"app"})  # the member's own screen: the only place sensitive items may appear
INTENT_WEIGHT = {"abandoned_cart": 1.0, "added_to_cart": 0.9, "viewed": 0.6}
# Ranking bands: online intent first (the O2O case), then campaigns, history, similar shoppers.
SOURCE_BAND = {
    SOURCE_ONLINE_INTENT: 4.0,
    SOURCE_CAMPAIGN: 3.0,
    SOURCE_PURCHASE_HISTORY: 2.0,
    SOURCE_SIMILAR_SHOPPERS: 1.0,
    SOURCE_BASKET_COMPLETION: 2.0,
}
MAX_PER_CATEGORY = 2

# Statements of the offer path, built once (SQLAlchemy then reuses their compiled form).
_MEMBER_BY_ID = select(db.members).where(db.members.c.member_id == bindparam("member_id"))
_DISLIKES = select(db.member_dislikes.c.kind, db.member_dislikes.c.value).where(
    db.member_dislikes.c.member_id == bindparam("member_id")
)
_INTENT_EVENTS = (
    select(db.online_events.c.type, db.online_events.c.sku, db.online_events.c.at)
    .where(
        db.online_events.c.member_id == bindparam("member_id"),
        db.online_events.c.at >= bindparam("since"),
        db.online_events.c.sku.is_not(None),
    )
    .order_by(db.online_events.c.at.desc())
    .limit(200)
)
_RECENT_DELIVERIES = select(db.offer_deliveries.c.sku, db.offer_deliveries.c.campaign_id).where(
    db.offer_deliveries.c.member_id == bindparam("member_id"), db.offer_deliveries.c.delivered_at > bindparam("since")
)
_BOUGHT_IN_STORE_SINCE = (
    select(db.transaction_lines.c.sku)
    .join(db.transactions, db.transactions.c.transaction_id == db.transaction_lines.c.transaction_id)
    .where(db.transactions.c.member_id == bindparam("member_id"), db.transactions.c.at >= bindparam("since"))
)
_STORE_TIMEZONE = select(db.stores.c.timezone).where(db.stores.c.store_id == bindparam("store_id"))
_VISIT_EVENT_EXISTS = select(db.visit_events.c.event_id).where(db.visit_events.c.event_id == bindparam("event_id"))
_ON_WATCHLIST = select(db.watchlist.c.subject_id).where(db.watchlist.c.subject_id == bindparam("subject_id"))
_OPEN_VISIT_OF_MEMBER, _OPEN_VISIT_OF_TRACK = (
    select(db.visits.c.visit_id)
    .where(
        db.visits.c.store_id == bindparam("store_id"),
        subject == bindparam("subject"),
        db.visits.c.ended_at.is_(None),
        db.visits.c.started_at >= bindparam("since"),
    )
    .order_by(db.visits.c.started_at.desc())
    .limit(1)
    for subject in (db.visits.c.member_id, db.visits.c.track_id)
)
_RECENT_VISITS = (
    select(func.count())
    .select_from(db.visits)
    .where(db.visits.c.member_id == bindparam("member_id"), db.visits.c.started_at >= bindparam("since"))
)
_TRAILING_SPEND = select(func.coalesce(func.sum(db.transactions.c.total), 0.0)).where(
    db.transactions.c.member_id == bindparam("member_id"), db.transactions.c.at >= bindparam("since")
)
_RECENT_ALERT = (
    select(db.staff_alerts.c.alert_id)
    .where(
        db.staff_alerts.c.subject_key == bindparam("subject_key"),
        db.staff_alerts.c.kind == bindparam("kind"),
        db.staff_alerts.c.raised_at >= bindparam("since"),
    )
    .limit(1)
)
_INSERT_AUDIT = db.audit_log.insert()
_INSERT_VISIT = db.visits.insert()
_INSERT_VISIT_EVENT = db.visit_events.insert()
_INSERT_ALERT = db.staff_alerts.insert()


@dataclass
class Settings:
    offers_per_visit: int = 3
    frequency_cap_per_day: int = 2
    intent_window_days: float = 21.0
    intent_discount_percent: float = 20.0
    history_discount_percent: float = 10.0
    similar_discount_percent: float = 10.0
    basket_discount_percent: float = 10.0
    little_history_items: int = 5
    offer_validity_hours: float = 24.0
    dissatisfaction_negative_fraction: float = 0.6
    dissatisfaction_min_seconds: float = 5.0
    alert_cooldown_seconds: float = 300.0
    alert_catchup_seconds: float = 900.0
    watchlist_enabled: bool = False
    trailing_spend_days: float = 365.0
    visit_timeout_hours: float = 12.0


@dataclass
class _Row:
    """A candidate joined with its product and its stock at the store."""

    candidate: Candidate
    source: str
    detail: str  # intent kind, "regular", "popular"...
    name: str = ""
    category: str = ""
    price: float = 0.0
    sensitive: bool = False
    location: Location | None = None
    campaign: Campaign | None = None
    score: float = 0.0
    # Which of the member's (or the basket's) items explains it; computed for the chosen few only.
    explain: Callable[[str], str] | None = None


@dataclass
class _MemberContext:
    member: Member
    dislike_skus: set[str] = field(default_factory=set)
    dislike_categories: set[str] = field(default_factory=set)


def _loads(text: str | None) -> list[Any]:
    return list(json.loads(text)) if text else []


def _check_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidArgumentError(f"unknown IANA timezone {name!r} (e.g. 'Europe/Berlin')") from None


def in_quiet_hours(quiet: QuietHours | None, at: float) -> bool:
    if quiet is None or quiet.start_minute == quiet.end_minute:
        return False
    local = dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(quiet.timezone or "UTC"))
    minute = local.hour * 60 + local.minute
    if quiet.start_minute < quiet.end_minute:
        return quiet.start_minute <= minute < quiet.end_minute
    return minute >= quiet.start_minute or minute < quiet.end_minute  # spans midnight


def _member_from_row(row: Any) -> Member:
    quiet = None
    if row.quiet_start_minute is not None and row.quiet_end_minute is not None:
        quiet = QuietHours(row.quiet_start_minute, row.quiet_end_minute, row.timezone)
    preferences = Preferences(
        member_id=row.member_id,
        allow_greeting=bool(row.allow_greeting),
        preferred_name=row.preferred_name,
        excluded_categories=_loads(row.excluded_categories),
        favourite_categories=_loads(row.favourite_categories),
        quiet_hours=quiet,
        channels=[Channel(c["kind"], c.get("address", "")) for c in _loads(row.channels)],
        max_offers_per_visit=row.max_offers_per_visit,
        timezone=row.timezone,
    )
    consent = Consent(
        policy_version=row.consent_policy_version,
        scopes=frozenset(s for s in row.consent_scopes.split(",") if s),
        granted_at=row.consent_granted_at,
        revoked_at=row.consent_revoked_at,
        source=row.consent_source,
    )
    return Member(
        member_id=row.member_id,
        loyalty_number=row.loyalty_number or "",
        display_name=row.display_name,
        home_store_id=row.home_store_id or "",
        consent=consent,
        preferences=preferences,
        created_at=row.created_at,
    )


class PersonalizationService:
    def __init__(
        self,
        engine: Engine,
        models: ModelHolder,
        settings: Settings | None = None,
        bus: AlertBus | None = None,
        worker: outbox.OutboxWorker | None = None,
        catalog: CatalogCache | None = None,
    ) -> None:
        self.engine = engine
        self.models = models
        self.settings = settings or Settings()
        self.bus = bus or AlertBus()
        self.worker = worker
        self.catalog = catalog or CatalogCache(engine, reload_seconds=0)
        if not self.catalog.snapshot.loaded_at:
            self.catalog.reload()

    # ------------------------------------------------------------------ helpers

    @property
    def model(self) -> TrainedModel | None:
        return self.models.model

    def _audit(
        self,
        conn: Connection,
        actor: str,
        action: str,
        subject: str,
        reason: str = "",
        now: float | None = None,
        **detail: Any,
    ) -> None:
        conn.execute(
            _INSERT_AUDIT,
            {
                "at": time.time() if now is None else now,
                "actor": actor or "unknown",
                "action": action,
                "subject": subject,
                "reason": reason,
                "detail": json.dumps(detail, sort_keys=True, default=str),
            },
        )

    def _require_store(self, conn: Connection, store_id: str) -> str:
        if not store_id:
            raise InvalidArgumentError("store_id is required")
        timezone = conn.execute(_STORE_TIMEZONE, {"store_id": store_id}).scalar_one_or_none()
        if timezone is None:
            raise NotFoundError(f"unknown store {store_id!r}")
        return str(timezone)

    def _load_member(self, conn: Connection, member_id: str = "", loyalty_number: str = "") -> Member:
        if member_id:
            row = conn.execute(_MEMBER_BY_ID, {"member_id": member_id}).first()
            if row is None:
                raise NotFoundError(f"unknown member {member_id!r}")
        elif loyalty_number:
            row = conn.execute(select(db.members).where(db.members.c.loyalty_number == loyalty_number)).first()
            if row is None:
                raise NotFoundError(f"unknown loyalty number {loyalty_number!r}")
        else:
            raise InvalidArgumentError("member_id (or loyalty_number) is required")
        return _member_from_row(row)

    def _member_context(self, conn: Connection, member: Member) -> _MemberContext:
        context = _MemberContext(member)
        for kind, value in conn.execute(_DISLIKES, {"member_id": member.member_id}):
            (context.dislike_skus if kind == "sku" else context.dislike_categories).add(value)
        return context

    def sensitive_categories(self) -> frozenset[str]:
        """Categories holding any sensitive product (never named to staff)."""
        return self.catalog.snapshot.sensitive_categories

    def _active_campaigns(self, store_id: str, now: float) -> list[Campaign]:
        return self.catalog.snapshot.active_campaigns(store_id, now)

    # ------------------------------------------------------------------ offers

    def _candidates(self, conn: Connection, member: Member, now: float) -> list[_Row]:
        rows: list[_Row] = []
        since = now - self.settings.intent_window_days * DAY
        events = conn.execute(_INTENT_EVENTS, {"member_id": member.member_id, "since": since}).all()
        # Bought since (online or here): no longer an intent to act on.
        bought = {sku for kind, sku, _ in events if kind == "purchased_online"}
        if events:
            bought.update(
                conn.execute(_BOUGHT_IN_STORE_SINCE, {"member_id": member.member_id, "since": events[-1].at}).scalars()
            )
        strongest: dict[str, tuple[float, str]] = {}
        for kind, sku, at in events:
            if kind not in INTENT_WEIGHT or sku in bought:
                continue
            recency = math.exp(-(now - at) / (7 * DAY))
            score = INTENT_WEIGHT[kind] * (0.5 + 0.5 * recency)
            if score > strongest.get(sku, (0.0, ""))[0]:
                strongest[sku] = (score, kind)
        rows += [_Row(Candidate(sku, score), SOURCE_ONLINE_INTENT, kind) for sku, (score, kind) in strongest.items()]

        model = self.model
        if model is not None:
            history_items = model.distinct_items(member.member_id)
            together = _normalised(
                model.bought_together_candidates(member.member_id, 20), SOURCE_PURCHASE_HISTORY, "together"
            )
            member_id = member.member_id
            for row in together:
                row.explain = lambda sku, _model=model: _model.explain_for_member(sku, member_id)
            rows += together
            rows += _normalised(
                model.regular_purchases(member.member_id, 5), SOURCE_PURCHASE_HISTORY, "regular", ceiling=0.8
            )
            if history_items < self.settings.little_history_items:
                # Little history: what similar shoppers buy says more than the few items bought so far.
                similar = model.similar_shopper_candidates(member.member_id, 15)
                rows += [
                    _Row(Candidate(c.sku, 1.0 + c.score), SOURCE_SIMILAR_SHOPPERS, "similar")
                    for c in _normalised_candidates(similar)
                ]
        return rows

    def _join_catalog(self, rows: list[_Row], store_id: str) -> dict[str, Product]:
        """Fills product and stock details from the catalog snapshot; returns the products by sku."""
        snapshot = self.catalog.snapshot
        for row in rows:
            product = snapshot.products.get(row.candidate.sku)
            if product is None:
                continue
            row.name, row.category, row.price, row.sensitive = (
                product.name,
                product.category,
                product.price,
                product.sensitive,
            )
            row.location = snapshot.stock.get((store_id, product.sku))
        return snapshot.products

    def _select(
        self,
        conn: Connection,
        rows: list[_Row],
        context: _MemberContext | None,
        store_id: str,
        channel: str,
        limit: int,
        now: float,
        exclude_skus: Iterable[str] = (),
    ) -> list[_Row]:
        """Applies every filter and rule, then ranks; returns at most `limit` rows."""
        excluded = set(exclude_skus)
        campaigns = self._active_campaigns(store_id, now)
        sent_skus: Counter[str] = Counter()
        sent_campaigns: Counter[str] = Counter()
        excluded_categories: set[str] = set()
        if context is not None:
            assert context.member.preferences is not None
            excluded_categories = set(context.member.preferences.excluded_categories) | context.dislike_categories
            excluded |= context.dislike_skus
            for sku, campaign_id in conn.execute(
                _RECENT_DELIVERIES, {"member_id": context.member.member_id, "since": now - DAY}
            ):
                sent_skus[sku] += 1
                if campaign_id:
                    sent_campaigns[campaign_id] += 1
        private = channel in PRIVATE_CONTEXTS
        best: dict[str, _Row] = {}
        for row in rows:
            sku = row.candidate.sku
            if (
                not row.category
                or sku in excluded
                or row.category in excluded_categories
                or (row.sensitive and not private)
                or row.location is None
                or row.location.on_hand <= 0
            ):
                continue
            row.campaign = next((c for c in campaigns if sku in c.skus or row.category in c.categories), None)
            if row.campaign is not None:
                cap = row.campaign.frequency_cap_per_day or self.settings.frequency_cap_per_day
                if sent_campaigns[row.campaign.campaign_id] >= cap:
                    row.campaign = None  # the campaign is capped; the item may still come as a plain offer
            if sent_skus[sku] >= self.settings.frequency_cap_per_day:
                continue
            row.score = SOURCE_BAND[row.source] + row.candidate.score
            if row.campaign is not None:
                row.score += 0.5 + row.campaign.priority / 100.0
            if sku not in best or row.score > best[sku].score:
                best[sku] = row
        chosen: list[_Row] = []
        per_category: Counter[str] = Counter()
        campaigns_used: Counter[str] = Counter()
        for row in sorted(best.values(), key=lambda r: (-r.score, r.candidate.sku)):
            if len(chosen) >= limit:
                break
            if per_category[row.category] >= MAX_PER_CATEGORY:
                continue
            if row.campaign is not None:
                cap = row.campaign.frequency_cap_per_day or self.settings.frequency_cap_per_day
                if sent_campaigns[row.campaign.campaign_id] + campaigns_used[row.campaign.campaign_id] >= cap:
                    row.campaign = None
                else:
                    campaigns_used[row.campaign.campaign_id] += 1
            per_category[row.category] += 1
            chosen.append(row)
        return chosen

    def _discount(self, row: _Row) -> float:
        campaign_discount = row.campaign.discount_percent if row.campaign is not None else 0.0
        return max(
            campaign_discount,
            {
                SOURCE_ONLINE_INTENT: self.settings.intent_discount_percent,
                SOURCE_PURCHASE_HISTORY: self.settings.history_discount_percent,
                SOURCE_SIMILAR_SHOPPERS: self.settings.similar_discount_percent,
                SOURCE_BASKET_COMPLETION: self.settings.basket_discount_percent,
            }.get(row.source, 0.0),
        )

    @staticmethod
    def _reason(row: _Row, discount: float, products: dict[str, Product]) -> str:
        assert row.location is not None
        where = f"aisle {row.location.aisle}" if row.location.aisle else "in this store"
        off = f"{discount:g}% off today" if discount > 0 else "in stock today"
        because = products.get(row.candidate.because_sku)
        # Never name a sensitive item in a reason (it may be read over a shoulder).
        because_name = because.name if because is not None and not because.sensitive else ""
        if row.source == SOURCE_ONLINE_INTENT:
            what = (
                "left in your online cart" if row.detail in ("abandoned_cart", "added_to_cart") else "looked at online"
            )
            return f"The {row.name} you {what} is in {where} here, {off}."
        if row.campaign is not None and row.source != SOURCE_BASKET_COMPLETION:
            return f"{row.campaign.name}: {row.name}, {off}, {where}."
        if row.source == SOURCE_BASKET_COMPLETION:
            with_what = f"the {because_name} in your basket" if because_name else "what is in your basket"
            return f"Goes well with {with_what}; {where}, {off}."
        if row.source == SOURCE_PURCHASE_HISTORY:
            if row.detail == "regular":
                return f"You buy this often: {off}, {where}."
            with_what = f"the {because_name} you buy" if because_name else "what you usually buy"
            return f"Often bought with {with_what}; {where}, {off}."
        if row.detail == "popular":
            return f"Popular at this store right now; {where}, {off}."
        return f"Popular with shoppers who buy what you buy; {where}, {off}."

    def _to_offers(
        self,
        conn: Connection,
        chosen: list[_Row],
        products: dict[str, Product],
        member_id: str | None,
        store_id: str,
        channel: str,
        now: float,
    ) -> list[Offer]:
        offers = []
        deliveries = []
        for row in chosen:
            assert row.location is not None
            if row.explain is not None and not row.candidate.because_sku:
                row.candidate = replace(row.candidate, because_sku=row.explain(row.candidate.sku))
            discount = self._discount(row)
            valid_until = now + self.settings.offer_validity_hours * 3600
            if row.campaign is not None and row.campaign.valid_until is not None:
                valid_until = min(valid_until, row.campaign.valid_until)
            offer = Offer(
                offer_id=uuid.uuid4().hex,
                sku=row.candidate.sku,
                product_name=row.name,
                category=row.category,
                price=row.price,
                discount_percent=discount,
                reason=self._reason(row, discount, products),
                source=row.source,
                location=row.location,
                valid_until=valid_until,
                score=round(row.score, 4),
                campaign_id=row.campaign.campaign_id if row.campaign else "",
            )
            offers.append(offer)
            if member_id:
                deliveries.append(
                    {
                        "offer_id": offer.offer_id,
                        "member_id": member_id,
                        "store_id": store_id,
                        "sku": offer.sku,
                        "category": offer.category,
                        "campaign_id": offer.campaign_id,
                        "source": offer.source,
                        "channel": channel,
                        "discount_percent": discount,
                        "reason": offer.reason,
                        "delivered_at": now,
                        "valid_until": valid_until,
                        "redeemed_at": None,
                    }
                )
        if deliveries:
            conn.execute(db.offer_deliveries.insert(), deliveries)
        return offers

    def _member_offers(
        self,
        conn: Connection,
        member: Member,
        store_id: str,
        channel: str,
        limit: int,
        now: float,
        exclude_skus: Iterable[str] = (),
    ) -> list[Offer]:
        context = self._member_context(conn, member)
        rows = self._candidates(conn, member, now)
        model = self.model
        if model is not None and len(rows) < limit * 3:
            rows += [_Row(c, SOURCE_SIMILAR_SHOPPERS, "popular") for c in model.popular_in_store(store_id, 20)]
        for campaign in self._active_campaigns(store_id, now):
            rows += [_Row(Candidate(sku, 0.5), SOURCE_CAMPAIGN, "campaign") for sku in campaign.skus]
        products = self._join_catalog(rows, store_id)
        chosen = self._select(conn, rows, context, store_id, channel, limit, now, exclude_skus)
        return self._to_offers(conn, chosen, products, member.member_id, store_id, channel, now)

    def _offer_limit(self, member: Member, requested: int) -> int:
        assert member.preferences is not None
        limit = requested or member.preferences.max_offers_per_visit or self.settings.offers_per_visit
        return max(1, min(limit, 20))

    def get_offers(
        self,
        member_id: str,
        store_id: str,
        context: str = "",
        limit: int = 0,
        actor: str = "",
        now: float | None = None,
    ) -> OffersResult:
        """Offers for a member at a store. Only context "app" (the member's own phone) is private;
        any other or no context is treated as a screen others may see."""
        now = time.time() if now is None else now
        channel = (context or "unspecified")[:32]
        with db.write(self.engine) as conn:
            self._require_store(conn, store_id)
            member = self._load_member(conn, member_id)
            self._audit(conn, actor, "read", member_id, "offers", now, store_id=store_id, context=channel)
            if not member.consent.allows(SCOPE_PERSONALIZED_OFFERS):
                return OffersResult(notes=[f"no consent for {SCOPE_PERSONALIZED_OFFERS}: no personalized offers"])
            offers = self._member_offers(conn, member, store_id, channel, self._offer_limit(member, limit), now)
        notes = [] if offers else ["no offer passes the member's preferences, stock and frequency caps right now"]
        return OffersResult(offers, notes)

    # ------------------------------------------------------------------ checkout

    def get_checkout_offers(
        self,
        store_id: str,
        lane_id: str,
        basket: Sequence[tuple[str, int]],
        member_id: str = "",
        loyalty_number: str = "",
        identified_by: str = "unspecified",
        limit: int = 0,
        actor: str = "",
        now: float | None = None,
    ) -> CheckoutResult:
        now = time.time() if now is None else now
        if identified_by not in IDENTIFIED_BY:
            raise InvalidArgumentError(f"identified_by must be one of {', '.join(IDENTIFIED_BY)}")
        limit = max(1, min(limit or self.settings.offers_per_visit, 20))
        result = CheckoutResult()
        with db.write(self.engine) as conn:
            self._require_store(conn, store_id)
            basket_skus = [sku for sku, _ in basket]
            missing = [sku for sku in basket_skus if sku not in self.catalog.snapshot.products]
            if missing:
                raise NotFoundError(f"unknown sku {missing[0]!r} in the basket")
            member: Member | None = None
            if member_id or loyalty_number:
                member = self._load_member(conn, member_id, loyalty_number)
                method = "loyalty_card" if loyalty_number and identified_by == "unspecified" else identified_by
                if method == "face" and not member.consent.allows(SCOPE_FACE_IDENTIFICATION):
                    result.notes.append(f"no consent for {SCOPE_FACE_IDENTIFICATION}: the face match is not used")
                    member = None
                else:
                    result.member_id, result.identified_by = member.member_id, method
                    # A face match (or an unstated method) must be confirmed before member pricing applies.
                    result.confirmation_required = method not in ("loyalty_card", "app", "phone_number")
                    self._audit(
                        conn,
                        actor,
                        "identify",
                        member.member_id,
                        "checkout",
                        now,
                        store_id=store_id,
                        lane_id=lane_id,
                        method=method,
                    )
            context = (
                self._member_context(conn, member)
                if member is not None and member.consent.allows(SCOPE_PERSONALIZED_OFFERS)
                else None
            )
            model = self.model
            rows: list[_Row] = []
            if model is not None:

                def explain(sku: str, _model: TrainedModel = model) -> str:
                    return _model.explain_for_items(sku, basket_skus)

                rows = [
                    _Row(c, SOURCE_BASKET_COMPLETION, "basket", explain=explain)
                    for c in _normalised_candidates(model.basket_completions(basket_skus, 30))
                ]
            products = self._join_catalog(rows, store_id)
            # The till screen is seen by staff: no sensitive items; basket items are not offered again.
            chosen = self._select(conn, rows, context, store_id, "checkout", limit, now, exclude_skus=basket_skus)
            result.basket_completions = self._to_offers(
                conn, chosen, products, context.member.member_id if context else None, store_id, "checkout", now
            )
            if member is not None:
                if context is None:
                    result.notes.append(f"no consent for {SCOPE_PERSONALIZED_OFFERS}: no member offers")
                else:
                    taken = basket_skus + [offer.sku for offer in result.basket_completions]
                    result.member_offers = self._member_offers(
                        conn, member, store_id, "checkout", self._offer_limit(member, limit), now, taken
                    )
        return result

    # ------------------------------------------------------------------ visits and alerts

    def record_visit_event(self, event: VisitEvent, actor: str = "") -> VisitResult:
        if not event.event_id:
            raise InvalidArgumentError("event_id is required (it is the idempotency key)")
        if event.type not in VISIT_EVENT_TYPES:
            raise InvalidArgumentError(f"event type must be one of {', '.join(VISIT_EVENT_TYPES)}")
        result = VisitResult()
        with db.write(self.engine) as conn:
            if conn.execute(_VISIT_EVENT_EXISTS, {"event_id": event.event_id}).first() is not None:
                return VisitResult(duplicate=True)
            self._require_store(conn, event.store_id)
            member: Member | None = None
            watchlisted = False
            if event.member_id:
                watchlisted = conn.execute(_ON_WATCHLIST, {"subject_id": event.member_id}).first() is not None
                try:
                    member = self._load_member(conn, event.member_id)
                except NotFoundError:
                    if not watchlisted:
                        raise
                if member is not None and not member.consent.allows(SCOPE_FACE_IDENTIFICATION):
                    result.notes.append(
                        f"no consent for {SCOPE_FACE_IDENTIFICATION}: the event is recorded as anonymous"
                    )
                    member = None
            member_id = member.member_id if member is not None else None
            visit_id = self._visit_for(conn, event, member_id)
            conn.execute(
                _INSERT_VISIT_EVENT,
                {
                    "event_id": event.event_id,
                    "visit_id": visit_id,
                    "type": event.type,
                    "store_id": event.store_id,
                    "camera_id": event.camera_id,
                    "zone_id": event.zone_id,
                    "lane_id": event.lane_id,
                    "member_id": member_id,
                    "track_id": event.track_id,
                    "at": event.at,
                    "dwell_seconds": event.dwell_seconds,
                    "negative_fraction": event.negative_fraction,
                    "emotion_seconds": event.emotion_seconds,
                },
            )
            if member is not None:
                self._audit(
                    conn,
                    actor,
                    "identify",
                    member.member_id,
                    f"visit {event.type}",
                    event.at,
                    store_id=event.store_id,
                    camera_id=event.camera_id,
                    event_id=event.event_id,
                    match_score=round(event.match_score, 3),
                )
            if watchlisted and self.settings.watchlist_enabled:
                result.alerts_raised += self._watchlist_alert(conn, event)
            elif watchlisted:
                result.notes.append("watchlist alerts are off (RETAILFACE_PERSONALIZATION_WATCHLIST_ENABLED)")
            if event.type == "entered" and member is not None:
                result.alerts_raised += self._greeting(conn, event, member, result.notes)
                result.offers_pushed = self._push_offers(conn, event, member, result.notes)
            if event.lane_id and event.negative_fraction is not None:
                result.alerts_raised += self._dissatisfaction(conn, event, member)
        self.bus.publish(result.alerts_raised)
        if result.offers_pushed and self.worker is not None:
            self.worker.wake()
        return result

    def _visit_for(self, conn: Connection, event: VisitEvent, member_id: str | None) -> str | None:
        if event.type != "entered" and (member_id or event.track_id):
            open_visit = conn.execute(
                _OPEN_VISIT_OF_MEMBER if member_id else _OPEN_VISIT_OF_TRACK,
                {
                    "store_id": event.store_id,
                    "subject": member_id or event.track_id,
                    "since": event.at - self.settings.visit_timeout_hours * 3600,
                },
            ).scalar_one_or_none()
            if open_visit is not None:
                if event.type == "exited":
                    conn.execute(update(db.visits).where(db.visits.c.visit_id == open_visit).values(ended_at=event.at))
                return str(open_visit)
        if event.type == "exited":
            return None
        visit_id = uuid.uuid4().hex
        conn.execute(
            _INSERT_VISIT,
            {
                "visit_id": visit_id,
                "store_id": event.store_id,
                "member_id": member_id,
                "track_id": event.track_id,
                "started_at": event.at,
                "ended_at": None,
            },
        )
        return visit_id

    def _insert_alert(
        self, conn: Connection, alert: StaffAlert, subject_key: str, event_id: str, member_id: str | None = None
    ) -> StaffAlert:
        """Stores the alert; `member_id` is kept for erasure and consent withdrawal even when not shown."""
        conn.execute(
            _INSERT_ALERT,
            {
                "alert_id": alert.alert_id,
                "kind": alert.kind,
                "store_id": alert.store_id,
                "zone_id": alert.zone_id,
                "lane_id": alert.lane_id,
                "camera_id": alert.camera_id,
                "member_id": member_id or alert.member_id or None,
                "subject_key": subject_key,
                "display_name": alert.display_name,
                "message": alert.message,
                "priority": alert.priority,
                "requires_confirmation": alert.requires_confirmation,
                "raised_at": alert.raised_at,
                "track_id": alert.track_id,
                "event_id": event_id,
            },
        )
        return alert

    def _greeting(self, conn: Connection, event: VisitEvent, member: Member, notes: list[str]) -> list[StaffAlert]:
        assert member.preferences is not None
        if not member.consent.allows(SCOPE_STAFF_GREETING) or not member.preferences.allow_greeting:
            notes.append(f"no consent for {SCOPE_STAFF_GREETING}: no greeting")
            return []
        name = member.preferences.preferred_name or member.display_name.split(" ")[0]
        sensitive = self.sensitive_categories()
        favourite = next((c for c in member.preferences.favourite_categories if c not in sensitive), "")
        context = f"; enjoys {favourite.replace('_', ' ')}" if favourite else ""
        visits = conn.execute(
            _RECENT_VISITS, {"member_id": member.member_id, "since": event.at - 30 * DAY}
        ).scalar_one()
        regular = "a regular here" if visits >= 3 else "welcome them in"
        alert = StaffAlert(
            alert_id=uuid.uuid4().hex,
            kind="greeting",
            store_id=event.store_id,
            message=f"{name} just came in ({regular}{context}).",
            raised_at=event.at,
            zone_id=event.zone_id,
            camera_id=event.camera_id,
            member_id=member.member_id,
            display_name=name,
            priority=1.0,
            track_id=event.track_id,
        )
        return [self._insert_alert(conn, alert, f"member:{member.member_id}", event.event_id)]

    def trailing_spend(self, conn: Connection, member_id: str, now: float) -> float:
        since = now - self.settings.trailing_spend_days * DAY
        return float(conn.execute(_TRAILING_SPEND, {"member_id": member_id, "since": since}).scalar_one())

    def _dissatisfaction(self, conn: Connection, event: VisitEvent, member: Member | None) -> list[StaffAlert]:
        assert event.negative_fraction is not None
        if (
            event.negative_fraction < self.settings.dissatisfaction_negative_fraction
            or (event.emotion_seconds or 0.0) < self.settings.dissatisfaction_min_seconds
        ):
            return []
        subject_key = f"member:{member.member_id}" if member else f"track:{event.store_id}:{event.track_id}"
        if member is None and not event.track_id:
            subject_key = f"lane:{event.store_id}:{event.lane_id}"
        recent = conn.execute(
            _RECENT_ALERT,
            {
                "subject_key": subject_key,
                "kind": "dissatisfaction",
                "since": event.at - self.settings.alert_cooldown_seconds,
            },
        ).first()
        if recent is not None:
            return []
        priority = 0.0
        display_name = ""
        shown_member_id = ""
        if member is not None:
            priority = round(self.trailing_spend(conn, member.member_id, event.at), 2)
            assert member.preferences is not None
            if member.consent.allows(SCOPE_STAFF_GREETING) and member.preferences.allow_greeting:
                display_name = member.preferences.preferred_name or member.display_name.split(" ")[0]
                shown_member_id = member.member_id
        who = display_name or "A shopper"
        alert = StaffAlert(
            alert_id=uuid.uuid4().hex,
            kind="dissatisfaction",
            store_id=event.store_id,
            message=f"{who} at {_lane_label(event.lane_id)} may need help; please check in discreetly.",
            raised_at=event.at,
            zone_id=event.zone_id,
            lane_id=event.lane_id,
            camera_id=event.camera_id,
            member_id=shown_member_id,
            display_name=display_name,
            priority=priority,
            track_id=event.track_id,
        )
        return [
            self._insert_alert(
                conn, alert, subject_key, event.event_id, member.member_id if member is not None else None
            )
        ]

    def _watchlist_alert(self, conn: Connection, event: VisitEvent) -> list[StaffAlert]:
        alert = StaffAlert(
            alert_id=uuid.uuid4().hex,
            kind="watchlist",
            store_id=event.store_id,
            message="Possible watchlist match. A person must confirm it before anyone acts.",
            raised_at=event.at,
            zone_id=event.zone_id,
            lane_id=event.lane_id,
            camera_id=event.camera_id,
            priority=100.0,
            requires_confirmation=True,
            track_id=event.track_id,
        )
        self._audit(
            conn,
            "personalization",
            "identify",
            f"watchlist:{event.member_id}",
            "watchlist alert",
            event.at,
            store_id=event.store_id,
            event_id=event.event_id,
        )
        return [self._insert_alert(conn, alert, f"watchlist:{event.member_id}", event.event_id)]

    def _push_offers(self, conn: Connection, event: VisitEvent, member: Member, notes: list[str]) -> list[Offer]:
        assert member.preferences is not None
        if not member.consent.allows(SCOPE_PERSONALIZED_OFFERS):
            notes.append(f"no consent for {SCOPE_PERSONALIZED_OFFERS}: no offers pushed")
            return []
        if in_quiet_hours(member.preferences.quiet_hours, event.at):
            notes.append("quiet hours: no offers pushed")
            return []
        offers = self._member_offers(conn, member, event.store_id, "push", self._offer_limit(member, 0), event.at)
        if not offers:
            notes.append("no offer passes the member's preferences, stock and frequency caps right now")
            return []
        channels = member.preferences.channels or [Channel("log", member.member_id)]
        available = self.worker.channel_kinds if self.worker is not None else frozenset(CHANNEL_KINDS)
        payload = {
            "kind": "offers",
            "member_id": member.member_id,
            "store_id": event.store_id,
            "offers": [
                {
                    "offer_id": o.offer_id,
                    "sku": o.sku,
                    "product_name": o.product_name,
                    "discount_percent": o.discount_percent,
                    "reason": o.reason,
                    "aisle": o.location.aisle,
                    "valid_until": o.valid_until,
                }
                for o in offers
            ],
        }
        for channel in channels:
            if channel.kind not in available:
                notes.append(f"channel {channel.kind} is not configured: not notified there")
                continue
            outbox.enqueue(
                self.engine,
                conn,
                idempotency_key=f"visit:{event.event_id}:{channel.kind}:"
                f"{uuid.uuid5(uuid.NAMESPACE_URL, channel.address).hex[:12]}",
                member_id=member.member_id,
                channel=channel.kind,
                address=channel.address,
                payload=payload,
                now=event.at,
            )
        return offers

    def recent_alerts(self, store_id: str, kinds: Iterable[str] = (), now: float | None = None) -> list[StaffAlert]:
        """Unacknowledged alerts raised in the catch-up window, oldest first (a screen that just connected)."""
        now = time.time() if now is None else now
        alerts_table = db.staff_alerts
        query = (
            select(alerts_table)
            .where(
                alerts_table.c.store_id == store_id,
                alerts_table.c.acknowledged_at.is_(None),
                alerts_table.c.withdrawn.is_(False),
                alerts_table.c.raised_at >= now - self.settings.alert_catchup_seconds,
            )
            .order_by(alerts_table.c.raised_at)
        )
        kinds = list(kinds)
        if kinds:
            query = query.where(alerts_table.c.kind.in_(kinds))
        with db.read(self.engine) as conn:
            self._require_store(conn, store_id)
            rows = conn.execute(query).all()
        return [
            StaffAlert(
                alert_id=r.alert_id,
                kind=r.kind,
                store_id=r.store_id,
                message=r.message,
                raised_at=r.raised_at,
                zone_id=r.zone_id,
                lane_id=r.lane_id,
                camera_id=r.camera_id,
                member_id=(r.member_id or "") if r.display_name else "",
                display_name=r.display_name,
                priority=r.priority,
                requires_confirmation=r.requires_confirmation,
                track_id=r.track_id,
            )
            for r in rows
        ]

    def acknowledge_alert(self, alert_id: str, staff_id: str, confirmed: bool, actor: str = "") -> None:
        if not alert_id:
            raise InvalidArgumentError("alert_id is required")
        with db.write(self.engine) as conn:
            row = conn.execute(select(db.staff_alerts.c.kind).where(db.staff_alerts.c.alert_id == alert_id)).first()
            if row is None:
                raise NotFoundError(f"unknown alert {alert_id!r}")
            conn.execute(
                update(db.staff_alerts)
                .where(db.staff_alerts.c.alert_id == alert_id)
                .values(acknowledged_at=time.time(), acknowledged_by=staff_id, confirmed=bool(confirmed))
            )
            self._audit(
                conn,
                actor or staff_id,
                "acknowledge",
                f"alert:{alert_id}",
                row.kind,
                staff_id=staff_id,
                confirmed=bool(confirmed),
            )

    def add_to_watchlist(self, subject_id: str, reason: str, added_by: str) -> None:
        """Security watchlist entry (alerts only when the watchlist setting is on)."""
        if not subject_id or not reason:
            raise InvalidArgumentError("subject_id and reason are required")
        with db.write(self.engine) as conn:
            conn.execute(
                db.upsert(self.engine, db.watchlist, ["subject_id"], ["reason", "added_by", "added_at"]).values(
                    subject_id=subject_id, reason=reason, added_by=added_by, added_at=time.time()
                )
            )
            self._audit(conn, added_by, "update", f"watchlist:{subject_id}", reason)

    # ------------------------------------------------------------------ purchases and online behaviour

    def record_purchase(self, purchase: Purchase, actor: str = "") -> bool:
        """Stores a POS transaction; returns True when it was a duplicate (nothing changed)."""
        if not purchase.transaction_id:
            raise InvalidArgumentError("transaction_id is required (it is the idempotency key)")
        if not purchase.lines:
            raise InvalidArgumentError("a purchase needs at least one line")
        for line in purchase.lines:
            if line.quantity <= 0 or line.unit_price < 0:
                raise InvalidArgumentError(f"line {line.sku!r}: quantity must be > 0 and unit_price >= 0")
        with db.write(self.engine) as conn:
            if (
                conn.execute(
                    select(db.transactions.c.transaction_id).where(
                        db.transactions.c.transaction_id == purchase.transaction_id
                    )
                ).first()
                is not None
            ):
                return True
            self._require_store(conn, purchase.store_id)
            member_id = None
            if purchase.member_id or purchase.loyalty_number:
                member_id = self._load_member(conn, purchase.member_id, purchase.loyalty_number).member_id
            skus = [line.sku for line in purchase.lines]
            known = set(conn.execute(select(db.products.c.sku).where(db.products.c.sku.in_(skus))).scalars())
            missing = [sku for sku in skus if sku not in known]
            if missing:
                raise NotFoundError(f"unknown sku {missing[0]!r}")
            total = sum(line.quantity * line.unit_price for line in purchase.lines)
            conn.execute(
                db.transactions.insert().values(
                    transaction_id=purchase.transaction_id,
                    store_id=purchase.store_id,
                    lane_id=purchase.lane_id,
                    member_id=member_id,
                    at=purchase.at,
                    total=round(total, 2),
                )
            )
            conn.execute(
                db.transaction_lines.insert(),
                [
                    {
                        "transaction_id": purchase.transaction_id,
                        "sku": line.sku,
                        "quantity": line.quantity,
                        "unit_price": line.unit_price,
                    }
                    for line in purchase.lines
                ],
            )
            for line in purchase.lines:  # stock leaves the shelf
                conn.execute(
                    update(db.inventory)
                    .where(db.inventory.c.store_id == purchase.store_id, db.inventory.c.sku == line.sku)
                    .values(
                        on_hand=func.max(db.inventory.c.on_hand - line.quantity, 0)
                        if self.engine.dialect.name == "sqlite"
                        else func.greatest(db.inventory.c.on_hand - line.quantity, 0)
                    )
                )
            if member_id and purchase.redeemed_offer_ids:
                conn.execute(
                    update(db.offer_deliveries)
                    .where(
                        db.offer_deliveries.c.offer_id.in_(purchase.redeemed_offer_ids),
                        db.offer_deliveries.c.member_id == member_id,
                    )
                    .values(redeemed_at=purchase.at)
                )
            if member_id:
                self._audit(
                    conn,
                    actor,
                    "update",
                    member_id,
                    "purchase",
                    transaction_id=purchase.transaction_id,
                    store_id=purchase.store_id,
                    lines=len(purchase.lines),
                )
        self.catalog.refresh_stock(purchase.store_id, skus)
        return False

    def ingest_online_events(self, events: Sequence[OnlineEvent]) -> list[ItemOutcome]:
        """Stores web/app events; per event: OK, ALREADY_EXISTS (duplicate), NOT_FOUND or INVALID_ARGUMENT."""
        outcomes: list[ItemOutcome | None] = [None] * len(events)
        with db.write(self.engine) as conn:
            ids = [event.event_id for event in events if event.event_id]
            existing = (
                set(
                    conn.execute(
                        select(db.online_events.c.event_id).where(db.online_events.c.event_id.in_(ids))
                    ).scalars()
                )
                if ids
                else set()
            )
            members = set(
                conn.execute(
                    select(db.members.c.member_id).where(
                        db.members.c.member_id.in_({event.member_id for event in events})
                    )
                ).scalars()
            )
            skus = set(
                conn.execute(
                    select(db.products.c.sku).where(db.products.c.sku.in_({event.sku for event in events if event.sku}))
                ).scalars()
            )
            rows = []
            seen: set[str] = set()
            for index, event in enumerate(events):
                if not event.event_id:
                    outcomes[index] = ItemOutcome("INVALID_ARGUMENT", "event_id is required")
                elif event.event_id in existing or event.event_id in seen:
                    outcomes[index] = ItemOutcome("ALREADY_EXISTS", "duplicate event id; nothing changed")
                elif event.type not in ONLINE_EVENT_TYPES:
                    outcomes[index] = ItemOutcome(
                        "INVALID_ARGUMENT", f"type must be one of {', '.join(ONLINE_EVENT_TYPES)}"
                    )
                elif event.member_id not in members:
                    outcomes[index] = ItemOutcome("NOT_FOUND", f"unknown member {event.member_id!r}")
                elif event.type != "searched" and event.sku not in skus:
                    outcomes[index] = ItemOutcome("NOT_FOUND", f"unknown sku {event.sku!r}")
                else:
                    seen.add(event.event_id)
                    rows.append(
                        {
                            "event_id": event.event_id,
                            "member_id": event.member_id,
                            "type": event.type,
                            "sku": event.sku or None,
                            "query": event.query[:200],
                            "session_id": event.session_id,
                            "at": event.at,
                        }
                    )
                    outcomes[index] = ItemOutcome("OK")
            if rows:
                conn.execute(db.insert_ignoring_duplicates(self.engine, db.online_events), rows)
        return [outcome or ItemOutcome("INTERNAL") for outcome in outcomes]

    def feedback(
        self, feedback_id: str, member_id: str, offer_id: str, kind: str, at: float | None = None, actor: str = ""
    ) -> bool:
        """Records feedback on an offer; returns True for a duplicate feedback id."""
        at = time.time() if at is None else at
        if kind not in FEEDBACK_TYPES:
            raise InvalidArgumentError(f"feedback type must be one of {', '.join(FEEDBACK_TYPES)}")
        feedback_id = feedback_id or uuid.uuid5(uuid.NAMESPACE_OID, f"{member_id}:{offer_id}:{kind}").hex
        with db.write(self.engine) as conn:
            self._load_member(conn, member_id)
            delivery = conn.execute(
                select(db.offer_deliveries.c.sku, db.offer_deliveries.c.category).where(
                    db.offer_deliveries.c.offer_id == offer_id, db.offer_deliveries.c.member_id == member_id
                )
            ).first()
            if delivery is None:
                raise NotFoundError(f"unknown offer {offer_id!r} for member {member_id!r}")
            inserted = conn.execute(
                db.insert_ignoring_duplicates(self.engine, db.offer_feedback).values(
                    feedback_id=feedback_id, member_id=member_id, offer_id=offer_id, type=kind, at=at
                )
            ).rowcount
            if not inserted:
                return True
            dislike = {"unliked": ("sku", delivery.sku), "unliked_category": ("category", delivery.category)}.get(kind)
            if dislike is not None:
                conn.execute(
                    db.insert_ignoring_duplicates(self.engine, db.member_dislikes).values(
                        member_id=member_id, kind=dislike[0], value=dislike[1], at=at
                    )
                )
            if kind == "redeemed":
                conn.execute(
                    update(db.offer_deliveries).where(db.offer_deliveries.c.offer_id == offer_id).values(redeemed_at=at)
                )
            self._audit(conn, actor, "update", member_id, f"feedback {kind}", offer_id=offer_id)
        return False

    # ------------------------------------------------------------------ members, preferences, consent

    def get_member(self, member_id: str = "", loyalty_number: str = "", actor: str = "") -> Member:
        with db.write(self.engine) as conn:
            member = self._load_member(conn, member_id, loyalty_number)
            self._audit(conn, actor, "read", member.member_id, "member record")
        return member

    def upsert_member(self, member: Member, actor: str = "") -> Member:
        """Creates or updates a member (enrollment desk, admin tools).

        A consent record with scopes is recorded as a grant (history and audit) when it differs from
        the stored one; an empty one changes nothing: withdrawing consent is RevokeConsent's job.
        """
        if not member.member_id:
            raise InvalidArgumentError("member_id is required")
        now = time.time()
        with db.write(self.engine) as conn:
            if member.home_store_id:
                self._require_store(conn, member.home_store_id)
            if member.loyalty_number:
                owner = conn.execute(
                    select(db.members.c.member_id).where(db.members.c.loyalty_number == member.loyalty_number)
                ).scalar_one_or_none()
                if owner is not None and owner != member.member_id:
                    raise AlreadyExistsError(f"loyalty number {member.loyalty_number!r} belongs to another member")
            exists = (
                conn.execute(select(db.members.c.member_id).where(db.members.c.member_id == member.member_id)).first()
                is not None
            )
            values: dict[str, Any] = {
                "loyalty_number": member.loyalty_number or None,
                "display_name": member.display_name,
                "home_store_id": member.home_store_id or None,
                "updated_at": now,
            }
            if member.preferences is not None:
                values.update(self._preference_values(member.preferences))
            if exists:
                stored = self._load_member(conn, member.member_id).consent
                conn.execute(update(db.members).where(db.members.c.member_id == member.member_id).values(**values))
                self._audit(conn, actor, "update", member.member_id, "member record", fields=sorted(values))
                changed = (stored.scopes, stored.policy_version, stored.revoked_at is None) != (
                    member.consent.scopes,
                    member.consent.policy_version,
                    True,
                )
                if member.consent.scopes and changed:
                    self._grant(conn, member.member_id, member.consent, actor, now)
            else:
                values.update(member_id=member.member_id, created_at=member.created_at or now)
                conn.execute(db.members.insert().values(**values))
                self._audit(conn, actor, "create", member.member_id, "member record")
                if member.consent.scopes:
                    self._grant(conn, member.member_id, member.consent, actor, now)
            stored = self._load_member(conn, member.member_id)
        return stored

    def _preference_values(self, preferences: Preferences) -> dict[str, Any]:
        quiet = preferences.quiet_hours
        if quiet is not None:
            if not (0 <= quiet.start_minute < 1440 and 0 <= quiet.end_minute < 1440):
                raise InvalidArgumentError("quiet hours minutes must be within 0..1439")
            _check_timezone(quiet.timezone or "UTC")
        for channel in preferences.channels:
            if channel.kind not in CHANNEL_KINDS:
                raise InvalidArgumentError(f"channel kind {channel.kind!r} must be one of {', '.join(CHANNEL_KINDS)}")
        if preferences.max_offers_per_visit > 20:
            raise InvalidArgumentError("max_offers_per_visit must be at most 20")
        timezone = (quiet.timezone if quiet is not None and quiet.timezone else preferences.timezone) or "UTC"
        _check_timezone(timezone)
        return {
            "allow_greeting": preferences.allow_greeting,
            "preferred_name": preferences.preferred_name[:100],
            "excluded_categories": json.dumps(sorted(set(preferences.excluded_categories))),
            "favourite_categories": json.dumps(list(dict.fromkeys(preferences.favourite_categories))),
            "quiet_start_minute": quiet.start_minute if quiet else None,
            "quiet_end_minute": quiet.end_minute if quiet else None,
            "timezone": timezone,
            "channels": json.dumps([{"kind": c.kind, "address": c.address} for c in preferences.channels]),
            "max_offers_per_visit": preferences.max_offers_per_visit,
        }

    def get_preferences(self, member_id: str, actor: str = "") -> Preferences:
        member = self.get_member(member_id, actor=actor)
        assert member.preferences is not None
        return member.preferences

    def update_preferences(self, preferences: Preferences, actor: str = "") -> Preferences:
        values = self._preference_values(preferences)
        with db.write(self.engine) as conn:
            self._load_member(conn, preferences.member_id)
            conn.execute(
                update(db.members)
                .where(db.members.c.member_id == preferences.member_id)
                .values(**values, updated_at=time.time())
            )
            self._audit(conn, actor, "update", preferences.member_id, "preferences")
            member = self._load_member(conn, preferences.member_id)
        assert member.preferences is not None
        return member.preferences

    def _grant(self, conn: Connection, member_id: str, consent: Consent, actor: str, now: float) -> None:
        unknown = set(consent.scopes) - set(SCOPES)
        if unknown:
            raise InvalidArgumentError(f"unknown consent scopes {sorted(unknown)}; scopes are {', '.join(SCOPES)}")
        if not consent.policy_version:
            raise InvalidArgumentError("consent.policy_version is required (the policy the member agreed to)")
        if not consent.scopes:
            raise InvalidArgumentError("consent.scopes is empty; use RevokeConsent to withdraw consent")
        scopes = ",".join(s for s in SCOPES if s in consent.scopes)
        conn.execute(
            update(db.members)
            .where(db.members.c.member_id == member_id)
            .values(
                consent_policy_version=consent.policy_version,
                consent_scopes=scopes,
                consent_granted_at=consent.granted_at or now,
                consent_revoked_at=None,
                consent_source=consent.source,
                updated_at=now,
            )
        )
        conn.execute(
            db.consent_history.insert().values(
                member_id=member_id,
                action="grant",
                scopes=scopes,
                policy_version=consent.policy_version,
                source=consent.source,
                actor=actor,
                at=now,
            )
        )
        self._audit(
            conn,
            actor,
            "consent",
            member_id,
            "grant",
            now,
            scopes=scopes,
            policy_version=consent.policy_version,
            source=consent.source,
        )

    def grant_consent(self, member_id: str, consent: Consent, actor: str = "") -> Member:
        with db.write(self.engine) as conn:
            self._load_member(conn, member_id)
            self._grant(conn, member_id, consent, actor, time.time())
            return self._load_member(conn, member_id)

    def revoke_consent(self, member_id: str, scopes: Sequence[str] = (), actor: str = "", reason: str = "") -> Member:
        """Withdraws scopes (all when empty), effective at once: queued pushes and unseen greetings go too."""
        unknown = set(scopes) - set(SCOPES)
        if unknown:
            raise InvalidArgumentError(f"unknown consent scopes {sorted(unknown)}; scopes are {', '.join(SCOPES)}")
        now = time.time()
        with db.write(self.engine) as conn:
            member = self._load_member(conn, member_id)
            revoked = set(scopes or SCOPES)
            remaining = [s for s in SCOPES if s in member.consent.scopes and s not in revoked]
            conn.execute(
                update(db.members)
                .where(db.members.c.member_id == member_id)
                .values(
                    consent_scopes=",".join(remaining), consent_revoked_at=None if remaining else now, updated_at=now
                )
            )
            conn.execute(
                db.consent_history.insert().values(
                    member_id=member_id,
                    action="revoke",
                    scopes=",".join(sorted(revoked)),
                    policy_version=member.consent.policy_version,
                    actor=actor,
                    reason=reason,
                    at=now,
                )
            )
            cancelled = outbox.cancel_pending(conn, member_id) if SCOPE_PERSONALIZED_OFFERS in revoked else 0
            withdrawn = 0
            if SCOPE_STAFF_GREETING in revoked:
                withdrawn = conn.execute(
                    update(db.staff_alerts)
                    .where(db.staff_alerts.c.member_id == member_id, db.staff_alerts.c.acknowledged_at.is_(None))
                    .values(withdrawn=True)
                ).rowcount
            self._audit(
                conn,
                actor,
                "consent",
                member_id,
                reason or "revoke",
                now,
                scopes=sorted(revoked),
                notifications_cancelled=cancelled,
                alerts_withdrawn=withdrawn,
            )
            return self._load_member(conn, member_id)

    def erase_member(self, member_id: str, actor: str = "", reason: str = "") -> dict[str, int]:
        """Deletes the member's personal data; purchases stay for accounting, anonymised. Returns counts."""
        counts: dict[str, int] = {}
        with db.write(self.engine) as conn:
            self._load_member(conn, member_id)
            for table in (
                db.online_events,
                db.offer_feedback,
                db.member_dislikes,
                db.offer_deliveries,
                db.visit_events,
                db.visits,
                db.staff_alerts,
                db.notification_outbox,
                db.consent_history,
            ):
                counts[table.name] = int(conn.execute(delete(table).where(table.c.member_id == member_id)).rowcount)
            counts["transactions_anonymised"] = int(
                conn.execute(
                    update(db.transactions).where(db.transactions.c.member_id == member_id).values(member_id=None)
                ).rowcount
            )
            counts["members"] = int(
                conn.execute(delete(db.members).where(db.members.c.member_id == member_id)).rowcount
            )
            self._audit(conn, actor, "erase", member_id, reason, **counts)
        log.info("member_erased", rows=sum(counts.values()))
        return counts

    # ------------------------------------------------------------------ catalog, campaigns, audit

    def upsert_products(self, products: Sequence[Product], actor: str = "") -> int:
        for product in products:
            if not product.sku or not product.name or not product.category:
                raise InvalidArgumentError(f"product {product.sku!r}: sku, name and category are required")
            if product.price < 0 or not math.isfinite(product.price):
                raise InvalidArgumentError(f"product {product.sku!r}: price must be a finite number >= 0")
        if not products:
            return 0
        now = time.time()
        with db.write(self.engine) as conn:
            conn.execute(
                db.upsert(self.engine, db.products, ["sku"], ["name", "category", "sensitive", "price", "updated_at"]),
                [
                    {
                        "sku": p.sku,
                        "name": p.name,
                        "category": p.category,
                        "sensitive": p.sensitive,
                        "price": p.price,
                        "updated_at": now,
                    }
                    for p in products
                ],
            )
            self._audit(conn, actor, "update", "catalog", "products", count=len(products))
        self.catalog.reload()
        return len(products)

    def upsert_store(self, store_id: str, name: str, timezone: str = "UTC") -> None:
        if not store_id:
            raise InvalidArgumentError("store_id is required")
        _check_timezone(timezone)
        with db.write(self.engine) as conn:
            conn.execute(
                db.upsert(self.engine, db.stores, ["store_id"], ["name", "timezone"]).values(
                    store_id=store_id, name=name or store_id, timezone=timezone
                )
            )

    def set_inventory(self, items: Sequence[InventoryItem], actor: str = "") -> int:
        if not items:
            return 0
        now = time.time()
        with db.write(self.engine) as conn:
            stores = set(
                conn.execute(
                    select(db.stores.c.store_id).where(db.stores.c.store_id.in_({i.store_id for i in items}))
                ).scalars()
            )
            skus = set(
                conn.execute(select(db.products.c.sku).where(db.products.c.sku.in_({i.sku for i in items}))).scalars()
            )
            for item in items:
                if item.store_id not in stores:
                    raise NotFoundError(f"unknown store {item.store_id!r}")
                if item.sku not in skus:
                    raise NotFoundError(f"unknown sku {item.sku!r}")
                if item.on_hand < 0:
                    raise InvalidArgumentError(f"sku {item.sku!r}: on_hand must be >= 0")
            conn.execute(
                db.upsert(self.engine, db.inventory, ["store_id", "sku"], ["on_hand", "aisle", "shelf", "updated_at"]),
                [
                    {
                        "store_id": i.store_id,
                        "sku": i.sku,
                        "on_hand": i.on_hand,
                        "aisle": i.aisle,
                        "shelf": i.shelf,
                        "updated_at": now,
                    }
                    for i in items
                ],
            )
            self._audit(conn, actor, "update", "inventory", "set", count=len(items))
        self.catalog.reload()
        return len(items)

    def upsert_campaign(self, campaign: Campaign, actor: str = "") -> Campaign:
        if not campaign.name:
            raise InvalidArgumentError("campaign name is required")
        if not 0 < campaign.discount_percent <= 90:
            raise InvalidArgumentError("discount_percent must be in (0, 90]")
        if not campaign.skus and not campaign.categories:
            raise InvalidArgumentError("a campaign needs skus or categories")
        if campaign.valid_from and campaign.valid_until and campaign.valid_until <= campaign.valid_from:
            raise InvalidArgumentError("valid_until must be after valid_from")
        campaign = replace(campaign, campaign_id=campaign.campaign_id or f"cmp-{uuid.uuid4().hex[:12]}")
        with db.write(self.engine) as conn:
            if campaign.skus:
                known = set(
                    conn.execute(select(db.products.c.sku).where(db.products.c.sku.in_(campaign.skus))).scalars()
                )
                missing = [sku for sku in campaign.skus if sku not in known]
                if missing:
                    raise NotFoundError(f"unknown sku {missing[0]!r}")
            for store_id in campaign.store_ids:
                self._require_store(conn, store_id)
            columns = [
                "name",
                "skus",
                "categories",
                "discount_percent",
                "valid_from",
                "valid_until",
                "priority",
                "frequency_cap_per_day",
                "store_ids",
                "updated_at",
            ]
            conn.execute(
                db.upsert(self.engine, db.campaigns, ["campaign_id"], columns).values(
                    campaign_id=campaign.campaign_id,
                    name=campaign.name,
                    skus=json.dumps(campaign.skus),
                    categories=json.dumps(campaign.categories),
                    discount_percent=campaign.discount_percent,
                    valid_from=campaign.valid_from,
                    valid_until=campaign.valid_until,
                    priority=campaign.priority,
                    frequency_cap_per_day=campaign.frequency_cap_per_day,
                    store_ids=json.dumps(campaign.store_ids),
                    updated_at=time.time(),
                )
            )
            self._audit(conn, actor, "update", f"campaign:{campaign.campaign_id}", campaign.name)
        self.catalog.reload()
        return campaign

    def query_audit(
        self, member_id: str = "", since: float | None = None, limit: int = 100, actor: str = ""
    ) -> list[AuditEntry]:
        limit = max(1, min(limit or 100, 1000))
        query = select(db.audit_log).order_by(db.audit_log.c.at.desc(), db.audit_log.c.id.desc()).limit(limit)
        if member_id:
            query = query.where(db.audit_log.c.subject == member_id)
        if since is not None:
            query = query.where(db.audit_log.c.at >= since)
        with db.write(self.engine) as conn:
            rows = conn.execute(query).all()
            self._audit(conn, actor, "read", member_id or "audit", "audit query", count=len(rows))
        return [AuditEntry(r.at, r.actor, r.action, r.subject, r.reason, r.detail) for r in rows]

    def close(self) -> None:
        self.bus.close()


def _normalised_candidates(candidates: list[Candidate], ceiling: float = 1.0) -> list[Candidate]:
    """Scales a source's scores into (0, ceiling] so sources compare by band, not by raw score."""
    if not candidates:
        return []
    top = max(c.score for c in candidates) or 1.0
    return [Candidate(c.sku, ceiling * max(c.score, 0.0) / top, c.because_sku) for c in candidates]


def _normalised(candidates: list[Candidate], source: str, detail: str, ceiling: float = 1.0) -> list[_Row]:
    return [_Row(c, source, detail) for c in _normalised_candidates(candidates, ceiling)]


def _lane_label(lane_id: str | None) -> str:
    """'3' -> 'lane 3'; ids that already say so ('lane-3', 'Lane 3') stay as they are."""
    lane = (lane_id or "").strip()
    return lane if lane.lower().startswith("lane") or not lane else f"lane {lane}"
