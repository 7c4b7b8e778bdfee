"""Two personalization replicas (two engines, two `Personalization`s) on one PostgreSQL database, racing.

Every invariant that holds for one writer holds with two writing at once: frequency caps, visit
events once per idempotency key, each notification sent by one replica (and by another when the
first died mid-way), catalog snapshots and staff alerts reaching every replica.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from personalization_helpers import STORE, abandon_cart, members_without_online_events, prepare_member, stocked_sku
from sqlalchemy import ColumnElement, Engine, Table, func, select

from retailface.services.personalization import db, outbox
from retailface.services.personalization.domain import (
    Campaign,
    Channel,
    InventoryItem,
    Member,
    Product,
    Purchase,
    PurchaseLine,
    VisitEvent,
)
from retailface.services.personalization.recommender import ModelHolder
from retailface.services.personalization.service import Personalization
from retailface.services.personalization.settings import Settings
from retailface.services.shared.errors import AlreadyExists

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

T = TypeVar("T")
Replicas = tuple[Personalization, Personalization]
WAIT_SECONDS = 10.0


def race(replicas: Replicas, work: Callable[[Personalization], T]) -> list[T]:
    """Runs `work` on both replicas at the same moment; their results, replica A's first."""
    start = threading.Barrier(len(replicas))

    def run(replica: Personalization) -> T:
        start.wait(WAIT_SECONDS)
        return work(replica)

    with ThreadPoolExecutor(len(replicas)) as pool:
        return list(pool.map(run, replicas))


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"within {WAIT_SECONDS:g} s: {what}"
        time.sleep(0.01)


@pytest.fixture
def replicas(database_url: str, seeded) -> Iterator[Replicas]:
    """Two replicas of the service on the same database; items may be offered once a day (cap 1)."""
    made = []
    for _ in range(2):
        engine = db.open_engine(database_url)
        models = ModelHolder(lambda: seeded.model, 0, initial=seeded.model)
        made.append(Personalization(engine, models, Settings(frequency_cap_per_day=1)))
    yield made[0], made[1]
    for replica in made:
        replica.close()
        replica.engine.dispose()


@pytest.fixture
def listening(replicas: Replicas) -> Replicas:
    """The replicas with their change listeners (LISTEN) connected."""
    for replica in replicas:
        replica.changes.start()
    for replica in replicas:
        assert replica.changes.wait_listening(WAIT_SECONDS)
    return replicas


def _duplicate_offers(engine: Engine) -> list[tuple[str, str, int]]:
    deliveries = db.offer_deliveries
    with db.read(engine) as conn:
        rows = conn.execute(
            select(deliveries.c.member_id, deliveries.c.sku, func.count())
            .group_by(deliveries.c.member_id, deliveries.c.sku)
            .having(func.count() > 1)
        ).all()
    return [tuple(row) for row in rows]


def test_two_replicas_racing_never_offer_a_member_the_same_item_twice(replicas: Replicas, engine: Engine) -> None:
    members = members_without_online_events(engine, 3)
    for member_id in members:
        prepare_member(replicas[0], member_id)

    def ask_often(replica: Personalization) -> list[str]:
        answers = [replica.offers.get(member_id, STORE) for _ in range(3) for member_id in members]
        return [offer.sku for answer in answers for offer in answer.offers]

    offered = race(replicas, ask_often)
    with db.read(engine) as conn:
        delivered = conn.execute(select(func.count()).where(db.offer_deliveries.c.member_id.in_(members))).scalar_one()
    assert delivered == len(offered[0]) + len(offered[1]) > 0
    assert _duplicate_offers(engine) == []


def test_two_replicas_giving_one_loyalty_number_to_two_members_refuse_the_second(replicas: Replicas) -> None:
    def enroll(replica: Personalization, attempt: int) -> str:
        member_id = f"race-{'ab'[replicas.index(replica)]}-{attempt}"
        try:
            replica.members.upsert(Member(member_id=member_id, loyalty_number=f"LN-RACE-{attempt}"))
        except AlreadyExists:
            return "refused"
        return "created"

    for attempt in range(5):  # each a new loyalty number, raced for by two new members
        outcomes = race(replicas, lambda replica, attempt=attempt: enroll(replica, attempt))
        assert sorted(outcomes) == ["created", "refused"]


def test_two_replicas_creating_one_member_at_once_create_it_once(replicas: Replicas, engine: Engine) -> None:
    outcomes = race(replicas, lambda replica: replica.members.upsert(Member(member_id="race-same", display_name="R")))
    assert [member.member_id for member in outcomes] == ["race-same", "race-same"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(db.members.c.member_id == "race-same")).scalar_one() == 1


