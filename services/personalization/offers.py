"""Offer ranking: candidates from online intent, purchase history, similar shoppers and campaigns,
filtered by the member's wishes, stock and frequency caps, ranked, explained and recorded.

Rules kept here:
- sensitive products only ever appear in the member's own app (context "app"), never on a
  screen others may see, and a reason never names one;
- unliked items and categories, and the member's excluded categories, never come back;
- an item is offered at most `frequency_cap_per_day` times a day to one member; a campaign at most
  its own cap (or that one);
- at most MAX_PER_CATEGORY offers per category in one answer;
- every offer to a member is recorded (offer_deliveries) for caps, feedback and redemption.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection, Double, bindparam, cast, literal, null, select, union_all

from retailface.services.personalization import db
from retailface.services.personalization.base import DAY, Component, load_member, require_store, write_audit
from retailface.services.personalization.domain import (
    SCOPE_PERSONALIZED_OFFERS,
    SOURCE_BASKET_COMPLETION,
    SOURCE_CAMPAIGN,
    SOURCE_ONLINE_INTENT,
    SOURCE_PURCHASE_HISTORY,
    SOURCE_SIMILAR_SHOPPERS,
    Campaign,
    Location,
    Member,
    Offer,
    OffersResult,
    Product,
)
from retailface.services.personalization.recommender import Candidate

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
MAX_OFFERS = 20  # per request, whatever the caller or the member asks for
NOTHING_PASSES = "no offer passes the member's preferences, stock and frequency caps right now"

# Statements of the offer path, built once (SQLAlchemy then reuses their compiled form).
_INTENT_EVENTS = (
    select(db.online_events.c.type, db.online_events.c.sku, db.online_events.c.at)
    .where(
        db.online_events.c.member_id == bindparam("member_id"),
        db.online_events.c.at >= bindparam("intent_since"),
        db.online_events.c.sku.is_not(None),
    )
    .order_by(db.online_events.c.at.desc())
    .limit(200)
    .subquery()
)
# What the offer path reads about one member, in one statement (one round trip to PostgreSQL): their dislikes,
# what they were offered in the last day (frequency caps) and their recent online intent, as tagged rows.
_MEMBER_SIGNALS = union_all(
    select(
        literal("dislike").label("signal"),
        db.member_dislikes.c.kind.label("a"),
        db.member_dislikes.c.value.label("b"),
        cast(null(), Double).label("at"),
    ).where(db.member_dislikes.c.member_id == bindparam("member_id")),
    select(
        literal("sent"),
        db.offer_deliveries.c.sku,
        db.offer_deliveries.c.campaign_id,
        cast(null(), Double),
    ).where(
        db.offer_deliveries.c.member_id == bindparam("member_id"),
        db.offer_deliveries.c.delivered_at > bindparam("sent_since"),
    ),
    select(literal("intent"), _INTENT_EVENTS.c.type, _INTENT_EVENTS.c.sku, _INTENT_EVENTS.c.at),
)
_BOUGHT_IN_STORE_SINCE = (
    select(db.transaction_lines.c.sku)
    .join(db.transactions, db.transactions.c.transaction_id == db.transaction_lines.c.transaction_id)
    .where(db.transactions.c.member_id == bindparam("member_id"), db.transactions.c.at >= bindparam("since"))
)
_INSERT_DELIVERIES = db.offer_deliveries.insert()


@dataclass
class OfferCandidate:
    """A recommender candidate on its way to an offer: joined with its product, stock and campaign."""

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
class MemberFilters:
    """What a member must not be offered again, what they were offered in the last 24 hours, and their recent
    online intent (newest first), read together (`Offers.member_filters`)."""

    member: Member
    dislike_skus: set[str] = field(default_factory=set)
    dislike_categories: set[str] = field(default_factory=set)
    sent_skus: Counter[str] = field(default_factory=Counter)
    sent_campaigns: Counter[str] = field(default_factory=Counter)
    intent: list[tuple[str, str, float]] = field(default_factory=list)  # (event type, sku, at)


def normalised(candidates: list[Candidate], ceiling: float = 1.0) -> list[Candidate]:
    """Scales a source's scores into (0, ceiling] so sources compare by band, not by raw score."""
    if not candidates:
        return []
    top = max(c.score for c in candidates) or 1.0
    return [Candidate(c.sku, ceiling * max(c.score, 0.0) / top, c.because_sku) for c in candidates]


def _from_source(candidates: list[Candidate], source: str, detail: str, ceiling: float = 1.0) -> list[OfferCandidate]:
    return [OfferCandidate(c, source, detail) for c in normalised(candidates, ceiling)]


def offer_reason(row: OfferCandidate, discount: float, products: dict[str, Product]) -> str:
    """The sentence the member reads: why this item, where it is, what it costs."""
    assert row.location is not None
    where = f"aisle {row.location.aisle}" if row.location.aisle else "in this store"
    off = f"{discount:g}% off today" if discount > 0 else "in stock today"
    because = products.get(row.candidate.because_sku)
    # Never name a sensitive item in a reason (it may be read over a shoulder).
    because_name = because.name if because is not None and not because.sensitive else ""
    if row.source == SOURCE_ONLINE_INTENT:
        what = "left in your online cart" if row.detail in ("abandoned_cart", "added_to_cart") else "looked at online"
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


