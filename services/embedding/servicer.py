"""gRPC EmbeddingService: maps protos to the embedding engine and its errors to status codes."""

from __future__ import annotations

import grpc
import structlog

from retailface.services.embedding.engine import (
    EMOTIONS,
    BatchTooLargeError,
    ChipBytes,
    ChipResult,
    EmbeddingEngine,
    EmbeddingSettings,
    FaceAttributes,
    ModelDescription,
    ModelMismatchError,
)
from retailface.services.embedding.specs import load_specs
from retailface.services.shared.config import (
    ServiceConfig,
    Setting,
    parse_bool,
    parse_path,
    parse_positive_int,
)
from retailface.services.shared.server import Registration
from retailface.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

log = structlog.get_logger(__name__)
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
_DEFAULTS = EmbeddingSettings()


def parse_thread_count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"expected 0 (one per core) or a positive count, got {value}")
    return value


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
            choices=("auto", "cpu", "cuda")),
    Setting("RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS", parse_positive_int, _DEFAULTS.max_batch_chips,
            "most chips in one Embed call; more is INVALID_ARGUMENT"),
    Setting("RETAILFACE_EMBEDDING_GRAPH_OPTIMIZATION", str, _DEFAULTS.graph_optimization,
            "onnxruntime graph optimisation level", choices=("disabled", "basic", "extended", "all")),
]  # fmt: skip


def settings_from_config(config: ServiceConfig) -> EmbeddingSettings:
    get = config.get
    settings = EmbeddingSettings(
        embedder=get("RETAILFACE_EMBEDDING_MODEL"),
        specs_file=get("RETAILFACE_EMBEDDING_SPECS_FILE"),
        attributes=get("RETAILFACE_EMBEDDING_ATTRIBUTES"),
        intra_op_threads=get("RETAILFACE_EMBEDDING_THREADS"),
        provider=get("RETAILFACE_EMBEDDING_PROVIDER"),
        max_batch_chips=get("RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS"),
        graph_optimization=get("RETAILFACE_EMBEDDING_GRAPH_OPTIMIZATION"),
    )
    known = load_specs(settings.specs_file)
    if settings.embedder not in known:
        raise ValueError(f"RETAILFACE_EMBEDDING_MODEL={settings.embedder!r} is not a known spec ({', '.join(known)})")
    return settings


def model_info_proto(model: ModelDescription) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(model_id=model.model_id, version=model.version, dim=model.dim, sha256=model.sha256)


def attributes_proto(attributes: FaceAttributes) -> common_pb2.Attributes:
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


def result_proto(result: ChipResult, model: ModelDescription) -> embedding_pb2.ChipResult:
    if result.error is not None or result.embedding is None:
        return embedding_pb2.ChipResult(status=common_pb2.ItemStatus(code=INVALID_ARGUMENT, message=result.error))
    message = embedding_pb2.ChipResult(
        status=common_pb2.ItemStatus(code=0),
        embedding=common_pb2.Embedding(
            values=result.embedding.tolist(), model_id=model.model_id, model_version=model.version
        ),
    )
    if result.attributes is not None:
        message.attributes.CopyFrom(attributes_proto(result.attributes))
    return message


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    def __init__(self, engine: EmbeddingEngine) -> None:
        self.engine = engine
        self.model_info = model_info_proto(engine.model)

    def Embed(self, request: embedding_pb2.EmbedRequest, context: grpc.ServicerContext) -> embedding_pb2.EmbedResponse:
        try:
            outcome = self.engine.embed(
                [ChipBytes(chip.size, chip.bgr) for chip in request.chips],
                include_attributes=request.include_attributes,
                expected_model_id=request.expected_model_id,
                expected_model_version=request.expected_model_version,
            )
        except ModelMismatchError as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except BatchTooLargeError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        bad = [r.error for r in outcome.results if r.error is not None]
        if bad:
            log.info("chips_rejected", count=len(bad), first=bad[0])
        return embedding_pb2.EmbedResponse(
            results=[result_proto(r, outcome.model) for r in outcome.results],
            model=self.model_info,
            embed_ms=outcome.embed_ms,
            attributes_ms=outcome.attributes_ms,
        )

    def GetStats(
        self, request: embedding_pb2.EmbeddingStatsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbeddingStats:
        engine = self.engine
        return embedding_pb2.EmbeddingStats(
            model=self.model_info,
            attribute_models=[model_info_proto(m) for m in engine.attribute_models],
            execution_provider=engine.execution_provider,
            intra_op_threads=engine.intra_op_threads,
            max_batch_chips=engine.settings.max_batch_chips,
            chips_embedded=engine.stats.chips_embedded,
        )


def build(config: ServiceConfig) -> Registration:
    engine = EmbeddingEngine(settings_from_config(config))
    return Registration(
        servicer=EmbeddingServicer(engine),
        add_to_server=embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server,
        service_name="retailface.v1.EmbeddingService",
    )
