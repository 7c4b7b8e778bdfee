"""Offers: online intent in stock here, stock, unlikes, sensitive items, frequency caps, checkout."""

from __future__ import annotations

import time

import pytest
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
from retailface.services.personalization.domain import (
    Campaign,
    InventoryItem,
    Member,
    Purchase,
    PurchaseLine,
    VisitEvent,
)
from retailface.services.personalization.service import Personalization


def _enter(
    personalization: Personalization, member_id: str, event_id: str, store_id: str = STORE, at: float | None = None
):  # type: ignore[no-untyped-def]
    return personalization.visits.record(
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
    personalization: Personalization, engine: Engine
) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    sku, _, aisle = stocked_sku(engine)
    abandon_cart(personalization, member_id, sku, "cart-1")

    result = _enter(personalization, member_id, "visit-1")

    offer = next(o for o in result.offers_pushed if o.sku == sku)
    assert offer.source == "online_intent"
    assert offer.location.store_id == STORE and offer.location.aisle == aisle and offer.location.on_hand > 0
    assert offer.reason == (
        f"The {offer.product_name} you left in your online cart is in aisle {aisle} here, "
        f"{offer.discount_percent:g}% off today."
    )
    # The intent discount, or a campaign's when it is larger.
    assert offer.discount_percent >= personalization.settings.intent_discount_percent
    with db.read(engine) as conn:  # the push went to the outbox for the member's phone
        queued = (
            conn.execute(
                select(db.notification_outbox.c.payload).where(db.notification_outbox.c.member_id == member_id)
            )
            .scalars()
            .all()
        )
    assert len(queued) == 1 and sku in queued[0]


def test_every_offer_is_in_stock_at_the_store(personalization: Personalization, engine: Engine) -> None:
    offered = 0
    for number in range(1, 61):
        result = personalization.offers.get(f"m{number:05d}", "store-02", "kiosk")
        for offer in result.offers:
            offered += 1
            assert offer.location.store_id == "store-02" and offer.location.aisle
            assert on_hand(engine, "store-02", offer.sku) > 0
            assert f"aisle {offer.location.aisle}" in offer.reason
    assert offered > 60


