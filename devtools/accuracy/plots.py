"""The DET curves of the evaluation (PNG), written to docs/accuracy/.

- det_overall.png: every single-frame search, at N = 1k, 10k and 100k, with the hand-set point;
- det_native.png: the photos as they are (native resolution), same;
- det_bins_n10k.png: one curve per quality bin at N = 10k, each with its hand-set point;
- det_bin_<bin>.png: one bin at the three gallery sizes, with its hand-set point at 10k;
- det_fusion_n10k.png: the sequences' frames one by one against their fused probes, at N = 10k.

Both axes are logarithmic, as FRVT draws them (the curves come from `idmetrics.det_curve`). A marked
point is the hand-set decision (threshold, margin and gates before issue #14), in its curve's colour;
a point whose FPIR is 0 is drawn at the left edge (1e-6) with a left-pointing marker, one whose FNIR
is 0 at the bottom edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from retailface.devtools import idmetrics
from retailface.devtools.accuracy.protocol import Searches

LEFT, BOTTOM = 1e-6, 1e-3


@dataclass(frozen=True)
class Line:
    label: str
    curve: idmetrics.DetCurve | None
    point: tuple[float, float] | None = None  # (FPIR, FNIR) to mark in the line's colour
    point_label: str = ""


def curve(s: Searches, size: int) -> idmetrics.DetCurve | None:
    level = s.level(size)
    mated, nonmated = s.mated, ~s.mated & s.found
    if not mated.any() or not nonmated.any():
        return None
    return idmetrics.det_curve(s.mate[mated], s.rank[level, mated], s.top1[level, nonmated])


def point_of(outcome: Mapping[str, object] | None) -> tuple[float, float] | None:
    if not outcome:
        return None
    fpir, fnir = outcome.get("fpir"), outcome.get("fnir")
    if not isinstance(fpir, float | int) or not isinstance(fnir, float | int):
        return None
    return float(fpir), float(fnir)


def draw(lines: Sequence[Line], path: Path, title: str) -> Path | None:
    """One DET figure; None when no line has a curve."""
    if not any(line.curve is not None for line in lines):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    try:
        for index, line in enumerate(lines):
            colour = f"C{index}"
            label = line.label
            if line.curve is not None:
                keep = (line.curve.fpir > 0) & (line.curve.fnir > 0)
                if keep.any():
                    axes.step(line.curve.fpir[keep], line.curve.fnir[keep], where="post", color=colour, label=label)
                else:
                    axes.plot([], [], color=colour, label=f"{label} (no miss at any FPIR shown)")
            if line.point is not None:
                x, y = line.point
                marker = "<" if x <= 0 else ("v" if y <= 0 else "o")
                axes.plot(
                    [max(x, LEFT)],
                    [max(y, BOTTOM)],
                    marker=marker,
                    markersize=8,
                    linestyle="none",
                    color=colour,
                    markeredgecolor="black",
                    label=line.point_label or None,
                )
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlim(LEFT / 2, 1.5)
        axes.set_ylim(BOTTOM / 1.5, 1.05)
        axes.set_xlabel("FPIR (non-mated searches naming someone)")
        axes.set_ylabel("FNIR (mated searches missed)")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="x-small", loc="lower left")
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
    return path


def sizes_plot(
    s: Searches, path: Path, title: str, current: Mapping[str, object] | None, sizes: Sequence[int]
) -> Path | None:
    """Curves at each gallery size; the hand-set point (measured at 10k) on the 10k curve's colour."""
    lines = [
        Line(
            f"N = {n:,}",
            curve(s, n),
            point_of(current) if n == 10_000 else None,
            "hand-set threshold + margin + gates, N = 10,000" if n == 10_000 else "",
        )
        for n in sizes
    ]
    return draw(lines, path, title)
