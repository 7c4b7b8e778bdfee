"""`Embedder`: the face embedding model a spec describes (SFace by default), on onnxruntime.

    embedder = Embedder(load_specs()["sface"]).prepare(provider="cpu")
    vectors = embedder.get(chips)   # (N, 112, 112, 3) uint8 BGR -> (N, dim) float32, L2-normalised

Pre-processing is the spec's: resize to its input size, its channel order, (x - mean) / std,
NCHW float32. Post-processing: L2 normalisation, so that a dot product is the cosine similarity.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

from retailface.services.embedding.chip_model import ChipModel
from retailface.services.embedding.specs import EmbedderSpec
from retailface.services.shared.hashing import sha256_file
from retailface.services.shared.model_identity import ModelIdentity


class Embedder(ChipModel[np.ndarray]):
    """One embedding model run on a batch of aligned BGR chips: (N, 112, 112, 3) uint8 -> (N, dim)."""

    def __init__(self, spec: EmbedderSpec) -> None:
        path = spec.resolve_path()
        super().__init__(path, ModelIdentity(spec.model_id, spec.version, spec.dim, sha256_file(path)))
        self.spec = spec
        self._mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._inv_std = (1.0 / np.asarray(spec.std, dtype=np.float32)).reshape(1, 3, 1, 1)
        self._fixed_batch: int | None = None  # the shipped SFace fixes 1

    def check_session(self, session: ort.InferenceSession) -> None:
        spec, path = self.spec, self.model_file
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ValueError(f"embedder {spec.name}: {path} has {len(inputs)} inputs, expected one image input")
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] != 3 or shape[2] != spec.input_size or shape[3] != spec.input_size:
            raise ValueError(f"embedder {spec.name}: {path} takes {shape}, spec says [N, 3, {spec.input_size}]*2")
        if outputs[0].shape[-1] != spec.dim:
            raise ValueError(f"embedder {spec.name}: {path} returns {outputs[0].shape}, spec says dim {spec.dim}")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def preprocess(self, chips: np.ndarray) -> np.ndarray:
        if self.spec.input_size != chips.shape[1]:
            size = (self.spec.input_size, self.spec.input_size)
            chips = np.stack([cv2.resize(chip, size, interpolation=cv2.INTER_LINEAR) for chip in chips])
        if self.spec.channel_order == "RGB":
            chips = chips[..., ::-1]
        blob = chips.transpose(0, 3, 1, 2).astype(np.float32)  # one copy: NHWC uint8 -> NCHW float32
        if self.spec.mean != (0.0, 0.0, 0.0):
            blob -= self._mean
        if self.spec.std != (1.0, 1.0, 1.0):
            blob *= self._inv_std
        return blob

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """One onnxruntime run for the batch, or one per chip when the file fixes the batch at 1."""
        run = super().forward
        if self._fixed_batch == 1 and len(batch) > 1:
            return np.concatenate([run(batch[i : i + 1]) for i in range(len(batch))])
        return run(batch)

    def postprocess(self, output: np.ndarray) -> np.ndarray:
        """L2-normalised float32 rows, one per chip."""
        raw = output.reshape(len(output), -1).astype(np.float32, copy=False)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norms, 1e-12)

    def get(self, chips: np.ndarray) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        return super().get(chips)