def test_out_of_stock_item_is_never_offered(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    sku, _, aisle = stocked_sku(engine)
    abandon_cart(personalization, member_id, sku, "cart-oos")
    personalization.catalog.set_inventory([InventoryItem(STORE, sku, 0, aisle, "A1")])

    assert sku not in {o.sku for o in _enter(personalization, member_id, "visit-oos").offers_pushed}
    assert sku not in {o.sku for o in personalization.offers.get(member_id, STORE, "app", limit=20).offers}

    personalization.catalog.set_inventory([InventoryItem(STORE, sku, 5, aisle, "A1")])  # back in stock: offered again
    assert sku in {o.sku for o in personalization.offers.get(member_id, STORE, "app").offers}


def test_unliked_item_and_category_never_come_back(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    sku, _, _ = stocked_sku(engine)
    abandon_cart(personalization, member_id, sku, "cart-unlike")
    first = next(o for o in personalization.offers.get(member_id, STORE, "app").offers if o.sku == sku)

    personalization.purchases.feedback("fb-1", member_id, first.offer_id, "unliked")
    now = time.time()
    for day in range(4):  # later days too, past any frequency window
        offers = personalization.offers.get(member_id, STORE, "app", limit=20, now=now + day * 86_400).offers
        assert sku not in {o.sku for o in offers}

    other = personalization.offers.get(member_id, STORE, "app", limit=20, now=now + 5 * 86_400).offers
    assert other, "the member still gets other offers"
    personalization.purchases.feedback("fb-2", member_id, other[0].offer_id, "unliked_category")
    for day in range(6, 9):
        offers = personalization.offers.get(member_id, STORE, "app", limit=20, now=now + day * 86_400).offers
        assert other[0].category not in {o.category for o in offers}


@pytest.fixture
def sensitive_cart(personalization: Personalization, engine: Engine) -> tuple[str, str, str]:
    """(member_id, sku, category): a consenting member who left a sensitive item in their online cart."""
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    sku, category, _ = stocked_sku(engine, sensitive=True)
    abandon_cart(personalization, member_id, sku, "cart-sensitive")
    return member_id, sku, category


def test_sensitive_item_is_never_pushed(personalization: Personalization, sensitive_cart: tuple[str, str, str]) -> None:
    member_id, sku, category = sensitive_cart
    assert category in personalization.catalog.sensitive_categories()
    assert sku not in {o.sku for o in _enter(personalization, member_id, "visit-s").offers_pushed}


@pytest.mark.parametrize("context", ["kiosk", "entrance", ""], ids=["kiosk", "entrance", "no context"])
def test_sensitive_item_is_never_offered_on_a_public_screen(
    personalization: Personalization, sensitive_cart: tuple[str, str, str], context: str
) -> None:
    member_id, sku, _ = sensitive_cart  # no context: treated as a public screen
    assert sku not in {o.sku for o in personalization.offers.get(member_id, STORE, context, limit=20).offers}


def test_sensitive_item_is_never_offered_at_the_till(
    personalization: Personalization, engine: Engine, sensitive_cart: tuple[str, str, str]
) -> None:
    member_id, sku, _ = sensitive_cart
    checkout = personalization.checkout.offers(
        STORE, "lane-1", [(stocked_sku(engine)[0], 1)], member_id=member_id, identified_by="app", limit=10
    )
    assert sku not in {o.sku for o in checkout.basket_completions + checkout.member_offers}


def test_sensitive_item_may_be_offered_in_the_members_own_app(
    personalization: Personalization, sensitive_cart: tuple[str, str, str]
) -> None:
    member_id, sku, _ = sensitive_cart
    assert sku in {o.sku for o in personalization.offers.get(member_id, STORE, "app", limit=20).offers}


def test_nothing_sensitive_is_pushed_to_any_member(personalization: Personalization, engine: Engine) -> None:
    with db.read(engine) as conn:
        sensitive = set(conn.execute(select(db.products.c.sku).where(db.products.c.sensitive)).scalars())
    for number in range(1, 81):
        pushed = _enter(personalization, f"m{number:05d}", f"bulk-{number}", store_id="store-03").offers_pushed
        assert not sensitive & {o.sku for o in pushed}


def test_frequency_cap_per_item_and_per_campaign(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    sku, _, _ = stocked_sku(engine, skip=3)
    campaign = personalization.catalog.upsert_campaign(
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
        for offer in personalization.offers.get(member_id, STORE, "app", now=now).offers:
            counts[offer.sku] = counts.get(offer.sku, 0) + 1
            campaign_deliveries += offer.campaign_id == campaign.campaign_id
    assert campaign_deliveries == 1
    assert counts[sku] >= 1
    assert max(counts.values()) <= personalization.settings.frequency_cap_per_day
    # The cap is per 24 hours: the next day the campaign may be offered again.
    tomorrow = personalization.offers.get(member_id, STORE, "app", now=now + 86_401).offers
    assert campaign.campaign_id in {o.campaign_id for o in tomorrow}


def test_checkout_offers_complete_the_basket(personalization: Personalization, engine: Engine) -> None:
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
    result = personalization.checkout.offers(STORE, "lane-2", [(sku, 1) for sku in basket], limit=4)

    assert result.basket_completions
    assert result.member_id == "" and result.member_offers == [] and result.identified_by == "unspecified"
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


@pytest.mark.parametrize(
    ("by_card", "identified_by", "confirmation_required"),
    [(True, "unspecified", False), (False, "face", True)],
    ids=["loyalty card: confirmed", "face match: to be confirmed"],
)
def test_checkout_identification_and_confirmation(
    personalization: Personalization, engine: Engine, by_card: bool, identified_by: str, confirmation_required: bool
) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    loyalty = personalization.members.get(member_id).loyalty_number
    shopper = {"loyalty_number": loyalty} if by_card else {"member_id": member_id}

    result = personalization.checkout.offers(
        STORE, "lane-1", [(stocked_sku(engine)[0], 1)], identified_by=identified_by, **shopper
    )

    assert result.member_id == member_id
    assert result.identified_by == ("loyalty_card" if by_card else identified_by)
    assert result.confirmation_required is confirmation_required
    assert result.member_offers


def test_little_history_gets_similar_shoppers(personalization: Personalization, engine: Engine) -> None:
    model = personalization.model
    assert model is not None
    light = next(m for m in members_without_online_events(engine, 400) if 0 < model.distinct_items(m) < 3)
    prepare_member(personalization, light)
    sources = {o.source for o in personalization.offers.get(light, STORE, "app", limit=10).offers}
    assert "similar_shoppers" in sources


def test_no_history_gets_what_is_popular_at_the_store(personalization: Personalization) -> None:
    personalization.members.upsert(Member(member_id="m-new", display_name="New Shopper", home_store_id=STORE))
    prepare_member(personalization, "m-new")
    offers = personalization.offers.get("m-new", STORE, "app").offers
    assert offers and all(o.source == "similar_shoppers" for o in offers)
    assert all(o.reason.startswith("Popular at this store right now;") or o.campaign_id for o in offers)


def test_item_bought_since_the_cart_is_no_longer_an_intent(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    sku, _, _ = stocked_sku(engine, skip=5)
    abandon_cart(personalization, member_id, sku, "cart-bought")
    assert sku in {o.sku for o in personalization.offers.get(member_id, STORE, "app").offers}

    personalization.purchases.record(
        Purchase("pos-bought", "store-02", time.time(), [PurchaseLine(sku, 1, 2.0)], member_id=member_id)
    )

    offers = personalization.offers.get(member_id, STORE, "app", limit=20).offers
    assert sku not in {o.sku for o in offers if o.source == "online_intent"}


def test_item_whose_last_unit_was_sold_is_not_offered(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine, 2)[1]
    prepare_member(personalization, member_id)
    sku, _, aisle = stocked_sku(engine, skip=5)
    abandon_cart(personalization, member_id, sku, "cart-other")
    personalization.catalog.set_inventory([InventoryItem(STORE, sku, 1, aisle, "B2")])
    assert sku in {o.sku for o in personalization.offers.get(member_id, STORE, "app").offers}

    # Someone buys the last unit here: nobody is sent to an empty shelf.
    personalization.purchases.record(Purchase("pos-last", STORE, time.time(), [PurchaseLine(sku, 1, 2.0)]))

    assert on_hand(engine, STORE, sku) == 0
    assert sku not in {o.sku for o in personalization.offers.get(member_id, STORE, "app", limit=20).offers}
