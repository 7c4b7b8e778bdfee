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
    """Gateway calls; `verify_audit_chain` calls the personalization service itself (the gateway does not
    proxy audit calls), so that connection must point at personalization."""

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
        self, member_id: str, actor: str, reason: str, timeout: float = DEFAULT_TIMEOUT
    ) -> gateway_pb2.EraseMemberResponse:
        return self._stub.EraseMember(
            gateway_pb2.EraseMemberRequest(member_id=member_id, actor=actor, reason=reason), timeout=timeout
        )

    def galleries(self, timeout: float = DEFAULT_TIMEOUT) -> matching_pb2.ListGalleriesResponse:
        return self._stub.ListGalleries(matching_pb2.ListGalleriesRequest(), timeout=timeout)

    def verify_audit_chain(self, timeout: float = 300.0) -> personalization_pb2.VerifyAuditChainResponse:
        return self._personalization.VerifyAuditChain(personalization_pb2.VerifyAuditChainRequest(), timeout=timeout)
