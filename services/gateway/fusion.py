"""Multi-frame fusion: a track's quality-passing frames become one probe.

The fused probe is the quality-weighted mean of the frames' embeddings, re-normalised to unit
length. A frame's weight grows with its inter-eye distance up to `FULL_WEIGHT_INTER_EYE_PX` (a
face twice as wide carries more identity) and with the detector's confidence; blur and pose are
left to the gates and the calibration. The fused probe is matched with the calibration measured
for probes fused from that many frames (the matcher's calibration curves by `frames`), since a
mean of k captures scores differently from a single one.

The accuracy harness (retailface.devtools.accuracy) fuses its sequences with these functions, so
what it measures is what the gateway does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FULL_WEIGHT_INTER_EYE_PX = 48.0
DEFAULT_FUSED_FRAMES = 5  # the most recent quality-passing frames a track fuses


def frame_weight(inter_eye_px: float, detection_score: float = 1.0) -> float:
    """How much one frame counts in a fused probe."""
    size = min(max(inter_eye_px, 0.0) / FULL_WEIGHT_INTER_EYE_PX, 1.0)
    return float(size * min(max(detection_score, 0.0), 1.0))


def fuse(embeddings: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The unit-length weighted mean of unit-length embeddings (equal weights where all are 0)."""
    if len(embeddings) == 0 or len(embeddings) != len(weights):
        raise ValueError(f"fuse needs as many weights as embeddings, got {len(embeddings)} and {len(weights)}")
    stacked = np.asarray(embeddings, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("fusion weights must be finite and >= 0")
    if w.sum() == 0:
        w = np.ones_like(w)
    mean = (w[:, None] * stacked).sum(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        raise ValueError("the embeddings cancel out: no direction to fuse to")
    return (mean / norm).astype(np.float32)


def fused_inter_eye_px(inter_eye_px: Sequence[float], weights: Sequence[float]) -> float:
    """The quality of a fused probe: the weighted mean inter-eye distance of its frames."""
    w = np.asarray(weights, dtype=np.float64)
    values = np.asarray(inter_eye_px, dtype=np.float64)
    if w.sum() == 0:
        return float(values.mean())
    return float((w * values).sum() / w.sum())
