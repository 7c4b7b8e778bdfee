"""What the member portal shows a member (activity), the data-subject access export, and unliking a product."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from personalization_helpers import STORE, abandon_cart, members_without_online_events, prepare_member, stocked_sku
from sqlalchemy import Engine, select

from retailface.services.personalization import db
from retailface.services.personalization.domain import VisitEvent
from retailface.services.personalization.service import Personalization
from retailface.services.shared.errors import InvalidArgument, NotFound


def _event(member_id: str, event_id: str, kind: str, at: float, zone_id: str = "") -> VisitEvent:
    return VisitEvent(
        event_id=event_id,
        type=kind,
        store_id=STORE,
        at=at,
        member_id=member_id,
        track_id="track-portal",
        camera_id="cam-1",
        zone_id=zone_id,
        dwell_seconds=30.0 if zone_id else 0.0,
    )


@pytest.fixture
def visitor(personalization: Personalization, engine: Engine) -> tuple[str, str]:
    """(member_id, sku): a consenting member who left `sku` in their cart, then walked in and through two zones."""
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    sku, _, _ = stocked_sku(engine)
    abandon_cart(personalization, member_id, sku, "cart-portal")
    now = time.time()
    personalization.visits.record(_event(member_id, "ev-enter", "entered", now - 300))
    personalization.visits.record(_event(member_id, "ev-dairy", "zone_dwell", now - 200, "dairy"))
    personalization.visits.record(_event(member_id, "ev-bakery", "zone_dwell", now - 100, "bakery"))
    personalization.visits.record(_event(member_id, "ev-dairy-2", "zone_dwell", now - 50, "dairy"))
    return member_id, sku


def test_activity_lists_the_visit_with_its_zones_in_order(
    personalization: Personalization, visitor: tuple[str, str]
) -> None:
    member_id, _ = visitor

    activity = personalization.member_data.activity(member_id, actor="web")

    assert [(visit.store_id, visit.zones) for visit in activity.visits] == [(STORE, ["dairy", "bakery"])]


def test_activity_lists_the_pushed_offers_with_the_members_feedback(
    personalization: Personalization, visitor: tuple[str, str], engine: Engine
) -> None:
    member_id, sku = visitor
    pushed = {offer.sku: offer for offer in personalization.member_data.activity(member_id).offers}
    personalization.purchases.feedback("fb-portal", member_id, pushed[sku].offer_id, "dismissed")

    offer = next(o for o in personalization.member_data.activity(member_id).offers if o.sku == sku)

    with db.read(engine) as conn:
        name = conn.execute(select(db.products.c.name).where(db.products.c.sku == sku)).scalar_one()
    assert (offer.product_name, offer.store_id, offer.feedback) == (name, STORE, "dismissed")
    assert {o.feedback for o in personalization.member_data.activity(member_id).offers if o.sku != sku} <= {""}


def test_unliking_a_product_stops_its_offer_next_time(
    personalization: Personalization, visitor: tuple[str, str]
) -> None:
    member_id, sku = visitor
    assert sku in {o.sku for o in personalization.offers.get(member_id, STORE, "app", limit=20).offers}

    duplicate = personalization.purchases.feedback("", member_id, "", "unliked", actor="web", sku=sku)

    assert duplicate is False
    for day in range(3):  # later days too, past any frequency window
        later = time.time() + day * 86_400
        offers = personalization.offers.get(member_id, STORE, "app", limit=20, now=later).offers
        assert sku not in {o.sku for o in offers}
    assert personalization.member_data.activity(member_id).unliked_skus == [sku]


def test_unliking_a_product_twice_is_a_duplicate(personalization: Personalization, visitor: tuple[str, str]) -> None:
    member_id, sku = visitor
    personalization.purchases.feedback("", member_id, "", "unliked", sku=sku)

    assert personalization.purchases.feedback("", member_id, "", "unliked", sku=sku) is True


def test_a_product_takes_the_unliked_feedback_only(personalization: Personalization, visitor: tuple[str, str]) -> None:
    member_id, sku = visitor

    with pytest.raises(InvalidArgument, match="a sku without an offer_id takes feedback type unliked only"):
        personalization.purchases.feedback("", member_id, "", "dismissed", sku=sku)


def test_unliking_an_unknown_product_is_not_found(personalization: Personalization, visitor: tuple[str, str]) -> None:
    member_id, _ = visitor

    with pytest.raises(NotFound, match="unknown sku 'no-such-sku'"):
        personalization.purchases.feedback("", member_id, "", "unliked", sku="no-such-sku")


def _export(personalization: Personalization, member_id: str) -> dict[str, Any]:
    return dict(json.loads(personalization.member_data.export(member_id, actor="privacy:officer-1").decode()))


def test_the_export_holds_everything_about_the_member(
    personalization: Personalization, visitor: tuple[str, str], engine: Engine
) -> None:
    member_id, sku = visitor
    personalization.purchases.feedback("", member_id, "", "unliked", sku=sku)
    with db.read(engine) as conn:
        transactions = conn.execute(
            select(db.transactions.c.transaction_id).where(db.transactions.c.member_id == member_id)
        ).scalars()
        bought = sorted(transactions)

    document = _export(personalization, member_id)

    assert document["format"] == "retailface-member-export-v1"
    assert document["profile"]["member_id"] == member_id
    assert document["profile"]["preferred_name"] == "Ava"
    assert [change["action"] for change in document["consent_history"]] == ["grant"]
    assert [event["event_id"] for event in document["visit_events"]] == [
        "ev-enter",
        "ev-dairy",
        "ev-bakery",
        "ev-dairy-2",
    ]
    assert len(document["visits"]) == 1
    assert sku in {offer["sku"] for offer in document["offers"]}
    assert document["dislikes"][0]["kind"] == "sku" and document["dislikes"][0]["value"] == sku
    assert sorted(p["transaction_id"] for p in document["purchases"]) == bought
    assert all(p["lines"] for p in document["purchases"])
    assert {e["type"] for e in document["online_events"]} == {"added_to_cart", "abandoned_cart"}
    assert len(document["notifications"]) == 1 and document["notifications"][0]["payload"]["member_id"] == member_id
    assert {row["action"] for row in document["audit"]} >= {"consent", "update", "identify"}


def test_the_export_leaves_out_internals_and_other_members(
    personalization: Personalization, visitor: tuple[str, str], engine: Engine
) -> None:
    member_id, _ = visitor
    personalization.signin.issue(member_id)
    with db.read(engine) as conn:
        others = set(conn.execute(select(db.members.c.member_id).where(db.members.c.member_id != member_id)).scalars())

    document = _export(personalization, member_id)

    def walk(value: Any) -> list[tuple[str, Any]]:
        if isinstance(value, dict):
            return [pair for key, inner in value.items() for pair in [(key, inner), *walk(inner)]]
        if isinstance(value, list):
            return [pair for inner in value for pair in walk(inner)]
        return []

    pairs = walk(document)
    keys = {key for key, _ in pairs}
    assert keys.isdisjoint({"code_hash", "prev_hash", "row_hash", "embedding", "template", "templates"})
    assert {value for _, value in pairs if isinstance(value, str)}.isdisjoint(others)
    assert {row["member_id"] for section in ("visits", "offers", "online_events") for row in document[section]} == {
        member_id
    }
    assert list(document["sign_in_codes"][0]) == ["expires_at", "issued_at", "member_id", "used_at"]


def test_the_export_is_audited(personalization: Personalization, visitor: tuple[str, str], engine: Engine) -> None:
    member_id, _ = visitor

    _export(personalization, member_id)

    with db.read(engine) as conn:
        last = conn.execute(
            select(db.audit_log).where(db.audit_log.c.subject == member_id).order_by(db.audit_log.c.id.desc())
        ).first()
    assert last is not None
    assert (last.actor, last.action, last.reason) == ("privacy:officer-1", "export", "data-subject access export")
    assert json.loads(last.detail)["visit_events"] == 4


def test_no_export_of_an_unknown_member(personalization: Personalization) -> None:
    with pytest.raises(NotFound, match="unknown member 'nobody'"):
        personalization.member_data.export("nobody")


def test_feedback_with_a_known_feedback_id_is_a_duplicate(
    personalization: Personalization, visitor: tuple[str, str]
) -> None:
    member_id, _ = visitor
    offer_id = personalization.member_data.activity(member_id).offers[0].offer_id
    personalization.purchases.feedback("fb-once", member_id, offer_id, "dismissed")

    assert personalization.purchases.feedback("fb-once", member_id, offer_id, "dismissed") is True
