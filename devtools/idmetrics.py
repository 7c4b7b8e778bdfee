"""Open-set 1:N identification metrics as NIST FRVT defines them (NISTIR 8271), in numpy.

A *mated search* is a probe whose person is enrolled; it misses at threshold T and rank R when the
mate is not among the first R candidates or scores below T:

    FNIR(T, R) = #{mated: rank > R or mate score < T} / #mated

A *non-mated search* is a probe whose person is not enrolled; it is a false positive at T when any
candidate scores at or above T, i.e. when its top score does:

    FPIR(T) = #{non-mated: top score >= T} / #non-mated

Both depend on the gallery size N, which is why searches are made against galleries of a stated N.
A gallery may hold several templates of one person: a person's score is the best of their
templates, and a rank counts people, not templates. A tie with a non-mate counts against the mate.

FPIR can only be estimated down to about 1 / #non-mated: with 1,000 non-mated searches, FPIR 1e-3
allows one false positive and 1e-4 none at all. `fnir_at_fpir` says so (`estimable=False`, no
threshold, no FNIR) instead of reporting a number the data cannot support.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STANDARD_FPIRS = (1e-2, 1e-3, 1e-4)


def _scores(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{what} contains NaN")
    return array


def fpir(nonmated_top: Sequence[float] | np.ndarray, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """FPIR at each threshold: the share of non-mated searches whose top score is >= T."""
    top = np.sort(_scores(nonmated_top, "nonmated_top"))
    if top.size == 0:
        raise ValueError("no non-mated searches")
    t = np.atleast_1d(np.asarray(thresholds))
    top = top.astype(np.result_type(top, t), copy=False)
    return (top.size - np.searchsorted(top, t, side="left")) / top.size


def fnir(
    mated_scores: Sequence[float] | np.ndarray,
    mated_ranks: Sequence[int] | np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray,
    rank: int = 1,
) -> np.ndarray:
    """FNIR at each threshold: the share of mated searches whose mate is below T or past `rank`."""
    scores = _scores(mated_scores, "mated_scores")
    ranks = np.asarray(mated_ranks)
    if scores.shape != ranks.shape:
        raise ValueError(f"{scores.size} mated scores but {ranks.size} ranks")
    if scores.size == 0:
        raise ValueError("no mated searches")
    if (ranks < 1).any():
        raise ValueError("ranks start at 1")
    t = np.atleast_1d(np.asarray(thresholds))
    within = np.sort(scores[ranks <= rank]).astype(np.result_type(scores, t), copy=False)
    missed_by_score = np.searchsorted(within, t, side="left")
    return (scores.size - within.size + missed_by_score) / scores.size


def threshold_for_fpir(nonmated_top: Sequence[float] | np.ndarray, target: float) -> float:
    """The lowest threshold with FPIR <= target, in the scores' own floating type.

    With k = floor(target x n) false positives allowed, it is the next representable value above
    the (k+1)-th highest non-mated score, so that score and every tie of it fall below the
    threshold: where ties sit at the boundary, the FPIR reached is below the target. -inf when every
    search may be a false positive (target >= 1).
    """
    top = _scores(nonmated_top, "nonmated_top")
    if top.size == 0:
        raise ValueError("no non-mated searches")
    if target < 0:
        raise ValueError(f"target FPIR must be >= 0, got {target}")
    allowed = math.floor(target * top.size + 1e-9)
    if allowed >= top.size:
        return -math.inf
    descending = np.sort(top)[::-1]
    boundary = descending[allowed]
    return float(np.nextafter(boundary, np.asarray(np.inf, dtype=boundary.dtype)))


@dataclass(frozen=True)
class OperatingPoint:
    target_fpir: float
    nonmated: int  # searches behind the estimate
    estimable: bool  # at least min_false_positives / target non-mated searches
    threshold: float | None
    fpir: float | None  # reached at the threshold (<= target; lower where ties sit at the boundary)
    fnir: float | None

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return {
            "target_fpir": self.target_fpir,
            "nonmated": self.nonmated,
            "estimable": self.estimable,
            "threshold": self.threshold,
            "fpir": self.fpir,
            "fnir": self.fnir,
        }


def fnir_at_fpir(
    mated_scores: Sequence[float] | np.ndarray,
    mated_ranks: Sequence[int] | np.ndarray,
    nonmated_top: Sequence[float] | np.ndarray,
    target: float,
    rank: int = 1,
    min_false_positives: int = 1,
) -> OperatingPoint:
    """FNIR at the threshold that holds FPIR <= target; not estimable with under min_false_positives/target
    non-mated searches (1/FPIR by default: fewer cannot show a single false positive at that rate)."""
    top = _scores(nonmated_top, "nonmated_top")
    estimable = top.size * target >= min_false_positives - 1e-9
    if not estimable:
        return OperatingPoint(target, int(top.size), False, None, None, None)
    threshold = threshold_for_fpir(top, target)
    reached = float(fpir(top, threshold)[0])
    missed = float(fnir(mated_scores, mated_ranks, threshold, rank)[0])
    return OperatingPoint(target, int(top.size), True, threshold, reached, missed)


def fnir_at_standard_fpirs(
    mated_scores: Sequence[float] | np.ndarray,
    mated_ranks: Sequence[int] | np.ndarray,
    nonmated_top: Sequence[float] | np.ndarray,
    targets: Sequence[float] = STANDARD_FPIRS,
    rank: int = 1,
) -> dict[str, OperatingPoint]:
    """{"1e-02": ..., "1e-03": ..., "1e-04": ...}: the operating points FRVT tables report."""
    return {f"{t:.0e}": fnir_at_fpir(mated_scores, mated_ranks, nonmated_top, t, rank) for t in targets}


@dataclass(frozen=True)
class DetCurve:
    thresholds: np.ndarray  # ascending
    fpir: np.ndarray
    fnir: np.ndarray


def det_curve(
    mated_scores: Sequence[float] | np.ndarray,
    mated_ranks: Sequence[int] | np.ndarray,
    nonmated_top: Sequence[float] | np.ndarray,
    rank: int = 1,
) -> DetCurve:
    """FPIR and FNIR at every distinct observed score (each a threshold where one of them changes)."""
    scores = _scores(mated_scores, "mated_scores")
    top = _scores(nonmated_top, "nonmated_top")
    thresholds = np.unique(np.concatenate([scores, top]).astype(np.result_type(scores, top)))
    return DetCurve(thresholds, fpir(top, thresholds), fnir(scores, mated_ranks, thresholds, rank))


def plot_det(
    curves: Mapping[str, DetCurve],
    path: Path,
    *,
    points: Mapping[str, tuple[float, float]] | None = None,
    title: str = "DET: FNIR against FPIR",
) -> Path:
    """Writes a PNG of DET curves (both axes logarithmic, as FRVT draws them); `points` marks
    named operating points given as (fpir, fnir). Needs matplotlib (the bench extra)."""
    try:
        import matplotlib
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("plot_det needs matplotlib: install the bench extra (make bench-deps)") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    try:
        for label, curve in curves.items():
            keep = (curve.fpir > 0) & (curve.fnir > 0)
            axes.step(curve.fpir[keep], curve.fnir[keep], where="post", label=label)
        for label, (x, y) in (points or {}).items():
            axes.plot([max(x, 1e-6)], [max(y, 1e-4)], marker="o", linestyle="none", label=label)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("FPIR (non-mated searches naming someone)")
        axes.set_ylabel("FNIR (mated searches missed)")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
    return path


# ---------------------------------------------------------------------------------------------
# Brute-force searches


@dataclass(frozen=True)
class SearchScores:
    """What a set of 1:N searches gives the metrics above; *_probe index the probes searched."""

    mated_probe: np.ndarray  # int64 indices into the probes
    mated_scores: np.ndarray  # the mate's best template score
    mated_ranks: np.ndarray  # 1 + people other than the mate scoring >= the mate
    mated_top_nonmate: np.ndarray  # best other person in a mated search (-inf when nobody else is enrolled)
    nonmated_probe: np.ndarray
    nonmated_top: np.ndarray  # best enrolled person in a non-mated search


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a (count, dim) matrix, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a zero vector cannot be normalised")
    return array / norms


def search_scores(
    gallery: np.ndarray,
    gallery_labels: Sequence[str] | np.ndarray,
    probes: np.ndarray,
    probe_labels: Sequence[str] | np.ndarray,
    chunk_elements: int = 1 << 24,
) -> SearchScores:
    """Cosine similarity of every probe with every gallery template (L2-normalised, float32), in chunks
    of about `chunk_elements` scores; a probe is mated when its label is enrolled."""
    g = l2_normalise(gallery)
    p = l2_normalise(probes)
    if g.shape[1] != p.shape[1]:
        raise ValueError(f"gallery dimension {g.shape[1]} != probe dimension {p.shape[1]}")
    g_labels = np.asarray(gallery_labels)
    p_labels = np.asarray(probe_labels)
    if g_labels.shape != (g.shape[0],) or p_labels.shape != (p.shape[0],):
        raise ValueError("one label per gallery template and per probe")
    if g.shape[0] == 0:
        raise ValueError("an empty gallery")
    order = np.argsort(g_labels, kind="stable")
    g, g_labels = g[order], g_labels[order]
    people, starts = np.unique(g_labels, return_index=True)
    mate_column = np.searchsorted(people, p_labels)
    mate_column = np.minimum(mate_column, people.size - 1)
    mated = people[mate_column] == p_labels

    scores_m: list[np.ndarray] = []
    ranks_m: list[np.ndarray] = []
    other_m: list[np.ndarray] = []
    top_n: list[np.ndarray] = []
    rows = max(1, chunk_elements // max(1, g.shape[0]))
    for begin in range(0, p.shape[0], rows):
        end = min(begin + rows, p.shape[0])
        per_person = np.maximum.reduceat(p[begin:end] @ g.T, starts, axis=1)
        is_mated = mated[begin:end]
        if (~is_mated).any():
            top_n.append(per_person[~is_mated].max(axis=1))
        if is_mated.any():
            block = per_person[is_mated]
            columns = mate_column[begin:end][is_mated]
            mate = block[np.arange(block.shape[0]), columns]
            block[np.arange(block.shape[0]), columns] = -np.inf
            scores_m.append(mate)
            ranks_m.append(1 + (block >= mate[:, None]).sum(axis=1))
            other_m.append(block.max(axis=1))

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    indices = np.arange(p.shape[0])
    return SearchScores(
        mated_probe=indices[mated],
        mated_scores=joined(scores_m, np.float32),
        mated_ranks=joined(ranks_m, np.int64),
        mated_top_nonmate=joined(other_m, np.float32),
        nonmated_probe=indices[~mated],
        nonmated_top=joined(top_n, np.float32),
    )
