"""Store analytics: aggregates of one store over a time range, for managers. Nothing per person leaves.

    hours         identified members' visits started, and anonymous shoppers who entered, per UTC hour
    zones         zone dwell events per zone: count, mean and 90th percentile of the dwell time
    demographics  anonymous shoppers who entered, by coarse age band and gender
    lanes         checkouts per lane: count, mean share of negative expressions, dissatisfaction alerts
    offers        offers delivered at the store, redeemed, and unliked (a product or its category)

Anonymous shoppers are counted from their `entered` events (one per track at an entrance camera), whose age
band and gender are the only attributes kept of them (visit_events.age_band, .gender; members' events never
carry them). Buckets built from observations of people (age band and gender, zone, lane) with fewer than
`Settings.analytics_min_bucket` (k, 3 by default) shoppers or events are left out, so that no answer
describes a single shopper; hourly counts are counts only and are all given.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from retailface.services.personalization import db
from retailface.services.personalization.base import Component, require_store
from retailface.services.personalization.stores import check_store_id
from retailface.services.shared.errors import InvalidArgument

HOUR = 3600.0
MAX_RANGE_DAYS = 92  # one quarter at most per request
# Upper bounds (exclusive) of the age bands; the last band is open.
AGE_BANDS: tuple[tuple[float, str], ...] = ((18, "0-17"), (30, "18-29"), (45, "30-44"), (60, "45-59"))
OLDEST_BAND = "60+"
GENDERS = ("female", "male")
UNLIKED = ("unliked", "unliked_category")


def age_band(age_years: float, confidence: float) -> str:
    """The coarse band of an estimated age; "" when the estimator gave none."""
    if confidence <= 0 or age_years <= 0:
        return ""
    return next((band for upper, band in AGE_BANDS if age_years < upper), OLDEST_BAND)


@dataclass(frozen=True)
class HourCount:
    hour: float  # start of the hour, UTC epoch seconds
    visits: int
    anonymous_shoppers: int


@dataclass(frozen=True)
class ZoneDwell:
    zone_id: str
    events: int
    mean_dwell_seconds: float
    p90_dwell_seconds: float


@dataclass(frozen=True)
class DemographicCount:
    age_band: str
    gender: str
    shoppers: int


@dataclass(frozen=True)
class LaneSentiment:
    lane_id: str
    checkouts: int
    mean_negative: float
    dissatisfaction_alerts: int


@dataclass(frozen=True)
class OfferCounts:
    pushed: int = 0
    redeemed: int = 0
    unliked: int = 0


@dataclass
class StoreAnalytics:
    store_id: str
    since: float
    until: float
    hours: list[HourCount] = field(default_factory=list)
    zones: list[ZoneDwell] = field(default_factory=list)
    demographics: list[DemographicCount] = field(default_factory=list)
    lanes: list[LaneSentiment] = field(default_factory=list)
    offers: OfferCounts = field(default_factory=OfferCounts)


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _hour_of(at: float) -> float:
    return math.floor(at / HOUR) * HOUR


class Analytics(Component):
    def store(self, store_id: str, since: float | None, until: float | None = None) -> StoreAnalytics:
        """The store's aggregates over [since, until); `until` defaults to now, `since` to 24 hours before it."""
        check_store_id(store_id)
        until = time.time() if until is None else until
        since = until - 24 * HOUR if since is None else since
        if since >= until:
            raise InvalidArgument("since must be before until")
        if until - since > MAX_RANGE_DAYS * 24 * HOUR:
            raise InvalidArgument(f"the range is longer than {MAX_RANGE_DAYS} days: ask for a shorter one")
        report = StoreAnalytics(store_id, since, until)
        with db.read(self.engine) as conn:
            require_store(conn, store_id)
            report.hours = self._hours(conn, store_id, since, until)
            report.zones = self._zones(conn, store_id, since, until)
            report.demographics = self._demographics(conn, store_id, since, until)
            report.lanes = self._lanes(conn, store_id, since, until)
            report.offers = self._offers(conn, store_id, since, until)
        return report

    def _hours(self, conn: Connection, store_id: str, since: float, until: float) -> list[HourCount]:
        visits, events = db.visits, db.visit_events
        started = conn.execute(
            select(visits.c.started_at).where(
                visits.c.store_id == store_id,
                visits.c.member_id.is_not(None),
                visits.c.started_at >= since,
                visits.c.started_at < until,
            )
        ).scalars()
        entered = conn.execute(select(events.c.at).where(*_anonymous_entries(store_id, since, until))).scalars()
        identified = Counter(_hour_of(at) for at in started)
        anonymous = Counter(_hour_of(at) for at in entered)
        return [
            HourCount(hour, identified.get(hour, 0), anonymous.get(hour, 0))
            for hour in sorted(set(identified) | set(anonymous))
        ]

    def _zones(self, conn: Connection, store_id: str, since: float, until: float) -> list[ZoneDwell]:
        events = db.visit_events
        rows = conn.execute(
            select(events.c.zone_id, events.c.dwell_seconds).where(
                events.c.store_id == store_id,
                events.c.type == "zone_dwell",
                events.c.zone_id != "",
                events.c.at >= since,
                events.c.at < until,
            )
        ).all()
        by_zone: dict[str, list[float]] = defaultdict(list)
        for zone_id, dwell in rows:
            by_zone[zone_id].append(float(dwell))
        return [
            ZoneDwell(zone, len(dwells), sum(dwells) / len(dwells), percentile(dwells, 0.9))
            for zone, dwells in sorted(by_zone.items())
            if len(dwells) >= self.settings.analytics_min_bucket
        ]

    def _demographics(self, conn: Connection, store_id: str, since: float, until: float) -> list[DemographicCount]:
        events = db.visit_events
        rows = conn.execute(
            select(events.c.age_band, events.c.gender, func.count())
            .where(*_anonymous_entries(store_id, since, until), (events.c.age_band != "") | (events.c.gender != ""))
            .group_by(events.c.age_band, events.c.gender)
            .order_by(events.c.age_band, events.c.gender)
        ).all()
        return [
            DemographicCount(band, gender, int(count))
            for band, gender, count in rows
            if count >= self.settings.analytics_min_bucket
        ]

    def _lanes(self, conn: Connection, store_id: str, since: float, until: float) -> list[LaneSentiment]:
        events, alerts = db.visit_events, db.staff_alerts
        checkouts = conn.execute(
            select(events.c.lane_id, func.count(), func.avg(events.c.negative_fraction))
            .where(
                events.c.store_id == store_id,
                events.c.type == "checkout",
                events.c.lane_id != "",
                events.c.at >= since,
                events.c.at < until,
            )
            .group_by(events.c.lane_id)
        ).all()
        alert_counts = conn.execute(
            select(alerts.c.lane_id, func.count())
            .where(
                alerts.c.store_id == store_id,
                alerts.c.kind == "dissatisfaction",
                alerts.c.raised_at >= since,
                alerts.c.raised_at < until,
            )
            .group_by(alerts.c.lane_id)
        ).all()
        raised: dict[str, int] = {str(lane): int(count) for lane, count in alert_counts}
        return [
            LaneSentiment(lane, int(count), float(mean or 0.0), int(raised.get(lane, 0)))
            for lane, count, mean in sorted(checkouts)
            if count >= self.settings.analytics_min_bucket
        ]

    def _offers(self, conn: Connection, store_id: str, since: float, until: float) -> OfferCounts:
        deliveries, feedback = db.offer_deliveries, db.offer_feedback
        at_store = deliveries.c.store_id == store_id
        pushed = conn.execute(
            select(func.count()).where(at_store, deliveries.c.delivered_at >= since, deliveries.c.delivered_at < until)
        ).scalar_one()
        redeemed = conn.execute(
            select(func.count()).where(at_store, deliveries.c.redeemed_at >= since, deliveries.c.redeemed_at < until)
        ).scalar_one()
        unliked = conn.execute(
            select(func.count(func.distinct(feedback.c.offer_id)))
            .select_from(feedback.join(deliveries, deliveries.c.offer_id == feedback.c.offer_id))
            .where(at_store, feedback.c.type.in_(UNLIKED), feedback.c.at >= since, feedback.c.at < until)
        ).scalar_one()
        return OfferCounts(int(pushed), int(redeemed), int(unliked))


def _anonymous_entries(store_id: str, since: float, until: float) -> tuple[Any, ...]:
    events = db.visit_events
    return (
        events.c.store_id == store_id,
        events.c.type == "entered",
        events.c.member_id.is_(None),
        events.c.at >= since,
        events.c.at < until,
    )
