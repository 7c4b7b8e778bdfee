"""Search through the store: filters resolved to subject keys for the native index, validation, races with erase."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
from conftest import Opener
from stored_form import stored_form

from retailface import _matcher
from retailface.services.matching.errors import (
    InvalidRequestError,
    InvalidVectorError,
    ModelMismatchError,
    TemplateConflictError,
    UnknownGalleryError,
    UnknownSubjectError,
)
from retailface.services.matching.gallery_index import GalleryIndex
from retailface.services.matching.gallery_store import GalleryStore
from retailface.services.matching.params import MAX_TOP_K, IndexParams
from retailface.services.matching.settings import SETTINGS
from retailface.services.matching.store import MatchingStore
from retailface.services.shared.errors import ServiceError
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1.matching_pb2 import DECISION_AMBIGUOUS, DECISION_MATCH, DECISION_NO_MATCH

DIM = 128
MODEL = ModelIdentity("sface", "2021dec", DIM)
SUBJECTS, PER_SUBJECT = 400, 2
STORE_7 = [s for s in range(SUBJECTS) if s % 25 == 0]  # 16 subjects tagged store:7, 4% of the gallery


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.fixture
def store(opener: Opener) -> Iterator[MatchingStore]:
    """On files and on PostgreSQL (conftest.py)."""
    opened = opener(os.urandom(32), index=IndexParams())
    yield opened
    opened.close()


@pytest.fixture
def members(store: MatchingStore) -> GalleryStore:
    return store.gallery("members")


@pytest.fixture
def tagged(members: GalleryStore) -> tuple[np.ndarray, np.ndarray]:
    """400 subjects of two templates each, all tagged consent:face, one in 25 also store:7; 40 queries."""
    rng = np.random.default_rng(11)
    identities = unit(rng.standard_normal((SUBJECTS, DIM)))
    templates = unit(identities[:, None, :] + 0.6 * rng.standard_normal((SUBJECTS, PER_SUBJECT, DIM)) / np.sqrt(DIM))
    for s in range(SUBJECTS):
        tags = ["consent:face"] + (["store:7"] if s in STORE_7 else [])
        members.enroll(f"m{s}", [f"m{s}-a", f"m{s}-b"], templates[s], tags=tags)
    queries = unit(identities[:40] + 0.8 * rng.standard_normal((40, DIM)) / np.sqrt(DIM))
    return templates, queries


def test_filtered_search_equals_brute_force_over_the_allowed_subjects(
    members: GalleryStore, tagged: tuple[np.ndarray, np.ndarray]
) -> None:
    templates, queries = tagged
    outcome = members.search(queries, top_k=5, required_tags=["store:7", "consent:face"])
    stored = stored_form(templates.reshape(-1, DIM)).reshape(templates.shape)  # as the gallery holds them
    scores = (queries @ stored.reshape(-1, DIM).T).reshape(len(queries), SUBJECTS, PER_SUBJECT).max(axis=2)
    for q, result in enumerate(outcome.results):
        ranked = sorted(STORE_7, key=lambda s: -scores[q, s])[:5]
        assert [c.subject_id for c in result.candidates] == [f"m{s}" for s in ranked], f"query {q}"
        np.testing.assert_allclose([c.score for c in result.candidates], scores[q, ranked], atol=1e-5)
        best_template = "ab"[int(np.argmax(queries[q] @ stored[ranked[0]].T))]
        assert result.candidates[0].template_id == f"m{ranked[0]}-{best_template}"
        assert result.plan == "filtered-scan"


def test_subject_ids_and_tags_combine_and_unknown_ids_allow_nothing(
    members: GalleryStore, tagged: tuple[np.ndarray, np.ndarray]
) -> None:
    _, queries = tagged
    by_id = members.search(queries[:5], top_k=5, subject_ids=["m0", "m1", "m25", "nobody"], required_tags=["store:7"])
    assert [{c.subject_id for c in result.candidates} for result in by_id.results] == [{"m0", "m25"}] * 5


def test_a_filter_that_allows_no_subject_searches_nothing(
    members: GalleryStore, tagged: tuple[np.ndarray, np.ndarray]
) -> None:
    _, queries = tagged
    nothing = members.search(queries[:3], subject_ids=["m1"], required_tags=["store:7"])
    assert [(r.decision, r.candidates, r.plan) for r in nothing.results] == [
        (DECISION_NO_MATCH, [], "empty-filter")
    ] * 3


@pytest.fixture
def look_alikes(members: GalleryStore) -> dict[str, np.ndarray]:
    """alice and bob nearly the same face, carol far from both, a new capture of carol; a stranger enrolled nowhere."""
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((1, DIM)))[0]
    other = unit(rng.standard_normal((1, DIM)))[0]
    members.enroll("alice", ["alice-1"], base[None, :])
    members.enroll("bob", ["bob-1"], unit(base + 0.1 * other)[None, :])  # cosine 0.995 to alice's
    members.enroll("carol", ["carol-1"], other[None, :])
    capture = unit(other + 0.5 * unit(rng.standard_normal(DIM)))  # cosine about 0.89 to carol's template
    return {
        "alice": base[None, :],
        "carol": capture[None, :],
        "stranger": unit(rng.standard_normal((1, DIM))),
    }


@pytest.mark.parametrize(
    ("query", "overrides", "decision"),
    [
        ("alice", {}, DECISION_AMBIGUOUS),  # bob is within the margin
        ("carol", {}, DECISION_MATCH),
        ("stranger", {}, DECISION_NO_MATCH),
        ("carol", {"threshold": 0.95}, DECISION_NO_MATCH),  # a per-call threshold above carol's score
        ("alice", {"margin": 0.002}, DECISION_MATCH),  # a per-call margin narrower than alice's lead over bob
    ],
    ids=["ambiguous", "match", "no-match", "threshold-override", "margin-override"],
)
def test_decisions_follow_threshold_and_margin(
    members: GalleryStore, look_alikes: dict[str, np.ndarray], query: str, overrides: dict[str, float], decision: int
) -> None:
    result = members.search(look_alikes[query], **overrides).results[0]
    assert result.decision == decision
    if query != "stranger":
        assert result.candidates[0].subject_id == query


def test_the_outcome_reports_the_threshold_and_margin_used(
    members: GalleryStore, look_alikes: dict[str, np.ndarray]
) -> None:
    default = members.search(look_alikes["carol"])
    assert (default.threshold, default.margin) == (pytest.approx(0.48), pytest.approx(0.05))
    strict = members.search(look_alikes["carol"], threshold=0.95, margin=0.01)
    assert (strict.threshold, strict.margin) == (pytest.approx(0.95), pytest.approx(0.01))


GOOD = unit(np.random.default_rng(1).standard_normal((3, DIM)))


def _with(change: Callable[[np.ndarray], None]) -> np.ndarray:
    vectors = GOOD.copy()
    change(vectors)
    return vectors


@pytest.mark.parametrize(
    ("call", "error", "code", "message"),
    [
        (
            lambda g: g.search(_with(lambda v: v.__setitem__((2, 5), np.nan))),
            InvalidVectorError,
            grpc.StatusCode.INVALID_ARGUMENT,
            "query 2: the vector contains NaN",
        ),
        (
            lambda g: g.search(_with(lambda v: v.__setitem__(1, v[1] * 1.01))),
            InvalidVectorError,
            grpc.StatusCode.INVALID_ARGUMENT,
            r"query 1: the vector has L2 norm 1\.01",
        ),
        (
            lambda g: g.enroll("x", ["x-1"], GOOD[:1] * 2),
            InvalidVectorError,
            grpc.StatusCode.INVALID_ARGUMENT,
            "template 0",
        ),
        (
            lambda g: g.search(unit(np.ones((1, 64)))),
            ModelMismatchError,
            grpc.StatusCode.FAILED_PRECONDITION,
            "dimension 64, the gallery expects 128",
        ),
        (
            lambda g: g.enroll("x", ["x-1", "x-1"], GOOD[:2]),
            InvalidRequestError,
            grpc.StatusCode.INVALID_ARGUMENT,
            "repeat",
        ),
        (
            lambda g: g.enroll("x", [], np.empty((0, DIM), np.float32)),
            InvalidRequestError,
            grpc.StatusCode.INVALID_ARGUMENT,
            "no templates",
        ),
        (
            lambda g: g.enroll("", ["x-1"], GOOD[:1]),
            InvalidRequestError,
            grpc.StatusCode.INVALID_ARGUMENT,
            "subject_id is empty",
        ),
        (
            lambda g: g.search(GOOD, top_k=MAX_TOP_K + 1),
            InvalidRequestError,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"top_k {MAX_TOP_K + 1} is above the limit {MAX_TOP_K}",
        ),
        (
            lambda g: g.search(GOOD, threshold=1.5),
            InvalidRequestError,
            grpc.StatusCode.INVALID_ARGUMENT,
            r"threshold 1\.5 must be in \[0, 1\]",
        ),
        (
            lambda g: g.set_tags("nobody", ["consent:face"]),
            UnknownSubjectError,
            grpc.StatusCode.NOT_FOUND,
            "subject nobody is not enrolled in gallery members",
        ),
    ],
    ids=[
        "nan",
        "norm",
        "template-norm",
        "dimension",
        "repeated-ids",
        "no-templates",
        "no-subject",
        "top-k",
        "threshold",
        "unknown-subject",
    ],
)
def test_a_bad_request_raises_the_error_of_its_status(
    members: GalleryStore,
    call: Callable[[GalleryStore], object],
    error: type[ServiceError],
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(error, match=message) as raised:
        call(members)
    assert raised.value.code == code
    assert members.stats().templates == 0, "a refused request adds nothing"


def test_an_invalid_vector_names_its_position(members: GalleryStore) -> None:
    with pytest.raises(InvalidVectorError) as error:
        members.search(_with(lambda v: v.__setitem__((2, 5), np.inf)))
    assert error.value.index == 2


def test_a_template_id_of_another_subject_is_refused_whole(members: GalleryStore) -> None:
    members.enroll("x", ["x-1"], GOOD[:1])
    with pytest.raises(TemplateConflictError, match="x-1 already belongs to another subject") as error:
        members.enroll("y", ["y-1", "x-1"], GOOD[1:3])
    assert error.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert members.subject_templates("y") == {}, "a refused enroll adds nothing"
    assert members.subject_templates("x") == {"x-1": 1}


def test_unknown_gallery(store: MatchingStore) -> None:
    with pytest.raises(UnknownGalleryError, match="unknown gallery 'staff'; galleries: members, watchlist") as error:
        store.gallery("staff")
    assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_an_erase_needs_a_subject_id(store: MatchingStore) -> None:
    with pytest.raises(InvalidRequestError, match="subject_id is empty") as error:
        store.erase_subject("", "")
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


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
        assert members.erase_subject(f"p{s}")[0] == 1
        with erased_lock:
            erased.add(f"p{s}")
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert members.stats().templates == 32
    assert members.stats().subjects == 32


def test_the_index_defaults_are_the_native_matchers() -> None:
    defaults = _matcher.DEFAULT_PARAMS
    params = IndexParams()
    own = (
        params.m,
        params.ef_construction,
        params.ef_search,
        params.threads,
        params.initial_capacity,
        params.hnsw_graph,
    )
    assert own == (
        defaults["M"],
        defaults["ef_construction"],
        defaults["ef_search"],
        defaults["threads"],
        defaults["capacity"],
        defaults["hnsw_graph"],
    )
    assert defaults["hnsw_graph"] is False  # no graph unless asked for
    settings = {setting.name: setting.default for setting in SETTINGS}
    assert (
        settings["RETAILFACE_MATCHING_HNSW_M"],
        settings["RETAILFACE_MATCHING_HNSW_EF_CONSTRUCTION"],
        settings["RETAILFACE_MATCHING_HNSW_EF_SEARCH"],
        settings["RETAILFACE_MATCHING_SEARCH_THREADS"],
        settings["RETAILFACE_MATCHING_INITIAL_CAPACITY"],
        settings["RETAILFACE_MATCHING_HNSW_GRAPH"],
    ) == own


@pytest.mark.parametrize("hnsw_graph", [False, True], ids=["no-graph", "with-graph"])
def test_the_index_keeps_a_graph_only_when_asked(hnsw_graph: bool) -> None:
    index = GalleryIndex("members", MODEL, IndexParams(initial_capacity=64, hnsw_graph=hnsw_graph))
    vectors = unit(np.random.default_rng(5).normal(size=(3, DIM)))
    header = {"op": "enroll", "model": index.model_record(), "subject": "p1", "subject_key": 1}
    assert index.apply(header | {"templates": ["a", "b", "c"], "template_keys": [1, 2, 3]}, vectors, "test") == 3
    parts = index.memory_parts
    assert index.memory_bytes == sum(parts.values())
    assert parts["vectors"] == 64 * (DIM + 4) and parts["codes"] == 64 * 32  # int8 rows and scales, codes
    assert (parts["graph"] > 0) is hnsw_graph
    found = index.search(vectors[1:2], top_k=1, threshold=0.5, margin=0.05, subject_ids=[], required_tags=[])
    assert [(c.subject_id, c.template_id) for c in found[0].candidates] == [("p1", "b")]


def test_a_gallery_reports_the_index_it_was_built_with(members: GalleryStore) -> None:
    stats = members.stats()
    assert stats.index == IndexParams()
    assert stats.model == MODEL
    assert stats.search_kernel == _matcher.ISA
    # The index reserves its initial capacity: at least the float vectors of that many templates.
    assert stats.memory_bytes >= IndexParams().initial_capacity * (DIM + 4)  # int8 rows and their scales
