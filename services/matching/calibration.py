"""The calibrated decision: the threshold a probe of a given quality needs to hold a target FPIR.

A calibration file is made by `make calibrate` (retailface.devtools.accuracy) from the accuracy
harness's genuine and impostor searches on real labelled faces. For each quality bin (by the
probe's inter-eye distance), each number of fused frames and each gallery size it holds the
measured open-set curve (NIST FRVT's definitions): for ascending thresholds T, the false positive
identification rate FPIR(T) (share of non-mated searches whose best candidate scores >= T) and the
false negative identification rate FNIR(T) (share of mated searches whose mate is not returned at
rank 1 with a score >= T).

At search time `Calibration.operating_point(inter_eye_px, frames, gallery_size, target_fpir)` picks:
- the bin holding the probe's inter-eye distance (none below the lowest bin: never identified);
- the curve of the largest calibrated frame count not above the probe's;
- the curve of the smallest calibrated gallery size at or above the deployed size; above the
  largest, the target is scaled by calibrated/deployed size (the FPIR of the best of N non-mates
  grows about linearly with N where it is small);
- the lowest threshold whose measured FPIR is at or below the target. A bin whose curve never
  gets there (too few non-mated searches to show it) cannot hold the target: its probes are
  counted, never identified.

The file names the embedder (model id and version) it was measured for; a matching service
configured for another model refuses to start (see `load`).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retailface.services.matching.errors import CalibrationError
from retailface.services.shared.model_identity import ModelIdentity

FORMAT = 1
BELOW_CALIBRATION = "below-calibration"
DEFAULT_DIR = Path(__file__).with_name("calibrations")
CALIBRATE_HINT = "run `make calibrate` to measure one for this model"


@dataclass(frozen=True)
class QualityBin:
    name: str  # "24-32px"
    low: float  # inter-eye px, inclusive
    high: float  # exclusive; math.inf for the last bin

    def holds(self, inter_eye_px: float) -> bool:
        return self.low <= inter_eye_px < self.high


@dataclass(frozen=True)
class Curve:
    """The measured open-set curve of one bin, fused-frame count and gallery size."""

    bin: str
    frames: int
    gallery_size: int
    mated_searches: int
    nonmated_searches: int
    thresholds: tuple[float, ...]  # ascending
    fpir: tuple[float, ...]  # non-increasing
    fnir: tuple[float, ...]  # non-decreasing

    def __post_init__(self) -> None:
        if not (len(self.thresholds) == len(self.fpir) == len(self.fnir)) or not self.thresholds:
            raise ValueError(f"curve {self.bin}/{self.frames}/{self.gallery_size}: thresholds, fpir, fnir differ")
        if any(b < a for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError(f"curve {self.bin}/{self.frames}/{self.gallery_size}: thresholds must ascend")

    def lowest_threshold_for(self, target_fpir: float) -> int | None:
        """Index of the lowest threshold with FPIR <= target, or None if no measured point reaches it."""
        for index, rate in enumerate(self.fpir):
            if rate <= target_fpir:
                return index
        return None


@dataclass(frozen=True)
class OperatingPoint:
    quality_bin: str
    threshold: float  # math.inf when the probe cannot be identified
    estimated_fpir: float
    estimated_fnir: float
    frames: int

    @property
    def identifiable(self) -> bool:
        return math.isfinite(self.threshold)


@dataclass(frozen=True)
class Calibration:
    calibration_id: str
    model: ModelIdentity
    bins: tuple[QualityBin, ...]
    curves: tuple[Curve, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def bin_of(self, inter_eye_px: float) -> QualityBin | None:
        return next((b for b in self.bins if b.holds(inter_eye_px)), None)

    def operating_point(
        self, inter_eye_px: float, frames: int, gallery_size: int, target_fpir: float
    ) -> OperatingPoint:
        quality_bin = self.bin_of(inter_eye_px)
        if quality_bin is None:
            return _not_identifiable(BELOW_CALIBRATION, frames)
        candidates = [c for c in self.curves if c.bin == quality_bin.name and c.frames <= max(frames, 1)]
        if not candidates:
            return _not_identifiable(quality_bin.name, frames)
        used_frames = max(c.frames for c in candidates)
        by_size = sorted((c for c in candidates if c.frames == used_frames), key=lambda c: c.gallery_size)
        sizes = [c.gallery_size for c in by_size]
        position = bisect.bisect_left(sizes, max(gallery_size, 1))
        if position < len(by_size):
            curve, target = by_size[position], target_fpir
        else:  # deployed beyond the largest measured gallery: FPIR ~ proportional to N
            curve = by_size[-1]
            target = target_fpir * curve.gallery_size / gallery_size
        index = curve.lowest_threshold_for(target)
        if index is None:
            return _not_identifiable(quality_bin.name, used_frames)
        return OperatingPoint(
            quality_bin.name,
            curve.thresholds[index],
            curve.fpir[index] * max(1.0, gallery_size / curve.gallery_size),
            curve.fnir[index],
            used_frames,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "calibration_id": self.calibration_id,
            "model": {"model_id": self.model.model_id, "version": self.model.version, "dim": self.model.dim},
            "bins": [{"name": b.name, "low": b.low, "high": None if math.isinf(b.high) else b.high} for b in self.bins],
            "curves": [asdict(c) for c in self.curves],
            "provenance": self.provenance,
        }

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n")
        tmp.replace(path)


@dataclass(frozen=True)
class ProbeQuality:
    inter_eye_px: float
    frames: int = 1


@dataclass(frozen=True)
class CalibratedDecision:
    """A calibration and the FPIR the deployment targets: the operating point of each probe."""

    calibration: Calibration
    target_fpir: float

    def __post_init__(self) -> None:
        if not 0.0 < self.target_fpir < 1.0:
            raise ValueError(f"target FPIR {self.target_fpir} must be in (0, 1)")

    def points(self, probes: Sequence[ProbeQuality], gallery_size: int) -> list[OperatingPoint]:
        return [
            self.calibration.operating_point(p.inter_eye_px, p.frames, gallery_size, self.target_fpir) for p in probes
        ]


def _not_identifiable(quality_bin: str, frames: int) -> OperatingPoint:
    return OperatingPoint(quality_bin, math.inf, 0.0, 1.0, frames)


def from_json(data: dict[str, Any], origin: str = "calibration") -> Calibration:
    try:
        if data.get("format") != FORMAT:
            raise CalibrationError(f"{origin}: format {data.get('format')!r} is not {FORMAT}; {CALIBRATE_HINT}")
        model = data["model"]
        bins = tuple(
            QualityBin(b["name"], float(b["low"]), math.inf if b["high"] is None else float(b["high"]))
            for b in data["bins"]
        )
        curves = tuple(
            Curve(
                bin=c["bin"],
                frames=int(c["frames"]),
                gallery_size=int(c["gallery_size"]),
                mated_searches=int(c["mated_searches"]),
                nonmated_searches=int(c["nonmated_searches"]),
                thresholds=tuple(float(t) for t in c["thresholds"]),
                fpir=tuple(float(r) for r in c["fpir"]),
                fnir=tuple(float(r) for r in c["fnir"]),
            )
            for c in data["curves"]
        )
        calibration = Calibration(
            calibration_id=str(data["calibration_id"]),
            model=ModelIdentity(str(model["model_id"]), str(model["version"]), int(model.get("dim", 0))),
            bins=bins,
            curves=curves,
            provenance=dict(data.get("provenance", {})),
        )
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, CalibrationError):
            raise
        raise CalibrationError(f"{origin} is malformed ({error}); {CALIBRATE_HINT}") from error
    names = {b.name for b in bins}
    unknown = sorted({c.bin for c in curves} - names)
    if unknown:
        raise CalibrationError(f"{origin}: curves for unknown bins {unknown}; {CALIBRATE_HINT}")
    return calibration


def default_path(model: ModelIdentity) -> Path:
    """The calibration shipped with the service for a model: calibrations/<model_id>-<version>.json."""
    return DEFAULT_DIR / f"{model.model_id}-{model.version}.json"


def load(path: Path | None, model: ModelIdentity) -> Calibration:
    """The calibration for `model`, from `path` or the shipped default; refuses another model's file."""
    path = path or default_path(model)
    if not path.is_file():
        raise CalibrationError(f"no calibration for {model.describe()} at {path}; {CALIBRATE_HINT}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CalibrationError(f"cannot read the calibration {path} ({error}); {CALIBRATE_HINT}") from error
    calibration = from_json(data, str(path))
    made_for = calibration.model
    if (made_for.model_id, made_for.version) != (model.model_id, model.version):
        raise CalibrationError(
            f"the calibration {path} was measured for {made_for.describe()}, but this service matches "
            f"{model.describe()}: {CALIBRATE_HINT}"
        )
    return calibration
