"""Offers: online intent in stock here, stock, unlikes, sensitive items, frequency caps, checkout."""

from __future__ import annotations

import time

from personalization_helpers import (
    STORE,
    abandon_cart,
    members_without_online_events,
    on_hand,
    prepare_member,
    stocked_sku,
)
from sqlalchemy import Engine, func, select

from retailface.services.personalization import db
from retailface.services.personalization.domain import Campaign, InventoryItem, Member, VisitEvent
from retailface.services.personalization.service import PersonalizationService


def _enter(
    service: PersonalizationService, member_id: str, event_id: str, store_id: str = STORE, at: float | None = None
):  # type: ignore[no-untyped-def]
    return service.record_visit_event(
        VisitEvent(
            event_id=event_id,
            type="entered",
            store_id=store_id,
            at=time.time() if at is None else at,
            member_id=member_id,
            track_id=f"track-{event_id}",
            camera_id="entrance-1",
        )
    )


def test_abandoned_cart_item_in_stock_is_offered_on_entry_with_aisle_and_reason(
    service: PersonalizationService, engine: Engine
) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(service, member_id)
    sku, _, aisle = stocked_sku(engine)
    abandon_cart(service, member_id, sku, "cart-1")

    result = _enter(service, member_id, "visit-1")

    offer = next(o for o in result.offers_pushed if o.sku == sku)
    assert offer.source == "online_intent"
    assert offer.location.store_id == STORE and offer.location.aisle == aisle and offer.location.on_hand > 0
    assert f"aisle {aisle}" in offer.reason and "online cart" in offer.reason
    assert offer.discount_percent > 0
    with db.read(engine) as conn:  # the push went to the outbox for the member's phone
        queued = (
            conn.execute(
                select(db.notification_outbox.c.payload).where(db.notification_outbox.c.member_id == member_id)
            )
            .scalars()
            .all()
        )
    assert len(queued) == 1 and sku in queued[0]


def test_every_offer_is_in_stock_at_the_store(service: PersonalizationService, engine: Engine) -> None:
    offered = 0
    for number in range(1, 61):
        result = service.get_offers(f"m{number:05d}", "store-02", "kiosk")
        for offer in result.offers:
            offered += 1
            assert offer.location.store_id == "store-02" and offer.location.aisle
            assert on_hand(engine, "store-02", offer.sku) > 0
            assert offer.reason
    assert offered > 60