class Offers(Component):
    def get(
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
            require_store(conn, store_id)
            member = load_member(conn, member_id, lock=True)  # frequency caps: see base.find_member
            allowed = member.consent.allows(SCOPE_PERSONALIZED_OFFERS)
            offers = []
            if allowed:
                offers = self.for_member(conn, member, store_id, channel, self.limit_for(member, limit), now)
            # Last: the audit chain's head row stays locked from here to the commit only, not while ranking.
            write_audit(conn, actor, "read", member_id, "offers", now, store_id=store_id, context=channel)
        if not allowed:
            return OffersResult(notes=[f"no consent for {SCOPE_PERSONALIZED_OFFERS}: no personalized offers"])
        return OffersResult(offers, [] if offers else [NOTHING_PASSES])

    def limit_for(self, member: Member, requested: int) -> int:
        """How many offers: the request's number, else the member's, else the service's (1..MAX_OFFERS)."""
        assert member.preferences is not None
        limit = requested or member.preferences.max_offers_per_visit or self.settings.offers_per_visit
        return max(1, min(limit, MAX_OFFERS))

    def for_member(
        self,
        conn: Connection,
        member: Member,
        store_id: str,
        channel: str,
        limit: int,
        now: float,
        exclude_skus: Iterable[str] = (),
    ) -> list[Offer]:
        """The member's offers at the store (the caller checked consent), recorded as delivered."""
        filters = self.member_filters(conn, member, now)
        rows = self._intent_candidates(conn, member.member_id, filters.intent, now)
        rows += self._history_candidates(member.member_id)
        model = self.model
        if model is not None and len(rows) < limit * 3:
            rows += [
                OfferCandidate(c, SOURCE_SIMILAR_SHOPPERS, "popular") for c in model.popular_in_store(store_id, 20)
            ]
        for campaign in self.catalog_cache.snapshot.active_campaigns(store_id, now):
            rows += [OfferCandidate(Candidate(sku, 0.5), SOURCE_CAMPAIGN, "campaign") for sku in campaign.skus]
        products = self.join_catalog(rows, store_id)
        chosen = self.choose(conn, rows, filters, store_id, channel, limit, now, exclude_skus)
        return self.record(conn, chosen, products, member.member_id, store_id, channel, now)

    def member_filters(self, conn: Connection, member: Member, now: float) -> MemberFilters:
        filters = MemberFilters(member)
        params = {
            "member_id": member.member_id,
            "sent_since": now - DAY,
            "intent_since": now - self.settings.intent_window_days * DAY,
        }
        for signal, a, b, at in conn.execute(_MEMBER_SIGNALS, params):
            if signal == "dislike":
                (filters.dislike_skus if a == "sku" else filters.dislike_categories).add(b)
            elif signal == "sent":
                filters.sent_skus[a] += 1
                if b:
                    filters.sent_campaigns[b] += 1
            else:
                filters.intent.append((a, b, at))
        filters.intent.sort(key=lambda event: -event[2])
        return filters

    def _intent_candidates(
        self, conn: Connection, member_id: str, events: list[tuple[str, str, float]], now: float
    ) -> list[OfferCandidate]:
        """Items the member viewed or carted online (`events`, newest first) and has not bought since, strongest
        signal per item."""
        # Bought since (online or here): no longer an intent to act on.
        bought = {sku for kind, sku, _ in events if kind == "purchased_online"}
        if events:
            bought.update(
                conn.execute(_BOUGHT_IN_STORE_SINCE, {"member_id": member_id, "since": events[-1][2]}).scalars()
            )
        strongest: dict[str, tuple[float, str]] = {}
        for kind, sku, at in events:
            if kind not in INTENT_WEIGHT or sku in bought:
                continue
            recency = math.exp(-(now - at) / (7 * DAY))
            score = INTENT_WEIGHT[kind] * (0.5 + 0.5 * recency)
            if score > strongest.get(sku, (0.0, ""))[0]:
                strongest[sku] = (score, kind)
        return [
            OfferCandidate(Candidate(sku, score), SOURCE_ONLINE_INTENT, kind)
            for sku, (score, kind) in strongest.items()
        ]

    def _history_candidates(self, member_id: str) -> list[OfferCandidate]:
        """Bought together with the member's items, their regulars and, with little history, similar shoppers'."""
        model = self.model
        if model is None:
            return []
        together = _from_source(model.bought_together_candidates(member_id, 20), SOURCE_PURCHASE_HISTORY, "together")
        for row in together:
            row.explain = lambda sku, _model=model: _model.explain_for_member(sku, member_id)
        rows = together + _from_source(
            model.regular_purchases(member_id, 5), SOURCE_PURCHASE_HISTORY, "regular", ceiling=0.8
        )
        if model.distinct_items(member_id) < self.settings.little_history_items:
            # Little history: what similar shoppers buy says more than the few items bought so far.
            similar = normalised(model.similar_shopper_candidates(member_id, 15))
            rows += [
                OfferCandidate(Candidate(c.sku, 1.0 + c.score), SOURCE_SIMILAR_SHOPPERS, "similar") for c in similar
            ]
        return rows

    def join_catalog(self, rows: list[OfferCandidate], store_id: str) -> dict[str, Product]:
        """Fills product and stock details from the catalog snapshot; returns the products by sku."""
        snapshot = self.catalog_cache.snapshot
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

    def choose(
        self,
        conn: Connection,
        rows: list[OfferCandidate],
        filters: MemberFilters | None,
        store_id: str,
        channel: str,
        limit: int,
        now: float,
        exclude_skus: Iterable[str] = (),
    ) -> list[OfferCandidate]:
        """Applies every filter and rule, then ranks; returns at most `limit` candidates."""
        excluded = set(exclude_skus)
        campaigns = self.catalog_cache.snapshot.active_campaigns(store_id, now)
        sent_skus: Counter[str] = Counter()
        sent_campaigns: Counter[str] = Counter()
        excluded_categories: set[str] = set()
        if filters is not None:
            assert filters.member.preferences is not None
            excluded_categories = set(filters.member.preferences.excluded_categories) | filters.dislike_categories
            excluded |= filters.dislike_skus
            sent_skus, sent_campaigns = filters.sent_skus, filters.sent_campaigns
        private = channel in PRIVATE_CONTEXTS
        best: dict[str, OfferCandidate] = {}
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
            if row.campaign is not None and sent_campaigns[row.campaign.campaign_id] >= self._cap(row.campaign):
                row.campaign = None  # the campaign is capped; the item may still come as a plain offer
            if sent_skus[sku] >= self.settings.frequency_cap_per_day:
                continue
            row.score = SOURCE_BAND[row.source] + row.candidate.score
            if row.campaign is not None:
                row.score += 0.5 + row.campaign.priority / 100.0
            if sku not in best or row.score > best[sku].score:
                best[sku] = row
        chosen: list[OfferCandidate] = []
        per_category: Counter[str] = Counter()
        campaigns_used: Counter[str] = Counter()
        for row in sorted(best.values(), key=lambda r: (-r.score, r.candidate.sku)):
            if len(chosen) >= limit:
                break
            if per_category[row.category] >= MAX_PER_CATEGORY:
                continue
            if row.campaign is not None:
                campaign_id = row.campaign.campaign_id
                if sent_campaigns[campaign_id] + campaigns_used[campaign_id] >= self._cap(row.campaign):
                    row.campaign = None
                else:
                    campaigns_used[campaign_id] += 1
            per_category[row.category] += 1
            chosen.append(row)
        return chosen

    def _cap(self, campaign: Campaign) -> int:
        return campaign.frequency_cap_per_day or self.settings.frequency_cap_per_day

    def _discount(self, row: OfferCandidate) -> float:
        campaign_discount = row.campaign.discount_percent if row.campaign is not None else 0.0
        by_source = {
            SOURCE_ONLINE_INTENT: self.settings.intent_discount_percent,
            SOURCE_PURCHASE_HISTORY: self.settings.history_discount_percent,
            SOURCE_SIMILAR_SHOPPERS: self.settings.similar_discount_percent,
            SOURCE_BASKET_COMPLETION: self.settings.basket_discount_percent,
        }
        return max(campaign_discount, by_source.get(row.source, 0.0))

    def record(
        self,
        conn: Connection,
        chosen: list[OfferCandidate],
        products: dict[str, Product],
        member_id: str | None,
        store_id: str,
        channel: str,
        now: float,
    ) -> list[Offer]:
        """The chosen candidates as offers; those to a member are recorded as delivered."""
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
                reason=offer_reason(row, discount, products),
                source=row.source,
                location=row.location,
                valid_until=valid_until,
                score=round(row.score, 4),
                campaign_id=row.campaign.campaign_id if row.campaign else "",
            )
            offers.append(offer)
            if member_id:
                deliveries.append(_delivery(offer, member_id, store_id, channel, now))
        if deliveries:
            conn.execute(_INSERT_DELIVERIES, deliveries)
        return offers


def _delivery(offer: Offer, member_id: str, store_id: str, channel: str, now: float) -> dict[str, object]:
    return {
        "offer_id": offer.offer_id,
        "member_id": member_id,
        "store_id": store_id,
        "sku": offer.sku,
        "category": offer.category,
        "campaign_id": offer.campaign_id,
        "source": offer.source,
        "channel": channel,
        "discount_percent": offer.discount_percent,
        "reason": offer.reason,
        "delivered_at": now,
        "valid_until": offer.valid_until,
        "redeemed_at": None,
    }
