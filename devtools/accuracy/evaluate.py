"""`python -m retailface.devtools.accuracy.evaluate`: the accuracy harness of issue #14 (`make eval-accuracy`).

Runs every labelled photo and its degraded variants through the services' detection and embedding
(cached after the first run: `probes`), searches them under the NIST FRVT open-set protocol against
galleries of 1k, 10k and 100k identities (`protocol`), fuses 5-frame sequences (`fusion_eval`), and
reports:

- FNIR at FPIR 1e-2, 1e-3 and 1e-4 per gallery size, overall, for the native photos, per quality bin
  and per variant (every face found, no gates: what the detector and embedder can do);
- the hand-set operating point before issue #14 (threshold 0.48, margin 0.05, gates of 24 px and
  sharpness 60: `gates.HAND_SET_GATES`) with its FPIR and FNIR, the JSON's ``current_*`` keys;
- the calibrated decision (`calibrate`) per bin, with the identification gates now in the tree and the
  members gallery's margin, in sample and across folds (``calibrated_*``);
- single frames against fused sequences at the same FPIR, and the real video clips;
- the enrollment refusal rate of the current rule, detection rates per variant, and how the synthetic
  distractors compare with real ones.

Writes docs/accuracy/*.png (DET curves), docs/accuracy/results.json (everything) and
docs/accuracy/tables.md; progress goes to stderr, and the last stdout line is one JSON object with the
headline figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from retailface.devtools import degrade
from retailface.devtools.accuracy import (
    bins,
    calibrate,
    clips,
    distractors,
    enrollment_eval,
    fusion_eval,
    gates,
    plots,
    protocol,
    report,
)
from retailface.devtools.accuracy.measure import Measurements, measure
from retailface.devtools.accuracy.report import HandSetPoint, key
from retailface.services.matching.calibration import Calibration

COMMAND = "python -m retailface.devtools.accuracy.evaluate"
HEADLINE_SIZE = 10_000
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "accuracy"
NOT_ESTIMABLE = "not estimable"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pairs(m: Measurements) -> tuple[int, int]:
    """Real-face comparisons behind the searches: (genuine, impostor) probe-template pairs (synthetic excluded)."""
    genuine = impostor = 0
    s = m.single
    for gallery in m.galleries:
        in_fold = (s.fold == gallery.fold.index) & s.found
        real = gallery.real.shape[0]
        mated, nonmated = int((in_fold & s.mated).sum()), int((in_fold & ~s.mated).sum())
        genuine += mated
        impostor += mated * (real - 1) + nonmated * real
    return genuine, impostor


def cross_fold(m: Measurements, target: float, margin: float) -> dict[str, Any]:
    """The calibrated decision measured on each fold with a calibration made from the other fold only."""
    pooled: dict[str, dict[str, int]] = {}
    s = m.single_gated
    for fold in m.folds:
        train, test = s.fold != fold.index, s.fold == fold.index
        fused_train = m.fused.fold != fold.index
        cal = calibrate.build_calibration(s.take(train), m.fused.take(fused_train), m.embedder, {}, m.digest)
        for name, row in report.calibrated_outcome(cal, s.take(test), HEADLINE_SIZE, target, margin).items():
            total = pooled.setdefault(name, {"mated": 0, "nonmated": 0, "missed": 0, "false_positives": 0})
            total["mated"] += row["mated"]
            total["nonmated"] += row["nonmated"]
            total["false_positives"] += row["false_positives"]
            if row["fnir"] is not None:
                total["missed"] += round(row["fnir"] * row["mated"])
    return {
        name: {
            "mated": t["mated"],
            "nonmated": t["nonmated"],
            "fnir": t["missed"] / t["mated"] if t["mated"] else None,
            "fpir": t["false_positives"] / t["nonmated"] if t["nonmated"] else None,
        }
        for name, t in pooled.items()
    }


def write_plots(m: Measurements, results: dict[str, Any], out: Path) -> list[str]:
    s, sizes = m.single, protocol.SIZES
    variant_of = m.table.variant[s.probe]
    written = [
        plots.sizes_plot(
            s, out / "det_overall.png", "All single-frame searches", results["overall"]["n10k"].get("current"), sizes
        ),
        plots.sizes_plot(
            s.take(variant_of == "native"),
            out / "det_native.png",
            "Photos at native resolution",
            results["native"]["n10k"].get("current"),
            sizes,
        ),
    ]
    index = bins.bin_index(s.inter_eye_px)
    per_bin = []
    for b, quality_bin in enumerate(bins.QUALITY_BINS):
        part = s.take(s.found & (index == b))
        if not len(part):
            continue
        current = results["bins"].get(quality_bin.name, {}).get("n10k", {}).get("current")
        per_bin.append(plots.Line(quality_bin.name, plots.curve(part, HEADLINE_SIZE), plots.point_of(current)))
        name = f"det_bin_{quality_bin.name}.png"
        written.append(plots.sizes_plot(part, out / name, f"Bin {quality_bin.name} between the eyes", current, sizes))
    per_bin[0] = plots.Line(per_bin[0].label, per_bin[0].curve, per_bin[0].point, "hand-set point (colour of its bin)")
    written.append(plots.draw(per_bin, out / "det_bins_n10k.png", "Per quality bin (inter-eye px), N = 10,000"))
    frames = m.single_gated.take(fusion_eval.frames_of(m.sequences, m.single_gated, len(m.table)))
    fused5 = m.fused.take(m.fused.frames == calibrate.FUSED_FRAMES)
    written.append(
        plots.draw(
            [
                plots.Line("single frames of the sequences", plots.curve(frames, HEADLINE_SIZE)),
                plots.Line("fused (all sequences)", plots.curve(m.fused, HEADLINE_SIZE)),
                plots.Line("fused from 5 searched frames", plots.curve(fused5, HEADLINE_SIZE)),
            ],
            out / "det_fusion_n10k.png",
            "5-frame fusion against single frames, N = 10,000",
        )
    )
    return [path.name for path in written if path is not None]


def evaluate(m: Measurements, *, with_clips: bool = True) -> tuple[dict[str, Any], Calibration]:
    table, s, sizes = m.table, m.single, protocol.SIZES
    point = HandSetPoint.current()
    hand_set_passes = gates.passes(table, gates.HAND_SET_GATES)
    passes = hand_set_passes[s.probe]
    variant_of = table.variant[s.probe]
    results: dict[str, Any] = {
        "hand_set_point": {
            "threshold": point.threshold,
            "margin": point.margin,
            **gates.describe(gates.HAND_SET_GATES),
        },
        "identification_gates_now": gates.describe(m.identification_gates),
    }
    results["overall"] = report.group_summary(s, sizes, passes, point)
    native = variant_of == "native"
    results["native"] = report.group_summary(s.take(native), sizes, passes[native], point)
    results["bins"] = report.by_bin(s, lambda part, mask: report.group_summary(part, sizes, passes[mask], point))
    nominal = table.eye_target[s.probe]
    results["nominal_eye_px"] = {
        str(d): report.group_summary(s.take(nominal == d), (HEADLINE_SIZE,), passes[nominal == d], point)
        for d in degrade.EYE_DISTANCES_PX
        if (nominal == d).any()
    }
    results["variants"] = {
        v: report.group_summary(s.take(variant_of == v), (HEADLINE_SIZE,), passes[variant_of == v], point)
        for v in dict.fromkeys(variant_of.tolist())
    }
    by_family = table.family[s.probe]
    results["variant_families"] = {
        f: report.group_summary(s.take(by_family == f), (HEADLINE_SIZE,), passes[by_family == f], point)
        for f in dict.fromkeys(by_family.tolist())
    }
    _log("evaluate: groups done")
    results["fusion"] = report.fusion_comparison(table, m.single_gated, m.fused, m.sequences, HEADLINE_SIZE)
    calibration = calibrate.build_calibration(
        m.single_gated, m.fused, m.embedder, calibrate.provenance_of(m, calibrate.COMMAND), m.digest
    )
    margin = point.margin
    results["calibrated"] = {
        "margin": margin,
        "in_sample": {
            key(t): report.calibrated_outcome(calibration, m.single_gated, HEADLINE_SIZE, t, margin)
            for t in (1e-3, 1e-4)
        },
        "in_sample_without_margin": {
            key(t): report.calibrated_outcome(calibration, m.single_gated, HEADLINE_SIZE, t) for t in (1e-3,)
        },
        "in_sample_fused": {
            key(t): report.calibrated_outcome(calibration, m.fused, HEADLINE_SIZE, t, margin) for t in (1e-3, 1e-4)
        },
        "cross_fold": {key(t): cross_fold(m, t, margin) for t in (1e-3,)},
        "table_n10k": calibrate.operating_table(calibration),
    }
    _log("evaluate: calibration done")
    results["distractors"] = {"used": "gaussian_fit", "folds": []}
    for gallery in m.galleries:
        fold_rows = (s.fold == gallery.fold.index) & ~s.mated & s.found & native
        probes = table.embedding[s.probe[fold_rows]]
        results["distractors"]["folds"].append(distractors.compare(probes, gallery.real, seed=gallery.fold.index))
    results["enrollment"] = enrollment_eval.refusals(m.pipeline)
    results["detection"] = report.detection_rates(table)
    if with_clips:
        results["clips"] = {}
        for name in clips.CLIPS:
            clip_table, fps = clips.clip_probes(m.pipeline, name)
            results["clips"][name] = clips.evaluate_clip(
                clip_table, fps, m.galleries[0], calibration, HEADLINE_SIZE, 1e-3, margin, m.identification_gates
            )
        _log("evaluate: clips done")
    genuine, impostor = pairs(m)
    results["pairs"] = {"genuine": genuine, "impostor": impostor}
    return results, calibration


def _fnir(points: dict[str, Any], target: str) -> float | None:
    point = points.get(target)
    return point["fnir"] if point and point["estimable"] else None


def headline(m: Measurements, results: dict[str, Any]) -> dict[str, Any]:
    table, s = m.table, m.single
    out: dict[str, Any] = {
        "identities": len(set(table.identity.tolist())),
        "photos": int((table.variant == "native").sum()),
        "probes": len(table),
        "probes_with_face": int(table.found.sum()),
        "mated_searches": int(s.mated.sum()),
        "nonmated_searches": int((~s.mated & s.found).sum()),
        "genuine_pairs": results["pairs"]["genuine"],
        "impostor_pairs": results["pairs"]["impostor"],
        "pairs_definition": "real probe-template comparisons with a face (synthetic distractors excluded)",
    }
    not_estimable: list[str] = []

    def put(into: dict[str, Any], prefix: str, group: dict[str, Any], where: str) -> None:
        for size in protocol.SIZES:
            tag = f"n{size // 1000}k"
            for target in report.TARGETS:
                name = f"{prefix}fnir_at_fpir_{key(target)}_{tag}"
                point = group.get(tag, {}).get(key(target))
                into[name] = _fnir(group.get(tag, {}), key(target))
                if point is not None and not point["estimable"]:
                    not_estimable.append(f"{where}{name}: {point['nonmated']} non-mated searches")

    put(out, "", results["overall"], "")
    put(out, "native_", results["native"], "")
    current = results["overall"]["n10k"]["current"]
    out["current_fpir_n10k"], out["current_fnir_n10k"] = current["fpir"], current["fnir"]
    native_current = results["native"]["n10k"]["current"]
    out["native_current_fpir_n10k"], out["native_current_fnir_n10k"] = native_current["fpir"], native_current["fnir"]
    out["current_operating_point"] = results["hand_set_point"]
    calibrated = results["calibrated"]["in_sample"]["1e-3"]["all"]
    out["calibrated_target_fpir"] = 1e-3
    out["calibrated_fpir_n10k"], out["calibrated_fnir_n10k"] = calibrated["fpir"], calibrated["fnir"]
    crossed = results["calibrated"]["cross_fold"]["1e-3"]["all"]
    out["calibrated_cross_fold_fpir_n10k"], out["calibrated_cross_fold_fnir_n10k"] = crossed["fpir"], crossed["fnir"]
    out["bins"] = {}
    for name, group in results["bins"].items():
        if "mated" not in group:
            out["bins"][name] = group
            continue
        row: dict[str, Any] = {"mated": group["mated"], "nonmated": group["nonmated"]}
        put(row, "", group, f"bins.{name}.")
        cur = group["n10k"].get("current", {})
        row["current_fpir_n10k"], row["current_fnir_n10k"] = cur.get("fpir"), cur.get("fnir")
        cal = results["calibrated"]["in_sample"]
        for target in ("1e-3", "1e-4"):
            entry = cal[target].get(name, {})
            row[f"calibrated_fnir_at_fpir_{target}_n10k"] = entry.get("fnir")
        threshold_rows = [r for r in results["calibrated"]["table_n10k"] if r["bin"] == name and r["frames"] == 1]
        if threshold_rows:
            row["calibrated_threshold_1e-3_n10k"] = threshold_rows[0]["1e-03"]["threshold"]
        out["bins"][name] = row
    fusion = results["fusion"]["pooled"]
    out["single_fnir_at_fpir_1e-3"] = fusion["single_fnir_at_fpir_1e-3"]
    out["fused_fnir_at_fpir_1e-3"] = fusion["fused_fnir_at_fpir_1e-3"]
    out["fusion_fnir_reduction_at_fpir_1e-3"] = fusion["reduction_at_fpir_1e-3"]
    out["single_fnir_at_fpir_1e-2"] = fusion["single_fnir_at_fpir_1e-2"]
    out["fused_fnir_at_fpir_1e-2"] = fusion["fused_fnir_at_fpir_1e-2"]
    out["fusion_gallery_size"] = HEADLINE_SIZE
    out["enrollment_refusal_rate"] = results["enrollment"]["overall"]["rate"]
    folds = results["distractors"]["folds"]
    out["distractors"] = {
        "synthetic": "gaussian_fit",
        "ks_to_real_gaussian_fit": [f["gaussian_fit"]["ks_to_real"] for f in folds],
        "ks_to_real_bench_spectrum": [f["bench_spectrum"]["ks_to_real"] for f in folds],
        "real_per_fold": [int(g.real.shape[0]) for g in m.galleries],
    }
    out["not_estimable"] = not_estimable
    native_fnir = out.get("native_fnir_at_fpir_1e-3_n10k")
    small = results["calibrated"]["in_sample"]["1e-3"].get("16-21px", {})
    reduction = out["fusion_fnir_reduction_at_fpir_1e-3"]
    refusal = out["enrollment_refusal_rate"]
    out["targets"] = {
        "native_fnir_le_0.05_at_fpir_1e-3_n10k": native_fnir is not None and native_fnir <= 0.05,
        "calibrated_16_21px_identifies_some_at_fpir_1e-3_n10k": small.get("fnir") is not None and small["fnir"] < 1,
        "fusion_cuts_fnir_by_a_third_at_fpir_1e-3": reduction is not None and reduction >= 1 / 3,
        "enrollment_refusal_below_0.1": refusal is not None and refusal < 0.1,
    }
    return out


def tables_markdown(m: Measurements, results: dict[str, Any]) -> str:
    """The tables of docs/ACCURACY.md, generated."""

    def fmt(value: Any, digits: int = 3) -> str:
        if value is None:
            return "n/e"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    lines = [f"<!-- generated by {COMMAND}; inputs {m.digest[:12]} -->", ""]
    lines += ["### FNIR at fixed FPIR, single frames", ""]
    lines += [
        "| group | N | mated | non-mated | FNIR @ 1e-2 | FNIR @ 1e-3 | FNIR @ 1e-4 | current FPIR | current FNIR |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|---|"]
    groups = [("all", results["overall"]), ("native photos", results["native"])]
    groups += [(f"bin {name}", g) for name, g in results["bins"].items() if "mated" in g]
    for label, group in groups:
        for size in protocol.SIZES:
            tag = f"n{size // 1000}k"
            row = group.get(tag, {})
            cur = row.get("current", {})
            lines.append(
                f"| {label} | {size:,} | {group['mated']:,} | {group['nonmated']:,} | "
                + " | ".join(fmt(_fnir(row, key(t))) for t in report.TARGETS)
                + f" | {fmt(cur.get('fpir'), 4)} | {fmt(cur.get('fnir'))} |"
            )
    lines += ["", "### Calibrated decision per bin (identification gates and margin applied), N = 10k, FPIR 1e-3", ""]
    lines += ["| bin | mated | non-mated | in-sample FNIR | in-sample FPIR | cross-fold FNIR | cross-fold FPIR |"]
    lines += ["|---|---|---|---|---|---|---|"]
    cal, cross = results["calibrated"]["in_sample"]["1e-3"], results["calibrated"]["cross_fold"]["1e-3"]
    for name, row in cal.items():
        other = cross.get(name, {})
        lines.append(
            f"| {name} | {row['mated']:,} | {row['nonmated']:,} | {fmt(row['fnir'])} | {fmt(row['fpir'], 4)} | "
            f"{fmt(other.get('fnir'))} | {fmt(other.get('fpir'), 4)} |"
        )
    lines += ["", "### Calibrated decision for fused probes per bin, N = 10k, FPIR 1e-3 (in sample)", ""]
    lines += ["| bin | mated | non-mated | FNIR | FPIR | 1-frame threshold |", "|---|---|---|---|---|---|"]
    for name, row in results["calibrated"]["in_sample_fused"]["1e-3"].items():
        lines.append(
            f"| {name} | {row['mated']:,} | {row['nonmated']:,} | {fmt(row['fnir'])} | {fmt(row['fpir'], 4)} | "
            f"{fmt(row['single_frame_threshold'], 4)} |"
        )
    lines += ["", "### Calibration operating points, N = 10k", ""]
    lines += [calibrate.format_table(results["calibrated"]["table_n10k"])]
    lines += ["", "### 5-frame fusion against single frames, N = 10k", ""]
    lines += [
        "| family | mated seq. | non-mated seq. | single FNIR @ 1e-2 | fused FNIR @ 1e-2 | "
        "single FNIR @ 1e-3 | fused FNIR @ 1e-3 | reduction @ 1e-3 |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|"]
    fusion = results["fusion"]
    for family, row in [("pooled", fusion["pooled"]), *fusion["families"].items()]:
        lines.append(
            f"| {family} | {row['fused']['mated']:,} | {row['fused']['nonmated']:,} | "
            f"{fmt(row['single_fnir_at_fpir_1e-2'])} | {fmt(row['fused_fnir_at_fpir_1e-2'])} | "
            f"{fmt(row['single_fnir_at_fpir_1e-3'])} | {fmt(row['fused_fnir_at_fpir_1e-3'])} | "
            f"{fmt(row['reduction_at_fpir_1e-3'], 2)} |"
        )
    lines += ["", "### Per variant (all datasets), single frames, N = 10k", ""]
    lines += ["| variant | probes | face found | mated | non-mated | FNIR @ 1e-2 | FNIR @ 1e-3 | hand-set FNIR |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for variant, row in results["detection"].items():
        group = results["variants"].get(variant, {})
        points = group.get("n10k", {})
        cur = points.get("current", {})
        lines.append(
            f"| {variant} | {row['probes']:,} | {fmt(row['found'])} | {group.get('mated', 0):,} | "
            f"{group.get('nonmated', 0):,} | {fmt(_fnir(points, '1e-2'))} | {fmt(_fnir(points, '1e-3'))} | "
            f"{fmt(cur.get('fnir'))} |"
        )
    lines += ["", "### Enrollment refusals: gateway/enrollment.py now, and the rule before issue #14", ""]
    lines += ["| dataset | photos | refused | causes | refused before | causes before |", "|---|---|---|---|---|---|"]
    for name, row in results["enrollment"].items():
        if name == "overall":
            continue
        causes = ", ".join(f"{k} {v}" for k, v in row["causes"].items() if v) or "-"
        old = row["before_issue_14"]
        old_causes = ", ".join(f"{k} {v}" for k, v in old["causes"].items() if v) or "-"
        lines.append(
            f"| {name} | {row['photos']:,} | {row['refused']:,} | {causes} | {old['refused']:,} | {old_causes} |"
        )
    overall = results["enrollment"]["overall"]
    lines.append(
        f"| all | {overall['photos']:,} | {overall['refused']:,} ({fmt(overall['rate'])}) | | "
        f"({fmt(overall['before_issue_14_rate'])}) | |"
    )
    lines += ["", "### Top non-mate score of native non-mated probes: real against synthetic distractors", ""]
    lines += [
        "| fold | distractors | real p50 / p99 / max | Gaussian fit p50 / p99 / max (KS) | "
        "bench spectrum p50 / p99 / max (KS) |"
    ]
    lines += ["|---|---|---|---|---|"]
    for index, fold in enumerate(results["distractors"]["folds"]):
        cells = []
        for name in ("real", "gaussian_fit", "bench_spectrum"):
            d = fold[name]
            ks = f" ({d['ks_to_real']:.2f})" if "ks_to_real" in d else ""
            cells.append(f"{d['p50']:.3f} / {d['p99']:.3f} / {d['max']:.3f}{ks}")
        lines.append(f"| {index} | {fold['compared_with']} | " + " | ".join(cells) + " |")
    if "clips" in results:
        lines += ["", "### Video clips (mated only), calibrated decision at FPIR 1e-3, N = 10k", ""]
        lines += [
            "| clip | variant | frames | searched | single FNIR | fused searches | fused FNIR | median mate score |"
        ]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for name, clip in results["clips"].items():
            if not clip.get("usable"):
                lines.append(f"| {name} | - | - | {clip.get('reason')} | | | |")
                continue
            for variant in clips.CLIP_VARIANTS:
                entry = clip.get(variant, {})
                single, fused = entry.get("single", {}), entry.get("fused", {})
                lines.append(
                    f"| {Path(name).name} | {variant} | {entry.get('frames', 0)} | {entry.get('frames_searched', 0)} | "
                    f"{fmt(single.get('fnir'))} | "
                    f"{fused.get('searches', 0)} | {fmt(fused.get('fnir'))} | {fmt(single.get('median_mate_score'))} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT, help="where the PNGs, results.json and tables.md go"
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per engine (probe runs only)")
    parser.add_argument("--no-plots", action="store_true", help="skip the DET plots")
    parser.add_argument("--no-clips", action="store_true", help="skip the video clips")
    args = parser.parse_args(argv)
    started = time.monotonic()
    m = measure(args.threads)
    results, _ = evaluate(m, with_clips=not args.no_clips)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_plots:
        results["plots"] = write_plots(m, results, args.out_dir)
        _log(f"evaluate: {len(results['plots'])} plots in {args.out_dir}")
    summary = headline(m, results)
    summary["seconds"] = round(time.monotonic() - started, 1)
    results["headline"] = summary
    (args.out_dir / "results.json").write_text(json.dumps(report.jsonable(results), indent=1) + "\n")
    (args.out_dir / "tables.md").write_text(tables_markdown(m, results))
    print(json.dumps(report.jsonable(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
