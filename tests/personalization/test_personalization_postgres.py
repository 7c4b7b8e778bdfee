"""PostgreSQL as the system of record: migrations by replicas starting at once, a database out of reach."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from postgres_server import PostgresServer
from sqlalchemy import Connection, Engine, func, insert, select

from retailface.services.personalization import db, migrations
from retailface.services.personalization.domain import Consent, Member
from retailface.services.personalization.recommender import ModelHolder, train
from retailface.services.personalization.service import Personalization
from retailface.services.shared.errors import Unavailable

ON_POSTGRESQL = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # tests that take `engine`

UNAVAILABLE = r"^personalization database unavailable: .+; retry$"


def test_replicas_starting_at_once_apply_each_migration_once(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: Counter[int] = Counter()
    lock = threading.Lock()

    def counted(number: int, apply: Callable[[Connection], None]) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            with lock:
                applied[number] += 1
            apply(conn)

        return run

    monkeypatch.setattr(
        migrations, "MIGRATIONS", [(number, name, counted(number, fn)) for number, name, fn in migrations.MIGRATIONS]
    )
    with postgres.database() as url:
        engines = [db.open_engine(url) for _ in range(4)]
        start = threading.Barrier(len(engines))

        def start_replica(engine: Engine) -> int:
            start.wait(10)
            return migrations.migrate(engine)

        try:
            with ThreadPoolExecutor(len(engines)) as pool:
                versions = list(pool.map(start_replica, engines))
            with db.read(engines[0]) as conn:
                recorded = conn.execute(select(migrations.schema_migrations.c.version)).scalars().all()
                heads = conn.execute(select(func.count()).select_from(db.audit_chain_head)).scalar_one()
        finally:
            for engine in engines:
                engine.dispose()
    newest = len(migrations.MIGRATIONS)
    assert versions == [newest] * 4
    assert applied == {number: 1 for number in range(1, newest + 1)}
    assert sorted(recorded) == list(range(1, newest + 1))
    assert heads == 1


def _stores(engine: Engine, *store_ids: str) -> int:
    with db.read(engine) as conn:
        return int(conn.execute(select(func.count()).where(db.stores.c.store_id.in_(store_ids))).scalar_one())


@ON_POSTGRESQL
def test_a_connection_lost_mid_transaction_is_unavailable_and_writes_nothing(
    engine: Engine, postgres: PostgresServer
) -> None:
    with pytest.raises(Unavailable, match=UNAVAILABLE) as lost, db.write(engine) as conn:
        conn.execute(insert(db.stores).values(store_id="half-1", name="first half", timezone="UTC"))
        pid = conn.execute(select(func.pg_backend_pid())).scalar_one()
        with postgres.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute(insert(db.stores).values(store_id="half-2", name="second half", timezone="UTC"))
    assert "terminat" in str(lost.value)  # the driver's reason, e.g. "terminating connection due to ..."
    assert _stores(engine, "half-1", "half-2") == 0  # nothing of it committed; and the engine reconnected


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and start (the session's server stays up)."""
    server = PostgresServer().start()
    yield server
    server.remove()


def test_a_stopped_database_gives_unavailable_then_the_service_reconnects_by_itself(
    own_server: PostgresServer,
) -> None:
    name = own_server.create_database()
    engine = db.open_engine(own_server.url(name))
    try:
        migrations.migrate(engine)
        service = Personalization(engine, ModelHolder(lambda: train(engine), 0))
        consent = Consent(policy_version="2026-01", scopes=frozenset({"face_identification"}), source="test")
        service.members.upsert(Member("m-outage", display_name="Ada", consent=consent), actor="test")

        own_server.stop()
        with pytest.raises(Unavailable, match=UNAVAILABLE):
            service.members.get("m-outage", actor="test")
        with pytest.raises(Unavailable, match=UNAVAILABLE):
            service.members.revoke_consent("m-outage", actor="test")

        own_server.start()
        assert service.members.get("m-outage", actor="test").consent.scopes == frozenset({"face_identification"})
        revoked = service.members.revoke_consent("m-outage", actor="test")
        assert revoked.consent.scopes == frozenset()
        service.close()
    finally:
        engine.dispose()
