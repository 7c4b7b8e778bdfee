"""Protobuf <-> plain types for stores, cameras, the watchlist and store analytics (servicer_admin.py)."""

from __future__ import annotations

from retailface.services.personalization.analytics import StoreAnalytics
from retailface.services.personalization.converters import GENDERS, name_from_proto, time_from_proto, time_to_proto
from retailface.services.personalization.stores import Camera, CameraList, Store
from retailface.services.personalization.watchlist import WatchlistEntry
from retailface.v1 import personalization_pb2

CAMERA_ROLES = {
    personalization_pb2.CAMERA_ROLE_ENTRANCE: "entrance",
    personalization_pb2.CAMERA_ROLE_AISLE: "aisle",
    personalization_pb2.CAMERA_ROLE_LANE: "lane",
}
_CAMERA_ROLE_ENUMS = {name: value for value, name in CAMERA_ROLES.items()}
_GENDER_ENUMS = {name: value for value, name in GENDERS.items()}


def store_from_proto(message: personalization_pb2.Store) -> Store:
    return Store(message.store_id, message.name, message.timezone, message.watchlist_enabled)


def store_to_proto(store: Store) -> personalization_pb2.Store:
    return personalization_pb2.Store(
        store_id=store.store_id, name=store.name, timezone=store.timezone, watchlist_enabled=store.watchlist_enabled
    )


def camera_from_proto(message: personalization_pb2.Camera) -> Camera:
    role = name_from_proto(CAMERA_ROLES, message.role) if message.role else ""
    return Camera(message.camera_id, message.store_id, role, message.zone_id, message.lane_id)


def camera_to_proto(camera: Camera) -> personalization_pb2.Camera:
    return personalization_pb2.Camera(
        camera_id=camera.camera_id,
        store_id=camera.store_id,
        role=_CAMERA_ROLE_ENUMS[camera.role],
        zone_id=camera.zone_id,
        lane_id=camera.lane_id,
    )


def cameras_to_proto(listed: CameraList) -> personalization_pb2.ListCamerasResponse:
    return personalization_pb2.ListCamerasResponse(
        cameras=[camera_to_proto(camera) for camera in listed.cameras], version=listed.version
    )


def expiry_from_proto(message: personalization_pb2.WatchlistEntry) -> float | None:
    return time_from_proto(message.expires_at, None) if message.HasField("expires_at") else None


def watchlist_entry_to_proto(entry: WatchlistEntry) -> personalization_pb2.WatchlistEntry:
    return personalization_pb2.WatchlistEntry(
        subject_id=entry.subject_id,
        reason=entry.reason,
        added_by=entry.added_by,
        added_at=time_to_proto(entry.added_at),
        expires_at=time_to_proto(entry.expires_at),
        confirmed_by=entry.confirmed_by,
        confirmed_at=time_to_proto(entry.confirmed_at),
    )


def analytics_to_proto(report: StoreAnalytics) -> personalization_pb2.StoreAnalytics:
    return personalization_pb2.StoreAnalytics(
        store_id=report.store_id,
        hours=[
            personalization_pb2.HourCount(
                hour=time_to_proto(hour.hour), visits=hour.visits, anonymous_shoppers=hour.anonymous_shoppers
            )
            for hour in report.hours
        ],
        zones=[
            personalization_pb2.ZoneDwell(
                zone_id=zone.zone_id,
                events=zone.events,
                mean_dwell_seconds=zone.mean_dwell_seconds,
                p90_dwell_seconds=zone.p90_dwell_seconds,
            )
            for zone in report.zones
        ],
        demographics=[
            personalization_pb2.DemographicCount(
                age_band=group.age_band, gender=_GENDER_ENUMS.get(group.gender, 0), shoppers=group.shoppers
            )
            for group in report.demographics
        ],
        lanes=[
            personalization_pb2.LaneSentiment(
                lane_id=lane.lane_id,
                checkouts=lane.checkouts,
                mean_negative=lane.mean_negative,
                dissatisfaction_alerts=lane.dissatisfaction_alerts,
            )
            for lane in report.lanes
        ],
        offers=personalization_pb2.OfferCounts(
            pushed=report.offers.pushed, redeemed=report.offers.redeemed, unliked=report.offers.unliked
        ),
    )
