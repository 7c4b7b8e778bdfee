"""The gallery's stored form of a template, in numpy (native/include/retailface/quantize.hpp): int8 with one scale
per template, largest component at +-127. Every plan scores this form, so brute force over it is the reference
an exact plan must equal."""

from __future__ import annotations

import numpy as np


def stored_form(vectors: np.ndarray) -> np.ndarray:
    """float32 [n, dim]: scale * round(v / scale), scale = max|v| / 127 (as the gallery computes it)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    largest = np.abs(vectors).max(axis=1, keepdims=True)
    scale = np.where(largest > 0, largest / np.float32(127), np.float32(1)).astype(np.float32)
    rows = np.clip(np.rint(vectors / scale), -127, 127)
    return (rows * scale).astype(np.float32)


def self_score(vector: np.ndarray) -> float:
    """A template's score against the very vector it was enrolled from (just under 1)."""
    vector = np.asarray(vector, dtype=np.float32)
    return float(stored_form(vector[None])[0] @ vector)
