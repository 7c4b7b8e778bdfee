"""`python -m retailface.devtools.accuracy.calibrate [--out PATH]`: the matching service's calibration.

From the harness's searches (cached probes; `measure`) of the faces passing the identification gates
now in the tree (the service searches no other), one measured curve per quality bin (`bins`),
fused-frame count (1, and 5 for the gateway's fused probes) and gallery size (1k, 10k, 100k): FPIR and
FNIR at a few hundred thresholds (`curves`). The file is written where the matching service looks for
it (`calibration.default_path(model)`, services/matching/calibrations/<model>-<version>.json), read back
with `calibration.load` and checked: the table printed gives, per bin, the threshold and FNIR the
calibrated decision reaches at FPIR targets 1e-3 and 1e-4 for a 10k gallery, or says the bin cannot
hold the target.

A curve is made only where its bin has both mated and non-mated searches (for 5 frames, at least
`MIN_FUSED_NONMATED` non-mated ones); a bin with no 5-frame curve falls back to its 1-frame curve at
search time (`Calibration.operating_point`).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retailface.devtools import datasets
from retailface.devtools.accuracy import bins, gates, protocol
from retailface.devtools.accuracy.curves import measured_curve
from retailface.devtools.accuracy.protocol import Searches
from retailface.services.matching.calibration import Calibration, Curve, QualityBin, default_path, load
from retailface.services.shared.model_identity import ModelIdentity

FUSED_FRAMES = 5
# A fused curve is kept only where it can show FPIR 1e-3, the matching service's default target (one
# false positive in 1,000 non-mated searches). Where it cannot, fused probes use the bin's 1-frame curve
# (`Calibration.operating_point` falls back to it), which is measured on 4-7 times more non-mated
# searches; the evaluation checks that fused non-mated searches hold the target at those thresholds.
MIN_FUSED_NONMATED = 1000
COMMAND = "python -m retailface.devtools.accuracy.calibrate"
TABLE_TARGETS = (1e-3, 1e-4)
TABLE_SIZE = 10_000


def curves_for(
    searches: Searches,
    frames: int,
    quality_bins: Sequence[QualityBin] = bins.QUALITY_BINS,
    min_nonmated: int = 1,
) -> list[Curve]:
    """One curve per (bin, gallery size) of searches with a face, binned by their measured inter-eye distance,
    where the bin has mated searches and at least `min_nonmated` non-mated ones."""
    found: list[Curve] = []
    index = bins.bin_index(searches.inter_eye_px, tuple(quality_bins))
    for b, quality_bin in enumerate(quality_bins):
        inside = searches.found & (index == b)
        mated, nonmated = inside & searches.mated, inside & ~searches.mated
        if not mated.any() or nonmated.sum() < max(1, min_nonmated):
            continue
        for level, size in enumerate(searches.sizes.tolist()):
            curve = measured_curve(searches.mate[mated], searches.rank[level, mated], searches.top1[level, nonmated])
            if not curve.thresholds:
                continue
            found.append(
                Curve(
                    bin=quality_bin.name,
                    frames=frames,
                    gallery_size=int(size),
                    mated_searches=int(mated.sum()),
                    nonmated_searches=int(nonmated.sum()),
                    thresholds=curve.thresholds,
                    fpir=curve.fpir,
                    fnir=curve.fnir,
                )
            )
    return found


def build_calibration(
    single: Searches,
    fused: Searches,
    model: ModelIdentity,
    provenance: dict[str, Any],
    inputs_digest: str,
    date: datetime.date | None = None,
) -> Calibration:
    """The calibration of 1-frame (`single`) and fused searches (only those fused from exactly 5 frames)."""
    day = (date or datetime.datetime.now(datetime.UTC).date()).isoformat()
    fused5 = fused.take(fused.frames == FUSED_FRAMES)
    curves = curves_for(single, 1) + curves_for(fused5, FUSED_FRAMES, min_nonmated=MIN_FUSED_NONMATED)
    return Calibration(
        calibration_id=f"{model.model_id}-{model.version}/{day}/{inputs_digest[:12]}",
        model=ModelIdentity(model.model_id, model.version, model.dim),
        bins=bins.QUALITY_BINS,
        curves=tuple(curves),
        provenance=provenance,
    )


def operating_table(
    calibration: Calibration, gallery_size: int = TABLE_SIZE, targets: Sequence[float] = TABLE_TARGETS
) -> list[dict[str, Any]]:
    """Per bin and fused-frame count: the calibrated threshold and FNIR at each target (None: cannot hold it)."""
    rows = []
    for quality_bin in calibration.bins:
        probe_px = quality_bin.low if math.isinf(quality_bin.high) else (quality_bin.low + quality_bin.high) / 2
        for frames in (1, FUSED_FRAMES):
            row: dict[str, Any] = {"bin": quality_bin.name, "frames": frames}
            curve = next((c for c in calibration.curves if c.bin == quality_bin.name and c.frames == frames), None)
            row["mated"] = curve.mated_searches if curve else 0
            row["nonmated"] = curve.nonmated_searches if curve else 0
            for target in targets:
                point = calibration.operating_point(probe_px, frames, gallery_size, target)
                held = point.identifiable
                row[f"{target:.0e}"] = {
                    "threshold": point.threshold if held else None,
                    "fnir": point.estimated_fnir if held else None,
                    "fpir": point.estimated_fpir if held else None,
                    "curve_frames": point.frames,
                }
            rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], targets: Sequence[float] = TABLE_TARGETS) -> str:
    header = "| bin | frames | mated | non-mated | " + " | ".join(
        f"threshold @ {t:.0e} | FNIR @ {t:.0e}" for t in targets
    )
    lines = [header + " |", "|" + "---|" * (4 + 2 * len(targets))]
    for row in rows:
        cells = [row["bin"], str(row["frames"]), f"{row['mated']:,}", f"{row['nonmated']:,}"]
        for t in targets:
            point = row[f"{t:.0e}"]
            if point["threshold"] is None:
                cells += ["cannot hold", "-"]
            else:
                used = "" if point["curve_frames"] == row["frames"] else " (1-frame curve)"
                cells += [f"{point['threshold']:.4f}{used}", f"{point['fnir']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def provenance_of(measurements: Any, command: str) -> dict[str, Any]:
    """Where the calibration's numbers come from (datasets, counts, distractors, command, date)."""
    table = measurements.table
    used = sorted(set(table.dataset.tolist()))
    sets = []
    for name in used:
        dataset = datasets.DATASETS[name]
        rows = table.dataset == name
        sets.append(
            {
                "name": name,
                "package": dataset.package.requirement,
                "archive": dataset.package.filename,
                "archive_sha256": dataset.package.sha256,
                "prepared_digest": dataset.digest,
                "licence": dataset.licence,
                "identities": len(set(table.identity[rows].tolist())),
                "photos": int((rows & (table.variant == "native")).sum()),
                "probes": int(rows.sum()),
            }
        )
    galleries = measurements.galleries
    single, fused = measurements.single_gated, measurements.fused
    return {
        "command": command,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "harness": "retailface.devtools.accuracy (issue #14); results and limits in docs/ACCURACY.md",
        "datasets": sets,
        "protocol": "NIST FRVT open-set 1:N, 2 folds pooled; one enrolled template per identity; "
        "rank-1 FNIR; FPIR over non-mated searches with a face",
        "embedder": {
            "model_id": measurements.embedder.model_id,
            "version": measurements.embedder.version,
            "sha256": measurements.embedder.sha256,
        },
        "detector": {
            "model_id": measurements.pipeline.detector_model.model_id,
            "version": measurements.pipeline.detector_model.version,
            "sha256": measurements.pipeline.detector_model.sha256,
        },
        "searches": {
            "single_mated": int(single.mated.sum()),
            "single_mated_searched": int((single.mated & single.found).sum()),
            "single_nonmated_searched": int((~single.mated & single.found).sum()),
            "fused_mated": int(fused.mated.sum()),
            "fused_mated_searched": int((fused.mated & fused.found).sum()),
            "fused_nonmated_searched": int((~fused.mated & fused.found).sum()),
        },
        "distractors": {
            "real_per_fold": [int(g.real.shape[0]) for g in galleries],
            "synthetic_per_fold_at_100k": [int(g.synthetic.shape[0]) for g in galleries],
            "synthetic_generator": "Gaussian with the mean and covariance of the fold's real gallery templates "
            "(SFace embeddings of distinct people), re-normalised",
            "gallery_sizes": list(protocol.SIZES),
        },
        "bins": "by the probe's measured inter-eye distance (px), low inclusive",
        "identification_gates": gates.describe(measurements.identification_gates),
        "searched": "faces found that pass identification_gates (the service searches only those); "
        "5-frame curves: probes fused with retailface.services.gateway.fusion from 5 such frames",
        "inputs_digest": measurements.digest,
    }


def calibrate(measurements: Any, out: Path | None, command: str) -> tuple[Path, Calibration]:
    model = measurements.embedder
    calibration = build_calibration(
        measurements.single_gated,
        measurements.fused,
        model,
        provenance_of(measurements, command),
        measurements.digest,
    )
    path = out or default_path(model)
    calibration.save(path)
    return path, load(path, model)


def main(argv: list[str] | None = None) -> int:
    from retailface.devtools.accuracy.measure import measure

    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where to write it (default: the matching service's default path)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per engine (probe runs only)")
    args = parser.parse_args(argv)
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    measurements = measure(args.threads)
    path, calibration = calibrate(measurements, args.out, command)
    rows = operating_table(calibration)
    print(
        f"calibration {calibration.calibration_id}: {len(calibration.curves)} curves, "
        f"{path.stat().st_size / 1024:.0f} KiB, written to {path}",
        file=sys.stderr,
    )
    print(format_table(rows), file=sys.stderr)
    summary = {
        "calibration_id": calibration.calibration_id,
        "path": str(path),
        "curves": len(calibration.curves),
        "bytes": path.stat().st_size,
        "n10k": rows,
        "digest": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
