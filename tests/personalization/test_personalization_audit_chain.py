"""The audit log's hash chain: appends verify, tampering is found at the right row, the migration chains an
old log, erasure keeps it valid, and the admin RPC and `retailface-admin verify-audit` report it."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from personalization_helpers import prepare_member
from sqlalchemy import (
    Column,
    Double,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from retailface.client import admin_cli
from retailface.services.personalization import app, audit_chain, db, migrations, settings
from retailface.services.personalization.audit import verify_chain
from retailface.services.personalization.base import write_audit
from retailface.services.personalization.service import Personalization
from retailface.services.shared import config as config_module
from retailface.services.shared.server import RunningServer, start
from retailface.v1 import personalization_pb2, personalization_pb2_grpc

TOKENS = {role: f"{role}-token-0123456789abcdef" for role in ("service", "admin")}


def _write(engine: Engine, count: int, subject: str = "m-1") -> None:
    with db.write(engine) as conn:
        for i in range(count):
            write_audit(conn, "test", "read", subject, "r", now=1_700_000_000 + i, n=i, note="ä\u2028")


def _ids(engine: Engine) -> list[int]:
    with db.read(engine) as conn:
        return list(conn.execute(select(db.audit_log.c.id).order_by(db.audit_log.c.id)).scalars())


def _count(engine: Engine) -> int:
    with db.read(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(db.audit_log)).scalar_one())


def test_a_fresh_log_verifies(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    migrations.migrate(engine)
    assert verify_chain(engine).intact and verify_chain(engine).rows == 0
    _write(engine, 5)
    report = verify_chain(engine)
    assert (report.rows, report.first_broken_id, report.reason) == (5, None, "")
    with db.read(engine) as conn:
        rows = conn.execute(select(db.audit_log).order_by(db.audit_log.c.id)).all()
    assert rows[0].prev_hash == audit_chain.GENESIS
    assert all(b.prev_hash == a.row_hash and len(b.row_hash) == 64 for a, b in itertools.pairwise(rows))
    engine.dispose()


def test_the_service_writes_a_chain_that_verifies(personalization: Personalization, engine: Engine) -> None:
    member_id = _any_member(engine)
    prepare_member(personalization, member_id)
    personalization.members.get(member_id, actor="desk")
    personalization.audit.query(member_id, actor="officer")
    report = personalization.audit.verify(actor="officer")
    assert report.intact and report.rows == _count(engine) - 1  # the verification itself is audited after


def test_concurrent_writers_keep_one_chain(engine: Engine) -> None:
    threads = [threading.Thread(target=_write, args=(engine, 1, f"m-{i % 3}")) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = verify_chain(engine)
    assert report.intact and report.rows == _count(engine) >= 40


def test_an_edited_detail_is_found_at_exactly_that_row(engine: Engine) -> None:
    _write(engine, 6)
    target = _ids(engine)[3]
    with db.write(engine) as conn:  # tampering straight in the database
        conn.execute(update(db.audit_log).where(db.audit_log.c.id == target).values(detail='{"n": 99}'))
    report = verify_chain(engine)
    assert report.first_broken_id == target and report.reason.startswith("hash mismatch")
    assert report.rows == 4


def test_a_deleted_row_is_found_at_the_next_row(engine: Engine) -> None:
    _write(engine, 6)
    ids = _ids(engine)
    with db.write(engine) as conn:
        conn.execute(delete(db.audit_log).where(db.audit_log.c.id == ids[2]))
    report = verify_chain(engine)
    assert report.first_broken_id == ids[3] and report.reason.startswith("broken link")


def test_deleting_the_first_or_the_newest_rows_is_found(engine: Engine) -> None:
    _write(engine, 4)
    ids = _ids(engine)
    with db.write(engine) as conn:
        conn.execute(delete(db.audit_log).where(db.audit_log.c.id == ids[-1]))
    report = verify_chain(engine)
    assert report.first_broken_id == ids[-1] and report.reason.startswith("missing rows")
    with db.write(engine) as conn:
        conn.execute(delete(db.audit_log).where(db.audit_log.c.id == ids[0]))
    report = verify_chain(engine)
    assert report.first_broken_id == ids[1] and "genesis" in report.reason


def test_a_row_inserted_around_the_writer_is_found(engine: Engine) -> None:
    _write(engine, 2)
    with db.write(engine) as conn:  # the next id, as the head would hand it out, but not by the writer
        conn.execute(
            insert(db.audit_log).values(id=_ids(engine)[-1] + 1, at=1.0, actor="x", action="read", subject="s")
        )
    report = verify_chain(engine)
    assert report.first_broken_id == _ids(engine)[-1] and report.reason.startswith("broken link")


def test_the_migration_chains_rows_written_before_the_chain(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    with db.write(engine) as conn:  # a database at version 1, with the audit_log of version 1
        migrations.schema_migrations.create(conn)
        migrations.MIGRATIONS[0][2](conn)
        conn.execute(
            insert(migrations.schema_migrations).values(version=1, name="initial schema", applied_at=time.time())
        )
        db.audit_chain_head.drop(conn)
        db.audit_log.drop(conn)
        old = Table(
            "audit_log",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("at", Double, nullable=False),
            Column("actor", String(100), nullable=False),
            Column("action", String(32), nullable=False),
            Column("subject", String(128), nullable=False),
            Column("reason", String(500), nullable=False, default=""),
            Column("detail", Text, nullable=False, default="{}"),
        )
        old.create(conn)
        rows = [
            {"at": 1e9 + i, "actor": "a", "action": "read", "subject": f"m-{i}", "detail": "{}"} for i in range(2500)
        ]
        conn.execute(insert(old), rows)
    assert migrations.migrate(engine) == len(migrations.MIGRATIONS)
    report = verify_chain(engine)
    assert report.intact and report.rows == 2500
    _write(engine, 2)  # new rows continue the migrated chain
    assert verify_chain(engine).intact and verify_chain(engine).rows == 2502
    engine.dispose()


def test_erasure_keeps_the_chain_and_is_itself_recorded(personalization: Personalization, engine: Engine) -> None:
    member_id = _any_member(engine)
    prepare_member(personalization, member_id)
    personalization.members.get(member_id, actor="desk")
    with db.read(engine) as conn:
        before = conn.execute(select(db.audit_log).where(db.audit_log.c.subject == member_id)).all()
    personalization.members.erase(member_id, actor="officer", reason="member request")
    with db.read(engine) as conn:
        after = conn.execute(select(db.audit_log).where(db.audit_log.c.subject == member_id)).all()
    assert after[: len(before)] == before and after[-1].action == "erase"
    assert verify_chain(engine).intact


def _any_member(engine: Engine) -> str:
    with db.read(engine) as conn:
        return str(conn.execute(select(db.members.c.member_id).limit(1)).scalar_one())


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps({role: [token] for role, token in TOKENS.items()}))
    environ = {
        "RETAILFACE_INSECURE": "true",
        "RETAILFACE_PORT": "0",
        "RETAILFACE_METRICS_PORT": "0",
        "RETAILFACE_AUTH_TOKENS_FILE": str(tokens_file),
        "RETAILFACE_PERSONALIZATION_DB_URL": database_url,
        "RETAILFACE_PERSONALIZATION_MODEL_REFRESH_SECONDS": "0",
    }
    cfg = config_module.load("personalization", settings.SETTINGS, argv=[], environ=environ)
    running = start("personalization", app.build(cfg), cfg)
    yield running
    running.shutdown(grace=1)


def _engine(server: RunningServer) -> Engine:
    return server.registration.servicer.personalization.engine  # type: ignore[attr-defined]


def test_the_rpc_requires_the_admin_role(server: RunningServer) -> None:
    _write(_engine(server), 3)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = personalization_pb2_grpc.PersonalizationServiceStub(channel)
        request = personalization_pb2.VerifyAuditChainRequest()
        with pytest.raises(grpc.RpcError) as denied:
            stub.VerifyAuditChain(request, metadata=(("authorization", f"Bearer {TOKENS['service']}"),), timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        report = stub.VerifyAuditChain(request, metadata=(("authorization", f"Bearer {TOKENS['admin']}"),), timeout=10)
    assert report.intact and report.rows_checked == 3 and report.first_broken_id == 0 and report.reason == ""


def _verdict(capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's line (the in-process server logs to the same stdout)."""
    return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("audit chain"))


def test_the_cli_prints_the_verdict_and_exits_1_when_broken(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = _engine(server)
    _write(engine, 4)
    flags = ["--insecure", "--token", TOKENS["admin"], "verify-audit"]
    assert admin_cli.main([*flags, "--personalization", f"127.0.0.1:{server.port}"]) == 0
    assert _verdict(capsys) == "audit chain intact: 4 rows"
    target = _ids(engine)[1]
    with db.write(engine) as conn:
        conn.execute(update(db.audit_log).where(db.audit_log.c.id == target).values(reason="rewritten"))
    assert admin_cli.main(["--gateway", f"127.0.0.1:{server.port}", *flags]) == 1
    assert _verdict(capsys).startswith(f"audit chain broken at row {target}: hash mismatch")
    service = ["--gateway", f"127.0.0.1:{server.port}", "--insecure", "--token", TOKENS["service"], "verify-audit"]
    assert admin_cli.main(service) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
