"""Stores (timezone, watchlist flag) and the camera registry (roles, zones, lanes, version), each change audited."""

from __future__ import annotations

import json
import time

import pytest
from personalization_helpers import STORE
from sqlalchemy import Engine, inspect, select

from retailface.services.personalization import db, migrations
from retailface.services.personalization.service import Personalization
from retailface.services.personalization.stores import Camera, Store
from retailface.services.shared.errors import InvalidArgument, NotFound


def _audit(engine: Engine, subject: str) -> list[tuple[str, str, str, dict[str, object]]]:
    log = db.audit_log
    with db.read(engine) as conn:
        rows = conn.execute(
            select(log.c.actor, log.c.action, log.c.reason, log.c.detail).where(log.c.subject == subject)
        ).all()
    return [(r.actor, r.action, r.reason, json.loads(r.detail)) for r in rows]


def test_a_new_store_has_the_watchlist_off(personalization: Personalization) -> None:
    personalization.stores.upsert(Store("store-77", "Lyon Part-Dieu", "Europe/Paris"), actor="admin:ops")
    assert personalization.stores.get("store-77") == Store("store-77", "Lyon Part-Dieu", "Europe/Paris", False)


def test_a_store_is_created_and_updated_with_audit(personalization: Personalization, engine: Engine) -> None:
    personalization.stores.upsert(Store("store-77", "Lyon", "Europe/Paris"), actor="admin:ops")
    personalization.stores.upsert(Store("store-77", "Lyon Part-Dieu", "Europe/Paris", True), actor="admin:lea")
    assert _audit(engine, "store:store-77") == [
        (
            "admin:ops",
            "update",
            "store created",
            {"name": "Lyon", "timezone": "Europe/Paris", "watchlist_enabled": False},
        ),
        (
            "admin:lea",
            "update",
            "store updated",
            {"name": "Lyon Part-Dieu", "timezone": "Europe/Paris", "watchlist_enabled": True},
        ),
    ]


def test_an_unknown_timezone_is_refused(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="unknown IANA timezone 'Europe/Lyon'"):
        personalization.stores.upsert(Store("store-77", "Lyon", "Europe/Lyon"), actor="admin:ops")


def test_a_store_needs_a_name(personalization: Personalization) -> None:
    with pytest.raises(InvalidArgument, match="name is required"):
        personalization.stores.upsert(Store("store-77", "  ", "UTC"), actor="admin:ops")


def test_stores_are_listed_by_id(personalization: Personalization) -> None:
    personalization.stores.upsert(Store("store-00", "Annex", "UTC"), actor="admin:ops")
    listed = personalization.stores.list_stores()
    assert listed[0] == Store("store-00", "Annex", "UTC", False)
    assert STORE in [store.store_id for store in listed]


def test_a_camera_is_registered_in_a_store(personalization: Personalization) -> None:
    camera = Camera("lane-cam-3", STORE, "lane", "checkout", "3")
    personalization.stores.register_camera(camera, actor="admin:ops")
    assert personalization.stores.cameras(STORE).cameras == [camera]


def test_a_camera_of_an_unknown_store_is_refused(personalization: Personalization) -> None:
    with pytest.raises(NotFound, match="unknown store 'store-99': create it with UpsertStore first"):
        personalization.stores.register_camera(Camera("door-1", "store-99", "entrance"), actor="admin:ops")


@pytest.mark.parametrize(
    ("camera", "message"),
    [
        (Camera("door-1", STORE, "ceiling"), "camera role must be one of entrance, aisle, lane"),
        (
            Camera("lane-cam", STORE, "lane", "checkout"),
            "lane_id .a lane camera needs the lane it watches. is required",
        ),
        (Camera("door-1", STORE, "entrance", "entrance", "3"), "lane_id is only for lane cameras"),
        (Camera("door 1", STORE, "entrance"), "camera_id 'door 1' is not a valid id"),
    ],
)
def test_an_invalid_camera_is_refused_with_what_to_fix(
    personalization: Personalization, camera: Camera, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        personalization.stores.register_camera(camera, actor="admin:ops")


def test_every_camera_change_bumps_the_version(personalization: Personalization) -> None:
    start = personalization.stores.cameras().version
    personalization.stores.register_camera(Camera("door-1", STORE, "entrance", "entrance"), actor="admin:ops")
    personalization.stores.register_camera(Camera("door-1", STORE, "aisle", "aisle-2"), actor="admin:ops")
    personalization.stores.remove_camera("door-1", actor="admin:ops")
    listed = personalization.stores.cameras()
    assert (listed.version, listed.cameras) == (start + 3, [])


def test_cameras_are_listed_for_one_store(personalization: Personalization) -> None:
    personalization.stores.upsert(Store("store-77", "Lyon", "Europe/Paris"), actor="admin:ops")
    personalization.stores.register_camera(Camera("door-1", STORE, "entrance"), actor="admin:ops")
    personalization.stores.register_camera(Camera("door-77", "store-77", "entrance"), actor="admin:ops")
    assert [c.camera_id for c in personalization.stores.cameras("store-77").cameras] == ["door-77"]
    assert [c.camera_id for c in personalization.stores.cameras().cameras] == ["door-1", "door-77"]


def test_removing_an_unregistered_camera_is_not_found(personalization: Personalization) -> None:
    with pytest.raises(NotFound, match="camera 'door-9' is not registered"):
        personalization.stores.remove_camera("door-9", actor="admin:ops")


def test_camera_changes_are_audited_with_their_actor(personalization: Personalization, engine: Engine) -> None:
    personalization.stores.register_camera(Camera("door-1", STORE, "entrance", "entrance"), actor="admin:ops")
    personalization.stores.remove_camera("door-1", actor="admin:lea")
    assert _audit(engine, "camera:door-1") == [
        (
            "admin:ops",
            "update",
            "camera registered",
            {"store_id": STORE, "role": "entrance", "zone_id": "entrance", "lane_id": ""},
        ),
        ("admin:lea", "remove", "camera removed", {"store_id": STORE}),
    ]


def test_migration_3_adds_what_a_version_2_database_lacks(engine: Engine) -> None:
    """The seed without what migration 3 brings (as a database of version 2 is), with a watchlist entry of then."""
    with db.write(engine) as conn:
        conn.exec_driver_sql("DROP TABLE cameras")
        conn.exec_driver_sql("DROP TABLE camera_registry")
        for table, columns in migrations._V3_COLUMNS.items():
            for column in columns:
                conn.exec_driver_sql(f"ALTER TABLE {table.name} DROP COLUMN {column}")
        conn.exec_driver_sql("INSERT INTO watchlist VALUES ('wl-1', 'report', 'lead', 1.0)")
    with db.write(engine) as conn:
        migrations._v3_stores_cameras_watchlist_expiry(conn)
    with db.read(engine) as conn:
        assert {"watchlist_enabled", "updated_at"} <= {c["name"] for c in inspect(conn).get_columns("stores")}
        assert set(conn.execute(select(db.stores.c.watchlist_enabled)).scalars()) == {False}
        assert conn.execute(select(db.watchlist.c.expires_at)).scalar_one() > time.time() + 29 * 86_400
        assert conn.execute(select(db.camera_registry.c.version)).scalar_one() == 0
        assert conn.execute(select(db.cameras)).all() == []
