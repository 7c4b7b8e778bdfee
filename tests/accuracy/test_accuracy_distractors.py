"""The synthetic distractor generator: it reproduces the mean and covariance it was fitted to."""

from __future__ import annotations

import numpy as np

from retailface.devtools import idmetrics
from retailface.devtools.accuracy import distractors
from retailface.devtools.accuracy.distractors import GaussianDistractors


def anisotropic_faces(count: int, dim: int = 128, seed: int = 1) -> np.ndarray:
    """Unit vectors with a common offset and a decaying spectrum, like real face embeddings (SFace's
    templates of distinct people have a mean of norm 0.36 and pairwise cosines of 0.13 +- 0.09)."""
    rng = np.random.default_rng(seed)
    offset = np.zeros(dim)
    offset[0] = 0.3
    x = offset + rng.standard_normal((count, dim)) * (np.arange(1, dim + 1) ** -0.3) * 0.1
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_fit_reproduces_mean_and_covariance() -> None:
    real = anisotropic_faces(4000)
    fitted = GaussianDistractors.fit(real)
    assert np.allclose(fitted.mean, real.mean(axis=0))
    assert np.allclose(fitted.covariance, np.cov(real, rowvar=False), atol=1e-12)
    draws = fitted.sample_raw(100_000, np.random.default_rng(2))
    assert np.abs(draws.mean(axis=0) - fitted.mean).max() < 0.01
    scale = np.abs(fitted.covariance).max()
    assert np.abs(np.cov(draws, rowvar=False) - fitted.covariance).max() < 0.05 * scale


def test_samples_are_unit_length_and_score_against_real_faces_like_real_faces() -> None:
    real = anisotropic_faces(3000)
    fitted = GaussianDistractors.fit(real[:2000])
    synthetic = fitted.sample(1000, np.random.default_rng(3))
    assert synthetic.dtype == np.float32
    assert np.allclose(np.linalg.norm(synthetic, axis=1), 1.0, atol=1e-5)
    probes = real[2000:2200]
    real_scores = (probes @ real[2200:].T).ravel()
    synthetic_scores = (probes @ synthetic.T.astype(np.float64)).ravel()
    assert abs(real_scores.mean() - synthetic_scores.mean()) < 0.02
    # re-normalising the draws narrows the spread a little (on real SFace templates it matched to 1%)
    assert abs(real_scores.std() - synthetic_scores.std()) < 0.15 * real_scores.std()
    isotropic = idmetrics.l2_normalise(np.random.default_rng(5).standard_normal((1000, real.shape[1])))
    isotropic_scores = (probes @ isotropic.T.astype(np.float64)).ravel()
    assert abs(real_scores.std() - isotropic_scores.std()) > 0.2 * real_scores.std()
    spectrum = distractors.spectrum_distractors(1000, real.shape[1], np.random.default_rng(4))
    spectrum_scores = (probes @ spectrum.T.astype(np.float64)).ravel()
    assert abs(real_scores.mean() - spectrum_scores.mean()) > 0.05  # knows nothing of the common offset


def test_compare_measures_each_kind_against_held_out_real_faces() -> None:
    real = anisotropic_faces(600, seed=7)
    probes = anisotropic_faces(300, seed=8)
    result = distractors.compare(probes, real, seed=0)
    assert result["fitted_on"] == 300 and result["compared_with"] == 300
    fit, spectrum = result["gaussian_fit"], result["bench_spectrum"]
    assert isinstance(fit, dict) and isinstance(spectrum, dict)
    assert fit["ks_to_real"] < 0.2 < spectrum["ks_to_real"]


def test_ks_distance() -> None:
    a = np.arange(100.0)
    assert distractors.ks_distance(a, a) == 0.0
    assert distractors.ks_distance(a, a + 1000) == 1.0
    assert distractors.ks_distance(a, a + 50) == 0.5
