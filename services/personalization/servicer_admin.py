"""gRPC for stores, cameras, the watchlist and store analytics (admins, managers; the gateway reads cameras).

A mixin of PersonalizationServicer: converts messages and calls the logic, nothing more. Who may call what is
ADMIN_METHOD_ROLES; a token scoped to stores (auth.Principal) reads and acts for those stores only
(`require_store_access`, also used by the staff alert RPCs).
"""

from __future__ import annotations

import grpc

from retailface.services.personalization import converters_admin
from retailface.services.personalization.converters import time_from_proto
from retailface.services.personalization.service import Personalization
from retailface.services.shared.auth import current_caller
from retailface.services.shared.errors import PermissionDenied
from retailface.v1 import personalization_pb2

_ADMIN = frozenset({"admin"})
_WATCHLIST = frozenset({"admin", "privacy"})
_STORE_READERS = frozenset({"staff", "manager", "privacy", "web", "service", "admin"})
_CAMERA_READERS = frozenset({"service", "manager", "web", "admin"})  # service: the gateway
_ANALYTICS = frozenset({"manager", "admin"})

ADMIN_METHOD_ROLES: dict[str, frozenset[str]] = {
    "UpsertStore": _ADMIN,
    "ListStores": _STORE_READERS,
    "RegisterCamera": _ADMIN,
    "RemoveCamera": _ADMIN,
    "ListCameras": _CAMERA_READERS,
    "UpsertWatchlistEntry": _WATCHLIST,
    "RemoveWatchlistEntry": _WATCHLIST,
    "ListWatchlist": _WATCHLIST,
    "GetStoreAnalytics": _ANALYTICS,
}


def _actor(named: str = "") -> str:
    """The audit actor: who the request names, prefixed with the caller's authenticated role."""
    caller = current_caller()
    role = caller.role if caller is not None else ""
    return f"{role}:{named}" if named and role else named or role or "unknown"


def _person(named: str) -> str:
    """The actor of a change that must name a person (the watchlist's four eyes); "" when the request names none."""
    return _actor(named) if named else ""


def scoped_stores() -> frozenset[str]:
    """The stores the caller's token is limited to; empty: every store."""
    caller = current_caller()
    return caller.stores if caller is not None else frozenset()


def require_store_access(store_id: str) -> None:
    """PERMISSION_DENIED when the caller's token is scoped to stores and `store_id` is not one of them."""
    caller = current_caller()
    if caller is not None and not caller.may_act_for(store_id):
        raise PermissionDenied(
            f"this {caller.role} token acts for store {', '.join(sorted(caller.stores))} only, "
            f"not for store {store_id!r}"
        )


class AdminRpcs:
    personalization: Personalization

    def UpsertStore(
        self, request: personalization_pb2.Store, context: grpc.ServicerContext
    ) -> personalization_pb2.Store:
        store = self.personalization.stores.upsert(
            converters_admin.store_from_proto(request), actor=_actor(request.actor)
        )
        return converters_admin.store_to_proto(store)

    def ListStores(
        self, request: personalization_pb2.ListStoresRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.ListStoresResponse:
        scope = scoped_stores()
        stores = [s for s in self.personalization.stores.list_stores() if not scope or s.store_id in scope]
        return personalization_pb2.ListStoresResponse(stores=[converters_admin.store_to_proto(s) for s in stores])

    def RegisterCamera(
        self, request: personalization_pb2.Camera, context: grpc.ServicerContext
    ) -> personalization_pb2.Camera:
        camera = converters_admin.camera_from_proto(request)
        registered = self.personalization.stores.register_camera(camera, actor=_actor(request.actor))
        return converters_admin.camera_to_proto(registered)

    def RemoveCamera(
        self, request: personalization_pb2.RemoveCameraRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.RemoveCameraResponse:
        self.personalization.stores.remove_camera(request.camera_id, actor=_actor(request.actor))
        return personalization_pb2.RemoveCameraResponse()

    def ListCameras(
        self, request: personalization_pb2.ListCamerasRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.ListCamerasResponse:
        if request.store_id:
            require_store_access(request.store_id)
        listed = self.personalization.stores.cameras(request.store_id)
        response = converters_admin.cameras_to_proto(listed)
        scope = scoped_stores()
        if scope:
            kept = [camera for camera in response.cameras if camera.store_id in scope]
            del response.cameras[:]
            response.cameras.extend(kept)
        return response

    def UpsertWatchlistEntry(
        self, request: personalization_pb2.WatchlistEntry, context: grpc.ServicerContext
    ) -> personalization_pb2.WatchlistEntry:
        actor = _person(request.actor)
        if request.confirm:
            entry = self.personalization.watchlist.confirm(request.subject_id, actor=actor)
        else:
            expires_at = converters_admin.expiry_from_proto(request)
            entry = self.personalization.watchlist.upsert(request.subject_id, request.reason, expires_at, actor=actor)
        return converters_admin.watchlist_entry_to_proto(entry)

    def RemoveWatchlistEntry(
        self, request: personalization_pb2.RemoveWatchlistEntryRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.RemoveWatchlistEntryResponse:
        self.personalization.watchlist.remove(request.subject_id, actor=_person(request.actor), reason=request.reason)
        return personalization_pb2.RemoveWatchlistEntryResponse()

    def ListWatchlist(
        self, request: personalization_pb2.ListWatchlistRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.ListWatchlistResponse:
        entries = self.personalization.watchlist.entries(include_expired=request.include_expired)
        return personalization_pb2.ListWatchlistResponse(
            entries=[converters_admin.watchlist_entry_to_proto(entry) for entry in entries]
        )

    def GetStoreAnalytics(
        self, request: personalization_pb2.StoreAnalyticsRequest, context: grpc.ServicerContext
    ) -> personalization_pb2.StoreAnalytics:
        require_store_access(request.store_id)
        report = self.personalization.analytics.store(
            request.store_id, time_from_proto(request.since, None), time_from_proto(request.until, None)
        )
        return converters_admin.analytics_to_proto(report)
