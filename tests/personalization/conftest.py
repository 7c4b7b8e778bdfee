"""A small synthetic retail database, generated once per session and backend and copied for every test.

Every test that takes `engine`, `database_url`, `personalization` or `seeded` runs twice: on SQLite
(the seed file copied per test) and on PostgreSQL (the seed is a template database on the session's
server, `postgres` in tests/conftest.py, and each test gets `CREATE DATABASE ... TEMPLATE` of it,
dropped afterwards).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from postgres_server import DatabaseCopies, PostgresServer
from sqlalchemy import Engine

from retailface.devtools import synthetic
from retailface.services.personalization import db
from retailface.services.personalization.recommender import ModelHolder, TrainedModel, train
from retailface.services.personalization.service import Personalization
from retailface.services.personalization.settings import Settings

STORE = "store-01"
BACKENDS = ("sqlite", "postgresql")
SEED_DATABASE = "seed_personalization"


@dataclass
class Seeded:
    backend: str
    model: TrainedModel
    path: Path | None = None  # SQLite: the seed file
    copies: DatabaseCopies | None = None  # PostgreSQL: copies of the seed template, made ahead

    @contextmanager
    def copy(self, directory: Path) -> Iterator[str]:
        """The URL of a fresh copy of the seed, removed afterwards."""
        if self.copies is None:
            assert self.path is not None
            copy = directory / "personalization.sqlite3"
            shutil.copyfile(self.path, copy)
            yield f"sqlite:///{copy}"
            return
        name = self.copies.take()
        try:
            yield self.copies.url(name)
        finally:
            self.copies.drop(name)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _seed(url: str) -> TrainedModel:
    engine = db.open_engine(url)
    synthetic.generate(engine, seed=7, scale_name="small")
    model = train(engine)
    engine.dispose()  # SQLite: the last connection checkpoints the WAL into the file we copy; PostgreSQL:
    return model  # a template database must have no connections


@pytest.fixture(scope="session")
def seeded(backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Seeded]:
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("personalization") / "seed.sqlite3"
        yield Seeded(backend, _seed(f"sqlite:///{path}"), path=path)
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    server.drop_database(SEED_DATABASE)
    server.create_database(SEED_DATABASE)
    model = _seed(server.url(SEED_DATABASE))
    copies = DatabaseCopies(server, SEED_DATABASE)
    yield Seeded(backend, model, copies=copies)
    copies.close()


@pytest.fixture
def database_url(seeded: Seeded, tmp_path: Path) -> Iterator[str]:
    """A copy of the seeded database of this test's backend, for this test alone."""
    with seeded.copy(tmp_path) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.open_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def personalization(engine: Engine, seeded: Seeded) -> Iterator[Personalization]:
    logic = Personalization(engine, ModelHolder(lambda: train(engine), 0, initial=seeded.model), Settings())
    yield logic
    logic.close()
