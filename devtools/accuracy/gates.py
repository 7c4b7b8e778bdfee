"""The detection gates, re-applied to the measures stored with each probe.

A probe records its face's measures (inter-eye distance, sharpness, brightness, yaw, pitch, detection
score, how far it leaves the frame); `passes` applies any `QualityGates` to them with the detection
service's own rule (`quality.failed_gates`), so the gates can be compared without running detection
again:

- `QualityGates()`: the identification gates now in the tree (the calibrated decision searches only
  faces passing them);
- `HAND_SET_GATES`: the gates as they were set by hand before issue #14, the "current operating point"
  the issue asks the harness to place on the DET curves.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from retailface.devtools.accuracy.probes import ProbeTable
from retailface.services.detection.quality import QualityGates, failed_gates

HAND_SET_GATES = QualityGates(
    min_inter_eye_px=24.0,
    min_sharpness=60.0,
    min_brightness=40.0,
    max_brightness=220.0,
    max_abs_yaw_deg=35.0,
    max_abs_pitch_deg=30.0,
    min_identification_score=0.8,
    truncation_tolerance=0.2,
)


def passes(table: ProbeTable, gates: QualityGates) -> np.ndarray:
    """Per row: a face was found and it passes `gates`."""
    out = np.zeros(len(table), dtype=bool)
    for row in np.flatnonzero(table.found):
        out[row] = not failed_gates(
            float(table.inter_eye_px[row]),
            float(table.sharpness[row]),
            float(table.brightness[row]),
            float(table.yaw_deg[row]),
            float(table.pitch_deg[row]),
            float(table.score[row]),
            float(table.outside[row]),
            gates,
        )
    return out


def describe(gates: QualityGates) -> dict[str, float]:
    return {name: float(value) for name, value in asdict(gates).items()}
