"""Consent, staff alerts (greeting, dissatisfaction, watchlist), quiet hours, erasure and the audit log."""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from dataclasses import replace

import pytest
from personalization_helpers import STORE, abandon_cart, members_without_online_events, prepare_member, stocked_sku
from sqlalchemy import Engine, func, select

from retailface.services.personalization import db
from retailface.services.personalization.domain import Channel, QuietHours, VisitEvent
from retailface.services.personalization.service import Personalization
from retailface.services.shared.errors import NotFound


def _event(event_id: str, kind: str = "entered", member_id: str = "", **fields: object) -> VisitEvent:
    values: dict = {"at": time.time(), "track_id": f"track-{event_id}", "camera_id": "cam-1", **fields}
    return VisitEvent(
        event_id=event_id,
        type=kind,
        store_id=fields.pop("store_id", STORE),  # type: ignore[arg-type]
        member_id=member_id,
        **values,
    )


@pytest.fixture
def revoked(personalization: Personalization, engine: Engine) -> str:
    """A member who came in (push queued, greeting raised, nobody acknowledged it), then revoked all consent."""
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id, channels=(Channel("log", "device-1"),))
    abandon_cart(personalization, member_id, stocked_sku(engine)[0], "cart-r")
    first = personalization.visits.record(_event("v-1", member_id=member_id))
    assert first.offers_pushed and [a.kind for a in first.alerts_raised] == ["greeting"]
    assert [a.alert_id for a in personalization.alerts.recent(STORE)] == [first.alerts_raised[0].alert_id]
    personalization.members.revoke_consent(member_id, actor="privacy-officer", reason="member asked")
    return member_id


def test_revoking_consent_cancels_the_queued_push(engine: Engine, revoked: str) -> None:
    with db.read(engine) as conn:  # cancelled, not sent
        statuses = (
            conn.execute(select(db.notification_outbox.c.status).where(db.notification_outbox.c.member_id == revoked))
            .scalars()
            .all()
        )
    assert statuses == ["cancelled"]


def test_revoking_consent_withdraws_the_unseen_greeting(personalization: Personalization, revoked: str) -> None:
    assert personalization.alerts.recent(STORE) == []


def test_revoked_consent_means_no_offers(personalization: Personalization, revoked: str) -> None:
    offers = personalization.offers.get(revoked, STORE, "app")
    assert offers.offers == []
    assert offers.notes == ["no consent for personalized_offers: no personalized offers"]


def test_revoked_consent_makes_visits_anonymous(personalization: Personalization, engine: Engine, revoked: str) -> None:
    again = personalization.visits.record(_event("v-2", member_id=revoked))
    assert again.offers_pushed == [] and again.alerts_raised == []
    assert again.notes == ["no consent for face_identification: the event is recorded as anonymous"]
    with db.read(engine) as conn:  # the visit is kept only as an anonymous event
        assert (
            conn.execute(select(db.visit_events.c.member_id).where(db.visit_events.c.event_id == "v-2")).scalar_one()
            is None
        )


def test_revoked_consent_ignores_a_face_match_at_the_till(
    personalization: Personalization, engine: Engine, revoked: str
) -> None:
    checkout = personalization.checkout.offers(
        STORE, "lane-1", [(stocked_sku(engine)[0], 1)], member_id=revoked, identified_by="face"
    )
    assert checkout.member_id == "" and checkout.member_offers == []
    assert checkout.notes == ["no consent for face_identification: the face match is not used"]


