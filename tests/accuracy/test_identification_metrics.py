"""Open-set 1:N metrics (NIST FRVT definitions) on hand-made scores with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from retailface.devtools import idmetrics
from retailface.devtools.idmetrics import det_curve, fnir, fnir_at_fpir, fpir, search_scores, threshold_for_fpir

NONMATED = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
MATED = [0.3, 0.6, 0.7, 0.9]
RANKS = [1, 1, 2, 1]


def test_fpir_counts_top_scores_at_or_above_the_threshold() -> None:
    assert fpir(NONMATED, [0.5, 0.55, 0.95, 0.96, 0.0]).tolist() == [0.6, 0.5, 0.1, 0.0, 1.0]


def test_fnir_counts_mates_below_the_threshold_or_past_the_rank() -> None:
    assert fnir(MATED, RANKS, [0.0, 0.5, 0.65, 0.9, 0.91]).tolist() == [0.25, 0.5, 0.75, 0.75, 1.0]
    assert fnir(MATED, RANKS, [0.0, 0.5, 0.65], rank=2).tolist() == [0.0, 0.25, 0.5]


def test_the_threshold_for_a_target_fpir_is_just_above_the_first_score_not_allowed() -> None:
    threshold = threshold_for_fpir(NONMATED, 0.2)  # two false positives allowed: 0.95 and 0.9
    assert threshold == float(np.nextafter(0.8, 1.0))
    assert fpir(NONMATED, threshold)[0] == 0.2
    assert fpir(NONMATED, 0.8)[0] == 0.3
    assert threshold_for_fpir(NONMATED, 0.0) == float(np.nextafter(0.95, 1.0))
    assert threshold_for_fpir(NONMATED, 1.0) == -math.inf


def test_ties_at_the_boundary_all_fall_below_the_threshold() -> None:
    tied = [0.5, 0.5, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    threshold = threshold_for_fpir(tied, 0.1)  # one allowed, but the top three are equal
    assert threshold == float(np.nextafter(0.5, 1.0))
    assert fpir(tied, threshold)[0] == 0.0
    assert fpir(tied, 0.5)[0] == 0.3
    assert threshold_for_fpir(tied, 0.3) == float(np.nextafter(0.2, 1.0))  # three allowed: exactly the tie
    assert fpir(tied, threshold_for_fpir(tied, 0.3))[0] == 0.3


def test_the_threshold_keeps_the_scores_float32_type() -> None:
    scores = np.array([0.7, 0.6, 0.5, 0.4], np.float32)
    threshold = threshold_for_fpir(scores, 0.25)
    assert threshold == float(np.nextafter(np.float32(0.6), np.float32(1.0)))
    assert (scores >= np.float32(threshold)).sum() == 1


def test_fnir_at_fpir_reports_the_operating_point() -> None:
    point = fnir_at_fpir(MATED, RANKS, NONMATED, 0.2)
    assert point.as_dict() == {
        "target_fpir": 0.2,
        "nonmated": 10,
        "estimable": True,
        "threshold": float(np.nextafter(0.8, 1.0)),
        "fpir": 0.2,
        "fnir": 0.75,
    }


def test_an_fpir_below_one_over_the_nonmated_count_is_not_estimated() -> None:
    points = idmetrics.fnir_at_standard_fpirs(MATED, RANKS, np.linspace(0.0, 0.5, 1000))
    assert [(key, p.estimable) for key, p in points.items()] == [("1e-02", True), ("1e-03", True), ("1e-04", False)]
    assert (points["1e-04"].threshold, points["1e-04"].fnir) == (None, None)
    assert points["1e-02"].fpir == 0.01
    assert points["1e-03"].fpir == 0.001
    assert points["1e-03"].threshold == float(np.nextafter(np.linspace(0.0, 0.5, 1000)[998], 1.0))
    assert points["1e-03"].fnir == 0.5  # the mate at 0.3 falls below it, the one at rank 2 misses anyway


def test_the_det_curve_has_a_point_at_every_distinct_score() -> None:
    curve = det_curve([0.3, 0.6], [1, 1], [0.2, 0.6, 0.4])
    assert curve.thresholds.tolist() == [0.2, 0.3, 0.4, 0.6]
    assert curve.fpir.tolist() == pytest.approx([1.0, 2 / 3, 2 / 3, 1 / 3])
    assert curve.fnir.tolist() == [0.0, 0.0, 0.5, 0.5]


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_brute_force_search_scores_people_by_their_best_template() -> None:
    gallery = np.array([unit(0), unit(10), unit(90), unit(180)]) * [[1.0], [2.0], [3.0], [0.5]]  # norms vary
    gallery_labels = ["alice", "alice", "bob", "carol"]
    probes = np.array([unit(5), unit(100), unit(45), unit(80), unit(8)])
    probe_labels = ["alice", "bob", "dave", "carol", "erin"]
    result = search_scores(gallery, gallery_labels, probes, probe_labels)
    assert result.mated_probe.tolist() == [0, 1, 3]

    def cos(*degrees: float) -> list[float]:
        return [math.cos(math.radians(d)) for d in degrees]

    # alice at 5 deg from one of her templates; bob at 10; carol's mate at 100 deg, behind bob (10) and alice (70)
    np.testing.assert_allclose(result.mated_scores, cos(5, 10, 100), rtol=0, atol=1e-6)
    assert result.mated_ranks.tolist() == [1, 1, 3]
    np.testing.assert_allclose(result.mated_top_nonmate, cos(85, 80, 10), rtol=0, atol=1e-6)
    assert result.nonmated_probe.tolist() == [2, 4]
    np.testing.assert_allclose(result.nonmated_top, cos(35, 2), rtol=0, atol=1e-6)
    one_row_at_a_time = search_scores(gallery, gallery_labels, probes, probe_labels, chunk_elements=1)
    for name in ("mated_scores", "mated_ranks", "mated_top_nonmate", "nonmated_top"):
        np.testing.assert_array_equal(getattr(one_row_at_a_time, name), getattr(result, name))


def test_a_tie_with_a_non_mate_counts_against_the_mate() -> None:
    gallery = np.array([unit(0), unit(90)])
    result = search_scores(gallery, ["a", "b"], np.array([unit(45)]), ["a"])
    assert result.mated_ranks.tolist() == [2]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="a zero vector"):
        search_scores(np.zeros((1, 2)), ["a"], np.array([unit(0)]), ["a"])
    with pytest.raises(ValueError, match="no non-mated searches"):
        fpir([], 0.5)
    with pytest.raises(ValueError, match="4 mated scores but 3 ranks"):
        fnir(MATED, [1, 1, 1], 0.5)


def test_the_det_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is in the bench extra")
    curve = det_curve(MATED, RANKS, NONMATED)
    path = idmetrics.plot_det({"all": curve}, tmp_path / "det.png", points={"current": (0.2, 0.75)})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