def test_out_of_stock_item_is_never_offered(service: PersonalizationService, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(service, member_id)
    sku, _, aisle = stocked_sku(engine)
    abandon_cart(service, member_id, sku, "cart-oos")
    service.set_inventory([InventoryItem(STORE, sku, 0, aisle, "A1")])

    assert sku not in {o.sku for o in _enter(service, member_id, "visit-oos").offers_pushed}
    assert sku not in {o.sku for o in service.get_offers(member_id, STORE, "app", limit=20).offers}

    service.set_inventory([InventoryItem(STORE, sku, 5, aisle, "A1")])  # back in stock: offered again
    assert sku in {o.sku for o in service.get_offers(member_id, STORE, "app").offers}


def test_unliked_item_and_category_never_come_back(service: PersonalizationService, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(service, member_id)
    sku, _, _ = stocked_sku(engine)
    abandon_cart(service, member_id, sku, "cart-unlike")
    first = next(o for o in service.get_offers(member_id, STORE, "app").offers if o.sku == sku)

    service.feedback("fb-1", member_id, first.offer_id, "unliked")
    now = time.time()
    for day in range(4):  # later days too, past any frequency window
        offers = service.get_offers(member_id, STORE, "app", limit=20, now=now + day * 86_400).offers
        assert sku not in {o.sku for o in offers}

    other = service.get_offers(member_id, STORE, "app", limit=20, now=now + 5 * 86_400).offers
    assert other, "the member still gets other offers"
    service.feedback("fb-2", member_id, other[0].offer_id, "unliked_category")
    for day in range(6, 9):
        offers = service.get_offers(member_id, STORE, "app", limit=20, now=now + day * 86_400).offers
        assert other[0].category not in {o.category for o in offers}


def test_sensitive_items_are_never_pushed_nor_offered_in_public(
    service: PersonalizationService, engine: Engine
) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(service, member_id)
    sku, category, _ = stocked_sku(engine, sensitive=True)
    abandon_cart(service, member_id, sku, "cart-sensitive")

    assert sku not in {o.sku for o in _enter(service, member_id, "visit-s").offers_pushed}
    for context in ("kiosk", "entrance", ""):  # no context: treated as a public screen
        assert sku not in {o.sku for o in service.get_offers(member_id, STORE, context, limit=20).offers}
    checkout = service.get_checkout_offers(
        STORE, "lane-1", [(stocked_sku(engine)[0], 1)], member_id=member_id, identified_by="app", limit=10
    )
    assert sku not in {o.sku for o in checkout.basket_completions + checkout.member_offers}
    # The member's own app is private: there the item they carted may be offered.
    assert sku in {o.sku for o in service.get_offers(member_id, STORE, "app", limit=20).offers}

    # Across many members and channels, nothing sensitive is ever pushed or put on the till.
    with db.read(engine) as conn:
        sensitive = set(conn.execute(select(db.products.c.sku).where(db.products.c.sensitive)).scalars())
    for number in range(1, 81):
        pushed = _enter(service, f"m{number:05d}", f"bulk-{number}", store_id="store-03").offers_pushed
        assert not sensitive & {o.sku for o in pushed}
    assert category in service.sensitive_categories()


def test_frequency_cap_per_item_and_per_campaign(service: PersonalizationService, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(service, member_id)
    sku, _, _ = stocked_sku(engine, skip=3)
    campaign = service.upsert_campaign(
        Campaign(
            campaign_id="cmp-test",
            name="Test week",
            discount_percent=30,
            skus=[sku],
            priority=50,
            frequency_cap_per_day=1,
        )
    )
    now = time.time()
    counts: dict[str, int] = {}
    campaign_deliveries = 0
    for _ in range(6):
        for offer in service.get_offers(member_id, STORE, "app", now=now).offers:
            counts[offer.sku] = counts.get(offer.sku, 0) + 1
            campaign_deliveries += offer.campaign_id == campaign.campaign_id
    assert campaign_deliveries == 1
    assert counts[sku] >= 1
    assert max(counts.values()) <= service.settings.frequency_cap_per_day
    # The cap is per 24 hours: the next day the campaign may be offered again.
    tomorrow = service.get_offers(member_id, STORE, "app", now=now + 86_401).offers
    assert campaign.campaign_id in {o.campaign_id for o in tomorrow}


def test_checkout_offers_complete_the_basket(service: PersonalizationService, engine: Engine) -> None:
    with db.read(engine) as conn:  # a real basket from the history
        transaction_id = conn.execute(
            select(db.transaction_lines.c.transaction_id)
            .group_by(db.transaction_lines.c.transaction_id)
            .having(func.count() >= 4)
            .order_by(db.transaction_lines.c.transaction_id)
            .limit(1)
        ).scalar_one()
        basket = (
            conn.execute(
                select(db.transaction_lines.c.sku).where(db.transaction_lines.c.transaction_id == transaction_id)
            )
            .scalars()
            .all()
        )
    result = service.get_checkout_offers(STORE, "lane-2", [(sku, 1) for sku in basket], limit=4)

    assert result.basket_completions and not result.member_id and not result.member_offers
    for offer in result.basket_completions:
        assert offer.sku not in basket and offer.source == "basket_completion"
        assert "basket" in offer.reason and on_hand(engine, STORE, offer.sku) > 0
        with db.read(engine) as conn:  # each completion was really bought together with a basket item
            lines = db.transaction_lines.alias()
            together = conn.execute(
                select(func.count())
                .select_from(
                    db.transaction_lines.join(lines, lines.c.transaction_id == db.transaction_lines.c.transaction_id)
                )
                .where(db.transaction_lines.c.sku == offer.sku, lines.c.sku.in_(basket))
            ).scalar_one()
        assert together > 0


def test_checkout_identification_and_confirmation(service: PersonalizationService, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(service, member_id)
    loyalty = service.get_member(member_id).loyalty_number
    basket = [(stocked_sku(engine)[0], 1)]

    by_card = service.get_checkout_offers(STORE, "lane-1", basket, loyalty_number=loyalty)
    assert by_card.member_id == member_id and by_card.identified_by == "loyalty_card"
    assert not by_card.confirmation_required and by_card.member_offers

    by_face = service.get_checkout_offers(STORE, "lane-1", basket, member_id=member_id, identified_by="face")
    assert by_face.member_id == member_id and by_face.confirmation_required


def test_little_history_gets_similar_shoppers_and_no_history_gets_popular(
    service: PersonalizationService, engine: Engine
) -> None:
    model = service.model
    assert model is not None
    light = next(m for m in members_without_online_events(engine, 400) if 0 < model.distinct_items(m) < 3)
    prepare_member(service, light)
    sources = {o.source for o in service.get_offers(light, STORE, "app", limit=10).offers}
    assert "similar_shoppers" in sources

    service.upsert_member(Member(member_id="m-new", display_name="New Shopper", home_store_id=STORE))
    prepare_member(service, "m-new")
    offers = service.get_offers("m-new", STORE, "app").offers
    assert offers and all(o.source == "similar_shoppers" for o in offers)
    assert all("Popular at this store" in o.reason or o.campaign_id for o in offers)


def test_item_bought_since_the_cart_or_its_last_unit_sold_is_not_offered(
    service: PersonalizationService, engine: Engine
) -> None:
    from retailface.services.personalization.domain import Purchase, PurchaseLine

    member_id, other = members_without_online_events(engine, 2)
    prepare_member(service, member_id)
    prepare_member(service, other)
    sku, _, aisle = stocked_sku(engine, skip=5)
    abandon_cart(service, member_id, sku, "cart-bought")
    abandon_cart(service, other, sku, "cart-other")
    assert sku in {o.sku for o in service.get_offers(member_id, STORE, "app").offers}

    # The member buys it in store: the cart is no longer an intent to act on.
    service.record_purchase(
        Purchase("pos-bought", "store-02", time.time(), [PurchaseLine(sku, 1, 2.0)], member_id=member_id)
    )
    assert sku not in {
        o.sku for o in service.get_offers(member_id, STORE, "app", limit=20).offers if o.source == "online_intent"
    }

    # Someone buys the last unit here: nobody is sent to an empty shelf.
    service.set_inventory([InventoryItem(STORE, sku, 1, aisle, "B2")])
    assert sku in {o.sku for o in service.get_offers(other, STORE, "app").offers}
    service.record_purchase(Purchase("pos-last", STORE, time.time(), [PurchaseLine(sku, 1, 2.0)]))
    assert on_hand(engine, STORE, sku) == 0
    assert sku not in {o.sku for o in service.get_offers(other, STORE, "app", limit=20).offers}
