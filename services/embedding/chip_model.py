"""`ChipModel`: what every model of the embedding service is, one small class per model.

As insightface's model_zoo does it: constructing a model finds its file and says which model it
is (`identity`); `prepare(...)` opens the onnxruntime session; `get(chips)` runs a batch of aligned
chips through `preprocess` (chips -> the network's input), one `forward` (one onnxruntime run for
the whole batch) and `postprocess` (the network's output -> what the service reports).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Generic, Self, TypeVar

import numpy as np
import onnxruntime as ort

from retailface.services.shared.model_identity import ModelIdentity
from retailface.services.shared.onnx_providers import open_session

Output = TypeVar("Output")


class ChipModel(ABC, Generic[Output]):
    """One ONNX model over a batch of aligned chips. Thread-safe once prepared (onnxruntime runs concurrently)."""

    def __init__(self, model_file: Path, identity: ModelIdentity) -> None:
        self.model_file = model_file
        self.identity = identity
        self._session: ort.InferenceSession | None = None
        self._input_name = ""

    def prepare(self, provider: str = "auto", intra_op_threads: int = 0, optimization: str = "all") -> Self:
        """Opens the session (provider, threads and graph optimisation as `shared.onnx_providers` has them)."""
        session = open_session(str(self.model_file), provider, intra_op_threads, optimization)
        self.check_session(session)
        self._input_name = session.get_inputs()[0].name
        self._session = session
        return self

    def check_session(self, session: ort.InferenceSession) -> None:
        """Refuses (ValueError) a file whose inputs or outputs are not what the model class expects."""

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__}.prepare() must be called before get()")
        return self._session

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    @abstractmethod
    def preprocess(self, chips: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 BGR chips -> the network's input batch."""

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The network's first output for the batch, in one onnxruntime run."""
        return self.session.run(None, {self._input_name: batch})[0]  # type: ignore[no-any-return]

    @abstractmethod
    def postprocess(self, output: np.ndarray) -> Output:
        """The network's output -> one answer per chip."""

    def get(self, chips: np.ndarray) -> Output:
        return self.postprocess(self.forward(self.preprocess(chips)))