def test_the_same_visit_events_on_two_replicas_are_recorded_once_each(replicas: Replicas, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(replicas[0], member_id, channels=(Channel("log", "phone-1"),))
    abandon_cart(replicas[0], member_id, stocked_sku(engine)[0], "cart-race")
    now = time.time()
    events = [VisitEvent(f"race-{n}", "entered", STORE, now + n, member_id=member_id) for n in range(8)]

    results = race(replicas, lambda replica: [replica.visits.record(event) for event in events])

    for index in range(len(events)):  # per event: one replica recorded it, the other saw a duplicate
        assert sorted(result[index].duplicate for result in results) == [False, True]
    recorded = [result for replica_results in results for result in replica_results if not result.duplicate]
    outbox = db.notification_outbox
    assert _count(engine, db.visit_events, db.visit_events.c.event_id.like("race-%")) == 8
    assert _count(engine, db.staff_alerts, db.staff_alerts.c.event_id.like("race-%")) == 8  # one greeting each
    assert _count(engine, outbox, outbox.c.idempotency_key.like("visit:race-%")) == sum(
        1 for result in recorded if result.offers_pushed
    )
    deliveries = db.offer_deliveries
    pushed = sum(len(result.offers_pushed) for result in recorded)
    assert _count(engine, deliveries, deliveries.c.member_id == member_id) == pushed > 0
    assert _duplicate_offers(engine) == []


def _count(engine: Engine, table: Table, where: ColumnElement[bool]) -> int:
    with db.read(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())


def test_a_catalog_write_on_one_replica_reaches_the_other(listening: Replicas, engine: Engine) -> None:
    writer, reader = listening
    sku, category, _ = stocked_sku(engine)
    price = reader.catalog_cache.snapshot.products[sku].price
    writer.catalog.upsert_products([Product(sku, "Renamed on replica A", category, price + 1.0)])
    eventually(lambda: reader.catalog_cache.snapshot.products[sku].name == "Renamed on replica A", "renamed on B")
    assert reader.catalog_cache.snapshot.products[sku].price == price + 1.0


def test_stock_set_on_one_replica_reaches_the_other(listening: Replicas, engine: Engine) -> None:
    writer, reader = listening
    sku, _, aisle = stocked_sku(engine)
    writer.catalog.set_inventory([InventoryItem(STORE, sku, on_hand=0, aisle=aisle)])
    eventually(lambda: reader.catalog_cache.snapshot.stock[(STORE, sku)].on_hand == 0, "out of stock on B")


def test_a_purchase_on_one_replica_takes_the_stock_off_on_the_other(listening: Replicas, engine: Engine) -> None:
    writer, reader = listening
    sku, _, _ = stocked_sku(engine)
    before = reader.catalog_cache.snapshot.stock[(STORE, sku)].on_hand
    writer.purchases.record(Purchase("tx-replicas", STORE, time.time(), [PurchaseLine(sku, 1, 2.5)]))
    eventually(lambda: reader.catalog_cache.snapshot.stock[(STORE, sku)].on_hand == before - 1, "sold on B")


def test_a_campaign_created_on_one_replica_is_active_on_the_other(listening: Replicas, engine: Engine) -> None:
    writer, reader = listening
    sku, _, _ = stocked_sku(engine)
    campaign = writer.catalog.upsert_campaign(Campaign("cmp-replicas", "Replica week", 15.0, skus=[sku]))

    def active_on_reader() -> list[str]:
        return [c.campaign_id for c in reader.catalog_cache.snapshot.active_campaigns(STORE, time.time())]

    eventually(lambda: campaign.campaign_id in active_on_reader(), "campaign active on B")


def test_the_listener_reconnects_after_losing_its_connection(
    listening: Replicas, engine: Engine, postgres, seeded
) -> None:
    writer, reader = listening
    lost = reader.changes.backend_pid
    with postgres.connect() as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (lost,)).fetchone() == (True,)
    eventually(lambda: reader.changes.listening and reader.changes.backend_pid not in (None, lost), "listening again")
    sku, _, aisle = stocked_sku(engine)
    writer.catalog.set_inventory([InventoryItem(STORE, sku, on_hand=41, aisle=aisle)])
    eventually(lambda: reader.catalog_cache.snapshot.stock[(STORE, sku)].on_hand == 41, "stock set after reconnect")


