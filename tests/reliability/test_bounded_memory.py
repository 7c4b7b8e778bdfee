"""The embedding engine's memory bound: chips go through onnxruntime in runs of at most `run_chips`, so
the arena stops at the size of one run whatever the batch (docs/RELIABILITY.md, ## Soak, memory)."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from retailface.services.embedding.engine import CPU_RUN_CHIPS, EmbeddingEngine, EmbeddingSettings, runs

# Before the bound the engine's RSS went 189 -> 1228 MB as batches grew from 1 to 64 chips; with it, it
# moved by under 7 MB over the same batches (measured). 40 MB is the allocator's room, far from either.
GROWTH_BOUND_MB = 40.0


@pytest.fixture(scope="module")
def engine() -> EmbeddingEngine:
    return EmbeddingEngine(EmbeddingSettings(intra_op_threads=1, max_batch_chips=64))


def chips(count: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (count, 112, 112, 3), dtype=np.uint8)


def test_runs_split_a_batch_in_order_into_runs_of_at_most_the_size() -> None:
    batch = np.arange(10).reshape(10, 1)
    assert [run[:, 0].tolist() for run in runs(batch, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_runs_of_a_batch_smaller_than_the_size_are_the_batch_itself() -> None:
    batch = np.arange(3).reshape(3, 1)
    assert [run[:, 0].tolist() for run in runs(batch, 4)] == [[0, 1, 2]]


def test_the_cpu_engine_runs_four_chips_at_a_time(engine: EmbeddingEngine) -> None:
    assert (engine.execution_provider, engine.run_chips) == ("CPUExecutionProvider", CPU_RUN_CHIPS)


def test_a_batch_in_runs_gives_each_chip_the_embedding_it_gets_alone(engine: EmbeddingEngine) -> None:
    batch = chips(10)
    together = engine.embed(list(batch)).results
    alone = [engine.embed([chip]).results[0] for chip in batch]
    assert len(together) == 10
    for joint, single in zip(together, alone, strict=True):
        assert joint.embedding is not None and single.embedding is not None
        np.testing.assert_allclose(joint.embedding, single.embedding, atol=1e-5)


def test_a_batch_in_runs_gives_each_chip_its_own_attributes(engine: EmbeddingEngine) -> None:
    batch = chips(6)
    together = engine.embed(list(batch), include_attributes=True).results
    alone = [engine.embed([chip], include_attributes=True).results[0] for chip in batch]
    assert [r.attributes.gender if r.attributes else None for r in together] == [
        r.attributes.gender if r.attributes else None for r in alone
    ]
    ages = [(a.attributes.age_years, b.attributes.age_years) for a, b in zip(together, alone, strict=True)]
    np.testing.assert_allclose([a for a, _ in ages], [b for _, b in ages], atol=1e-3)


def test_memory_stays_at_its_bound_as_batches_grow_to_the_limit(engine: EmbeddingEngine) -> None:
    process = psutil.Process()
    engine.embed(list(chips(1)), include_attributes=True)
    start = process.memory_info().rss / 2**20
    for size in (8, 16, 32, 64):
        engine.embed(list(chips(size)), include_attributes=True)
    growth = process.memory_info().rss / 2**20 - start
    assert growth <= GROWTH_BOUND_MB, f"RSS grew {growth:.0f} MB"
