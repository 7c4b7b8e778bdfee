"""The native gallery against numpy brute force: plans, removals, filters, decisions, threads."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable

import numpy as np
import pytest
from stored_form import stored_form

from retailface._matcher import DEFAULT_PARAMS, Decision, Gallery, Plan
from retailface.v1 import matching_pb2


def _unit(rows: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _brute_force(
    gallery_vectors: np.ndarray, subjects: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ stored_form(gallery_vectors).T  # what the gallery holds and scores
    best_subjects, best_scores = [], []
    for row in scores:
        per_subject: dict[int, float] = {}
        for subject, score in zip(subjects.tolist(), row.tolist(), strict=True):
            per_subject[subject] = max(per_subject.get(subject, -2.0), score)
        ranked = sorted(per_subject.items(), key=lambda item: (-item[1], item[0]))[:k]
        best_subjects.append([s for s, _ in ranked])
        best_scores.append([v for _, v in ranked])
    return np.array(best_subjects), np.array(best_scores, dtype=np.float32)


@pytest.mark.parametrize("hnsw_graph", [False, True], ids=["no-graph", "with-graph"])
@pytest.mark.parametrize(
    ("exact_below", "graph", "plan"),
    [(100_000, False, Plan.EXACT_SCAN), (0, True, Plan.GRAPH), (0, False, Plan.CODE_SCAN)],
    ids=["exact-plan", "graph-plan", "code-scan-plan"],
)
def test_search_equals_brute_force_with_several_templates_per_subject(
    exact_below: int, graph: bool, plan: Plan, hnsw_graph: bool
) -> None:
    vectors = _unit(3000)
    subjects = np.arange(3000, dtype=np.int64) // 3  # three templates per subject
    gallery = Gallery(
        dim=64,
        capacity=64,
        M=16,
        ef_construction=200,
        ef_search=400,
        exact_below=exact_below,
        graph_for_global=graph,
        hnsw_graph=hnsw_graph,
    )
    # The graph plans need a graph: asking for them at construction gives the gallery one.
    assert gallery.params["hnsw_graph"] is (hnsw_graph or graph)
    gallery.add(np.arange(3000, dtype=np.int64), subjects, vectors)
    queries = _unit(200, seed=1)
    queries = (queries + vectors[:200] * 2).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    result = gallery.search(queries, top_k=5, threshold=0.5, margin=0.05)
    expected_subjects, expected_scores = _brute_force(vectors, subjects, queries, 5)
    assert set(result.plans.tolist()) == {plan.value}
    np.testing.assert_array_equal(result.subjects[:, 0], expected_subjects[:, 0])
    if exact_below:
        np.testing.assert_array_equal(result.subjects, expected_subjects)
        np.testing.assert_allclose(result.scores, expected_scores, atol=1e-5)
    assert gallery.size == 3000 and gallery.subject_count == 1000


@pytest.mark.parametrize("hnsw_graph", [False, True], ids=["no-graph", "with-graph"])
def test_removals_are_honoured_at_once_and_slots_are_reused(hnsw_graph: bool) -> None:
    vectors = _unit(100)
    gallery = Gallery(dim=64, capacity=16, hnsw_graph=hnsw_graph)
    gallery.add(np.arange(100, dtype=np.int64), np.arange(100, dtype=np.int64) // 2, vectors)
    assert gallery.remove(np.array([0, 1, 999], dtype=np.int64)) == 2
    assert 0 not in gallery.search(vectors[:1].copy(), top_k=3).subjects
    assert gallery.remove_subject(1) == 2
    result = gallery.search(vectors[2:4].copy(), top_k=5)
    assert 1 not in result.subjects
    capacity = gallery.params["capacity"]
    gallery.add(np.array([500, 501, 502, 503], dtype=np.int64), np.full(4, 77, dtype=np.int64), vectors[:4].copy())
    assert gallery.params["capacity"] == capacity  # the four freed slots were reused
    found = gallery.search(vectors[:1].copy(), top_k=1)
    assert found.subjects[0, 0] == 77 and found.template_ids[0, 0] == 500
    ids, owners, stored = gallery.templates()
    assert len(ids) == gallery.size == 100 and 0 not in ids and set(owners[np.isin(ids, [500, 503])]) == {77}
    np.testing.assert_array_equal(stored[ids == 500][0], stored_form(vectors[:1])[0])


def test_readding_a_template_replaces_it() -> None:
    vectors = _unit(2)
    gallery = Gallery(dim=64)
    gallery.add(np.array([7], dtype=np.int64), np.array([1], dtype=np.int64), vectors[:1].copy())
    gallery.add(np.array([7], dtype=np.int64), np.array([2], dtype=np.int64), vectors[1:].copy())
    assert gallery.size == 1 and gallery.subject_count == 1
    assert gallery.search(vectors[1:].copy(), top_k=1).subjects[0, 0] == 2


@functools.cache
def _filter_gallery(exact_below: int, graph_for_global: bool, hnsw_graph: bool = False) -> Gallery:
    """5000 subjects of one template each; filters up to 100 templates are always scanned exactly."""
    ids = np.arange(5000, dtype=np.int64)
    gallery = Gallery(
        dim=64,
        capacity=64,
        ef_search=200,
        exact_below=exact_below,
        filtered_scan_below=100,
        graph_for_global=graph_for_global,
        hnsw_graph=hnsw_graph,
    )
    gallery.add(ids, ids.copy(), _unit(5000))
    return gallery


NARROW = np.arange(0, 5000, 100, dtype=np.int64)  # 50 subjects: scanned exactly whatever the gallery
WIDE = np.array([s for s in range(5000) if s % 50 != 0], dtype=np.int64)  # 4900: allowed^2 > ef * M * size


@pytest.mark.parametrize("hnsw_graph", [False, True], ids=["no-graph", "with-graph"])
@pytest.mark.parametrize(
    ("exact_below", "graph_for_global", "allowed", "plan"),
    [
        (100_000, False, NARROW, Plan.FILTERED_SCAN),
        (100_000, False, WIDE, Plan.FILTERED_SCAN),
        (0, False, NARROW, Plan.FILTERED_SCAN),
        (0, False, WIDE, Plan.FILTERED_CODE_SCAN),
        (0, True, NARROW, Plan.FILTERED_SCAN),
        (0, True, WIDE, Plan.FILTERED_GRAPH),
    ],
    ids=["small-narrow", "small-wide", "large-narrow", "large-wide", "large-graph-narrow", "large-graph-wide"],
)
def test_filtered_search_is_exact_over_the_allowed_subjects(
    exact_below: int, graph_for_global: bool, allowed: np.ndarray, plan: Plan, hnsw_graph: bool
) -> None:
    gallery = _filter_gallery(exact_below, graph_for_global, hnsw_graph)
    queries = _unit(50, seed=3)
    result = gallery.search(queries, top_k=3, allowed_subjects=allowed)
    assert set(result.plans.tolist()) == {plan.value}
    assert np.isin(result.subjects, allowed).all()
    expected, _ = _brute_force(_unit(5000)[allowed], allowed, queries, 3)
    np.testing.assert_array_equal(result.subjects[:, 0], expected[:, 0])


def test_a_filter_of_unknown_subjects_finds_nothing() -> None:
    gallery = _filter_gallery(100_000, False)
    empty = gallery.search(_unit(1, seed=3), allowed_subjects=np.array([123456], dtype=np.int64))
    assert empty.subjects[0].tolist() == [-1] * 5
    assert (empty.decisions[0], empty.plans[0]) == (Decision.NO_MATCH.value, Plan.EMPTY.value)


def test_a_wide_filter_takes_the_code_scan_over_the_allowed_slots_only() -> None:
    vectors = _unit(20_000)
    subjects = np.arange(20_000, dtype=np.int64)
    gallery = Gallery(dim=64, capacity=64, exact_below=0, filtered_scan_below=0)
    gallery.add(subjects.copy(), subjects, vectors)
    allowed = subjects[subjects % 2 == 0].copy()  # half the gallery: wider than 1/filtered_scan_share
    inside, outside = vectors[0:400:2].copy(), vectors[1:400:2].copy()  # templates of allowed / other subjects
    found = gallery.search(inside, top_k=3, allowed_subjects=allowed)
    assert set(found.plans.tolist()) == {Plan.FILTERED_CODE_SCAN.value}
    np.testing.assert_array_equal(found.subjects[:, 0], subjects[0:400:2])
    others = gallery.search(outside, top_k=3, allowed_subjects=allowed)
    assert np.isin(others.subjects, allowed).all() and (others.scores < 0.99).all()
    # A removal changes the slots: the cached filter is rebuilt, and the removed subject is gone at once.
    assert gallery.remove_subject(0) == 1
    again = gallery.search(inside[:1].copy(), top_k=3, allowed_subjects=allowed)
    assert 0 not in again.subjects[0] and set(again.plans.tolist()) == {Plan.FILTERED_CODE_SCAN.value}
    # With the exact scan preferred for every width, the same filter is scanned exactly, with the same answers.
    gallery.set_filtered_scan_share(1)
    exact = gallery.search(inside[1:].copy(), top_k=3, allowed_subjects=allowed)
    assert set(exact.plans.tolist()) == {Plan.FILTERED_SCAN.value}
    np.testing.assert_array_equal(exact.subjects[:, 0], subjects[2:400:2])


@pytest.mark.parametrize("hnsw_graph", [False, True], ids=["no-graph", "with-graph"])
@pytest.mark.parametrize("dim", [128, 72], ids=["dim128", "dim72-tail"])
def test_the_int8_filtered_scan_returns_the_exact_top_k(dim: int, hnsw_graph: bool) -> None:
    """The filtered scan reads int8 copies; its rounding bound must still give brute force's top-k and scores."""
    rng = np.random.default_rng(11)
    # Face-like: an anisotropic spectrum, several templates per subject, near-duplicates that the rounding could swap.
    vectors = (rng.normal(size=(6000, dim)) * (np.arange(1, dim + 1) ** -0.6)).astype(np.float32)
    vectors[1::2] = vectors[::2] + 1e-4 * rng.normal(size=(3000, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    subjects = rng.integers(0, 2000, size=6000).astype(np.int64)
    gallery = Gallery(dim=dim, capacity=16, exact_below=0, filtered_scan_below=10_000, hnsw_graph=hnsw_graph)
    gallery.add(np.arange(6000, dtype=np.int64), subjects, vectors)
    allowed = np.unique(subjects[subjects % 3 == 0])
    mask = np.isin(subjects, allowed)
    queries = np.concatenate([vectors[mask][:100] + 0.05 * rng.normal(size=(100, dim)), rng.normal(size=(100, dim))])
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    result = gallery.search(queries, top_k=5, allowed_subjects=allowed)
    assert set(result.plans.tolist()) == {Plan.FILTERED_SCAN.value}
    expected_subjects, expected_scores = _brute_force(vectors[mask], subjects[mask], queries, 5)
    np.testing.assert_allclose(result.scores, expected_scores, atol=1e-5)
    # Subjects may differ only where two scores tie to float precision.
    differs = result.subjects != expected_subjects
    assert (np.abs(result.scores - expected_scores)[differs] < 1e-5).all()
    assert differs.mean() < 0.01


@pytest.mark.parametrize(
    ("threshold", "margin", "decision"),
    [(0.5, 0.05, Decision.AMBIGUOUS), (0.5, 0.01, Decision.MATCH), (0.95, 0.01, Decision.NO_MATCH)],
    ids=["within-the-margin", "clear-lead", "below-the-threshold"],
)
def test_decision_rule(threshold: float, margin: float, decision: Decision) -> None:
    """The best subject scores 0.9, the second 0.88: a lead of 0.02."""
    base = _unit(1)[0]
    other = _unit(1, seed=9)[0]

    def towards(target: np.ndarray, cosine: float) -> np.ndarray:
        orthogonal = other - other.dot(target) * target
        orthogonal /= np.linalg.norm(orthogonal)
        return (cosine * target + np.sqrt(1 - cosine**2) * orthogonal).astype(np.float32)

    gallery = Gallery(dim=64)
    near, close_second = towards(base, 0.9), towards(base, 0.88)
    gallery.add(np.array([1, 2], dtype=np.int64), np.array([10, 20], dtype=np.int64), np.stack([near, close_second]))
    found = gallery.search(base[None].astype(np.float32), top_k=1, threshold=threshold, margin=margin)
    assert found.decisions[0] == decision.value
    assert found.subjects[0, 0] == 10


def test_decision_codes_are_the_protos() -> None:
    """The native decisions are retailface.v1.Decision's numbers: the service passes them on as they are."""
    native = {name: int(value) for name, value in Decision.__members__.items()}
    proto = {
        name.removeprefix("DECISION_"): value
        for name, value in matching_pb2.Decision.items()
        if name != "DECISION_UNSPECIFIED"
    }
    assert native == proto


ONE = np.array([1], dtype=np.int64)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: g.add(ONE, ONE, _unit(1, dim=32)), "dimension"),
        (lambda g: g.add(ONE, ONE, _unit(1).astype(np.float64)), "float32"),
        (lambda g: g.search(np.asfortranarray(_unit(4))), "C-contiguous"),
        (lambda g: g.add(np.array([1, 2], dtype=np.int64), ONE, _unit(1)), "same length"),
        (lambda g: g.search(_unit(1), allowed_subjects=np.array([1], dtype=np.int32)), "int64"),
        (lambda g: g.search(_unit(1), top_k=0), "top_k must be positive"),
    ],
    ids=["dimension", "dtype", "layout", "lengths", "filter-dtype", "top-k"],
)
def test_bad_input_raises_value_error(call: Callable[[Gallery], object], message: str) -> None:
    gallery = Gallery(dim=64)
    with pytest.raises(ValueError, match=message):
        call(gallery)
    assert gallery.size == 0


