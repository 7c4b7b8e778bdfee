"""The open-set protocol on hand-made embeddings: folds, galleries, mated and non-mated searches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from retailface.devtools import idmetrics
from retailface.devtools.accuracy import protocol
from retailface.devtools.accuracy.bins import QUALITY_BINS, bin_index
from retailface.devtools.accuracy.probes import ProbeTable
from retailface.devtools.accuracy.search import nested_search

MULTI = [f"person{i}" for i in range(6)]  # 4 photos each, 2 variants per photo
SINGLE = [f"portrait{i}" for i in range(8)]  # one photo each, 2 variants


def people_table(table_of: Callable[..., ProbeTable], make_row: Any, dim: int = 16) -> ProbeTable:
    rng = np.random.default_rng(0)
    rows = []
    for identity in MULTI:
        centre = rng.standard_normal(dim)
        for photo in range(4):
            for variant in ("native", "eye18"):
                rows.append(make_row(identity, photo, variant, centre + 0.5 * rng.standard_normal(dim)))
    for identity in SINGLE:
        centre = rng.standard_normal(dim)
        rows += [
            make_row(identity, 0, "native", centre),
            make_row(identity, 0, "eye18", centre + 0.5 * rng.standard_normal(dim)),
        ]
    return table_of(rows, dim)


def test_folds_never_put_a_stranger_in_the_gallery(table_of: Callable[..., ProbeTable], row: Any) -> None:
    table = people_table(table_of, row)
    folds = protocol.make_folds(table, folds=2)
    assert len(folds) == 2
    for fold in folds:
        gallery_people = set(table.identity[fold.gallery_rows].tolist())
        strangers = set(table.identity[fold.nonmated_rows].tolist())
        assert not gallery_people & strangers
        assert set(table.identity[fold.mated_rows].tolist()) == set(fold.enrolled)
        assert (table.variant[fold.gallery_rows] == "native").all()
    # each person is enrolled in exactly one fold and a stranger in the other
    enrolled = [set(f.enrolled) for f in folds]
    assert not enrolled[0] & enrolled[1] and enrolled[0] | enrolled[1] == set(MULTI)
    distractors = [set(table.identity[list(f.distractors)].tolist()) for f in folds]
    assert not distractors[0] & distractors[1] and distractors[0] | distractors[1] == set(SINGLE)


def test_mated_and_nonmated_counts(table_of: Callable[..., ProbeTable], row: Any) -> None:
    table = people_table(table_of, row)
    for fold in protocol.make_folds(table, folds=2):
        # 3 enrolled people x 3 other photos x 2 variants; the enrolled photo's variants are never searched
        assert fold.mated_rows.size == 3 * 3 * 2
        assert not np.isin(fold.mated_rows, list(fold.enrolled.values())).any()
        for identity, row in fold.enrolled.items():
            mine = fold.mated_rows[table.identity[fold.mated_rows] == identity]
            assert (table.photo[mine] != table.photo[row]).all()
        # the other 3 people x 4 photos x 2 variants, and the other 4 portraits x 2 variants
        assert fold.nonmated_rows.size == 3 * 4 * 2 + 4 * 2
        assert len(fold.enrolled) + len(fold.distractors) == 3 + 4


def test_enrollment_skips_a_photo_without_a_face_or_failing_the_gates(
    table_of: Callable[..., ProbeTable], row: Any
) -> None:
    rows = [
        row("a", 0, embedding=None),
        row("a", 1, embedding=[1, 0], passes=False),
        row("a", 2, embedding=[0, 1]),
        row("b", 0, embedding=[1, 1], passes=False),
    ]
    table = table_of(rows, 2)
    assert protocol.enrollment_row(table, "a") == 2
    assert protocol.enrollment_row(table, "b") == 3  # nothing passes: the first photo with a face


def test_galleries_are_padded_to_each_size_with_synthetic_templates(
    table_of: Callable[..., ProbeTable], row: Any
) -> None:
    table = people_table(table_of, row)
    fold = protocol.make_folds(table, folds=2)[0]
    sizes = (10, 40, 100)
    gallery = protocol.fold_gallery(table, fold, sizes)
    assert gallery.real.shape[0] == 7
    assert gallery.synthetic.shape == (100 - 7, 16)
    assert np.allclose(np.linalg.norm(gallery.synthetic, axis=1), 1.0, atol=1e-5)
    searches = protocol.single_frame_searches(table, [gallery], sizes)
    assert searches.sizes.tolist() == list(sizes)
    assert len(searches) == fold.mated_rows.size + fold.nonmated_rows.size
    # a larger gallery only adds distractors: top non-mate scores never fall, ranks never improve
    assert (np.diff(searches.top1, axis=0) >= 0).all()
    mated = searches.mated
    assert (np.diff(searches.rank[:, mated], axis=0) >= 0).all()
    with pytest.raises(ValueError, match="cannot pad"):
        protocol.single_frame_searches(table, [gallery], (10, 200))


def test_nested_search_agrees_with_the_exact_scan_at_every_size() -> None:
    rng = np.random.default_rng(5)
    real = rng.standard_normal((6, 12)).astype(np.float32)
    labels = np.array([f"id{i}" for i in range(6)])
    synthetic = rng.standard_normal((60, 12)).astype(np.float32)
    probes = np.vstack([real[[0, 2, 2, 5]] + 0.7 * rng.standard_normal((4, 12)), rng.standard_normal((5, 12))])
    probe_labels = np.array(["id0", "id2", "id2", "id5", "x", "y", "z", "id9", "w"])
    sizes = (6, 20, 66)
    result = nested_search(real, labels, synthetic, sizes, probes, probe_labels, chunk_elements=50)
    for level, size in enumerate(sizes):
        gallery = np.vstack([real, synthetic[: size - 6]])
        g_labels = np.concatenate([labels, [f"syn{i}" for i in range(size - 6)]])
        exact = idmetrics.search_scores(gallery, g_labels, probes, probe_labels)
        assert np.array_equal(np.flatnonzero(result.mated), exact.mated_probe)
        assert np.allclose(result.mate[result.mated], exact.mated_scores, atol=1e-6)
        assert np.array_equal(result.rank[level, result.mated], exact.mated_ranks)
        assert np.allclose(result.top1[level, result.mated], exact.mated_top_nonmate, atol=1e-6)
        assert np.allclose(result.top1[level, ~result.mated], exact.nonmated_top, atol=1e-6)
        scores = idmetrics.l2_normalise(probes) @ idmetrics.l2_normalise(gallery).T
        for p in np.flatnonzero(~result.mated):
            assert result.top2[level, p] == pytest.approx(np.sort(scores[p])[-2], abs=1e-6)


def test_a_probe_without_a_face_misses_and_cannot_be_a_false_positive(
    table_of: Callable[..., ProbeTable], row: Any
) -> None:
    rows = [row("a", 0, embedding=[1, 0, 0]), row("a", 1, embedding=None), row("b", 0, embedding=None)]
    rows += [row("b", 1, embedding=[1, 0, 0]), row("c", 0, embedding=[0, 1, 0])]
    table = table_of(rows, 3)
    fold = protocol.Fold(0, {"a": 0}, (4,), np.array([1]), np.array([2, 3]))
    gallery = protocol.fold_gallery(table, fold, (2, 5))
    s = protocol.single_frame_searches(table, [gallery], (2, 5))
    assert s.mated.tolist() == [True, False, False]
    assert s.mate[0] == -np.inf and (s.rank[:, 0] > 1).all()
    assert s.top1[:, 1].tolist() == [-np.inf, -np.inf]
    assert s.top1[0, 2] == pytest.approx(1.0)  # b's second photo is a's photo: a false positive at any threshold


def test_quality_bins_cover_the_nominal_sizes_in_their_middle() -> None:
    assert bin_index([7.9, 8.0, 11.99, 12.0, 18.0, 39.9, 40.0, 500.0, np.nan]).tolist() == [-1, 0, 0, 1, 2, 4, 5, 5, -1]
    for size in (10, 14, 18, 24, 32, 48):
        quality_bin = QUALITY_BINS[int(bin_index(size)[0])]
        assert quality_bin.low < size * 0.95 and size * 1.05 < quality_bin.high