def test_an_alert_raised_on_one_replica_reaches_staff_connected_to_the_other(
    listening: Replicas, engine: Engine
) -> None:
    writer, reader = listening
    member_id = members_without_online_events(engine)[0]
    prepare_member(writer, member_id)
    staff_screen = reader.bus.subscribe(STORE, ["greeting"])
    other_store = reader.bus.subscribe("store-02")
    result = writer.visits.record(VisitEvent("greet-across", "entered", STORE, time.time(), member_id=member_id))
    assert [alert.kind for alert in result.alerts_raised] == ["greeting"]

    received = staff_screen.get(timeout=WAIT_SECONDS)
    assert received is not None
    assert (received.alert_id, received.member_id, received.display_name) == (
        result.alerts_raised[0].alert_id,
        member_id,
        "Ava",
    )
    assert received.message == result.alerts_raised[0].message
    assert other_store.get(timeout=0) is None


def test_each_alert_reaches_the_staff_of_the_other_replica_once(listening: Replicas, engine: Engine) -> None:
    writer, reader = listening
    members = members_without_online_events(engine, 3)
    for member_id in members:
        prepare_member(writer, member_id)
    staff_screen = reader.bus.subscribe(STORE, ["greeting"])
    raised = [
        writer.visits.record(VisitEvent(f"g-{n}", "entered", STORE, time.time(), member_id=m)).alerts_raised[0]
        for n, m in enumerate(members)
    ]
    received = [staff_screen.get(timeout=WAIT_SECONDS) for _ in raised]
    assert [alert.alert_id for alert in received if alert] == [alert.alert_id for alert in raised]
    assert Counter(alert.member_id for alert in received if alert) == Counter(members)


class Phone:
    """A notification channel that records what it was asked to send (thread-safe)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def send(self, idempotency_key: str, address: str, payload: object) -> None:
        with self._lock:
            self.sent.append(idempotency_key)


def _workers(database_url: str, lease_seconds: float = 60.0) -> list[tuple[outbox.OutboxWorker, Phone, Engine]]:
    made = []
    for _ in range(2):
        engine = db.open_engine(database_url)
        phone = Phone()
        worker = outbox.OutboxWorker(engine, {"log": phone}, outbox.RetryPolicy(), lease_seconds=lease_seconds)
        made.append((worker, phone, engine))
    return made


def _enqueue(engine: Engine, keys: list[str], now: float) -> None:
    with db.write(engine) as conn:
        for key in keys:
            assert outbox.enqueue(
                engine, conn, idempotency_key=key, member_id=None, channel="log", address="a", payload={}, now=now
            )


def _statuses(engine: Engine) -> dict[str, tuple[str, int]]:
    table = db.notification_outbox
    with db.read(engine) as conn:
        rows = conn.execute(select(table.c.idempotency_key, table.c.status, table.c.attempts)).all()
    return {key: (status, attempts) for key, status, attempts in rows}


def test_each_notification_is_sent_by_exactly_one_replica(database_url: str, engine: Engine) -> None:
    keys = [f"n-{number:03d}" for number in range(60)]
    _enqueue(engine, keys, time.time())
    workers = _workers(database_url)
    start = threading.Barrier(2)

    def drain(worker: outbox.OutboxWorker) -> int:
        start.wait(WAIT_SECONDS)
        delivered = 0
        while sent := worker.deliver_due():
            delivered += sent
        return delivered

    try:
        with ThreadPoolExecutor(2) as pool:
            delivered = list(pool.map(drain, [worker for worker, _, _ in workers]))
    finally:
        for _, _, replica_engine in workers:
            replica_engine.dispose()
    sent = [key for _, phone, _ in workers for key in phone.sent]
    assert sorted(sent) == keys  # every one, once
    assert sum(delivered) == 60
    assert set(_statuses(engine).values()) == {("delivered", 1)}


def test_a_delivery_that_died_mid_way_is_sent_by_another_replica_after_its_lease(
    database_url: str, engine: Engine
) -> None:
    now = time.time()
    _enqueue(engine, ["died"], now)
    (dying, dying_phone, engine_a), (survivor, phone, engine_b) = _workers(database_url, lease_seconds=30.0)
    try:
        claim = dying.claim(now)  # replica A claims it, then dies before sending or completing
        assert claim is not None and (claim.idempotency_key, claim.attempts) == ("died", 1)
        assert survivor.deliver_due(now + 29.0) == 0  # A's lease still holds
        assert phone.sent == []
        assert survivor.deliver_due(now + 31.0) == 1
    finally:
        engine_a.dispose()
        engine_b.dispose()
    assert (dying_phone.sent, phone.sent) == ([], ["died"])
    assert _statuses(engine) == {"died": ("delivered", 2)}
