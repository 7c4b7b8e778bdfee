"""Brute-force cosine search of probes against nested galleries: real templates, then synthetic ones.

The gallery of size N is the real templates followed by the first N - R synthetic ones, so the 1k
gallery is inside the 10k one, which is inside the 100k one (as FRVT's galleries are), and one pass
over the largest gallery answers every size. Every gallery identity has exactly one template here, so
a person's score is their template's score. Scores are float32 dot products of unit vectors, computed
in chunks of about `chunk_elements` scores, the same exact scan `idmetrics.search_scores` does; on top
of its outputs it keeps the second-best non-mate, which the matcher's margin rule needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retailface.devtools.idmetrics import l2_normalise


@dataclass(frozen=True)
class NestedSearch:
    """Per probe and gallery size (first axis: `sizes`)."""

    sizes: tuple[int, ...]
    mated: np.ndarray  # (P,) bool: the probe's identity is in the real part of the gallery
    mate: np.ndarray  # (P,) float32 mate score; -inf for non-mated probes
    rank: np.ndarray  # (S, P) int64: 1 + gallery identities other than the mate scoring >= the mate (0: non-mated)
    top1: np.ndarray  # (S, P) float32 best non-mate score
    top2: np.ndarray  # (S, P) float32 second-best non-mate score (-inf where the gallery has one non-mate)


def _top_two(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = scores.shape
    lowest = np.full(rows, -np.inf, dtype=np.float32)
    if columns == 0:
        return lowest, lowest.copy()
    if columns == 1:
        return scores[:, 0].astype(np.float32), lowest
    part = np.partition(scores, columns - 2, axis=1)[:, columns - 2 :]
    return part.max(axis=1).astype(np.float32), part.min(axis=1).astype(np.float32)


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.sort(np.stack([a[0], a[1], b[0], b[1]], axis=1), axis=1)
    return stacked[:, 3], stacked[:, 2]


def nested_search(
    real: np.ndarray,
    real_labels: Sequence[str] | np.ndarray,
    synthetic: np.ndarray,
    sizes: Sequence[int],
    probes: np.ndarray,
    probe_labels: Sequence[str] | np.ndarray,
    chunk_elements: int = 1 << 24,
) -> NestedSearch:
    """Search every probe against galleries of `sizes` (ascending) templates: the real ones, then synthetic."""
    labels = np.asarray(real_labels)
    if labels.shape != (real.shape[0],) or np.unique(labels).size != labels.size:
        raise ValueError("one template per real gallery identity, with distinct labels")
    sizes = tuple(int(n) for n in sizes)
    if list(sizes) != sorted(sizes) or sizes[0] < real.shape[0]:
        raise ValueError(f"gallery sizes {sizes} must ascend and hold the {real.shape[0]} real templates")
    if sizes[-1] - real.shape[0] > synthetic.shape[0]:
        raise ValueError(f"{synthetic.shape[0]} synthetic templates cannot pad {real.shape[0]} real to {sizes[-1]}")
    g_real = l2_normalise(real)
    g_syn = l2_normalise(synthetic[: sizes[-1] - real.shape[0]]) if sizes[-1] > real.shape[0] else None
    p = l2_normalise(probes)
    p_labels = np.asarray(probe_labels)
    order = np.argsort(labels)
    position = np.searchsorted(labels[order], p_labels)
    position = np.minimum(position, labels.size - 1)
    mated = labels[order][position] == p_labels
    mate_column = np.where(mated, order[position], -1)
    bounds = [n - real.shape[0] for n in sizes]

    count = p.shape[0]
    mate = np.full(count, -np.inf, dtype=np.float32)
    rank = np.zeros((len(sizes), count), dtype=np.int64)
    top1 = np.full((len(sizes), count), -np.inf, dtype=np.float32)
    top2 = np.full((len(sizes), count), -np.inf, dtype=np.float32)
    rows = max(1, chunk_elements // max(1, sizes[-1]))
    for begin in range(0, count, rows):
        end = min(begin + rows, count)
        block = p[begin:end] @ g_real.T
        local = np.arange(end - begin)
        is_mated = mated[begin:end]
        columns = mate_column[begin:end]
        chunk_mate = np.full(end - begin, -np.inf, dtype=np.float32)
        chunk_mate[is_mated] = block[local[is_mated], columns[is_mated]]
        block[local[is_mated], columns[is_mated]] = -np.inf
        best = _top_two(block)
        ahead = (block >= chunk_mate[:, None]).sum(axis=1)
        previous = 0
        synthetic_scores = p[begin:end] @ g_syn.T if g_syn is not None else None
        for level, bound in enumerate(bounds):
            if bound > previous and synthetic_scores is not None:
                part = synthetic_scores[:, previous:bound]
                best = _merge(best, _top_two(part))
                ahead = ahead + (part >= chunk_mate[:, None]).sum(axis=1)
                previous = bound
            top1[level, begin:end], top2[level, begin:end] = best
            rank[level, begin:end] = np.where(is_mated, 1 + ahead, 0)
        mate[begin:end] = chunk_mate
    return NestedSearch(sizes, mated, mate, rank, top1, top2)
