"""The decisions the report measures: the hand-set point's margin and gates, the calibrated decision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from retailface.devtools.accuracy import calibrate, gates, report
from retailface.devtools.accuracy.probes import ProbeTable
from retailface.devtools.accuracy.protocol import Searches
from retailface.services.detection.quality import QualityGates
from retailface.services.shared.model_identity import ModelIdentity


def searches(mate: list[float], top1: list[float], top2: list[float], mated: list[bool], eye: float = 30.0) -> Searches:
    count = len(mate)
    m = np.array(mate, dtype=np.float32)
    t1 = np.array([top1], dtype=np.float32)
    is_mated = np.array(mated)
    return Searches(
        sizes=np.array([10_000]),
        probe=np.arange(count),
        fold=np.zeros(count, dtype=np.int64),
        mated=is_mated,
        found=np.ones(count, dtype=bool),
        inter_eye_px=np.full(count, eye),
        frames=np.ones(count, dtype=np.int64),
        mate=np.where(is_mated, m, -np.inf).astype(np.float32),
        rank=np.where(is_mated, 1 + (t1 >= m), 0).astype(np.int64),
        top1=t1,
        top2=np.array([top2], dtype=np.float32),
    )


def test_the_hand_set_point_needs_threshold_margin_and_gates() -> None:
    s = searches(
        mate=[0.70, 0.70, 0.50, 0.30, 0.0, 0.0, 0.0, 0.0],
        top1=[0.40, 0.68, 0.30, 0.60, 0.60, 0.60, 0.40, 0.60],
        top2=[0.30, 0.30, 0.20, 0.20, 0.50, 0.58, 0.30, 0.50],
        mated=[True, True, True, True, False, False, False, False],
    )
    passes = np.array([True, True, False, True, True, True, True, False])
    outcome = report.hand_set_outcome(s, 0, passes, report.HandSetPoint(0.48, 0.05))
    # mated: 0 identified; 1 too close to a non-mate (ambiguous); 2 gated; 3 names someone else
    assert outcome["fnir"] == 0.75 and outcome["mated_naming_someone_else"] == 1
    # non-mated: 4 is a false positive; 5 is ambiguous; 6 below the threshold; 7 gated
    assert outcome["fpir"] == 0.25 and outcome["false_positives"] == 1
    assert outcome["mated_refused_by_gates"] == 0.25
    assert outcome["threshold_only"] == {"fpir": 0.75, "fnir": 0.25}


def test_gated_searches_miss_and_cannot_name_anyone() -> None:
    s = searches([0.9, 0.0], [0.1, 0.9], [0.0, 0.1], [True, False])
    gated = s.gated(np.array([False, False]))
    assert not gated.found.any()
    assert gated.mate[0] == -np.inf and gated.rank[0, 0] > 1 and gated.top1[0, 1] == -np.inf
    assert s.gated(np.array([True, True])).top1[0, 1] == pytest.approx(0.9)


def test_the_calibrated_decision_uses_each_bins_threshold_and_the_margin() -> None:
    rng = np.random.default_rng(0)
    top = np.sort(rng.uniform(0.1, 0.5, 2000)).tolist()
    s = searches([0.0] * 2000, top, [t - 0.1 for t in top], [False] * 2000)
    mated = searches([0.9, 0.6, 0.9], [0.2, 0.3, 0.88], [0.1, 0.1, 0.1], [True, True, True])
    both = Searches.concat([s, mated])
    model = ModelIdentity("sface", "2021dec", 128)
    cal = calibrate.build_calibration(both, both.take(np.zeros(len(both), bool)), model, {}, "0" * 64)
    outcome = report.calibrated_outcome(cal, both, 10_000, 1e-2, margin=0.05)
    row = outcome["28-40px"]
    threshold = row["single_frame_threshold"]
    assert threshold is not None and 0.49 < threshold < 0.5  # 20 of 2,000 above it
    assert row["fpir"] == pytest.approx(0.01) and row["nonmated"] == 2000
    # 0.9 clear of its best non-mate: identified; 0.6 above the threshold: identified; 0.9 vs 0.88: ambiguous
    assert row["fnir"] == pytest.approx(1 / 3)
    assert outcome["all"]["mated"] == 3 and outcome["8-12px"]["mated"] == 0


def test_gates_are_reapplied_to_the_stored_measures(table_of: Callable[..., ProbeTable], row: Any) -> None:
    table = table_of([row("a", 0, embedding=[1, 0], inter_eye_px=18.0), row("a", 1, embedding=[1, 0])], 2)
    table.sharpness[:] = 100.0
    table.brightness[:] = 120.0
    table.yaw_deg[:] = table.pitch_deg[:] = 0.0
    assert gates.passes(table, gates.HAND_SET_GATES).tolist() == [False, True]  # 18 px < 24 px
    assert gates.passes(table, QualityGates(min_inter_eye_px=10.0)).tolist() == [True, True]
    table.sharpness[1] = 30.0
    assert gates.passes(table, gates.HAND_SET_GATES).tolist() == [False, False]  # blurry for the hand-set gate
