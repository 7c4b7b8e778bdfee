"""What a vector must be to enter a gallery: the gallery's model and dimension, finite, of unit length.

Validation happens here once, for templates and queries alike; the error names the first bad vector by
its position in the request.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retailface.services.matching.errors import InvalidVectorError, ModelMismatchError
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1 import common_pb2


def stack_embeddings(
    embeddings: Sequence[common_pb2.Embedding], model: ModelIdentity, gallery: str, kind: str
) -> np.ndarray:
    """Stacks embeddings [n, dim] after checking each one's model, version and dimension against the gallery's."""
    for index, embedding in enumerate(embeddings):
        if (embedding.model_id, embedding.model_version) != (model.model_id, model.version):
            got = f"{embedding.model_id or '(empty model_id)'}/{embedding.model_version or '(empty version)'}"
            raise ModelMismatchError(
                f"{kind} {index}: embedding of model {got}, gallery {gallery} expects {model.model_id}/{model.version}"
            )
        if len(embedding.values) != model.dim:
            raise ModelMismatchError(
                f"{kind} {index}: embedding has {len(embedding.values)} values, gallery {gallery} expects {model.dim} "
                f"({model.model_id}/{model.version})"
            )
    if not embeddings:
        return np.empty((0, model.dim), dtype=np.float32)
    return np.array([embedding.values for embedding in embeddings], dtype=np.float32)


def validate_vectors(vectors: np.ndarray, dim: int, norm_tolerance: float, kind: str = "query") -> None:
    """Raises the error that names the first bad vector: wrong dimension, NaN/Inf, or not unit length."""
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        got = vectors.shape[1] if vectors.ndim == 2 else vectors.shape
        raise ModelMismatchError(f"{kind} vectors have dimension {got}, the gallery expects {dim}")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise InvalidVectorError(f"{kind} {index}: the vector contains NaN or Inf", index)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    bad = np.abs(norms - 1.0) > norm_tolerance
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise InvalidVectorError(
            f"{kind} {index}: the vector has L2 norm {norms[index]:.6f}; send L2-normalised embeddings "
            f"(norm 1 within {norm_tolerance})",
            index,
        )
