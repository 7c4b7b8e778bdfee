"""python -m retailface.services.embedding: serves EmbeddingService (SFace embeddings, age/gender/emotion)."""

from retailface.services.embedding.servicer import build
from retailface.services.shared.server import run

raise SystemExit(run("embedding", build))
