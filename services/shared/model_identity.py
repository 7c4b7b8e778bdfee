"""`ModelIdentity`: which model made a detection or an embedding, the one name for that concept.

It mirrors `retailface.v1.ModelInfo`: detection reports it for YuNet, embedding for the embedder,
and matching refuses templates whose identity differs from its gallery's.
"""

from __future__ import annotations

from dataclasses import dataclass

from retailface.v1 import common_pb2


@dataclass(frozen=True)
class ModelIdentity:
    model_id: str
    version: str
    dim: int = 0  # embedding dimension; 0 for models that do not embed
    sha256: str = ""  # of the file actually loaded; empty where unknown (matching's configured model)

    def describe(self) -> str:
        dim = f" (dim {self.dim})" if self.dim else ""
        return f"{self.model_id}/{self.version}{dim}"

    def to_proto(self) -> common_pb2.ModelInfo:
        return common_pb2.ModelInfo(model_id=self.model_id, version=self.version, dim=self.dim, sha256=self.sha256)
