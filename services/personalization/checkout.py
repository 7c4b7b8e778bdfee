"""Checkout: items that complete the basket, and the member's offers once the shopper is identified.

The till screen is seen by staff: nothing sensitive appears there and basket items are not offered
again. A face match is used only with the face_identification scope, and (like an unstated method)
must be confirmed by the shopper before member pricing applies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from retailface.services.personalization import db
from retailface.services.personalization.base import Component, Resources, find_member, require_store, write_audit
from retailface.services.personalization.domain import (
    IDENTIFIED_BY,
    SCOPE_FACE_IDENTIFICATION,
    SCOPE_PERSONALIZED_OFFERS,
    SOURCE_BASKET_COMPLETION,
    CheckoutResult,
    Member,
)
from retailface.services.personalization.offers import MAX_OFFERS, OfferCandidate, Offers, normalised
from retailface.services.personalization.recommender import TrainedModel
from retailface.services.shared.errors import InvalidArgument, NotFound

CHANNEL = "checkout"
CONFIRMED_METHODS = ("loyalty_card", "app", "phone_number")  # the shopper showed who they are


class Checkout(Component):
    def __init__(self, resources: Resources, offers: Offers) -> None:
        super().__init__(resources)
        self._offers = offers

    def offers(
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
        basket_skus = [sku for sku, _ in basket]
        if not all(basket_skus):
            raise InvalidArgument("every basket line needs a sku")
        if identified_by not in IDENTIFIED_BY:
            raise InvalidArgument(f"identified_by must be one of {', '.join(IDENTIFIED_BY)}")
        limit = max(1, min(limit or self.settings.offers_per_visit, MAX_OFFERS))
        result = CheckoutResult()
        with db.write(self.engine) as conn:
            require_store(conn, store_id)
            missing = [sku for sku in basket_skus if sku not in self.catalog_cache.snapshot.products]
            if missing:
                raise NotFound(f"unknown sku {missing[0]!r} in the basket")
            member: Member | None = None
            if member_id or loyalty_number:
                member = find_member(conn, member_id, loyalty_number, lock=True)  # frequency caps
                method = "loyalty_card" if loyalty_number and identified_by == "unspecified" else identified_by
                if method == "face" and not member.consent.allows(SCOPE_FACE_IDENTIFICATION):
                    result.notes.append(f"no consent for {SCOPE_FACE_IDENTIFICATION}: the face match is not used")
                    member = None
                else:
                    result.member_id, result.identified_by = member.member_id, method
                    result.confirmation_required = method not in CONFIRMED_METHODS
            offers_allowed = member is not None and member.consent.allows(SCOPE_PERSONALIZED_OFFERS)
            filters = self._offers.member_filters(conn, member, now) if member is not None and offers_allowed else None
            rows = self._basket_candidates(basket_skus)
            products = self._offers.join_catalog(rows, store_id)
            chosen = self._offers.choose(conn, rows, filters, store_id, CHANNEL, limit, now, exclude_skus=basket_skus)
            shown_to = filters.member.member_id if filters is not None else None
            result.basket_completions = self._offers.record(conn, chosen, products, shown_to, store_id, CHANNEL, now)
            if member is not None:
                if not offers_allowed:
                    result.notes.append(f"no consent for {SCOPE_PERSONALIZED_OFFERS}: no member offers")
                else:
                    taken = basket_skus + [offer.sku for offer in result.basket_completions]
                    member_limit = self._offers.limit_for(member, limit)
                    result.member_offers = self._offers.for_member(
                        conn, member, store_id, CHANNEL, member_limit, now, taken
                    )
                # Last: the audit chain's head row stays locked from here to the commit only.
                write_audit(
                    conn,
                    actor,
                    "identify",
                    member.member_id,
                    "checkout",
                    now,
                    store_id=store_id,
                    lane_id=lane_id,
                    method=result.identified_by,
                )
        return result

    def _basket_candidates(self, basket_skus: list[str]) -> list[OfferCandidate]:
        """Items bought together with the basket, each explained by the basket item it goes with."""
        model = self.model
        if model is None:
            return []

        def explain(sku: str, _model: TrainedModel = model) -> str:
            return _model.explain_for_items(sku, basket_skus)

        return [
            OfferCandidate(c, SOURCE_BASKET_COMPLETION, "basket", explain=explain)
            for c in normalised(model.basket_completions(basket_skus, 30))
        ]
