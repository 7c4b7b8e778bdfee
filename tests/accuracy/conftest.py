"""Builders of small hand-made probe tables for the accuracy harness's tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from retailface.devtools.accuracy.probes import ProbeTable


@dataclass(frozen=True)
class Row:
    identity: str
    photo: int
    variant: str = "native"
    embedding: Sequence[float] | None = None  # None: no face found
    inter_eye_px: float = 30.0
    passes: bool = True
    score: float = 0.9
    dataset: str = "test"
    family: str = ""


def make_table(rows: Sequence[Row], dim: int = 8) -> ProbeTable:
    n = len(rows)
    embedding = np.zeros((n, dim), dtype=np.float32)
    for i, row in enumerate(rows):
        if row.embedding is not None:
            vector = np.asarray(row.embedding, dtype=np.float32)
            embedding[i, : vector.size] = vector / np.linalg.norm(vector)
    found = np.array([r.embedding is not None for r in rows], dtype=bool)
    nan = np.full(n, np.nan)
    return ProbeTable(
        dataset=np.array([r.dataset for r in rows]),
        identity=np.array([r.identity for r in rows]),
        image=np.array([f"{r.identity}/{r.photo}" for r in rows]),
        photo=np.array([r.photo for r in rows], dtype=np.int64),
        variant=np.array([r.variant for r in rows]),
        family=np.array([r.family or r.variant for r in rows]),
        eye_target=nan.copy(),
        native_eye_px=np.array([r.inter_eye_px for r in rows]),
        n_faces=found.astype(np.int64),
        box=np.zeros((n, 4)),
        landmarks=np.zeros((n, 5, 2)),
        score=np.array([r.score for r in rows]),
        inter_eye_px=np.where(found, [r.inter_eye_px for r in rows], np.nan),
        sharpness=nan.copy(),
        brightness=nan.copy(),
        yaw_deg=nan.copy(),
        pitch_deg=nan.copy(),
        outside=np.zeros(n),
        failed_gates=np.array([0 if r.passes else 2 for r in rows], dtype=np.int64),
        found=found,
        embedding=embedding,
    )


@pytest.fixture
def table_of() -> Callable[..., ProbeTable]:
    return make_table


@pytest.fixture
def row() -> type[Row]:
    """The record `table_of` takes: Row(identity, photo, variant, embedding, inter_eye_px, passes, score)."""
    return Row
