"""Store analytics, checked against what the service recorded: visits and anonymous shoppers per hour, dwell per
zone, anonymous shoppers by age band and gender, checkout sentiment per lane, offers; buckets under k=3 left out."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pytest
from personalization_helpers import STORE, abandon_cart, members_without_online_events, prepare_member, stocked_sku
from sqlalchemy import Engine

from retailface.services.personalization.analytics import (
    DemographicCount,
    HourCount,
    LaneSentiment,
    OfferCounts,
    StoreAnalytics,
    ZoneDwell,
    age_band,
)
from retailface.services.personalization.domain import Purchase, PurchaseLine, VisitEvent
from retailface.services.personalization.service import Personalization
from retailface.services.shared.errors import InvalidArgument, NotFound

# An hour three days ahead: the seed has nothing there, so every number below is this test's own.
HOUR = math.floor(time.time() / 3600) * 3600 + 72 * 3600


@dataclass
class Recorded:
    report: StoreAnalytics
    pushed: int


def _event(svc: Personalization, event_id: str, kind: str, minute: float, **fields: object) -> None:
    fields.setdefault("track_id", f"track-{event_id}")
    svc.visits.record(VisitEvent(event_id, kind, STORE, HOUR + minute * 60, **fields))  # type: ignore[arg-type]


@pytest.fixture
def recorded(personalization: Personalization, engine: Engine) -> Recorded:
    svc = personalization
    # Anonymous shoppers at the entrance: 4 in the first hour, 1 in the second.
    for index, (band, gender) in enumerate([("30-44", "female")] * 3 + [("18-29", "male")]):
        _event(svc, f"anon-{index}", "entered", 5 + index, age_band=band, gender=gender)
    _event(svc, "anon-late", "entered", 65, age_band="30-44", gender="female")
    # One identified member comes in (offers pushed), redeems one offer at the till and unlikes another.
    member_id = members_without_online_events(engine)[0]
    prepare_member(svc, member_id)
    sku = stocked_sku(engine)[0]
    abandon_cart(svc, member_id, sku, "cart-a", at=HOUR - 3600)
    entered = svc.visits.record(
        VisitEvent("member-in", "entered", STORE, HOUR + 600, member_id=member_id, age_band="60+", gender="male")
    )
    first, second = entered.offers_pushed[:2]
    svc.purchases.record(
        Purchase(
            "tx-1",
            STORE,
            HOUR + 1200,
            [PurchaseLine(first.sku, 1, first.price)],
            member_id=member_id,
            redeemed_offer_ids=[first.offer_id],
        )
    )
    svc.purchases.feedback("fb-1", member_id, second.offer_id, "unliked", at=HOUR + 1300)
    # Dwell: aisle-7 four times, the bakery twice (under k).
    for index, dwell in enumerate([10.0, 20.0, 30.0, 40.0]):
        _event(svc, f"aisle-{index}", "zone_dwell", 20 + index, zone_id="aisle-7", dwell_seconds=dwell)
    for index in range(2):
        _event(svc, f"bakery-{index}", "zone_dwell", 30 + index, zone_id="bakery", dwell_seconds=50.0)
    # Checkouts: lane 3 three times (one unhappy shopper long enough for an alert), lane 4 once (under k).
    for index, negative in enumerate([0.9, 0.1, 0.2]):
        _event(
            svc, f"lane3-{index}", "checkout", 40 + index, lane_id="3", negative_fraction=negative, emotion_seconds=5
        )
    _event(svc, "lane4-0", "checkout", 45, lane_id="4", negative_fraction=0.5, emotion_seconds=1)
    report = svc.analytics.store(STORE, HOUR, HOUR + 7200)
    return Recorded(report, len(entered.offers_pushed))


def test_visits_and_anonymous_shoppers_are_counted_per_hour(recorded: Recorded) -> None:
    assert recorded.report.hours == [HourCount(HOUR, 1, 4), HourCount(HOUR + 3600, 0, 1)]


def test_dwell_per_zone_has_its_mean_and_90th_percentile(recorded: Recorded) -> None:
    assert recorded.report.zones == [ZoneDwell("aisle-7", 4, 25.0, pytest.approx(37.0))]


def test_anonymous_shoppers_are_counted_by_age_band_and_gender(recorded: Recorded) -> None:
    # 30-44 female: 3 + 1 later; 18-29 male (1) is under k=3 and left out; the member's attributes never count.
    assert recorded.report.demographics == [DemographicCount("30-44", "female", 4)]


def test_checkout_sentiment_is_given_per_lane(recorded: Recorded) -> None:
    (lane,) = recorded.report.lanes
    assert lane == LaneSentiment("3", 3, pytest.approx(0.4), 1)


def test_offers_pushed_redeemed_and_unliked_are_counted(recorded: Recorded) -> None:
    assert recorded.pushed >= 2
    assert recorded.report.offers == OfferCounts(pushed=recorded.pushed, redeemed=1, unliked=1)


def test_the_range_bounds_what_is_counted(personalization: Personalization, recorded: Recorded) -> None:
    second_hour = personalization.analytics.store(STORE, HOUR + 3600, HOUR + 7200)
    assert second_hour.hours == [HourCount(HOUR + 3600, 0, 1)]
    assert second_hour.offers == OfferCounts()


def test_a_smaller_k_shows_smaller_buckets(personalization: Personalization, recorded: Recorded) -> None:
    personalization.settings.analytics_min_bucket = 1
    report = personalization.analytics.store(STORE, HOUR, HOUR + 7200)
    assert report.demographics == [DemographicCount("18-29", "male", 1), DemographicCount("30-44", "female", 4)]
    assert [zone.zone_id for zone in report.zones] == ["aisle-7", "bakery"]
    assert [lane.lane_id for lane in report.lanes] == ["3", "4"]


def test_an_unknown_store_is_not_found(personalization: Personalization) -> None:
    with pytest.raises(NotFound, match="unknown store 'store-99'"):
        personalization.analytics.store("store-99", HOUR, HOUR + 3600)


def test_an_empty_range_is_refused(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="since must be before until"):
        personalization.analytics.store(STORE, HOUR, HOUR)


@pytest.mark.parametrize(
    ("years", "confidence", "band"),
    [(16.0, 0.8, "0-17"), (18.0, 0.8, "18-29"), (44.9, 0.8, "30-44"), (59.0, 0.8, "45-59"), (71.0, 0.8, "60+")],
)
def test_ages_fall_into_coarse_bands(years: float, confidence: float, band: str) -> None:
    assert age_band(years, confidence) == band


def test_an_age_without_confidence_has_no_band() -> None:
    assert age_band(35.0, 0.0) == ""
