"""The gallery's compact storage: templates kept as int8 rows with one scale each (no float copy), restored from
that stored form by a copy, and searched with a code scan whose first pass may read half of each code."""

from __future__ import annotations

import numpy as np
import pytest
from stored_form import stored_form

from retailface._matcher import Gallery, Plan

DIM = 128


def _face_like(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = (rng.normal(size=(rows, DIM)) * (np.arange(1, DIM + 1) ** -0.6)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _captures(templates: np.ndarray, seed: int, noise: float = 0.6) -> np.ndarray:
    extra = _face_like(len(templates), seed)
    queries = templates + noise * extra
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


N = 30_000
VECTORS = _face_like(N, seed=31)
TEMPLATES = np.arange(100, 100 + N, dtype=np.int64)
OWNERS = np.arange(N, dtype=np.int64) // 2  # two templates per subject
QUERIES = np.concatenate([_captures(VECTORS[:300], seed=32), _face_like(100, seed=33)])
NARROW = np.arange(0, N // 2, 50, dtype=np.int64)  # 600 templates: the exact int8 scan
WIDE = np.arange(0, N // 2, 2, dtype=np.int64)  # half the gallery: the filtered code scan


def _built(**params: int) -> Gallery:
    gallery = Gallery(dim=DIM, capacity=16, **({"exact_below": 1000, "filtered_scan_below": 100} | params))
    gallery.add(TEMPLATES, OWNERS, VECTORS)
    return gallery


def test_the_stored_form_is_int8_with_one_scale_per_template() -> None:
    stored = _built().stored()
    assert (stored["rows"].dtype, stored["rows"].shape) == (np.int8, (N, DIM))
    order = np.argsort(stored["template_ids"])
    rows, scales = stored["rows"][order].astype(np.float32), stored["scales"][order]
    np.testing.assert_array_equal(np.abs(rows).max(axis=1), np.full(N, 127))  # the largest component at +-127
    np.testing.assert_array_equal(rows * scales[:, None], stored_form(VECTORS))
    # What the rounding may change: |v - scale * row| <= scale * sqrt(dim) / 2.
    error = np.linalg.norm(VECTORS - rows * scales[:, None], axis=1)
    assert (error <= scales * np.sqrt(DIM) / 2).all()


@pytest.mark.parametrize(
    ("allowed", "plan"),
    [(None, Plan.CODE_SCAN), (NARROW, Plan.FILTERED_SCAN), (WIDE, Plan.FILTERED_CODE_SCAN)],
    ids=["global", "store-scoped", "wide-filter"],
)
def test_a_gallery_restored_from_its_stored_form_answers_identically(allowed: np.ndarray | None, plan: Plan) -> None:
    built = _built()
    restored = Gallery(dim=DIM, capacity=16, exact_below=1000, filtered_scan_below=100)
    restored.restore(**built.stored())
    found = [g.search(QUERIES, top_k=5, allowed_subjects=allowed) for g in (built, restored)]
    assert set(found[0].plans.tolist()) == {plan.value}
    for field in ("subjects", "template_ids", "scores", "decisions", "plans"):
        np.testing.assert_array_equal(getattr(found[0], field), getattr(found[1], field))


def test_restore_copies_the_stored_form_as_it_is() -> None:
    built = _built()
    restored = Gallery(dim=DIM)
    restored.restore(**built.stored())
    for field, values in built.stored().items():
        np.testing.assert_array_equal(restored.stored()[field], values)
    assert (restored.size, restored.subject_count) == (N, N // 2)


def test_restore_refuses_blocks_of_different_lengths() -> None:
    stored = _built().stored()
    stored["scales"] = stored["scales"][:-1]
    with pytest.raises(ValueError, match="same length"):
        Gallery(dim=DIM).restore(**stored)


def test_a_template_costs_under_200_bytes_all_parts_included() -> None:
    gallery = Gallery(dim=DIM, capacity=N)
    gallery.add(TEMPLATES, OWNERS, VECTORS)
    parts = gallery.memory_parts
    assert parts["vectors"] == N * (DIM + 4) and parts["codes"] == N * 32 and parts["graph"] == 0
    assert gallery.memory_bytes / N <= 200


def test_the_two_pass_scan_finds_what_the_one_pass_scan_finds_for_close_captures() -> None:
    # First pass: the nearest 1/100 by the codes' first halves; second: their other halves.
    one, two = _built(exact_below=0), _built(exact_below=0)
    two.set_first_pass(4, 100)
    close = _captures(VECTORS[:300], seed=34, noise=0.45)  # cosine about 0.9 to their templates
    found_one, found_two = one.search(close, top_k=1), two.search(close, top_k=1)
    assert set(found_two.plans.tolist()) == {Plan.CODE_SCAN.value}
    np.testing.assert_array_equal(found_two.subjects[:, 0], OWNERS[:300])
    np.testing.assert_array_equal(found_two.subjects, found_one.subjects)
    np.testing.assert_array_equal(found_two.scores, found_one.scores)


def test_erased_templates_are_gone_from_the_stored_form() -> None:
    gallery = _built()
    assert gallery.remove_subject(0) == 2
    stored = gallery.stored()
    assert 0 not in stored["subject_ids"] and not np.isin([100, 101], stored["template_ids"]).any()
    assert len(stored["template_ids"]) == N - 2
