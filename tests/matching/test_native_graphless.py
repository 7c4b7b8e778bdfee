"""A gallery without an HNSW graph (the default) answers exactly like one with it, in less memory; the graph
is built on demand when a graph plan is asked for."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from stored_form import stored_form

from retailface._matcher import Gallery, Plan

DIM = 64
N = 6000
SUBJECTS = 2500


def _face_like(rows: int, seed: int) -> np.ndarray:
    """An anisotropic spectrum, as face embeddings have: what the code scan and the rounding bound are tuned for."""
    rng = np.random.default_rng(seed)
    vectors = (rng.normal(size=(rows, DIM)) * (np.arange(1, DIM + 1) ** -0.6)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


VECTORS = _face_like(N, seed=21)
TEMPLATES = np.arange(N, dtype=np.int64)
OWNERS = np.random.default_rng(22).integers(0, SUBJECTS, size=N).astype(np.int64)
# New captures of enrolled templates (cosine ~0.8) and impostors.
_NOISE = np.random.default_rng(23).normal(size=(150, DIM)).astype(np.float32) * (np.arange(1, DIM + 1) ** -0.6)
QUERIES = np.concatenate(
    [VECTORS[:150] + 0.6 * _NOISE / np.linalg.norm(_NOISE, axis=1, keepdims=True), _face_like(50, 24)]
)
QUERIES = (QUERIES / np.linalg.norm(QUERIES, axis=1, keepdims=True)).astype(np.float32)
NARROW = np.arange(0, SUBJECTS, 40, dtype=np.int64)  # ~2.5% of the gallery: the exact int8 scan
WIDE = np.arange(0, SUBJECTS, 2, dtype=np.int64)  # half of it: the code scan over the allowed slots


def _gallery(hnsw_graph: bool, exact_below: int = 1000) -> Gallery:
    gallery = Gallery(dim=DIM, capacity=16, exact_below=exact_below, filtered_scan_below=100, hnsw_graph=hnsw_graph)
    gallery.add(TEMPLATES, OWNERS, VECTORS)
    return gallery


def _best_subject(vectors: np.ndarray, owners: np.ndarray, query: np.ndarray) -> int:
    scores = stored_form(vectors) @ query  # what the gallery holds and scores
    return int(owners[int(np.argmax(scores))])


def _assert_same_answers(without: Gallery, with_graph: Gallery, allowed: np.ndarray | None, plan: Plan) -> None:
    found = [
        g.search(QUERIES, top_k=5, threshold=0.5, margin=0.05, allowed_subjects=allowed) for g in (without, with_graph)
    ]
    assert set(found[0].plans.tolist()) == {plan.value}
    np.testing.assert_array_equal(found[0].plans, found[1].plans)
    np.testing.assert_array_equal(found[0].subjects, found[1].subjects)
    np.testing.assert_array_equal(found[0].template_ids, found[1].template_ids)
    np.testing.assert_allclose(found[0].scores, found[1].scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(found[0].decisions, found[1].decisions)


@pytest.mark.parametrize(
    ("exact_below", "allowed", "plan"),
    [
        (100_000, None, Plan.EXACT_SCAN),
        (1000, None, Plan.CODE_SCAN),
        (1000, NARROW, Plan.FILTERED_SCAN),
        (1000, WIDE, Plan.FILTERED_CODE_SCAN),
    ],
    ids=["exact", "global-code-scan", "store-scoped", "wide-filter"],
)
def test_a_gallery_without_a_graph_answers_like_one_with_it(
    exact_below: int, allowed: np.ndarray | None, plan: Plan
) -> None:
    without, with_graph = _gallery(False, exact_below), _gallery(True, exact_below)
    assert (without.params["hnsw_graph"], with_graph.params["hnsw_graph"]) == (False, True)
    _assert_same_answers(without, with_graph, allowed, plan)
    # And both are brute force's answer for the enrolled captures' best subject.
    found = without.search(QUERIES[:150], top_k=1, allowed_subjects=allowed)
    mask = np.ones(N, dtype=bool) if allowed is None else np.isin(OWNERS, allowed)
    expected = [_best_subject(VECTORS[mask], OWNERS[mask], query) for query in QUERIES[:150]]
    assert found.subjects[:, 0].tolist() == expected

    # Erase a subject, replace a template (new vector, new owner) and remove another: still the same answers.
    erased = int(OWNERS[0])
    of_erased = np.isin(OWNERS, [erased])
    replaced, removed_one = (int(template) for template in np.flatnonzero(~of_erased)[:2])
    removed = np.array([removed_one], dtype=np.int64)
    for gallery in (without, with_graph):
        assert gallery.remove_subject(erased) == int(of_erased.sum())
        gallery.add(np.array([replaced], dtype=np.int64), np.array([SUBJECTS + 1], dtype=np.int64), QUERIES[:1].copy())
        assert gallery.remove(removed) == 1
        assert gallery.size == N - int(of_erased.sum()) - 1
    _assert_same_answers(without, with_graph, None if allowed is None else np.append(allowed, SUBJECTS + 1), plan)
    after = without.search(QUERIES[:1].copy(), top_k=5)
    assert erased not in after.subjects[0]
    assert (after.subjects[0, 0], after.template_ids[0, 0]) == (SUBJECTS + 1, replaced)
    assert after.scores[0, 0] == pytest.approx(float(stored_form(QUERIES[:1])[0] @ QUERIES[0]), abs=1e-6)


def test_without_a_graph_the_memory_is_smaller_and_the_sum_of_its_parts() -> None:
    without, with_graph = _gallery(False), _gallery(True)
    parts = without.memory_parts
    capacity = without.params["capacity"]
    assert capacity == 8192  # 16 doubled until 6000 templates fit
    subjects = len(np.unique(OWNERS))
    tables = parts["ids"] - capacity * (8 + 8 + 4 + 1)  # template, subject, next slot of the subject, liveness
    assert {part: size for part, size in parts.items() if part != "ids"} == {
        "vectors": capacity * (DIM + 4),  # one int8 row and its float scale per slot
        "graph": 0,
        "codes": capacity * 32,  # 256-bit sign codes
        "filters": 0,
    }
    # Two tables of 4-byte slot numbers: template id -> slot, sized for the capacity at 75% (filling the slots, as a
    # snapshot's load does, rehashes nothing), and subject id -> first slot, 60% to 85% full.
    template_table = (capacity * 4 // 3 + 1) * 4
    assert template_table + subjects * 4 / 0.85 <= tables <= template_table + subjects * 4 / 0.6 + 4 * 16
    assert without.memory_bytes == sum(parts.values())
    graph_parts = with_graph.memory_parts
    assert with_graph.memory_bytes == sum(graph_parts.values())
    # The graph holds its own float copy and its links (and the slot -> graph element map); everything else is
    # the same.
    assert graph_parts["vectors"] == parts["vectors"] and graph_parts["codes"] == parts["codes"]
    assert graph_parts["ids"] == parts["ids"]
    assert graph_parts["graph"] > capacity * DIM * 4  # the float copy at least
    assert graph_parts["graph"] > capacity * 2 * 16 * 4  # level-0 links (2M of 4 bytes) at least
    assert without.memory_bytes < with_graph.memory_bytes
    # A cached filter counts too.
    without.search(QUERIES[:1].copy(), allowed_subjects=NARROW)
    assert without.memory_parts["filters"] > 0
    assert without.memory_bytes == sum(without.memory_parts.values())


def test_asking_for_the_graph_builds_it_from_the_stored_vectors() -> None:
    gallery = Gallery(dim=DIM, capacity=16, exact_below=0, ef_search=400, hnsw_graph=False)
    gallery.add(TEMPLATES, OWNERS, VECTORS)
    gallery.remove(TEMPLATES[:100])  # free slots: not in the graph that is built next
    assert gallery.graph_build_seconds == 0.0
    before = gallery.templates()
    gallery.set_graph_for_global(True)
    assert gallery.params["hnsw_graph"] is True and gallery.params["graph_for_global"] is True
    assert gallery.graph_build_seconds > 0.0
    parts = gallery.memory_parts
    assert parts["graph"] > 0 and parts["vectors"] == gallery.params["capacity"] * (DIM + 4)
    after = gallery.templates()
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)  # the stored templates are unchanged by the graph
    # The freed slots are reused by new templates, inserted into the graph as new elements.
    gallery.add(np.arange(N, N + 100, dtype=np.int64), np.full(100, SUBJECTS + 7, dtype=np.int64), VECTORS[:100].copy())
    assert gallery.params["capacity"] == 8192
    found = gallery.search(VECTORS[:300].copy(), top_k=1)
    assert set(found.plans.tolist()) == {Plan.GRAPH.value}
    assert found.subjects[:100, 0].tolist() == [SUBJECTS + 7] * 100
    assert (found.subjects[100:, 0] == OWNERS[100:300]).mean() > 0.99
    # Back to the code scan: the graph stays, and the answers are the graph-less gallery's.
    gallery.set_graph_for_global(False)
    twin = Gallery(dim=DIM, capacity=16, exact_below=0)
    twin.add(TEMPLATES, OWNERS, VECTORS)
    twin.remove(TEMPLATES[:100])
    twin.add(np.arange(N, N + 100, dtype=np.int64), np.full(100, SUBJECTS + 7, dtype=np.int64), VECTORS[:100].copy())
    ours, theirs = gallery.search(QUERIES, top_k=5), twin.search(QUERIES, top_k=5)
    assert set(ours.plans.tolist()) == {Plan.CODE_SCAN.value} and gallery.params["hnsw_graph"] is True
    np.testing.assert_array_equal(ours.subjects, theirs.subjects)
    np.testing.assert_allclose(ours.scores, theirs.scores, rtol=0, atol=1e-6)


def test_changes_during_the_graph_build_end_up_in_the_graph() -> None:
    """The build runs beside searches; an add that comes in meanwhile makes it build again, so none is missed."""
    gallery = Gallery(dim=DIM, capacity=16, exact_below=0, ef_search=400)
    gallery.add(TEMPLATES[:4000], OWNERS[:4000], VECTORS[:4000])
    errors: list[BaseException] = []

    def change_and_search() -> None:
        try:
            for start in range(4000, N, 250):
                gallery.add(TEMPLATES[start : start + 250], OWNERS[start : start + 250], VECTORS[start : start + 250])
                assert (gallery.search(VECTORS[:8].copy(), top_k=1).subjects[:, 0] >= 0).all()
        except BaseException as error:  # surfaced below
            errors.append(error)

    worker = threading.Thread(target=change_and_search)
    worker.start()
    gallery.set_graph_for_global(True)
    worker.join()
    assert errors == [] and gallery.size == N
    found = gallery.search(VECTORS, top_k=1)
    assert set(found.plans.tolist()) == {Plan.GRAPH.value}
    assert (found.subjects[:, 0] == OWNERS).mean() > 0.99
    assert (found.subjects[4000:, 0] == OWNERS[4000:]).mean() > 0.99
