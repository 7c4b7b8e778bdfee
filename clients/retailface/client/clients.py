"""Typed wrappers over the gateway stubs, one per kind of caller."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from retailface.client.connection import Connection
from retailface.client.stream import Backoff, ResumingStream, StreamGap
from retailface.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    matching_pb2,
    personalization_pb2,
    personalization_pb2_grpc,
)

DEFAULT_TIMEOUT = 30.0


def make_frame(
    image: Any, camera_id: str, store_id: str, sequence: int = 0, captured_at: float | None = None
) -> common_pb2.Frame:
    """A Frame from encoded bytes (JPEG/PNG) or a numpy array (H x W x 3 BGR, or H x W gray)."""
    stamp = Timestamp()
    stamp.FromNanoseconds(int((captured_at if captured_at is not None else time.time()) * 1e9))
    frame = common_pb2.Frame(camera_id=camera_id, store_id=store_id, sequence=sequence, captured_at=stamp)
    if isinstance(image, bytes | bytearray | memoryview):
        frame.encoded = bytes(image)
        return frame
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) not in (2, 3):
        raise TypeError("image must be encoded bytes or a numpy array of shape (H, W, 3) or (H, W)")
    pixel_format = common_pb2.PIXEL_FORMAT_GRAY8 if len(shape) == 2 else common_pb2.PIXEL_FORMAT_BGR8
    if len(shape) == 3 and shape[2] != 3:
        raise ValueError(f"expected 3 channels (BGR), got {shape[2]}")
    if str(image.dtype) != "uint8":
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    # tobytes() packs rows tightly whatever the array's strides, hence stride 0 (packed).
    frame.raw.CopyFrom(
        common_pb2.RawImage(width=shape[1], height=shape[0], stride=0, format=pixel_format, pixels=image.tobytes())
    )
    return frame


class CameraClient:
    """A camera controller: one call per frame batch, or one stream for the camera's life."""

    def __init__(self, connection: Connection, camera_id: str, store_id: str) -> None:
        self._stub = gateway_pb2_grpc.GatewayServiceStub(connection.channel)
        self.camera_id = camera_id
        self.store_id = store_id
        self._sequence = 0

    def frames(self, images: Sequence[Any], captured_at: float | None = None) -> gateway_pb2.FrameBatch:
        batch = gateway_pb2.FrameBatch(request_id=uuid.uuid4().hex)
        for image in images:
            self._sequence += 1
            batch.frames.append(make_frame(image, self.camera_id, self.store_id, self._sequence, captured_at))
        return batch

    def process(self, images: Sequence[Any], timeout: float = DEFAULT_TIMEOUT) -> gateway_pb2.FrameBatchResult:
        return self._stub.ProcessFrames(self.frames(images), timeout=timeout)

    def stream(
        self,
        batches: Iterable[gateway_pb2.FrameBatch],
        backoff: Backoff | None = None,
        max_breaks: int | None = None,
        on_gap: Callable[[StreamGap], None] | None = None,
    ) -> ResumingStream:
        """The results of one long-lived stream of `batches`, resumed over new calls when a call breaks.

        Iterate it for the results; its `gaps` (and `on_gap`) report the breaks and the batches they
        left unanswered.
        """
        return ResumingStream(self._stub.StreamFrames, batches, backoff, max_breaks, on_gap)

    def identify_once(
        self, image: Any, context: str = "kiosk", timeout: float = DEFAULT_TIMEOUT
    ) -> gateway_pb2.IdentifyOnceResponse:
        frame = make_frame(image, self.camera_id, self.store_id)
        return self._stub.IdentifyOnce(
            gateway_pb2.IdentifyOnceRequest(frame=frame, store_id=self.store_id, context=context), timeout=timeout
        )


