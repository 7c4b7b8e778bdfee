"""Search through the store: filters resolved to subject keys for the native index, validation, races with erase."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retailface.services.matching.store import (
    DECISION_AMBIGUOUS,
    DECISION_MATCH,
    DECISION_NO_MATCH,
    DurabilityPolicy,
    GalleryPolicy,
    GalleryStore,
    InvalidRequestError,
    InvalidVectorError,
    MatchingStore,
    ModelMismatchError,
    ModelSpec,
    TemplateConflictError,
    UnknownGalleryError,
    UnknownSubjectError,
)

DIM = 128
MODEL = ModelSpec("sface", "2021dec", DIM)


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MatchingStore]:
    opened = MatchingStore(
        tmp_path / "data",
        os.urandom(32),
        [GalleryPolicy("members", 0.48, 0.05), GalleryPolicy("watchlist", 0.55, 0.08)],
        MODEL,
        durability=DurabilityPolicy(1_000_000, 3600, snapshot_on_close=False),
    )
    yield opened
    opened.close()


@pytest.fixture
def members(store: MatchingStore) -> GalleryStore:
    return store.gallery("members")


def test_filtered_search_equals_brute_force_over_the_allowed_subjects(members: GalleryStore) -> None:
    rng = np.random.default_rng(11)
    subjects, per_subject = 400, 2
    identities = unit(rng.standard_normal((subjects, DIM)))
    templates = unit(identities[:, None, :] + 0.6 * rng.standard_normal((subjects, per_subject, DIM)) / np.sqrt(DIM))
    for s in range(subjects):
        tags = ["consent:face"] + (["store:7"] if s % 25 == 0 else [])
        members.enroll(f"m{s}", [f"m{s}-a", f"m{s}-b"], templates[s], tags=tags)
    queries = unit(identities[:40] + 0.8 * rng.standard_normal((40, DIM)) / np.sqrt(DIM))

    allowed = [s for s in range(subjects) if s % 25 == 0]  # 16 subjects, 4% of the gallery
    outcome = members.search(queries, top_k=5, required_tags=["store:7", "consent:face"])
    flat = templates.reshape(-1, DIM)
    scores = (queries @ flat.T).reshape(40, subjects, per_subject).max(axis=2)
    for q, result in enumerate(outcome.results):
        ranked = sorted(allowed, key=lambda s: -scores[q, s])[:5]
        assert [c.subject_id for c in result.candidates] == [f"m{s}" for s in ranked]
        np.testing.assert_allclose([c.score for c in result.candidates], scores[q, ranked], atol=1e-5)
        best = result.candidates[0]
        assert best.template_id == f"m{ranked[0]}-" + "ab"[int(np.argmax(queries[q] @ templates[ranked[0]].T))]

    # Subject ids and tags combine (AND); unknown ids are simply not allowed.
    by_id = members.search(queries[:5], top_k=5, subject_ids=["m0", "m1", "m25", "nobody"], required_tags=["store:7"])
    for result in by_id.results:
        assert {c.subject_id for c in result.candidates} == {"m0", "m25"}
    nothing = members.search(queries[:3], subject_ids=["m1"], required_tags=["store:7"])
    assert [(r.decision, r.candidates, r.plan) for r in nothing.results] == [
        (DECISION_NO_MATCH, [], "empty-filter")
    ] * 3


def test_decisions_follow_threshold_and_margin(members: GalleryStore) -> None:
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((1, DIM)))[0]
    other = unit(rng.standard_normal((1, DIM)))[0]
    members.enroll("alice", ["alice-1"], base[None, :])
    members.enroll("bob", ["bob-1"], unit(base + 0.05 * other)[None, :])  # nearly alice
    members.enroll("carol", ["carol-1"], other[None, :])
    result = members.search(base[None, :]).results[0]
    assert result.candidates[0].subject_id == "alice" and result.decision == DECISION_AMBIGUOUS
    assert members.search(other[None, :]).results[0].decision == DECISION_MATCH
    stranger = unit(rng.standard_normal((1, DIM)))
    assert members.search(stranger).results[0].decision == DECISION_NO_MATCH
    # Per-call overrides: a threshold above every score makes no match; the response reports what was used.
    strict = members.search(other[None, :], threshold=0.999999, margin=0.01)
    assert (strict.threshold, strict.margin) == (pytest.approx(0.999999), pytest.approx(0.01))


def test_vectors_are_validated_with_the_failing_index(members: GalleryStore) -> None:
    good = unit(np.random.default_rng(1).standard_normal((3, DIM)))
    nan = good.copy()
    nan[2, 5] = np.nan
    with pytest.raises(InvalidVectorError, match="query 2: the vector contains NaN") as error:
        members.search(nan)
    assert error.value.index == 2
    scaled = good.copy()
    scaled[1] *= 1.01
    with pytest.raises(InvalidVectorError, match=r"query 1: the vector has L2 norm 1\.01"):
        members.search(scaled)
    with pytest.raises(InvalidVectorError, match="template 0"):
        members.enroll("x", ["x-1"], good[:1] * 2)
    with pytest.raises(ModelMismatchError, match="dimension 64, the gallery expects 128"):
        members.search(unit(np.ones((1, 64))))
    with pytest.raises(InvalidRequestError, match="repeat"):
        members.enroll("x", ["x-1", "x-1"], good[:2])
    with pytest.raises(InvalidRequestError, match="no templates"):
        members.enroll("x", [], np.empty((0, DIM), np.float32))
    members.enroll("x", ["x-1"], good[:1])
    with pytest.raises(TemplateConflictError, match="x-1 already belongs to another subject"):
        members.enroll("y", ["y-1", "x-1"], good[1:3])
    assert members.subject_templates("y") == {}, "a refused enroll adds nothing"
    with pytest.raises(UnknownSubjectError):
        members.set_tags("y", ["consent:face"])


def test_unknown_gallery(store: MatchingStore) -> None:
    with pytest.raises(UnknownGalleryError, match="unknown gallery 'staff'; galleries: members, watchlist"):
        store.gallery("staff")


def test_erased_subject_is_never_returned_by_searches_running_concurrently(members: GalleryStore) -> None:
    rng = np.random.default_rng(5)
    probes = unit(rng.standard_normal((32, DIM)))
    for s in range(32):
        members.enroll(f"p{s}", [f"p{s}-0"], probes[s : s + 1])
    erased: set[str] = set()
    erased_lock = threading.Lock()
    failures: list[str] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            with erased_lock:
                gone_before = set(erased)
            for result in members.search(probes, top_k=3).results:
                returned = {c.subject_id for c in result.candidates}
                if returned & gone_before:
                    failures.append(f"returned erased {returned & gone_before}")

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    extra = unit(rng.standard_normal((16, DIM)))
    for s in range(16):
        members.enroll(f"late{s}", [f"late{s}-0"], extra[s : s + 1])
        assert members.erase_subject(f"p{s}") == 1
        with erased_lock:
            erased.add(f"p{s}")
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert members.stats().templates == 32
    assert members.stats().subjects == 32


def test_decision_codes_are_the_native_and_proto_ones() -> None:
    from retailface._matcher import Decision
    from retailface.v1 import matching_pb2

    assert (int(Decision.MATCH), int(Decision.NO_MATCH), int(Decision.AMBIGUOUS)) == (
        DECISION_MATCH,
        DECISION_NO_MATCH,
        DECISION_AMBIGUOUS,
    )
    assert (matching_pb2.DECISION_MATCH, matching_pb2.DECISION_NO_MATCH, matching_pb2.DECISION_AMBIGUOUS) == (
        DECISION_MATCH,
        DECISION_NO_MATCH,
        DECISION_AMBIGUOUS,
    )
