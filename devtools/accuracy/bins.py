"""The quality bins of the harness and the calibration: by the probe's measured inter-eye distance.

The degradations put faces at 10, 14, 18, 24, 32 and 48 px between the eyes (`degrade.EYE_DISTANCES_PX`).
The bin edges sit between those sizes (near their geometric means), so each nominal size lands in the
middle of one bin instead of being split by measurement noise at an edge: 18 px faces are in 16-21px,
the issue's "16-18 px between the eyes". A face under 8 px is below the calibration: never identified.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from retailface.services.matching.calibration import QualityBin

EDGES = (8.0, 12.0, 16.0, 21.0, 28.0, 40.0, math.inf)


def _name(low: float, high: float) -> str:
    return f"{low:g}px+" if math.isinf(high) else f"{low:g}-{high:g}px"


QUALITY_BINS: tuple[QualityBin, ...] = tuple(
    QualityBin(_name(low, high), low, high) for low, high in itertools.pairwise(EDGES)
)


def bin_index(inter_eye_px: np.ndarray | float, bins: tuple[QualityBin, ...] = QUALITY_BINS) -> np.ndarray:
    """The index of each value's bin in `bins` (-1 below the lowest or NaN); bins must be contiguous."""
    values = np.atleast_1d(np.asarray(inter_eye_px, dtype=np.float64))
    lows = np.array([b.low for b in bins])
    index = np.searchsorted(lows, values, side="right") - 1
    highs = np.array([b.high for b in bins])
    inside = (index >= 0) & ~np.isnan(values)
    inside[inside] &= values[inside] < highs[index[inside]]
    return np.where(inside, index, -1)
