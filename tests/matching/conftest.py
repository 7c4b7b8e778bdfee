"""The matching store on each of its journals: the data dir's files, and PostgreSQL (a real server).

Tests that take `opener` run twice: on files in the test's temporary directory, and on a database of
their own on the session's PostgreSQL server (`postgres` in tests/conftest.py), dropped afterwards.
Calling the opener again reopens the same files or the same database: a restart, or another replica.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from postgres_server import PostgresServer

from retailface.services.matching.params import DurabilityPolicy, GalleryPolicy, IndexParams, ReplicationPolicy
from retailface.services.matching.store import MatchingStore
from retailface.services.shared.model_identity import ModelIdentity

BACKENDS = ("file", "postgresql")
MODEL = ModelIdentity("sface", "2021dec", 128)
POLICIES = (GalleryPolicy("members", 0.48, 0.05), GalleryPolicy("watchlist", 0.55, 0.08))
MANUAL = DurabilityPolicy(snapshot_every_records=1_000_000, erase_purge_seconds=3600, snapshot_on_close=False)
# A small initial capacity keeps reopening fast; the index grows.
SMALL = IndexParams(initial_capacity=16)


@dataclass
class Opener:
    """Opens a matching store on this test's files or database."""

    backend: str
    data_dir: Path
    database_url: str = ""

    def __call__(
        self,
        key: bytes,
        durability: DurabilityPolicy = MANUAL,
        model: ModelIdentity = MODEL,
        index: IndexParams = SMALL,
        policies: Sequence[GalleryPolicy] = POLICIES,
        replication: ReplicationPolicy | None = None,
    ) -> MatchingStore:
        return MatchingStore(
            self.data_dir,
            key,
            policies,
            model,
            index,
            durability=durability,
            database_url=self.database_url,
            replication=replication,
        )


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    if request.param == "file":
        yield Opener("file", tmp_path / "data")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield Opener("postgresql", tmp_path / "data", server.libpq_url(name))
    finally:
        server.drop_database(name)


@pytest.fixture
def pg_opener(postgres: PostgresServer, tmp_path: Path) -> Iterator[Opener]:
    """PostgreSQL only: each call opens another replica of the same galleries."""
    name = postgres.create_database()
    try:
        yield Opener("postgresql", tmp_path / "data", postgres.libpq_url(name))
    finally:
        postgres.drop_database(name)
