"""Embeddings and attributes of aligned chips as plain Python (what the servicer and the gateway call).

    engine = EmbeddingEngine(EmbeddingSettings())                # loads SFace (+ attribute models)
    outcome = engine.embed([chip_bytes_or_array, ...], include_attributes=True)
    outcome.results[i].embedding   # (128,) float32, L2-normalised, or None with .error set

The engine orchestrates: it checks the call (`chips` for each chip, the batch limit and the
pinned model here), then runs all valid chips of the call through ONE onnxruntime run per model:
the embedder (`embedder`) and, when asked, age, gender and emotion (`attributes`). A bad chip gets
its own error ("chip <i>: ..."), the others are still embedded; a batch over `max_batch_chips`
raises InvalidArgument and an expected model id/version that differs from the loaded model raises
ModelMismatchError (FAILED_PRECONDITION); either fails the whole call.

Memory: onnxruntime's CPU arena grows to the largest batch a session has run and keeps it (SFace
and the attribute models: 211 MB RSS after runs of 1 chip, 378 MB after 8, 583 MB after 16, 1.8 GB
after 64, the batch limit), so a camera burst set the service's memory for good. On CPU the chips
of a call therefore go through the models in runs of at most `max_run_chips` (4: more chips per
run were no faster on CPU, 55 chips/s at 4, 52 at 8, 51 at 16, 35 at 64 on one thread of this
2-core machine), and each run size is run once at start, so the arena is at its bound before the
first camera.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

from retailface.services.embedding.attributes import AttributeModels, FaceAttributes
from retailface.services.embedding.chips import Chip, ChipError, decode_chip
from retailface.services.embedding.embedder import Embedder
from retailface.services.embedding.specs import find_spec
from retailface.services.shared.errors import FailedPrecondition, InvalidArgument
from retailface.services.shared.metrics import stage_timer
from retailface.services.shared.model_identity import ModelIdentity
from retailface.services.shared.onnx_providers import CPU, intra_op_thread_count

log = structlog.get_logger(__name__)
SERVICE = "embedding"
CPU_RUN_CHIPS = 4  # the batch on CPU: the arena stays at its size for 4 (see above)
CHIP_SHAPE = (112, 112, 3)


def runs(batch: np.ndarray, size: int) -> list[np.ndarray]:
    """The batch in consecutive runs of at most `size` rows (views, in order)."""
    return [batch[start : start + size] for start in range(0, len(batch), size)]


class ModelMismatchError(FailedPrecondition):
    """The caller expects another embedding model than the one loaded."""


@dataclass(frozen=True)
class EmbeddingSettings:
    embedder: str = "sface"  # a name in specs.load_specs(specs_file)
    specs_file: Path | None = None
    attributes: bool = True  # load the age, gender and emotion models
    intra_op_threads: int = 0  # 0: one per core
    provider: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda
    max_batch_chips: int = 64
    max_run_chips: int = 0  # chips per onnxruntime run, at most; 0: CPU_RUN_CHIPS on CPU, the whole call on CUDA
    graph_optimization: str = "all"  # disabled | basic | extended | all (onnxruntime levels)


@dataclass
class ChipResult:
    error: str | None = None  # "chip <i>: <problem>"; embedding and attributes are None then
    embedding: np.ndarray | None = None
    attributes: FaceAttributes | None = None


@dataclass
class EmbedOutcome:
    results: list[ChipResult]
    model: ModelIdentity
    embed_ms: float = 0.0
    attributes_ms: float = 0.0


@dataclass
class EngineStats:
    chips_embedded: int = 0
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class EmbeddingEngine:
    """The embedding service's logic; thread-safe (onnxruntime sessions allow concurrent runs)."""

    def __init__(self, settings: EmbeddingSettings | None = None) -> None:
        self.settings = settings = settings or EmbeddingSettings()
        runtime = (settings.provider, settings.intra_op_threads, settings.graph_optimization)
        self.embedder = Embedder(find_spec(settings.embedder, settings.specs_file)).prepare(*runtime)
        self.attributes = AttributeModels().prepare(*runtime) if settings.attributes else None
        self.execution_provider = self.embedder.provider
        self.intra_op_threads = intra_op_thread_count(settings.intra_op_threads)
        self.run_chips = settings.max_run_chips or (
            CPU_RUN_CHIPS if self.execution_provider == CPU else settings.max_batch_chips
        )
        self.stats = EngineStats()
        self._warm_up()
        log.info(
            "embedding_engine_ready",
            embedder=settings.embedder,
            model_id=self.model.model_id,
            version=self.model.version,
            sha256=self.model.sha256[:16],
            provider=self.execution_provider,
            intra_op_threads=self.intra_op_threads,
            attributes=self.attributes is not None,
            run_chips=self.run_chips,
        )

    def _warm_up(self) -> None:
        """Runs every run size once (on CPU: 1..run_chips), so the arena reaches its bound now, not under load."""
        if self.run_chips > CPU_RUN_CHIPS * 2:
            return  # a GPU's whole-call runs: too many sizes to warm
        for size in range(1, self.run_chips + 1):
            chips = np.zeros((size, *CHIP_SHAPE), dtype=np.uint8)
            self.embedder.get(chips)
            if self.attributes is not None:
                self.attributes.get(chips)

    @property
    def model(self) -> ModelIdentity:
        return self.embedder.identity

    @property
    def attribute_models(self) -> list[ModelIdentity]:
        return self.attributes.identities if self.attributes else []

    def check_model(self, expected_model_id: str = "", expected_model_version: str = "") -> None:
        """ModelMismatchError when the caller pins another model than the loaded one."""
        model = self.model
        for what, expected, actual in (
            ("model", expected_model_id, model.model_id),
            ("version", expected_model_version, model.version),
        ):
            if expected and expected != actual:
                raise ModelMismatchError(
                    f"this service embeds with model {model.model_id!r} version {model.version!r}, the request "
                    f"expects {what} {expected!r}: templates of two {what}s must not be mixed"
                )

    def check_batch(self, chip_count: int) -> None:
        if chip_count > self.settings.max_batch_chips:
            raise InvalidArgument(
                f"{chip_count} chips in one call, the limit is {self.settings.max_batch_chips} "
                "(RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS): split the batch"
            )

    def embed(
        self,
        chips: Sequence[Chip],
        include_attributes: bool = False,  # ignored (no attributes) when the attribute models are off
        expected_model_id: str = "",
        expected_model_version: str = "",
    ) -> EmbedOutcome:
        self.check_model(expected_model_id, expected_model_version)
        self.check_batch(len(chips))
        results = [ChipResult() for _ in chips]
        valid_index: list[int] = []
        arrays: list[np.ndarray] = []
        for index, chip in enumerate(chips):
            try:
                arrays.append(decode_chip(index, chip))
                valid_index.append(index)
            except ChipError as error:
                results[index].error = error.message
        outcome = EmbedOutcome(results, self.model)
        if not arrays:
            return outcome
        batch = np.stack(arrays)
        with stage_timer(SERVICE, "embed") as elapsed:
            vectors = np.concatenate([self.embedder.get(run) for run in runs(batch, self.run_chips)])
        outcome.embed_ms = elapsed.ms
        for row, index in enumerate(valid_index):
            results[index].embedding = vectors[row]
        if include_attributes and self.attributes is not None:
            with stage_timer(SERVICE, "attributes") as elapsed:
                attributes = [found for run in runs(batch, self.run_chips) for found in self.attributes.get(run)]
            outcome.attributes_ms = elapsed.ms
            for row, index in enumerate(valid_index):
                results[index].attributes = attributes[row]
        with self.stats.lock:
            self.stats.chips_embedded += len(valid_index)
            self.stats.calls += 1
        return outcome
