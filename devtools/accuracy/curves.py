"""Measured open-set curves, as the calibration file stores them: FPIR and FNIR at chosen thresholds.

For one set of searches (one quality bin, one fused-frame count, one gallery size) the thresholds are:

- the exact tail: the lowest threshold letting through k of the n non-mated searches, k = 1..60;
- the lowest threshold for each of 60 FPIR targets spaced evenly in log from 60/n up to 1, and for the
  round targets 1e-1 .. 1e-5 the data can show (n x target >= 1);
- 40 thresholds evenly spaced over the scores' range (for the bulk of the curve).

Thresholds have 6 decimals: the lowest threshold for a target is the smallest 6-decimal value above
the best non-mated score that must not get through (`just_above`), the evenly spaced ones are rounded
up. FPIR and FNIR are measured at the stored value, so every stored point is exact for its threshold. Points with no
false positive at all (FPIR 0) are dropped: the data cannot tell a rate below 1/n from 0, so the
calibration never claims one (`Calibration.operating_point` then finds no threshold for such a target).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from retailface.devtools import idmetrics

TAIL_STEPS = 60
LOG_POINTS = 60
UNIFORM_POINTS = 40
ROUND_TARGETS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
DECIMALS = 6


def _six(k: int, decimals: int) -> float:
    return float(Fraction(k, 10**decimals))


def round_up(value: float, decimals: int = DECIMALS) -> float:
    """The smallest value with `decimals` decimals (as a float) at or above `value`."""
    k = math.ceil(Fraction(value) * 10**decimals)
    while _six(k - 1, decimals) >= value:
        k -= 1
    return _six(k, decimals)


def just_above(value: float, decimals: int = DECIMALS) -> float:
    """The smallest value with `decimals` decimals (as a float) strictly above `value`: the lowest such
    threshold that a score equal to `value` falls below."""
    k = math.floor(Fraction(value) * 10**decimals) + 1
    while _six(k, decimals) <= value:
        k += 1
    while _six(k - 1, decimals) > value:
        k -= 1
    return _six(k, decimals)


@dataclass(frozen=True)
class MeasuredCurve:
    thresholds: tuple[float, ...]  # ascending
    fpir: tuple[float, ...]
    fnir: tuple[float, ...]


def candidate_thresholds(nonmated_top: np.ndarray, mated_scores: np.ndarray) -> list[float]:
    """The thresholds a curve is measured at (see the module docstring), ascending."""
    top = np.asarray(nonmated_top)
    n = top.size
    targets: list[float] = [k / n for k in range(1, min(TAIL_STEPS, n - 1) + 1)]
    start = min(TAIL_STEPS, n) / n
    if start < 1:
        targets += np.geomspace(start, 1.0, LOG_POINTS, endpoint=False).tolist()
    targets += [t for t in ROUND_TARGETS if n * t >= 1]
    descending = np.sort(top)[::-1]
    # as idmetrics.threshold_for_fpir: k = floor(target x n) false positives allowed, the (k+1)-th best
    # non-mated score is the boundary that must fall below the threshold
    allowed = {math.floor(t * n + 1e-9) for t in targets}
    found = [just_above(float(descending[k])) for k in allowed if k < n]
    finite = np.concatenate([top, np.asarray(mated_scores)])
    finite = finite[np.isfinite(finite)]
    found += [round_up(float(t)) for t in np.linspace(finite.min(), finite.max(), UNIFORM_POINTS)]
    return sorted(set(found))


def measured_curve(
    mated_scores: Sequence[float] | np.ndarray,
    mated_ranks: Sequence[int] | np.ndarray,
    nonmated_top: Sequence[float] | np.ndarray,
) -> MeasuredCurve:
    """FPIR and FNIR (rank 1) at the chosen thresholds, without points of FPIR 0."""
    scores, ranks, top = np.asarray(mated_scores), np.asarray(mated_ranks), np.asarray(nonmated_top)
    thresholds = np.asarray(candidate_thresholds(top, scores))
    fpir = idmetrics.fpir(top, thresholds)
    fnir = idmetrics.fnir(scores, ranks, thresholds)
    keep = fpir > 0
    return MeasuredCurve(
        tuple(float(t) for t in thresholds[keep]),
        tuple(_short(r) for r in fpir[keep]),
        tuple(_short(r) for r in fnir[keep]),
    )


def _short(rate: float) -> float:
    """A rate with 10 significant digits (keeps the file small; far below any sampling error)."""
    return float(f"{rate:.10g}")
