"""Stores and their cameras: the registry the gateway reads (ListCameras) instead of a static file.

A store has an IANA timezone (checked) and a per-store `watchlist_enabled` flag, off until an admin
turns it on (the global setting RETAILFACE_PERSONALIZATION_WATCHLIST_ENABLED stays as a kill switch).
A camera belongs to a registered store and has a role: entrance, aisle or lane; only a lane camera has
a lane id, and it must have one. Every camera change bumps the registry's `version` in the same
transaction, so a reader that cached the cameras can tell whether its copy is stale. Every change is
audited with its actor. Stores are never deleted (visits and purchases refer to them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from retailface.services.personalization import db
from retailface.services.personalization.base import Component, check_timezone, require_store, write_audit
from retailface.services.shared.errors import InvalidArgument, NotFound
from retailface.services.shared.identifiers import check_id, clean_display_name

CAMERA_ROLES = ("entrance", "aisle", "lane")
MAX_STORE_ID_LENGTH = 64  # the stores table's key


@dataclass(frozen=True)
class Store:
    store_id: str
    name: str
    timezone: str = "UTC"
    watchlist_enabled: bool = False


@dataclass(frozen=True)
class Camera:
    camera_id: str
    store_id: str
    role: str
    zone_id: str = ""
    lane_id: str = ""


@dataclass(frozen=True)
class CameraList:
    cameras: list[Camera]
    version: int  # changes whenever a camera is registered or removed


def check_store_id(store_id: str) -> str:
    check_id(store_id, "store_id")
    if len(store_id) > MAX_STORE_ID_LENGTH:
        raise InvalidArgument(f"store_id is longer than {MAX_STORE_ID_LENGTH} characters; use a shorter id")
    return store_id


def check_camera(camera: Camera) -> Camera:
    """The camera when its fields are valid; InvalidArgument saying what to fix otherwise."""
    check_id(camera.camera_id, "camera_id")
    check_store_id(camera.store_id)
    if camera.role not in CAMERA_ROLES:
        raise InvalidArgument(f"camera role must be one of {', '.join(CAMERA_ROLES)} (got {camera.role!r})")
    if camera.zone_id:
        check_id(camera.zone_id, "zone_id")
    if camera.role == "lane":
        check_id(camera.lane_id, "lane_id (a lane camera needs the lane it watches)")
    elif camera.lane_id:
        raise InvalidArgument(f"lane_id is only for lane cameras; this camera's role is {camera.role}")
    return camera


def _store_from_row(row: Any) -> Store:
    return Store(row.store_id, row.name, row.timezone, bool(row.watchlist_enabled))


def _camera_from_row(row: Any) -> Camera:
    return Camera(row.camera_id, row.store_id, row.role, row.zone_id, row.lane_id)


def bump_camera_version(conn: Connection) -> None:
    """One more camera change, in the caller's transaction (the row lock orders replicas on PostgreSQL)."""
    registry = db.camera_registry
    if not conn.execute(update(registry).where(registry.c.id == 1).values(version=registry.c.version + 1)).rowcount:
        conn.execute(db.insert_ignoring_duplicates(conn.engine, registry).values(id=1, version=0))
        conn.execute(update(registry).where(registry.c.id == 1).values(version=registry.c.version + 1))


def store_watchlist_enabled(conn: Connection, store_id: str) -> bool:
    row = conn.execute(select(db.stores.c.watchlist_enabled).where(db.stores.c.store_id == store_id)).first()
    return bool(row and row.watchlist_enabled)


