"""The recommender: trained from the database with implicit, refreshed off the request path."""

from __future__ import annotations

import time

from personalization_helpers import STORE
from sqlalchemy import Engine

from retailface.services.personalization.domain import Member, Purchase, PurchaseLine
from retailface.services.personalization.recommender import ModelHolder, train
from retailface.services.personalization.service import PersonalizationService


def test_bought_together_is_learned_from_the_synthetic_baskets(seeded) -> None:
    model = seeded.model
    assert model.item_model is not None and model.als is not None and model.interactions > 1000
    # Items recommended for a basket explain themselves by a basket item they were bought with.
    basket = model.popular_overall[:2]
    completions = model.basket_completions(basket, 5)
    assert completions and all(c.sku not in basket for c in completions)
    assert all(model.explain_for_items(c.sku, basket) in basket for c in completions)


def test_refresh_learns_new_purchases_and_runs_in_the_background(
    service: PersonalizationService, engine: Engine
) -> None:
    service.upsert_member(Member("m-fresh", display_name="Fresh Member", home_store_id=STORE))
    assert service.model is not None and service.model.distinct_items("m-fresh") == 0
    skus = service.model.popular_overall[:3]
    service.record_purchase(
        Purchase("pos-fresh", STORE, time.time(), [PurchaseLine(sku, 1, 1.0) for sku in skus], member_id="m-fresh")
    )

    holder = ModelHolder(lambda: train(engine), refresh_seconds=0.05, initial=service.model)
    before = holder.model
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while holder.model is before:  # requests keep reading the old model meanwhile
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        holder.stop()
    assert holder.model is not None and holder.model.distinct_items("m-fresh") == 3