def test_one_scope_revoked_leaves_the_others(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    personalization.members.revoke_consent(member_id, ["staff_greeting"])
    result = personalization.visits.record(_event("v-g", member_id=member_id))
    assert result.alerts_raised == [] and "no consent for staff_greeting: no greeting" in result.notes
    assert result.offers_pushed  # personalized_offers still granted


def test_greeting_is_discreet(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id, preferred_name="Sam", favourite_categories=["pharmacy", "coffee_tea"])
    greeting = personalization.visits.record(_event("v-d", member_id=member_id)).alerts_raised[0]
    assert greeting.display_name == "Sam" and "Sam" in greeting.message
    assert "coffee tea" in greeting.message and "pharmacy" not in greeting.message.lower()
    member = personalization.members.get(member_id)
    assert member.display_name not in greeting.message  # preferred name only, not the full name


def test_member_who_declined_greetings_is_not_greeted(personalization: Personalization, engine: Engine) -> None:
    declined = members_without_online_events(engine, 2)[1]
    prepare_member(personalization, declined, allow_greeting=False)
    result = personalization.visits.record(_event("v-n", member_id=declined))
    assert result.alerts_raised == [] and "no consent for staff_greeting: no greeting" in result.notes


def test_dissatisfaction_alert_ranked_by_spend_and_anonymous_unranked(
    personalization: Personalization, engine: Engine
) -> None:
    with db.read(engine) as conn:
        big, small = (
            conn.execute(
                select(db.transactions.c.member_id)
                .where(db.transactions.c.member_id.is_not(None))
                .group_by(db.transactions.c.member_id)
                .order_by(func.sum(db.transactions.c.total).desc())
                .limit(1)
            ).scalar_one(),
            None,
        )
        small = conn.execute(
            select(db.transactions.c.member_id)
            .where(db.transactions.c.member_id.is_not(None))
            .group_by(db.transactions.c.member_id)
            .order_by(func.sum(db.transactions.c.total))
            .limit(1)
        ).scalar_one()
    for member_id in (big, small):
        prepare_member(personalization, member_id, allow_greeting=False)
    unhappy = {"lane_id": "lane-3", "negative_fraction": 0.8, "emotion_seconds": 8.0}

    calm = personalization.visits.record(
        _event("d-0", "checkout", big, lane_id="lane-3", negative_fraction=0.2, emotion_seconds=20.0)
    )
    brief = personalization.visits.record(
        _event("d-00", "checkout", big, lane_id="lane-3", negative_fraction=0.9, emotion_seconds=1.0)
    )
    assert calm.alerts_raised == [] and brief.alerts_raised == []

    high = personalization.visits.record(_event("d-1", "checkout", big, **unhappy)).alerts_raised[0]
    low = personalization.visits.record(_event("d-2", "checkout", small, **unhappy)).alerts_raised[0]
    anonymous = personalization.visits.record(_event("d-3", "checkout", **unhappy)).alerts_raised[0]
    assert high.kind == low.kind == anonymous.kind == "dissatisfaction"
    assert high.priority > low.priority > 0 and anonymous.priority == 0
    # Members who declined greetings are not named to staff; nothing about purchases is shown.
    assert high.display_name == "" and high.member_id == ""
    assert high.message == "A shopper at lane-3 may need help; please check in discreetly."
    # Sustained expression at the same lane does not flood the screen.
    assert personalization.visits.record(_event("d-4", "checkout", big, **unhappy)).alerts_raised == []


def _confirmed_watchlist_entry(personalization: Personalization, subject_id: str) -> None:
    reason = "shoplifting report 2026-10-02"
    personalization.watchlist.upsert(subject_id, reason, time.time() + 30 * 86_400, actor="admin:security-lead")
    personalization.watchlist.confirm(subject_id, actor="privacy:officer-2")


def test_watchlist_is_off_by_default(personalization: Personalization) -> None:
    _confirmed_watchlist_entry(personalization, "wl-1")
    result = personalization.visits.record(_event("w-1", member_id="wl-1"))
    assert result.alerts_raised == []
    assert result.notes == [
        "watchlist alerts are off in store store-01 (UpsertStore with watchlist_enabled turns them on)"
    ]


def test_watchlist_alert_always_needs_confirmation(personalization: Personalization) -> None:
    _confirmed_watchlist_entry(personalization, "wl-1")
    store = personalization.stores.get(STORE)
    personalization.stores.upsert(replace(store, watchlist_enabled=True), actor="admin:ops")
    alert = personalization.visits.record(_event("w-2", member_id="wl-1")).alerts_raised[0]
    assert alert.kind == "watchlist" and alert.requires_confirmation
    assert alert.display_name == "" and alert.member_id == ""
    personalization.alerts.acknowledge(alert.alert_id, "guard-7", confirmed=True)
    assert personalization.alerts.recent(STORE, ["watchlist"]) == []


def test_quiet_hours_hold_back_pushes(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    zone = zoneinfo.ZoneInfo("America/New_York")
    night = dt.datetime(2026, 11, 20, 23, 30, tzinfo=zone).timestamp()
    prepare_member(personalization, member_id, quiet_hours=QuietHours(22 * 60, 7 * 60, "America/New_York"))
    abandon_cart(personalization, member_id, stocked_sku(engine)[0], "cart-q", at=night - 3600)
    at_night = personalization.visits.record(_event("q-1", member_id=member_id, at=night))
    assert at_night.offers_pushed == [] and "quiet hours" in " ".join(at_night.notes)
    morning = personalization.visits.record(_event("q-2", member_id=member_id, at=night + 10 * 3600))
    assert morning.offers_pushed


def test_erase_member_removes_personal_data(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    abandon_cart(personalization, member_id, stocked_sku(engine)[0], "cart-e")
    personalization.visits.record(_event("e-1", member_id=member_id))
    with db.read(engine) as conn:
        purchases = conn.execute(
            select(func.count()).select_from(db.transactions).where(db.transactions.c.member_id == member_id)
        ).scalar_one()

    counts = personalization.members.erase(member_id, actor="privacy-officer", reason="erasure request")

    assert counts["members"] == 1 and counts["online_events"] == 2 and counts["visits"] == 1
    assert counts["offer_deliveries"] >= 1 and counts["staff_alerts"] == 1 and counts["notification_outbox"] == 1
    assert counts["transactions_anonymised"] == purchases > 0
    with pytest.raises(NotFound, match=f"unknown member '{member_id}'"):
        personalization.members.get(member_id)
    with db.read(engine) as conn:
        for table in (db.online_events, db.offer_deliveries, db.visit_events, db.staff_alerts, db.transactions):
            left = conn.execute(select(func.count()).select_from(table).where(table.c.member_id == member_id))
            assert left.scalar_one() == 0, table.name
    erase = personalization.audit.query(member_id, limit=5)[0]
    assert erase.action == "erase" and erase.actor == "privacy-officer" and erase.reason == "erasure request"


def test_audit_records_reads_changes_and_identifications(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    personalization.offers.get(member_id, STORE, "app", actor="service")
    personalization.visits.record(_event("a-1", member_id=member_id, match_score=0.71), actor="service")
    entries = personalization.audit.query(member_id)
    actions = {entry.action for entry in entries}
    assert {"consent", "update", "read", "identify"} <= actions
    for entry in entries:  # details are small JSON documents, never embeddings or images
        detail = json.loads(entry.detail)
        assert not any(isinstance(value, list) and len(value) > 16 for value in detail.values())
        assert "embedding" not in entry.detail and "chip" not in entry.detail