class Stores(Component):
    def upsert(self, store: Store, actor: str) -> Store:
        """Creates the store or replaces its name, timezone and watchlist flag."""
        check_store_id(store.store_id)
        name = clean_display_name(store.name)
        if not name:
            raise InvalidArgument("name is required (the store's name as staff and managers see it)")
        timezone = store.timezone or "UTC"
        check_timezone(timezone)
        stored = Store(store.store_id, name, timezone, bool(store.watchlist_enabled))
        now = time.time()
        with db.write(self.engine) as conn:
            existed = conn.execute(select(db.stores.c.store_id).where(db.stores.c.store_id == store.store_id)).first()
            conn.execute(
                db.upsert(self.engine, db.stores).values(
                    store_id=stored.store_id,
                    name=stored.name,
                    timezone=stored.timezone,
                    watchlist_enabled=stored.watchlist_enabled,
                    updated_at=now,
                )
            )
            write_audit(
                conn,
                actor,
                "update",
                f"store:{stored.store_id}",
                "store updated" if existed else "store created",
                now,
                name=stored.name,
                timezone=stored.timezone,
                watchlist_enabled=stored.watchlist_enabled,
            )
        return stored

    def list_stores(self) -> list[Store]:
        with db.read(self.engine) as conn:
            rows = conn.execute(select(db.stores).order_by(db.stores.c.store_id)).all()
        return [_store_from_row(row) for row in rows]

    def get(self, store_id: str) -> Store:
        check_store_id(store_id)
        with db.read(self.engine) as conn:
            row = conn.execute(select(db.stores).where(db.stores.c.store_id == store_id)).first()
        if row is None:
            raise NotFound(f"unknown store {store_id!r}: create it with UpsertStore")
        return _store_from_row(row)

    def register_camera(self, camera: Camera, actor: str) -> Camera:
        """Registers the camera, or moves it (store, role, zone, lane): the gateway picks it up on its next refresh."""
        check_camera(camera)
        now = time.time()
        with db.write(self.engine) as conn:
            try:
                require_store(conn, camera.store_id)
            except NotFound:
                raise NotFound(f"unknown store {camera.store_id!r}: create it with UpsertStore first") from None
            existed = conn.execute(
                select(db.cameras.c.camera_id).where(db.cameras.c.camera_id == camera.camera_id)
            ).first()
            conn.execute(
                db.upsert(self.engine, db.cameras).values(
                    camera_id=camera.camera_id,
                    store_id=camera.store_id,
                    role=camera.role,
                    zone_id=camera.zone_id,
                    lane_id=camera.lane_id,
                    updated_at=now,
                )
            )
            bump_camera_version(conn)
            write_audit(
                conn,
                actor,
                "update",
                f"camera:{camera.camera_id}",
                "camera moved" if existed else "camera registered",
                now,
                store_id=camera.store_id,
                role=camera.role,
                zone_id=camera.zone_id,
                lane_id=camera.lane_id,
            )
        return camera

    def remove_camera(self, camera_id: str, actor: str) -> None:
        """Removes the camera: the gateway refuses its frames from its next refresh on."""
        check_id(camera_id, "camera_id")
        with db.write(self.engine) as conn:
            row = conn.execute(select(db.cameras).where(db.cameras.c.camera_id == camera_id)).first()
            if row is None:
                raise NotFound(f"camera {camera_id!r} is not registered (ListCameras shows those that are)")
            conn.execute(db.cameras.delete().where(db.cameras.c.camera_id == camera_id))
            bump_camera_version(conn)
            write_audit(conn, actor, "remove", f"camera:{camera_id}", "camera removed", store_id=row.store_id)

    def cameras(self, store_id: str = "") -> CameraList:
        """The registered cameras (of one store, or all), and the registry's version, read together."""
        query = select(db.cameras).order_by(db.cameras.c.store_id, db.cameras.c.camera_id)
        with db.read(self.engine) as conn:
            if store_id:
                check_store_id(store_id)
                require_store(conn, store_id)
                query = query.where(db.cameras.c.store_id == store_id)
            rows = conn.execute(query).all()
            version = conn.execute(select(db.camera_registry.c.version).where(db.camera_registry.c.id == 1)).scalar()
        return CameraList([_camera_from_row(row) for row in rows], int(version or 0))