def test_the_parameters_default_to_the_native_defaults() -> None:
    """DEFAULT_PARAMS is the one home of the defaults: a gallery built without parameters reports exactly them."""
    assert Gallery(dim=DEFAULT_PARAMS["dim"]).params == DEFAULT_PARAMS
    tuned = Gallery(dim=64, M=8, ef_search=32, filtered_scan_share=2, graph_for_global=True).params
    assert tuned == DEFAULT_PARAMS | {
        "dim": 64,
        "M": 8,
        "ef_search": 32,
        "filtered_scan_share": 2,
        "graph_for_global": True,
        "hnsw_graph": True,  # the graph plans need a graph
    }


@pytest.mark.parametrize(
    ("keywords", "message"),
    [({"ef": 10}, "unexpected keyword argument 'ef'"), ({"M": "sixteen"}, "M must be a non-negative int")],
    ids=["unknown", "wrong-type"],
)
def test_a_bad_parameter_raises_type_error(keywords: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Gallery(dim=64, **keywords)


def test_concurrent_search_while_adding() -> None:
    vectors = _unit(4000)
    gallery = Gallery(dim=64, capacity=64, exact_below=0, graph_for_global=True)
    gallery.add(np.arange(1000, dtype=np.int64), np.arange(1000, dtype=np.int64), vectors[:1000].copy())
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        try:
            while not done.is_set():
                result = gallery.search(vectors[:64].copy(), top_k=2)
                assert (result.subjects[:, 0] >= 0).all()
        except BaseException as error:  # surfaced below
            errors.append(error)

    readers = [threading.Thread(target=search) for _ in range(2)]
    for reader in readers:
        reader.start()
    for start in range(1000, 4000, 500):
        ids = np.arange(start, start + 500, dtype=np.int64)
        gallery.add(ids, ids, vectors[start : start + 500].copy())
    done.set()
    for reader in readers:
        reader.join()
    assert errors == []
    assert gallery.size == 4000
    assert (gallery.search(vectors, top_k=1).subjects[:, 0] == np.arange(4000)).mean() > 0.99


def test_a_parallel_build_equals_a_serial_one_and_the_last_duplicate_wins() -> None:
    vectors = _unit(3000)
    ids = np.arange(3000, dtype=np.int64)
    subjects = ids // 2
    # Template 5 appears twice in one call, for another subject the second time: the later row wins.
    ids_with_duplicate = np.append(ids, 5)
    subjects_with_duplicate = np.append(subjects, 999_999)
    vectors_with_duplicate = np.concatenate([vectors, vectors[2999:]])
    galleries = []
    for threads in (1, 2):
        gallery = Gallery(dim=64, capacity=16, threads=threads, exact_below=0, graph_for_global=True, ef_search=300)
        gallery.add(ids_with_duplicate, subjects_with_duplicate, vectors_with_duplicate)
        galleries.append(gallery)
    queries = vectors[:300].copy()
    for gallery in galleries:
        assert gallery.size == 3000 and gallery.subject_count == 1501
        template_ids, template_subjects, _ = gallery.templates()
        assert template_subjects[template_ids == 5].tolist() == [999_999]
        found = gallery.search(queries, top_k=1)
        others = np.arange(300) != 5  # template 5's vector was replaced
        assert (found.subjects[others, 0] == subjects[:300][others]).mean() > 0.99
        twins = gallery.search(vectors[2999:].copy(), top_k=2)  # template 5 now holds vector 2999 too
        assert set(twins.subjects[0].tolist()) == {1499, 999_999}
    allowed = np.arange(0, 1500, 3, dtype=np.int64)
    serial, parallel = (gallery.search(queries, top_k=3, allowed_subjects=allowed) for gallery in galleries)
    np.testing.assert_array_equal(serial.subjects, parallel.subjects)


def test_a_cached_filter_never_outlives_a_change_to_the_gallery() -> None:
    """Repeated searches with one filter reuse its slot list; any add or erasure invalidates it at once."""
    vectors = _unit(500)
    ids = np.arange(500, dtype=np.int64)
    gallery = Gallery(dim=64, capacity=16)
    gallery.add(ids, ids, vectors)
    allowed = np.arange(0, 500, 5, dtype=np.int64)
    query = vectors[10:11].copy()
    assert gallery.search(query, top_k=1, allowed_subjects=allowed).subjects[0, 0] == 10
    assert gallery.search(query, top_k=1, allowed_subjects=allowed).subjects[0, 0] == 10  # from the cache
    assert gallery.remove_subject(10) == 1
    assert 10 not in gallery.search(query, top_k=5, allowed_subjects=allowed).subjects
    gallery.add(np.array([10_000], dtype=np.int64), np.array([10], dtype=np.int64), vectors[10:11].copy())
    assert gallery.search(query, top_k=1, allowed_subjects=allowed).subjects[0, 0] == 10
    other = allowed[::-1].copy()  # same subjects, other order: its own entry, same answer
    assert gallery.search(query, top_k=1, allowed_subjects=other).subjects[0, 0] == 10


def test_both_kernel_paths_give_the_same_answers() -> None:
    """The AVX-512 scans (where the CPU has them) and the x86-64-v3 baseline return identical results."""
    script = (
        "import numpy as np, sys\n"
        "from retailface._matcher import Gallery, ISA\n"
        "rng = np.random.default_rng(4)\n"
        "v = rng.normal(size=(6000, 128)).astype(np.float32); v /= np.linalg.norm(v, axis=1, keepdims=True)\n"
        "g = Gallery(dim=128, capacity=16, exact_below=0, min_candidates=64, candidate_divisor=50)\n"
        "ids = np.arange(6000, dtype=np.int64); g.add(ids, ids // 2, v)\n"
        "g.remove(np.arange(0, 6000, 7, dtype=np.int64))\n"
        "q = (v[:400] + 0.8 * rng.normal(size=(400, 128)).astype(np.float32) / 11).astype(np.float32)\n"
        "q /= np.linalg.norm(q, axis=1, keepdims=True)\n"
        "r = g.search(q, top_k=3)\n"
        "assert set(r.plans.tolist()) == {5}, r.plans\n"
        "f = g.search(q, top_k=3, allowed_subjects=np.arange(0, 3000, 4, dtype=np.int64))\n"
        "assert set(f.plans.tolist()) == {3}, f.plans\n"
        "g.set_first_pass(2, 16)\n"  # two passes: first halves blocked, second halves per slot
        "t = g.search(q, top_k=3)\n"
        "out = [a.astype(np.float64) for a in (r.subjects, f.subjects, t.subjects, r.scores, f.scores, t.scores)]\n"
        "np.save(sys.argv[1], np.concatenate(out, axis=1))\n"
        "print(ISA)\n"
    )
    outputs = {}
    with tempfile.TemporaryDirectory() as folder:
        for isa in ("native", "x86-64-v3"):
            env = dict(os.environ)
            if isa != "native":
                env["RETAILFACE_MATCHER_ISA"] = isa
            path = os.path.join(folder, f"{isa}.npy")
            done = subprocess.run([sys.executable, "-c", script, path], env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            outputs[done.stdout.strip()] = np.load(path)
    assert "x86-64-v3" in outputs
    baseline = outputs.pop("x86-64-v3")
    for other in outputs.values():
        np.testing.assert_array_equal(other[:, :9], baseline[:, :9])
        np.testing.assert_allclose(other[:, 9:], baseline[:, 9:], atol=1e-5)
