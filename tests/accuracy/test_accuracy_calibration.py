"""Calibration built from searches: exact thresholds for a target FPIR, read back by the matching service."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import numpy as np
import pytest

from retailface.devtools import idmetrics
from retailface.devtools.accuracy import bins, calibrate, curves
from retailface.devtools.accuracy.protocol import Searches
from retailface.services.matching import calibration as matching_calibration
from retailface.services.matching.calibration import CalibrationError
from retailface.services.shared.model_identity import ModelIdentity

MODEL = ModelIdentity("sface", "2021dec", 128, "ab" * 32)
SIZES = (1000, 10000)


def synthetic_searches(seed: int, eye_px: float, frames: int, mated: int, nonmated: int, shift: float) -> Searches:
    """Searches of one quality: mates around 0.6 + shift, the best non-mate around 0.3 (+0.02 at the larger N)."""
    rng = np.random.default_rng(seed)
    mate = np.clip(rng.normal(0.6 + shift, 0.1, mated), -1, 1).astype(np.float32)
    top_small = np.clip(rng.normal(0.3, 0.06, nonmated), -1, 1).astype(np.float32)
    top_mated = np.clip(rng.normal(0.3, 0.06, mated), -1, 1).astype(np.float32)
    count = mated + nonmated
    is_mated = np.arange(count) < mated
    top1 = np.stack([np.concatenate([top_mated, top_small]), np.concatenate([top_mated, top_small]) + 0.02])
    rank = np.where(is_mated, 1 + (top1 >= np.concatenate([mate, np.full(nonmated, np.inf)])), 0)
    return Searches(
        sizes=np.array(SIZES),
        probe=np.arange(count),
        fold=np.zeros(count, dtype=np.int64),
        mated=is_mated,
        found=np.ones(count, dtype=bool),
        inter_eye_px=np.full(count, eye_px),
        frames=np.full(count, frames),
        mate=np.concatenate([mate, np.full(nonmated, -np.inf, np.float32)]),
        rank=rank.astype(np.int64),
        top1=top1.astype(np.float32),
        top2=(top1 - 0.05).astype(np.float32),
    )


def both_bins(frames: int, seed: int = 0) -> Searches:
    return Searches.concat(
        [
            synthetic_searches(seed, 18.0, frames, 800, 5000, -0.2),  # bin 16-21px
            synthetic_searches(seed + 1, 33.0, frames, 800, 2000, 0.0),  # bin 28-40px
        ]
    )


def test_the_calibrated_threshold_for_a_target_fpir_is_exact() -> None:
    single = both_bins(1)
    cal = calibrate.build_calibration(single, both_bins(5, seed=9), MODEL, {"note": "test"}, "0" * 64)
    index = bins.bin_index(single.inter_eye_px)
    for eye, b in ((18.0, 2), (33.0, 4)):
        inside = index == b
        for level, size in enumerate(SIZES):
            top = single.top1[level, inside & ~single.mated]
            mate = single.mate[inside & single.mated]
            ranks = single.rank[level, inside & single.mated]
            for target in (1e-2, 1e-3, 3e-3):
                point = cal.operating_point(eye, 1, size, target)
                boundary = float(np.sort(top)[::-1][math.floor(target * top.size + 1e-9)])
                assert point.threshold == curves.just_above(boundary)
                assert point.threshold >= idmetrics.threshold_for_fpir(top, target) - 1e-6
                reached = float(idmetrics.fpir(top, point.threshold)[0])
                assert reached <= target < float(idmetrics.fpir(top, point.threshold - 1e-6)[0])
                assert point.estimated_fpir == pytest.approx(reached)
                assert point.estimated_fnir == pytest.approx(float(idmetrics.fnir(mate, ranks, point.threshold)[0]))
    # the data cannot show a rate below 1/n: 2,000 non-mated searches cannot hold 1e-4
    assert not cal.operating_point(33.0, 1, 10000, 1e-4).identifiable
    assert not cal.operating_point(33.0, 1, 10000, 4e-4).identifiable
    assert cal.operating_point(33.0, 1, 10000, 5e-4).identifiable
    assert cal.operating_point(18.0, 1, 10000, 2e-4).identifiable
    # no curve outside the measured bins; below the lowest bin never identified
    assert not cal.operating_point(24.0, 1, 10000, 1e-2).identifiable
    assert cal.operating_point(5.0, 1, 10000, 1e-2).quality_bin == matching_calibration.BELOW_CALIBRATION


def test_curves_are_monotonic_hold_no_zero_fpir_and_fused_curves_are_separate() -> None:
    cal = calibrate.build_calibration(both_bins(1), both_bins(5, seed=3), MODEL, {}, "1" * 64)
    assert {(c.bin, c.frames, c.gallery_size) for c in cal.curves} == {
        (name, frames, size) for name in ("16-21px", "28-40px") for frames in (1, 5) for size in SIZES
    }
    for curve in cal.curves:
        assert list(curve.thresholds) == sorted(set(curve.thresholds))
        assert all(a >= b for a, b in zip(curve.fpir, curve.fpir[1:], strict=False))
        assert all(a <= b for a, b in zip(curve.fnir, curve.fnir[1:], strict=False))
        assert min(curve.fpir) > 0 and len(curve.thresholds) <= 250
        assert all(round(t, 6) == t for t in curve.thresholds)
    fused = cal.operating_point(18.0, 5, 10000, 1e-3)
    single = cal.operating_point(18.0, 1, 10000, 1e-3)
    assert fused.frames == 5 and single.frames == 1 and fused.threshold != single.threshold
    assert cal.operating_point(18.0, 3, 10000, 1e-3) == single  # fewer than 5 frames: the 1-frame curve


def test_only_probes_fused_from_five_frames_make_the_fused_curves() -> None:
    four = synthetic_searches(0, 18.0, 4, 100, 1000, 0.0)
    cal = calibrate.build_calibration(both_bins(1), four, MODEL, {}, "2" * 64)
    assert {c.frames for c in cal.curves} == {1}


def test_a_fused_curve_too_short_to_show_the_default_target_falls_back_to_the_single_frame_curve() -> None:
    few = synthetic_searches(0, 18.0, 5, 100, calibrate.MIN_FUSED_NONMATED - 1, 0.2)
    enough = synthetic_searches(1, 33.0, 5, 100, calibrate.MIN_FUSED_NONMATED, 0.2)
    cal = calibrate.build_calibration(both_bins(1), Searches.concat([few, enough]), MODEL, {}, "4" * 64)
    assert {(c.bin, c.frames) for c in cal.curves if c.frames == 5} == {("28-40px", 5)}
    assert cal.operating_point(18.0, 5, 10000, 1e-3) == cal.operating_point(18.0, 1, 10000, 1e-3)
    assert cal.operating_point(33.0, 5, 10000, 1e-3).frames == 5


def test_the_file_is_read_back_by_the_matching_service(tmp_path: Path) -> None:
    day = datetime.date(2026, 12, 2)
    cal = calibrate.build_calibration(both_bins(1), both_bins(5), MODEL, {"datasets": ["x"]}, "abcdef" * 10, day)
    assert cal.calibration_id == "sface-2021dec/2026-12-02/abcdefabcdef"
    path = tmp_path / "sface-2021dec.json"
    cal.save(path)
    loaded = matching_calibration.load(path, MODEL)
    assert loaded.curves == cal.curves
    assert loaded.provenance == {"datasets": ["x"]}
    assert [b.name for b in loaded.bins] == [b.name for b in bins.QUALITY_BINS] and math.isinf(loaded.bins[-1].high)
    assert loaded.operating_point(18.0, 1, 10000, 1e-3) == cal.operating_point(18.0, 1, 10000, 1e-3)
    with pytest.raises(CalibrationError, match="make calibrate"):
        matching_calibration.load(path, ModelIdentity("arcface", "r100", 512))


def test_operating_table_says_which_bins_cannot_hold_a_target() -> None:
    cal = calibrate.build_calibration(both_bins(1), both_bins(5), MODEL, {}, "3" * 64)
    rows = calibrate.operating_table(cal, 10000, (1e-3, 1e-4))
    by_bin = {(r["bin"], r["frames"]): r for r in rows}
    assert by_bin[("16-21px", 1)]["1e-03"]["threshold"] is not None
    assert by_bin[("28-40px", 1)]["1e-04"]["threshold"] is None
    assert by_bin[("8-12px", 1)]["1e-03"]["threshold"] is None
    assert "cannot hold" in calibrate.format_table(rows)


@pytest.mark.parametrize(
    "value", [0.4812345, 0.481235, -0.25, 0.1 + 0.2, 0.3, float(np.nextafter(np.float32(0.5), np.float32(1)))]
)
def test_six_decimal_thresholds_at_or_just_above_a_value(value: float) -> None:
    rounded, above = curves.round_up(value), curves.just_above(value)
    assert rounded >= value and round(rounded - 1e-6, 6) < value and round(rounded, 6) == rounded
    assert above > value and round(above - 1e-6, 6) <= value and round(above, 6) == above
