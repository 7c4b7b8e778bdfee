"""The recommender: trained from the database with implicit, refreshed off the request path."""

from __future__ import annotations

import time

from personalization_helpers import STORE
from sqlalchemy import Engine

from retailface.services.personalization.domain import Member, Purchase, PurchaseLine
from retailface.services.personalization.recommender import ModelHolder, train
from retailface.services.personalization.service import Personalization


def test_bought_together_is_learned_from_the_synthetic_baskets(seeded) -> None:
    model = seeded.model
    assert model.item_model is not None and model.als is not None and model.interactions > 1000
    # Items recommended for a basket explain themselves by a basket item they were bought with.
    basket = model.popular_overall[:2]
    completions = model.basket_completions(basket, 5)
    assert completions and all(c.sku not in basket for c in completions)
    assert all(model.explain_for_items(c.sku, basket) in basket for c in completions)


def test_refresh_learns_new_purchases_and_runs_in_the_background(
    personalization: Personalization, engine: Engine
) -> None:
    personalization.members.upsert(Member("m-fresh", display_name="Fresh Member", home_store_id=STORE))
    assert personalization.model is not None and personalization.model.distinct_items("m-fresh") == 0
    skus = personalization.model.popular_overall[:3]
    personalization.purchases.record(
        Purchase("pos-fresh", STORE, time.time(), [PurchaseLine(sku, 1, 1.0) for sku in skus], member_id="m-fresh")
    )

    holder = ModelHolder(lambda: train(engine), refresh_seconds=0.05, initial=personalization.model)
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
