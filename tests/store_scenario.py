"""What the process tests of a whole store share (tests/gateway/test_end_to_end.py, tests/chain): frames of the
test videos, JPEG photos, a consenting member, and an online-cart item in stock (an offer to push on entry)."""

from __future__ import annotations

import time

import numpy as np

from retailface.devtools import scenario
from retailface.devtools.models import testdata_path
from retailface.v1 import personalization_pb2, personalization_pb2_grpc


def video_frames(name: str, every: int, limit: int, start_seconds: float = 0.0) -> list[np.ndarray]:
    """Up to `limit` frames of a test video, one in `every`, from `start_seconds` on."""
    return [image for image, _ in scenario.video_frames(testdata_path(name), every, limit, start_seconds)]


jpeg = scenario.jpeg


def consenting_member(member_id: str, name: str, store_id: str) -> personalization_pb2.Member:
    """A member who consents to identification, offers and greetings."""
    return scenario.consenting_member(member_id, name, store_id)


def stock_cart_offer(
    stub: personalization_pb2_grpc.PersonalizationServiceStub,
    metadata: tuple[tuple[str, str], ...],
    store_id: str,
    member_id: str,
    sku: str,
    on_hand: int,
    event_prefix: str,
) -> None:
    """Marketing's part: an item the member viewed and left in an online cart an hour ago, in stock at the store."""
    stub.UpsertProducts(
        personalization_pb2.UpsertProductsRequest(
            products=[personalization_pb2.Product(sku=sku, name="Merino sweater", category="apparel", price=79.0)]
        ),
        metadata=metadata,
        timeout=30,
    )
    stub.SetInventory(
        personalization_pb2.SetInventoryRequest(
            items=[
                personalization_pb2.InventoryItem(store_id=store_id, sku=sku, on_hand=on_hand, aisle="7", shelf="B2")
            ]
        ),
        metadata=metadata,
        timeout=30,
    )
    online = personalization_pb2.IngestOnlineEventsRequest()
    for kind in (personalization_pb2.ONLINE_EVENT_TYPE_VIEWED, personalization_pb2.ONLINE_EVENT_TYPE_ABANDONED_CART):
        event = online.events.add(
            event_id=f"{event_prefix}-{kind}", member_id=member_id, type=kind, sku=sku, session_id="s"
        )
        event.at.FromSeconds(int(time.time() - 3600))
    stub.IngestOnlineEvents(online, metadata=metadata, timeout=30)
