"""gRPC EmbeddingService: its settings, and protos to and from the embedding engine's types.

A bad chip gets INVALID_ARGUMENT in its own ChipResult.status; a batch over the limit
(InvalidArgument) or a pinned model that is not the loaded one (ModelMismatchError,
FAILED_PRECONDITION) is raised by the engine and becomes the call's status in the bootstrap.
"""

from __future__ import annotations

import grpc
import structlog

from retailface.services.embedding.attributes import EMOTIONS, FaceAttributes
from retailface.services.embedding.chips import ChipBytes, ChipError
from retailface.services.embedding.engine import ChipResult, EmbeddingEngine, EmbeddingSettings
from retailface.services.shared.config import (
    ServiceConfig,
    Setting,
    parse_bool,
    parse_path,
    parse_positive_int,
    parse_thread_count,
)
from retailface.services.shared.model_identity import ModelIdentity
from retailface.services.shared.onnx_providers import GRAPH_OPTIMIZATIONS, PROVIDER_CHOICES
from retailface.services.shared.server import Registration
from retailface.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

log = structlog.get_logger(__name__)
OK = grpc.StatusCode.OK.value[0]
CHIP_ERROR = ChipError.code.value[0]
_DEFAULTS = EmbeddingSettings()


SETTINGS: list[Setting] = [
    Setting("RETAILFACE_EMBEDDING_MODEL", str, _DEFAULTS.embedder,
            "embedder spec name: sface (float, default), sface-int8 (CPU, needs `model_prep quantize`), "
            "sface-original, or one from RETAILFACE_EMBEDDING_SPECS_FILE"),
    Setting("RETAILFACE_EMBEDDING_SPECS_FILE", parse_path, None,
            "JSON list of extra embedder specs (model file, model_id, version, input_size, channel_order, "
            "mean, std, dim) to plug in another ArcFace-style ONNX model"),
    Setting("RETAILFACE_EMBEDDING_ATTRIBUTES", parse_bool, _DEFAULTS.attributes,
            "load the age, gender and emotion models (off: include_attributes returns no attributes)"),
    Setting("RETAILFACE_EMBEDDING_THREADS", parse_thread_count, _DEFAULTS.intra_op_threads,
            "onnxruntime intra-op threads per model (0: one per core)"),
    Setting("RETAILFACE_EMBEDDING_PROVIDER", str, _DEFAULTS.provider,
            "onnxruntime execution provider: auto (CUDA when present, else CPU), cpu, or cuda (fail if absent)",
            choices=PROVIDER_CHOICES),
    Setting("RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS", parse_positive_int, _DEFAULTS.max_batch_chips,
            "most chips in one Embed call; more is INVALID_ARGUMENT"),
    Setting("RETAILFACE_EMBEDDING_GRAPH_OPTIMIZATION", str, _DEFAULTS.graph_optimization,
            "onnxruntime graph optimisation level", choices=GRAPH_OPTIMIZATIONS),
]  # fmt: skip


def settings_from_config(config: ServiceConfig) -> EmbeddingSettings:
    get = config.get
    return EmbeddingSettings(
        embedder=get("RETAILFACE_EMBEDDING_MODEL"),
        specs_file=get("RETAILFACE_EMBEDDING_SPECS_FILE"),
        attributes=get("RETAILFACE_EMBEDDING_ATTRIBUTES"),
        intra_op_threads=get("RETAILFACE_EMBEDDING_THREADS"),
        provider=get("RETAILFACE_EMBEDDING_PROVIDER"),
        max_batch_chips=get("RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS"),
        graph_optimization=get("RETAILFACE_EMBEDDING_GRAPH_OPTIMIZATION"),
    )


def attributes_to_proto(attributes: FaceAttributes) -> common_pb2.Attributes:
    # Proto enums follow EMOTIONS / GENDERS order offset by one (0 is UNSPECIFIED).
    return common_pb2.Attributes(
        age_years=attributes.age_years,
        age_confidence=attributes.age_confidence,
        gender=common_pb2.GENDER_MALE if attributes.gender == "male" else common_pb2.GENDER_FEMALE,
        gender_confidence=attributes.gender_confidence,
        emotion=EMOTIONS.index(attributes.emotion) + 1,
        emotion_confidence=attributes.emotion_confidence,
        emotions=[
            common_pb2.EmotionScore(emotion=EMOTIONS.index(name) + 1, probability=p)
            for name, p in attributes.emotions.items()
        ],
    )


def chip_result_to_proto(result: ChipResult, model: ModelIdentity) -> embedding_pb2.ChipResult:
    if result.error is not None or result.embedding is None:
        return embedding_pb2.ChipResult(status=common_pb2.ItemStatus(code=CHIP_ERROR, message=result.error))
    message = embedding_pb2.ChipResult(
        status=common_pb2.ItemStatus(code=OK),
        embedding=common_pb2.Embedding(
            values=result.embedding.tolist(), model_id=model.model_id, model_version=model.version
        ),
    )
    if result.attributes is not None:
        message.attributes.CopyFrom(attributes_to_proto(result.attributes))
    return message


def stats_to_proto(engine: EmbeddingEngine, model: common_pb2.ModelInfo) -> embedding_pb2.EmbeddingStats:
    return embedding_pb2.EmbeddingStats(
        model=model,
        attribute_models=[identity.to_proto() for identity in engine.attribute_models],
        execution_provider=engine.execution_provider,
        intra_op_threads=engine.intra_op_threads,
        max_batch_chips=engine.settings.max_batch_chips,
        chips_embedded=engine.stats.chips_embedded,
    )


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    def __init__(self, engine: EmbeddingEngine) -> None:
        self.engine = engine
        self.model = engine.model.to_proto()

    def Embed(self, request: embedding_pb2.EmbedRequest, context: grpc.ServicerContext) -> embedding_pb2.EmbedResponse:
        outcome = self.engine.embed(
            [ChipBytes(chip.size, chip.bgr) for chip in request.chips],
            include_attributes=request.include_attributes,
            expected_model_id=request.expected_model_id,
            expected_model_version=request.expected_model_version,
        )
        bad = [r.error for r in outcome.results if r.error is not None]
        if bad:
            log.info("chips_rejected", count=len(bad), first=bad[0])
        return embedding_pb2.EmbedResponse(
            results=[chip_result_to_proto(r, outcome.model) for r in outcome.results],
            model=self.model,
            embed_ms=outcome.embed_ms,
            attributes_ms=outcome.attributes_ms,
        )

    def GetStats(
        self, request: embedding_pb2.EmbeddingStatsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbeddingStats:
        return stats_to_proto(self.engine, self.model)


def build(config: ServiceConfig) -> Registration:
    engine = EmbeddingEngine(settings_from_config(config))
    return Registration(
        servicer=EmbeddingServicer(engine),
        add_to_server=embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server,
        service_name="retailface.v1.EmbeddingService",
    )
