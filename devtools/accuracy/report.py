"""The numbers of the evaluation: FNIR at fixed FPIR per group, the hand-set operating point, the
calibrated decision, fusion against single frames, and enrollment refusals.

Definitions follow `retailface.devtools.idmetrics` (NIST FRVT): FNIR counts mated searches whose mate
is not at rank 1 with a score >= T (a probe without a face misses); FPIR counts non-mated searches
with a face whose best candidate scores >= T. An estimate needs at least 1/FPIR non-mated searches,
otherwise it is reported as not estimable (None).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retailface.devtools import idmetrics
from retailface.devtools.accuracy import bins
from retailface.devtools.accuracy.fusion_eval import PHOTO_FAMILIES, VARIANT_FAMILIES, Sequences, frames_of
from retailface.devtools.accuracy.probes import ProbeTable
from retailface.devtools.accuracy.protocol import Searches
from retailface.services.detection.quality import QualityGate
from retailface.services.matching.calibration import Calibration
from retailface.services.matching.settings import SETTINGS as MATCHING_SETTINGS

TARGETS = idmetrics.STANDARD_FPIRS


def key(target: float) -> str:
    return f"{target:.0e}".replace("e-0", "e-")  # 1e-3


def counts(s: Searches) -> dict[str, int]:
    return {
        "mated": int(s.mated.sum()),
        "mated_without_face": int((s.mated & ~s.found).sum()),
        "nonmated": int((~s.mated & s.found).sum()),
        "nonmated_without_face": int((~s.mated & ~s.found).sum()),
    }


def fnir_points(s: Searches, level: int, targets: Sequence[float] = TARGETS) -> dict[str, idmetrics.OperatingPoint]:
    """FNIR at each target FPIR (empty when the group has no mated or no non-mated search)."""
    mated, nonmated = s.mated, ~s.mated & s.found
    if not mated.any() or not nonmated.any():
        return {}
    return {
        key(t): idmetrics.fnir_at_fpir(s.mate[mated], s.rank[level, mated], s.top1[level, nonmated], t) for t in targets
    }


@dataclass(frozen=True)
class HandSetPoint:
    """The members gallery's hand-set decision: MATCH when the best score >= threshold and leads the
    second-best identity by >= margin; only faces passing the detection gates are searched."""

    threshold: float
    margin: float

    @classmethod
    def current(cls) -> HandSetPoint:
        defaults = {s.name: s.default for s in MATCHING_SETTINGS}
        return cls(
            float(defaults["RETAILFACE_MATCHING_MEMBERS_THRESHOLD"]),
            float(defaults["RETAILFACE_MATCHING_MEMBERS_MARGIN"]),
        )


def hand_set_outcome(s: Searches, level: int, passes: np.ndarray, point: HandSetPoint) -> dict[str, Any]:
    """FPIR and FNIR of the hand-set decision, with gates and margin, and of its threshold alone."""
    t, m = np.float32(point.threshold), np.float32(point.margin)
    mate, top1, top2 = s.mate, s.top1[level], s.top2[level]
    searched = s.found & passes
    with np.errstate(invalid="ignore"):  # -inf - -inf where nothing was searched: NaN, compares False
        correct = s.mated & searched & (mate >= t) & ((mate - top1) >= m)
        wrong = s.mated & searched & (top1 > mate) & (top1 >= t) & ((top1 - np.maximum(mate, top2)) >= m)
        false_positive = ~s.mated & searched & (top1 >= t) & ((top1 - top2) >= m)
    mated, nonmated = int(s.mated.sum()), int((~s.mated & s.found).sum())
    threshold_only_hit = s.mated & s.found & (s.rank[level] == 1) & (mate >= t)
    threshold_only_fp = ~s.mated & s.found & (top1 >= t)
    return {
        "threshold": point.threshold,
        "margin": point.margin,
        "fpir": _rate(int(false_positive.sum()), nonmated),
        "fnir": _rate(mated - int(correct.sum()), mated),
        "false_positives": int(false_positive.sum()),
        "mated_refused_by_gates": _rate(int((s.mated & s.found & ~passes).sum()), mated),
        "mated_naming_someone_else": int(wrong.sum()),
        "threshold_only": {
            "fpir": _rate(int(threshold_only_fp.sum()), nonmated),
            "fnir": _rate(mated - int(threshold_only_hit.sum()), mated),
        },
    }


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def group_summary(
    s: Searches, sizes: Sequence[int], passes: np.ndarray | None, point: HandSetPoint | None
) -> dict[str, Any]:
    """Counts, FNIR at the standard FPIRs per gallery size, and the hand-set point at each size."""
    out: dict[str, Any] = counts(s)
    for size in sizes:
        level = s.level(size)
        tag = f"n{size // 1000}k"
        out[tag] = {name: p.as_dict() for name, p in fnir_points(s, level).items()}
        if passes is not None and point is not None:
            out[tag]["current"] = hand_set_outcome(s, level, passes, point)
    return out


def by_bin(s: Searches, summarise: Callable[[Searches, np.ndarray], dict[str, Any]]) -> dict[str, Any]:
    """`summarise(searches of the bin, mask)` per quality bin (searches with a face, by measured inter-eye px)."""
    index = bins.bin_index(s.inter_eye_px)
    out = {}
    for b, quality_bin in enumerate(bins.QUALITY_BINS):
        mask = s.found & (index == b)
        if mask.any():
            out[quality_bin.name] = summarise(s.take(mask), mask)
    below = s.found & (index < 0)
    out["below-8px"] = {"searches": int(below.sum())}
    return out


# ---------------------------------------------------------------------------------------------
# The calibrated decision


def calibrated_thresholds(
    calibration: Calibration, gallery_size: int, target: float, max_frames: int = 5
) -> dict[tuple[int, int], float]:
    """(bin index, frames) -> threshold (inf: never identified) of the calibrated decision."""
    out = {}
    for b, quality_bin in enumerate(bins.QUALITY_BINS):
        for frames in range(1, max_frames + 1):
            point = calibration.operating_point(quality_bin.low, frames, gallery_size, target)
            out[(b, frames)] = point.threshold
    return out


def calibrated_outcome(
    calibration: Calibration, s: Searches, gallery_size: int, target: float, margin: float = 0.0
) -> dict[str, dict[str, Any]]:
    """Per bin and over all searches: FPIR and FNIR when each search with a face uses its bin's calibrated
    threshold and, as the matching service does, the second-best identity must trail by `margin`.

    Pass gated searches (`Searches.gated`) to count faces failing the identification gates as not searched.
    The "all" row counts every mated search (no face, below the lowest bin, gated: missed) and every
    non-mated search with a face."""
    level = s.level(gallery_size)
    thresholds = calibrated_thresholds(calibration, gallery_size, target)
    index = bins.bin_index(s.inter_eye_px)
    limit = np.array(
        [
            thresholds.get((int(b), int(min(f, 5))), math.inf) if b >= 0 else math.inf
            for b, f in zip(index, s.frames, strict=True)
        ]
    )
    m = np.float32(margin)
    top1, top2 = s.top1[level], s.top2[level]
    with np.errstate(invalid="ignore"):  # -inf - -inf where nothing was searched: NaN, compares False
        hit = s.mated & s.found & (s.rank[level] == 1) & (s.mate >= limit) & ((s.mate - top1) >= m)
        false_positive = ~s.mated & s.found & (top1 >= limit) & ((top1 - top2) >= m)
    out: dict[str, dict[str, Any]] = {}
    groups: list[tuple[str, np.ndarray, float | None]] = [
        (quality_bin.name, s.found & (index == b), _finite(thresholds[(b, 1)]))
        for b, quality_bin in enumerate(bins.QUALITY_BINS)
    ]
    groups.append(("all", s.mated | s.found, None))
    for name, inside, threshold in groups:
        mated, nonmated = int((inside & s.mated).sum()), int((inside & ~s.mated & s.found).sum())
        out[name] = {
            "mated": mated,
            "nonmated": nonmated,
            "fnir": _rate(mated - int((hit & inside).sum()), mated),
            "fpir": _rate(int((false_positive & inside).sum()), nonmated),
            "false_positives": int((false_positive & inside).sum()),
            "single_frame_threshold": threshold,
        }
    return out


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Fusion


def family_of_variant() -> dict[str, str]:
    out = {variant: family for family, variant in PHOTO_FAMILIES.items()}
    for family, names in VARIANT_FAMILIES.items():
        out.update({name: family for name in names})
    return out


def fusion_comparison(
    table: ProbeTable, single: Searches, fused: Searches, sequences: Sequences, gallery_size: int
) -> dict[str, Any]:
    """FNIR at FPIR 1e-2 and 1e-3 of the sequences' frames searched one by one and of their fused probes,
    pooled and per family (each side with its own threshold for the target). Pass gated single searches:
    the fused probes are made from the frames passing the gates."""
    level_s, level_f = single.level(gallery_size), fused.level(gallery_size)
    frames = single.take(frames_of(sequences, single, len(table)))
    families = family_of_variant()
    frame_family = np.array([families.get(v, "") for v in table.variant[frames.probe].tolist()])
    fused_family = sequences.family[fused.probe]
    targets = (1e-2, 1e-3)

    def pair(single_part: Searches, fused_part: Searches) -> dict[str, Any]:
        s_points, f_points = fnir_points(single_part, level_s, targets), fnir_points(fused_part, level_f, targets)
        row: dict[str, Any] = {"single": counts(single_part), "fused": counts(fused_part)}
        for t in targets:
            s_point, f_point = s_points.get(key(t)), f_points.get(key(t))
            s_fnir = s_point.fnir if s_point else None
            f_fnir = f_point.fnir if f_point else None
            row[f"single_fnir_at_fpir_{key(t)}"] = s_fnir
            row[f"fused_fnir_at_fpir_{key(t)}"] = f_fnir
            row[f"reduction_at_fpir_{key(t)}"] = 1 - f_fnir / s_fnir if s_fnir and f_fnir is not None else None
        return row

    out: dict[str, Any] = {"pooled": pair(frames, fused), "families": {}}
    for family in sorted(set(fused_family.tolist()), key=_family_order):
        out["families"][family] = pair(frames.take(frame_family == family), fused.take(fused_family == family))
    kinds = sequences.kind[fused.probe]
    out["fused_mated_by_kind"] = {k: int((fused.mated & (kinds == k)).sum()) for k in ("photos", "variants")}
    out["fused_nonmated_by_kind"] = {k: int((~fused.mated & (kinds == k)).sum()) for k in ("photos", "variants")}
    out["fused_frames_histogram"] = {str(k): int((fused.frames == k).sum()) for k in range(0, 6)}
    return out


def _family_order(family: str) -> tuple[int, int]:
    return (0, 0) if family == "native" else (1, -int(family.removeprefix("camera")))


# ---------------------------------------------------------------------------------------------
# Enrollment and detection


def enrollment_refusals(table: ProbeTable) -> dict[str, Any]:
    """The current enrollment rule on each real photo at native resolution: exactly one face, passing the gates."""
    native = table.variant == "native"
    out: dict[str, Any] = {}
    total = refused_total = 0
    for name in sorted(set(table.dataset[native].tolist())):
        rows = native & (table.dataset == name)
        faces, failed = table.n_faces[rows], table.failed_gates[rows]
        refused = (faces != 1) | (failed != 0)
        reasons = {"no face": int((faces == 0).sum()), "several faces": int((faces > 1).sum())}
        for gate in QualityGate:
            hit = int(((faces >= 1) & ((failed & (1 << int(gate))) != 0)).sum())
            if hit:
                reasons[gate.name.lower()] = hit
        out[name] = {"photos": int(rows.sum()), "refused": int(refused.sum()), "reasons": reasons}
        total += int(rows.sum())
        refused_total += int(refused.sum())
    out["overall"] = {"photos": total, "refused": refused_total, "rate": _rate(refused_total, total)}
    return out


def detection_rates(table: ProbeTable) -> dict[str, Any]:
    """Share of variants in which a face was found, per variant (all datasets)."""
    out = {}
    for variant in dict.fromkeys(table.variant.tolist()):
        rows = table.variant == variant
        out[variant] = {"probes": int(rows.sum()), "found": _rate(int((rows & table.found).sum()), int(rows.sum()))}
    return out


def jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
