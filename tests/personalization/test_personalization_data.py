"""The database layer, the synthetic data, idempotent feeds and NOT_FOUND cases."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from personalization_helpers import STORE, members_without_online_events, on_hand, prepare_member, stocked_sku
from sqlalchemy import Engine, func, select, text

from retailface.services.personalization import db, synthetic
from retailface.services.personalization.domain import (
    AlreadyExistsError,
    Campaign,
    InvalidArgumentError,
    InventoryItem,
    Member,
    NotFoundError,
    OnlineEvent,
    Preferences,
    Purchase,
    PurchaseLine,
    VisitEvent,
)
from retailface.services.personalization.service import PersonalizationService


def _counts(engine: Engine) -> dict[str, int]:
    with db.read(engine) as conn:
        return {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in db.metadata.sorted_tables
        }


def test_sqlite_pragmas_and_migrations(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    assert db.migrate(engine) == len(db.MIGRATIONS)
    assert db.migrate(engine) == len(db.MIGRATIONS)  # applying again changes nothing
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
        versions = conn.execute(select(db.schema_migrations.c.version)).scalars().all()
    assert versions == [number for number, _, _ in db.MIGRATIONS]
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


def test_duplicate_transaction_changes_nothing(service: PersonalizationService, engine: Engine) -> None:
    sku = stocked_sku(engine)[0]
    purchase = Purchase("pos-1", STORE, time.time(), [PurchaseLine(sku, 2, 3.5)], lane_id="lane-1", member_id="m00001")
    stock = on_hand(engine, STORE, sku)
    assert service.record_purchase(purchase) is False
    after_first = _counts(engine)
    assert on_hand(engine, STORE, sku) == stock - 2  # the shelf emptied by two
    assert service.record_purchase(purchase) is True
    assert _counts(engine) == after_first and on_hand(engine, STORE, sku) == stock - 2


def test_duplicate_online_and_visit_events_change_nothing(service: PersonalizationService, engine: Engine) -> None:
    member_id = members_without_online_events(engine)[0]
    prepare_member(service, member_id)
    sku = stocked_sku(engine)[0]
    events = [
        OnlineEvent("oe-1", member_id, "viewed", time.time(), sku=sku),
        OnlineEvent("oe-2", member_id, "searched", time.time(), query="coffee"),
        OnlineEvent("oe-1", member_id, "viewed", time.time(), sku=sku),
    ]
    assert [o.code for o in service.ingest_online_events(events)] == ["OK", "OK", "ALREADY_EXISTS"]
    assert [o.code for o in service.ingest_online_events(events[:1])] == ["ALREADY_EXISTS"]

    visit = VisitEvent("ve-1", "entered", STORE, time.time(), member_id=member_id, track_id="t-1")
    first = service.record_visit_event(visit)
    assert not first.duplicate and first.offers_pushed and first.alerts_raised
    before = _counts(engine)
    again = service.record_visit_event(visit)
    assert again.duplicate and not again.offers_pushed and not again.alerts_raised
    assert _counts(engine) == before


def test_not_found_cases(service: PersonalizationService, engine: Engine) -> None:
    sku = stocked_sku(engine)[0]
    with pytest.raises(NotFoundError, match="member"):
        service.get_offers("nobody", STORE)
    with pytest.raises(NotFoundError, match="store"):
        service.get_offers("m00001", "store-99")
    with pytest.raises(NotFoundError, match="sku"):
        service.get_checkout_offers(STORE, "lane-1", [("SKU-NOPE", 1)])
    with pytest.raises(NotFoundError, match="loyalty"):
        service.get_checkout_offers(STORE, "lane-1", [(sku, 1)], loyalty_number="LOY-NOPE")
    with pytest.raises(NotFoundError, match="sku"):
        service.record_purchase(Purchase("pos-x", STORE, time.time(), [PurchaseLine("SKU-NOPE", 1, 1.0)]))
    with pytest.raises(NotFoundError, match="member"):
        service.record_visit_event(VisitEvent("v-x", "entered", STORE, time.time(), member_id="nobody"))
    with pytest.raises(NotFoundError, match="store"):
        service.set_inventory([InventoryItem("store-99", sku, 1)])
    with pytest.raises(NotFoundError, match="offer"):
        service.feedback("f-x", "m00001", "no-such-offer", "unliked")
    with pytest.raises(NotFoundError, match="sku"):
        service.upsert_campaign(Campaign("c-x", "Nope", 10, skus=["SKU-NOPE"]))
    with pytest.raises(NotFoundError, match="alert"):
        service.acknowledge_alert("no-such-alert", "staff-1", False)
    with pytest.raises(NotFoundError):
        service.erase_member("nobody")
    outcomes = service.ingest_online_events(
        [
            OnlineEvent("o-x", "nobody", "viewed", time.time(), sku=sku),
            OnlineEvent("o-y", "m00001", "viewed", time.time(), sku="SKU-NOPE"),
        ]
    )
    assert [o.code for o in outcomes] == ["NOT_FOUND", "NOT_FOUND"]


def test_bad_preferences_are_refused(service: PersonalizationService) -> None:
    from retailface.services.personalization.domain import Channel, QuietHours

    with pytest.raises(InvalidArgumentError, match="timezone"):
        service.update_preferences(Preferences("m00001", quiet_hours=QuietHours(60, 120, "Mars/Olympus")))
    with pytest.raises(InvalidArgumentError, match="channel"):
        service.update_preferences(Preferences("m00001", channels=[Channel("pigeon", "x")]))
    member = service.upsert_member(Member("m-z", display_name="Zed", home_store_id=STORE))
    assert member.consent.scopes == frozenset() and member.preferences is not None


def test_enrollment_upsert_records_consent_and_revocation_needs_revoke(service: PersonalizationService) -> None:
    from retailface.services.personalization.domain import Consent

    consent = Consent(policy_version="2026-01", scopes=frozenset({"face_identification"}), source="store-desk")
    member = service.upsert_member(
        Member("m-e", loyalty_number="LOY-E", display_name="Eve Enrolled", home_store_id=STORE, consent=consent)
    )
    assert member.consent.allows("face_identification") and not member.consent.allows("personalized_offers")
    wider = Consent(policy_version="2026-01", scopes=frozenset({"face_identification", "personalized_offers"}))
    assert service.upsert_member(
        Member("m-e", loyalty_number="LOY-E", display_name="Eve", consent=wider)
    ).consent.allows("personalized_offers")
    unchanged = service.upsert_member(Member("m-e", loyalty_number="LOY-E", display_name="Eve"))
    assert unchanged.consent.scopes == wider.scopes  # an empty consent record withdraws nothing
    grants = [e for e in service.query_audit("m-e") if e.action == "consent"]
    assert len(grants) == 2
    with pytest.raises(AlreadyExistsError):
        service.upsert_member(Member("m-f", loyalty_number="LOY-E", display_name="Fay"))


def test_background_checkpointer_copies_the_wal_back(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite3"
    engine = db.open_engine(f"sqlite:///{path}", auto_checkpoint=False)
    db.migrate(engine)
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