class PosClient:
    def __init__(self, connection: Connection, store_id: str, lane_id: str) -> None:
        self._stub = gateway_pb2_grpc.GatewayServiceStub(connection.channel)
        self.store_id = store_id
        self.lane_id = lane_id

    def checkout_offers(
        self,
        basket: dict[str, int],
        member_id: str = "",
        loyalty_number: str = "",
        identified_by: int = 0,
        limit: int = 5,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> personalization_pb2.CheckoutOffersResponse:
        request = personalization_pb2.CheckoutOffersRequest(
            store_id=self.store_id,
            lane_id=self.lane_id,
            identified_by=identified_by,
            limit=limit,
            basket=[personalization_pb2.BasketLine(sku=sku, quantity=qty) for sku, qty in basket.items()],
        )
        if member_id:
            request.member_id = member_id
        elif loyalty_number:
            request.loyalty_number = loyalty_number
        return self._stub.GetCheckoutOffers(request, timeout=timeout)

    def record_purchase(
        self,
        transaction_id: str,
        lines: Sequence[tuple[str, int, float]],
        member_id: str = "",
        loyalty_number: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> personalization_pb2.RecordPurchaseResponse:
        purchase = personalization_pb2.Purchase(
            transaction_id=transaction_id,
            store_id=self.store_id,
            lane_id=self.lane_id,
            member_id=member_id,
            loyalty_number=loyalty_number,
            lines=[personalization_pb2.PurchaseLine(sku=s, quantity=q, unit_price=p) for s, q, p in lines],
        )
        purchase.at.GetCurrentTime()
        return self._stub.RecordPurchase(purchase, timeout=timeout)


class StaffClient:
    def __init__(self, connection: Connection, store_id: str) -> None:
        self._stub = gateway_pb2_grpc.GatewayServiceStub(connection.channel)
        self.store_id = store_id

    def alerts(self, kinds: Sequence[int] = ()) -> Iterator[common_pb2.StaffAlert]:
        """Staff alerts for the store as they are raised (cancel the iterator to stop)."""
        return self._stub.StreamStaffAlerts(
            personalization_pb2.StaffAlertsRequest(store_id=self.store_id, kinds=list(kinds))
        )


class AdminClient:
    """Gateway calls; `verify_audit_chain`, `issue_sign_in` and `erasure_requests` call the personalization
    service itself (the gateway does not proxy them), so that connection must point at personalization. So do
    the store, camera, watchlist and analytics methods below `erasure_requests`."""

    def __init__(self, connection: Connection) -> None:
        self._stub = gateway_pb2_grpc.GatewayServiceStub(connection.channel)
        self._personalization = personalization_pb2_grpc.PersonalizationServiceStub(connection.channel)

    def enroll(
        self, member: personalization_pb2.Member, photos: Sequence[bytes], actor: str, timeout: float = 120.0
    ) -> gateway_pb2.EnrollMemberResponse:
        return self._stub.EnrollMember(
            gateway_pb2.EnrollMemberRequest(member=member, photos=list(photos), actor=actor), timeout=timeout
        )

    def erase(
        self, member_id: str, actor: str, reason: str, request_id: str = "", timeout: float = DEFAULT_TIMEOUT
    ) -> gateway_pb2.EraseMemberResponse:
        """Templates and personal data together; the response's receipt completes `request_id` (or a new request)."""
        return self._stub.EraseMember(
            gateway_pb2.EraseMemberRequest(member_id=member_id, actor=actor, reason=reason, request_id=request_id),
            timeout=timeout,
        )

    def galleries(self, timeout: float = DEFAULT_TIMEOUT) -> matching_pb2.ListGalleriesResponse:
        return self._stub.ListGalleries(matching_pb2.ListGalleriesRequest(), timeout=timeout)

    def verify_audit_chain(self, timeout: float = 300.0) -> personalization_pb2.VerifyAuditChainResponse:
        return self._personalization.VerifyAuditChain(personalization_pb2.VerifyAuditChainRequest(), timeout=timeout)

    def issue_sign_in(
        self, member_id: str, actor: str, ttl_seconds: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.IssueMemberSignInResponse:
        """A single-use member portal sign-in code (personalization; ttl 0: the service's default, capped by it)."""
        request = personalization_pb2.IssueMemberSignInRequest(
            member_id=member_id, actor=actor, ttl_seconds=ttl_seconds
        )
        return self._personalization.IssueMemberSignIn(request, timeout=timeout)

    def erasure_requests(
        self, status: int = 0, limit: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> list[personalization_pb2.ErasureRequest]:
        """Erasure requests, newest first (personalization); `status` ERASURE_STATUS_* (0: every status)."""
        request = personalization_pb2.ListErasureRequestsRequest(status=status, limit=limit)
        return list(self._personalization.ListErasureRequests(request, timeout=timeout).requests)

    # Stores, cameras, the watchlist and store analytics: personalization's admin RPCs (not proxied by the gateway).

    def upsert_store(
        self,
        store_id: str,
        name: str,
        timezone: str = "UTC",
        watchlist_enabled: bool = False,
        actor: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> personalization_pb2.Store:
        """Creates or replaces a store (name, IANA timezone, whether watchlist alerts are on there)."""
        store = personalization_pb2.Store(
            store_id=store_id, name=name, timezone=timezone, watchlist_enabled=watchlist_enabled, actor=actor
        )
        return self._personalization.UpsertStore(store, timeout=timeout)

    def stores(self, timeout: float = DEFAULT_TIMEOUT) -> list[personalization_pb2.Store]:
        return list(self._personalization.ListStores(personalization_pb2.ListStoresRequest(), timeout=timeout).stores)

    def register_camera(
        self,
        camera_id: str,
        store_id: str,
        role: str,
        zone_id: str = "",
        lane_id: str = "",
        actor: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> personalization_pb2.Camera:
        """Registers (or moves) a camera; `role` is "entrance", "aisle" or "lane" (a lane camera needs `lane_id`)."""
        camera = personalization_pb2.Camera(
            camera_id=camera_id,
            store_id=store_id,
            role=camera_role(role),
            zone_id=zone_id,
            lane_id=lane_id,
            actor=actor,
        )
        return self._personalization.RegisterCamera(camera, timeout=timeout)

    def remove_camera(self, camera_id: str, actor: str = "", timeout: float = DEFAULT_TIMEOUT) -> None:
        request = personalization_pb2.RemoveCameraRequest(camera_id=camera_id, actor=actor)
        self._personalization.RemoveCamera(request, timeout=timeout)

    def cameras(self, store_id: str = "", timeout: float = DEFAULT_TIMEOUT) -> personalization_pb2.ListCamerasResponse:
        """The registered cameras (of one store, or every store) and the registry's version."""
        return self._personalization.ListCameras(
            personalization_pb2.ListCamerasRequest(store_id=store_id), timeout=timeout
        )

    def upsert_watchlist_entry(
        self, subject_id: str, reason: str, expires_at: float, actor: str, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.WatchlistEntry:
        """Adds or changes an entry (epoch seconds `expires_at`); it alerts once a second person confirms it."""
        entry = personalization_pb2.WatchlistEntry(subject_id=subject_id, reason=reason, actor=actor)
        entry.expires_at.FromNanoseconds(int(expires_at * 1e9))
        return self._personalization.UpsertWatchlistEntry(entry, timeout=timeout)

    def confirm_watchlist_entry(
        self, subject_id: str, actor: str, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.WatchlistEntry:
        """The second person's confirmation (`actor` must not be who added the entry)."""
        entry = personalization_pb2.WatchlistEntry(subject_id=subject_id, actor=actor, confirm=True)
        return self._personalization.UpsertWatchlistEntry(entry, timeout=timeout)

    def remove_watchlist_entry(
        self, subject_id: str, actor: str, reason: str = "", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        request = personalization_pb2.RemoveWatchlistEntryRequest(subject_id=subject_id, actor=actor, reason=reason)
        self._personalization.RemoveWatchlistEntry(request, timeout=timeout)

    def watchlist(
        self, include_expired: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> list[personalization_pb2.WatchlistEntry]:
        request = personalization_pb2.ListWatchlistRequest(include_expired=include_expired)
        return list(self._personalization.ListWatchlist(request, timeout=timeout).entries)

    def store_analytics(
        self, store_id: str, since: float | None = None, until: float | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> personalization_pb2.StoreAnalytics:
        """Aggregates of one store over [since, until) (epoch seconds; defaults: the last 24 hours)."""
        request = personalization_pb2.StoreAnalyticsRequest(store_id=store_id)
        if since is not None:
            request.since.FromNanoseconds(int(since * 1e9))
        if until is not None:
            request.until.FromNanoseconds(int(until * 1e9))
        return self._personalization.GetStoreAnalytics(request, timeout=timeout)


CAMERA_ROLES = {
    "entrance": personalization_pb2.CAMERA_ROLE_ENTRANCE,
    "aisle": personalization_pb2.CAMERA_ROLE_AISLE,
    "lane": personalization_pb2.CAMERA_ROLE_LANE,
}


def camera_role(name: str) -> int:
    """The CameraRole of "entrance", "aisle" or "lane"; ValueError for another name."""
    if name not in CAMERA_ROLES:
        raise ValueError(f"camera role must be one of {', '.join(CAMERA_ROLES)}, not {name!r}")
    return CAMERA_ROLES[name]
