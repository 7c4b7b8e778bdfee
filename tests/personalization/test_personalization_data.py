"""The database layer, the synthetic data, idempotent feeds and NOT_FOUND cases."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from personalization_helpers import STORE, members_without_online_events, on_hand, prepare_member, stocked_sku
from sqlalchemy import Engine, func, select, text

from retailface.devtools import synthetic
from retailface.services.personalization import db, migrations
from retailface.services.personalization.domain import (
    Campaign,
    Channel,
    Consent,
    InventoryItem,
    Member,
    OnlineEvent,
    Preferences,
    Product,
    Purchase,
    PurchaseLine,
    QuietHours,
    VisitEvent,
    VisitResult,
)
from retailface.services.personalization.service import Personalization
from retailface.services.shared.errors import AlreadyExists, InvalidArgument, NotFound


def _counts(engine: Engine) -> dict[str, int]:
    with db.read(engine) as conn:
        return {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in db.metadata.sorted_tables
        }


def test_sqlite_pragmas_and_migrations(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    assert migrations.migrate(engine) == len(migrations.MIGRATIONS)
    assert migrations.migrate(engine) == len(migrations.MIGRATIONS)  # applying again changes nothing
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
        versions = conn.execute(select(migrations.schema_migrations.c.version)).scalars().all()
    assert versions == [number for number, _, _ in migrations.MIGRATIONS]
    engine.dispose()


def test_synthetic_data_is_deterministic_and_structured(tmp_path: Path) -> None:
    import datetime as dt

    end = dt.date(2026, 11, 1)
    digests = []
    for name in ("a", "b"):
        engine = db.open_engine(f"sqlite:///{tmp_path / name}.sqlite3")
        counts = synthetic.generate(engine, seed=11, scale_name="small", end=end)
        with db.read(engine) as conn:
            digests.append(
                conn.execute(
                    text(
                        "SELECT group_concat(sku || ':' || quantity, ',') FROM "
                        "(SELECT sku, quantity FROM transaction_lines ORDER BY id LIMIT 500)"
                    )
                ).scalar_one()
            )
            sensitive = conn.execute(select(func.count()).where(db.products.c.sensitive)).scalar_one()
            out_of_stock = conn.execute(select(func.count()).where(db.inventory.c.on_hand == 0)).scalar_one()
            abandoned = conn.execute(
                select(func.count()).where(db.online_events.c.type == "abandoned_cart")
            ).scalar_one()
        engine.dispose()
    assert digests[0] == digests[1]
    assert counts["transaction_lines"] == synthetic.SCALES["small"].transaction_lines
    assert counts["stores"] == 5 and sensitive > 0 and out_of_stock > 0 and abandoned > 0


def test_duplicate_transaction_changes_nothing(personalization: Personalization, engine: Engine) -> None:
    sku = stocked_sku(engine)[0]
    purchase = Purchase("pos-1", STORE, time.time(), [PurchaseLine(sku, 2, 3.5)], lane_id="lane-1", member_id="m00001")
    stock = on_hand(engine, STORE, sku)
    assert personalization.purchases.record(purchase) is False
    after_first = _counts(engine)
    assert on_hand(engine, STORE, sku) == stock - 2  # the shelf emptied by two
    assert personalization.purchases.record(purchase) is True
    assert _counts(engine) == after_first and on_hand(engine, STORE, sku) == stock - 2


def test_duplicate_online_events_change_nothing(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    sku = stocked_sku(engine)[0]
    events = [
        OnlineEvent("oe-1", member_id, "viewed", time.time(), sku=sku),
        OnlineEvent("oe-2", member_id, "searched", time.time(), query="coffee"),
        OnlineEvent("oe-1", member_id, "viewed", time.time(), sku=sku),
    ]
    assert [o.code for o in personalization.purchases.ingest_online_events(events)] == ["OK", "OK", "ALREADY_EXISTS"]
    before = _counts(engine)
    assert [o.code for o in personalization.purchases.ingest_online_events(events[:1])] == ["ALREADY_EXISTS"]
    assert _counts(engine) == before


def test_duplicate_visit_event_changes_nothing(personalization: Personalization, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(personalization, member_id)
    visit = VisitEvent("ve-1", "entered", STORE, time.time(), member_id=member_id, track_id="t-1")
    first = personalization.visits.record(visit)
    assert not first.duplicate and first.offers_pushed and first.alerts_raised
    before = _counts(engine)
    again = personalization.visits.record(visit)
    assert again == VisitResult(duplicate=True)
    assert _counts(engine) == before


# What each call names when an id is unknown; the status is NOT_FOUND.
NOT_FOUND_CASES: dict[str, tuple[str, Callable[[Personalization, str], object]]] = {
    "offers for an unknown member": ("unknown member 'nobody'", lambda p, sku: p.offers.get("nobody", STORE)),
    "offers at an unknown store": ("unknown store 'store-99'", lambda p, sku: p.offers.get("m00001", "store-99")),
    "checkout with an unknown sku": (
        "unknown sku 'SKU-NOPE' in the basket",
        lambda p, sku: p.checkout.offers(STORE, "lane-1", [("SKU-NOPE", 1)]),
    ),
    "checkout with an unknown loyalty number": (
        "unknown loyalty number 'LOY-NOPE'",
        lambda p, sku: p.checkout.offers(STORE, "lane-1", [(sku, 1)], loyalty_number="LOY-NOPE"),
    ),
    "purchase of an unknown sku": (
        "unknown sku 'SKU-NOPE'",
        lambda p, sku: p.purchases.record(Purchase("pos-x", STORE, time.time(), [PurchaseLine("SKU-NOPE", 1, 1.0)])),
    ),
    "visit of an unknown member": (
        "unknown member 'nobody'",
        lambda p, sku: p.visits.record(VisitEvent("v-x", "entered", STORE, time.time(), member_id="nobody")),
    ),
    "inventory at an unknown store": (
        "unknown store 'store-99'",
        lambda p, sku: p.catalog.set_inventory([InventoryItem("store-99", sku, 1)]),
    ),
    "feedback on an unknown offer": (
        "unknown offer 'no-such-offer'",
        lambda p, sku: p.purchases.feedback("f-x", "m00001", "no-such-offer", "unliked"),
    ),
    "campaign of an unknown sku": (
        "unknown sku 'SKU-NOPE'",
        lambda p, sku: p.catalog.upsert_campaign(Campaign("c-x", "Nope", 10, skus=["SKU-NOPE"])),
    ),
    "acknowledging an unknown alert": (
        "unknown alert 'no-such-alert'",
        lambda p, sku: p.alerts.acknowledge("no-such-alert", "staff-1", False),
    ),
    "erasing an unknown member": ("unknown member 'nobody'", lambda p, sku: p.members.erase("nobody")),
}


@pytest.mark.parametrize(("message", "call"), NOT_FOUND_CASES.values(), ids=NOT_FOUND_CASES.keys())
def test_unknown_ids_are_not_found(
    personalization: Personalization, engine: Engine, message: str, call: Callable[[Personalization, str], object]
) -> None:
    with pytest.raises(NotFound, match=re.escape(message)) as error:
        call(personalization, stocked_sku(engine)[0])
    assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_online_events_of_unknown_members_or_skus_are_not_found_one_by_one(
    personalization: Personalization, engine: Engine
) -> None:
    outcomes = personalization.purchases.ingest_online_events(
        [
            OnlineEvent("o-x", "nobody", "viewed", time.time(), sku=stocked_sku(engine)[0]),
            OnlineEvent("o-y", "m00001", "viewed", time.time(), sku="SKU-NOPE"),
        ]
    )
    assert [(o.code, o.message) for o in outcomes] == [
        ("NOT_FOUND", "unknown member 'nobody'"),
        ("NOT_FOUND", "unknown sku 'SKU-NOPE'"),
    ]


@pytest.mark.parametrize(
    ("preferences", "message"),
    [
        (
            Preferences("m00001", quiet_hours=QuietHours(60, 120, "Mars/Olympus")),
            "unknown IANA timezone 'Mars/Olympus'",
        ),
        (Preferences("m00001", channels=[Channel("pigeon", "x")]), "channel kind 'pigeon' must be one of"),
    ],
    ids=["unknown timezone", "unknown channel"],
)
def test_bad_preferences_are_refused(personalization: Personalization, preferences: Preferences, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        personalization.members.update_preferences(preferences)


def test_member_enrolled_without_consent_has_no_scopes_and_default_preferences(
    personalization: Personalization,
) -> None:
    member = personalization.members.upsert(Member("m-z", display_name="Zed", home_store_id=STORE))
    assert member.consent.scopes == frozenset()
    assert member.preferences == Preferences("m-z")


def test_enrollment_upsert_records_consent_and_revocation_needs_revoke(personalization: Personalization) -> None:
    consent = Consent(policy_version="2026-01", scopes=frozenset({"face_identification"}), source="store-desk")
    member = personalization.members.upsert(
        Member("m-e", loyalty_number="LOY-E", display_name="Eve Enrolled", home_store_id=STORE, consent=consent)
    )
    assert member.consent.allows("face_identification") and not member.consent.allows("personalized_offers")
    wider = Consent(policy_version="2026-01", scopes=frozenset({"face_identification", "personalized_offers"}))
    assert personalization.members.upsert(
        Member("m-e", loyalty_number="LOY-E", display_name="Eve", consent=wider)
    ).consent.allows("personalized_offers")
    unchanged = personalization.members.upsert(Member("m-e", loyalty_number="LOY-E", display_name="Eve"))
    assert unchanged.consent.scopes == wider.scopes  # an empty consent record withdraws nothing
    grants = [e for e in personalization.audit.query("m-e") if e.action == "consent"]
    assert len(grants) == 2
    with pytest.raises(AlreadyExists, match="loyalty number 'LOY-E' belongs to another member"):
        personalization.members.upsert(Member("m-f", loyalty_number="LOY-E", display_name="Fay"))


def test_a_member_name_is_stored_as_it_may_be_shown(personalization: Personalization) -> None:
    member = personalization.members.upsert(
        Member(
            "m-rtl", display_name="Lena\u202e floW\x00", preferences=Preferences("m-rtl", preferred_name=" Le\u2066na ")
        )
    )
    assert (member.display_name, member.preferences.preferred_name) == ("Lena floW", "Lena")


@pytest.mark.parametrize("member_id", ["", "m 1", "m\x00", "x" * 129])
def test_a_member_id_that_is_not_an_id_is_refused(personalization: Personalization, member_id: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^member_id "):
        personalization.members.upsert(Member(member_id, display_name="Ann"))


def test_upserts_replace_products_and_campaigns_and_refresh_the_catalog(personalization: Personalization) -> None:
    product = Product("SKU-NEW", "Oat milk", "dairy", 1.5)
    assert personalization.catalog.upsert_products([product]) == 1
    assert personalization.catalog.upsert_products([Product("SKU-NEW", "Oat milk 1l", "dairy", 1.8)]) == 1
    assert personalization.catalog_cache.snapshot.products["SKU-NEW"] == Product("SKU-NEW", "Oat milk 1l", "dairy", 1.8)

    campaign = Campaign("cmp-new", "Oat week", 15, skus=["SKU-NEW"], store_ids=[STORE], priority=3)
    personalization.catalog.upsert_campaign(campaign)
    personalization.catalog.upsert_campaign(Campaign("cmp-new", "Oat fortnight", 25, categories=["dairy"]))
    stored = [c for c in personalization.catalog_cache.snapshot.campaigns if c.campaign_id == "cmp-new"]
    assert stored == [Campaign("cmp-new", "Oat fortnight", 25, categories=["dairy"])]


@pytest.mark.parametrize(
    ("product", "message"),
    [
        (Product("SKU-X", "", "dairy", 1.0), "product 'SKU-X': sku, name and category are required"),
        (Product("SKU-X", "Milk", "dairy", float("nan")), "product 'SKU-X': price must be a finite number >= 0"),
    ],
    ids=["no name", "price not a number"],
)
def test_bad_products_are_refused(personalization: Personalization, product: Product, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        personalization.catalog.upsert_products([product])


def test_background_checkpointer_copies_the_wal_back(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite3"
    engine = db.open_engine(f"sqlite:///{path}", auto_checkpoint=False)
    migrations.migrate(engine)
    db.Checkpointer(engine).checkpoint()
    size_before = path.stat().st_size
    with db.write(engine) as conn:  # well past SQLite's automatic 1000-page checkpoint
        conn.execute(
            db.audit_log.insert(),
            [{"at": 0.0, "actor": "t", "action": "read", "subject": "s", "detail": "x" * 2000} for _ in range(3000)],
        )
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    assert path.stat().st_size == size_before  # the rows are still only in the WAL
    db.Checkpointer(engine).checkpoint()
    assert path.stat().st_size > size_before + 3000 * 2000
    engine.dispose()
