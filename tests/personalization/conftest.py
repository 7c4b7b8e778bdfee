"""A small synthetic retail database, generated once per session and copied for every test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from retailface.devtools import synthetic
from retailface.services.personalization import db
from retailface.services.personalization.recommender import ModelHolder, TrainedModel, train
from retailface.services.personalization.service import Personalization
from retailface.services.personalization.settings import Settings

STORE = "store-01"


@dataclass
class Seeded:
    path: Path
    model: TrainedModel


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    path = tmp_path_factory.mktemp("personalization") / "seed.sqlite3"
    engine = db.open_engine(f"sqlite:///{path}")
    synthetic.generate(engine, seed=7, scale_name="small")
    model = train(engine)
    engine.dispose()  # the last connection checkpoints the WAL into the file we copy
    return Seeded(path, model)


@pytest.fixture
def engine(seeded: Seeded, tmp_path: Path) -> Iterator[Engine]:
    copy = tmp_path / "personalization.sqlite3"
    shutil.copyfile(seeded.path, copy)
    engine = db.open_engine(f"sqlite:///{copy}")
    yield engine
    engine.dispose()


@pytest.fixture
def personalization(engine: Engine, seeded: Seeded) -> Iterator[Personalization]:
    logic = Personalization(engine, ModelHolder(lambda: train(engine), 0, initial=seeded.model), Settings())
    yield logic
    logic.close()
