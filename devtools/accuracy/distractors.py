"""Synthetic gallery templates for padding the galleries to 1k, 10k and 100k identities.

The datasets hold about 650 distinct people, so large galleries need synthetic distractors. Two
generators are compared on the real data (`compare`):

- `GaussianDistractors`: a Gaussian with the mean and covariance of real SFace templates of distinct
  people, each draw re-normalised to unit length. It keeps the embedder's anisotropy (the directions
  in which faces really differ, and the common offset all face embeddings share), which is what sets
  how high the best of N strangers scores. This is the one the harness uses.
- `spectrum_distractors`: bench-matcher's face-like data (zero mean, per-axis standard deviation
  (i+1)^-a with a participation ratio of 60), which knows nothing of the real embeddings.

What matters for FPIR is the top non-mate score of a non-mated search; `compare` measures it for the
same probes against real distractors and against as many synthetic ones of each kind.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from retailface.devtools.idmetrics import l2_normalise

SPECTRUM_PARTICIPATION = 60.0


@dataclass(frozen=True)
class GaussianDistractors:
    mean: np.ndarray  # (dim,)
    factor: np.ndarray  # (dim, dim): covariance = factor @ factor.T
    fitted_on: int  # how many real templates

    @classmethod
    def fit(cls, embeddings: np.ndarray) -> GaussianDistractors:
        """Mean and covariance (ddof 1) of real templates of distinct people."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"need at least two templates of shape (count, dim), got {x.shape}")
        mean = x.mean(axis=0)
        covariance = np.cov(x, rowvar=False, ddof=1)
        values, vectors = np.linalg.eigh(covariance)
        factor = vectors * np.sqrt(np.clip(values, 0.0, None))
        return cls(mean, factor, x.shape[0])

    @property
    def covariance(self) -> np.ndarray:
        return self.factor @ self.factor.T

    def sample_raw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Draws from the Gaussian before re-normalisation (float64)."""
        return self.mean + rng.standard_normal((count, self.mean.size)) @ self.factor.T

    def sample(self, count: int, rng: np.random.Generator, chunk: int = 1 << 16) -> np.ndarray:
        """`count` unit-length float32 templates."""
        out = np.empty((count, self.mean.size), dtype=np.float32)
        for start in range(0, count, chunk):
            end = min(start + chunk, count)
            out[start:end] = l2_normalise(self.sample_raw(end - start, rng))
        return out


@functools.cache
def _spectrum(dim: int, participation: float = SPECTRUM_PARTICIPATION) -> np.ndarray:
    def ratio(a: float) -> float:
        variances = np.arange(1, dim + 1, dtype=np.float64) ** (-2 * a)
        return float(variances.sum() ** 2 / (variances**2).sum())

    low, high = 0.0, 3.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if ratio(mid) > participation else (low, mid)
    return np.arange(1, dim + 1, dtype=np.float64) ** (-(low + high) / 2)


def spectrum_distractors(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """bench-matcher's synthetic identities (benchmarks/matcher/bench_matcher.py), unit length."""
    return l2_normalise(rng.standard_normal((count, dim)) * _spectrum(dim))


def top_scores(probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Each probe's best cosine score against the gallery."""
    return (l2_normalise(probes) @ l2_normalise(gallery).T).max(axis=1)


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / a.size - np.searchsorted(b, grid, "right") / b.size).max())


def _summary(scores: np.ndarray) -> dict[str, float]:
    q = np.quantile(scores, [0.5, 0.9, 0.99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": float(scores.max())}


def compare(probes: np.ndarray, real: np.ndarray, seed: int) -> dict[str, object]:
    """Top non-mate scores of the same non-mated probes against real distractors and against as many
    synthetic ones: quantiles, and the KS distance of each synthetic kind to the real ones.

    Out of sample: the Gaussian is fitted on every other real template and compared on the rest, so
    it is judged on faces it was not fitted to. In sample: fitted and compared on all of them.
    """
    rng = np.random.default_rng(seed)
    held_out = real[1::2]
    real_top = top_scores(probes, held_out)
    result: dict[str, object] = {
        "probes": int(probes.shape[0]),
        "fitted_on": int(real[::2].shape[0]),
        "compared_with": int(held_out.shape[0]),
        "real": _summary(real_top),
    }
    kinds = (
        ("gaussian_fit", GaussianDistractors.fit(real[::2]).sample(held_out.shape[0], rng)),
        ("bench_spectrum", spectrum_distractors(held_out.shape[0], real.shape[1], rng)),
    )
    for name, synthetic in kinds:
        top = top_scores(probes, synthetic)
        result[name] = {**_summary(top), "ks_to_real": ks_distance(top, real_top)}
    all_top = top_scores(probes, real)
    in_sample = top_scores(probes, GaussianDistractors.fit(real).sample(real.shape[0], rng))
    result["in_sample"] = {
        "distractors": int(real.shape[0]),
        "real": _summary(all_top),
        "gaussian_fit": {**_summary(in_sample), "ks_to_real": ks_distance(in_sample, all_top)},
    }
    return result
