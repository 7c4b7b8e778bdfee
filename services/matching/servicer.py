"""gRPC MatchingService: maps protos to the durable gallery store and its errors to status codes.

Thresholds are cosine similarities of L2-normalised SFace embeddings. The defaults are starting
points for SFace (OpenCV's 1:1 verification threshold is 0.363; real SFace impostor pairs score
mean 0.09, std 0.11), raised for 1:N identification, where every query meets every subject: members
0.48 / margin 0.05, watchlist 0.55 / margin 0.08 (a watchlist alert accuses someone; it always goes
to a person, but should be rare when wrong). Calibrate them on the deployment's own impostor scores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import structlog

from retailface.services.matching.crypto import KeyConfigError, load_key
from retailface.services.matching.store import (
    DECISION_MATCH,
    DataDirLockedError,
    DurabilityPolicy,
    GalleryPolicy,
    GalleryStats,
    GalleryStore,
    IndexParams,
    InvalidRequestError,
    InvalidVectorError,
    MatchingStore,
    ModelMismatchError,
    ModelSpec,
    StoreCorruptedError,
    TemplateConflictError,
    UnknownGalleryError,
    UnknownSubjectError,
)
from retailface.services.shared.config import (
    ConfigError,
    ServiceConfig,
    Setting,
    parse_bool,
    parse_path,
    parse_positive_float,
    parse_positive_int,
    parse_unit_float,
)
from retailface.services.shared.logging import current_request_id
from retailface.services.shared.metrics import stage_timer
from retailface.services.shared.server import Registration
from retailface.v1 import common_pb2, matching_pb2, matching_pb2_grpc

log = structlog.get_logger(__name__)
SERVICE = "matching"
DEFAULT_TOP_K = 5
MAX_TOP_K = 100
GALLERIES = ("members", "watchlist")


def parse_non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError(f"expected a number >= 0, got {raw}")
    return value


SETTINGS: list[Setting] = [
    Setting(
        "RETAILFACE_MATCHING_DATA_DIR",
        parse_path,
        Path("~/.local/share/retailface/matching"),
        "directory of the galleries' encrypted snapshots and logs (one service per directory)",
    ),
    Setting(
        "RETAILFACE_MATCHING_KEY_FILE",
        parse_path,
        None,
        "file with the 32-byte AES-256-GCM key of the templates at rest, raw or base64; create one with "
        "`python -m retailface.services.matching.keygen PATH`",
        required=True,
    ),
    Setting("RETAILFACE_MATCHING_MODEL_ID", str, "sface", "embedding model the galleries hold; others are refused"),
    Setting("RETAILFACE_MATCHING_MODEL_VERSION", str, "2021dec", "version of that embedding model"),
    Setting("RETAILFACE_MATCHING_DIM", parse_positive_int, 128, "embedding dimension of that model"),
    Setting(
        "RETAILFACE_MATCHING_MEMBERS_THRESHOLD",
        parse_unit_float,
        0.48,
        "members gallery: cosine at or above which the best subject is a match",
    ),
    Setting(
        "RETAILFACE_MATCHING_MEMBERS_MARGIN",
        parse_unit_float,
        0.05,
        "members gallery: lead over the second subject a match needs (closer: ambiguous)",
    ),
    Setting(
        "RETAILFACE_MATCHING_WATCHLIST_THRESHOLD",
        parse_unit_float,
        0.55,
        "watchlist gallery: cosine at or above which the best subject is a match",
    ),
    Setting(
        "RETAILFACE_MATCHING_WATCHLIST_MARGIN",
        parse_unit_float,
        0.08,
        "watchlist gallery: lead over the second subject a match needs",
    ),
    Setting("RETAILFACE_MATCHING_HNSW_M", parse_positive_int, 16, "HNSW graph degree"),
    Setting("RETAILFACE_MATCHING_HNSW_EF_CONSTRUCTION", parse_positive_int, 200, "HNSW build beam width"),
    Setting("RETAILFACE_MATCHING_HNSW_EF_SEARCH", parse_positive_int, 64, "HNSW search beam width"),
    Setting("RETAILFACE_MATCHING_SEARCH_THREADS", parse_positive_int, 2, "threads one batch search runs on"),
    Setting(
        "RETAILFACE_MATCHING_INITIAL_CAPACITY",
        parse_positive_int,
        1024,
        "templates the index reserves at start (it grows beyond)",
    ),
    Setting(
        "RETAILFACE_MATCHING_SNAPSHOT_EVERY",
        parse_positive_int,
        10_000,
        "log records after which a gallery is snapshotted and its log truncated (bounds restart time)",
    ),
    Setting(
        "RETAILFACE_MATCHING_ERASE_PURGE_SECONDS",
        parse_non_negative_float,
        60.0,
        "after an erase, a snapshot removes the erased templates from the log within this many seconds",
    ),
    Setting(
        "RETAILFACE_MATCHING_SNAPSHOT_ON_STOP",
        parse_bool,
        True,
        "write a snapshot on graceful shutdown so the next start replays no log",
    ),
    Setting(
        "RETAILFACE_MATCHING_NORM_TOLERANCE",
        parse_positive_float,
        1e-3,
        "refuse vectors whose L2 norm differs from 1 by more than this",
    ),
]


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@contextmanager
def _status(context: grpc.ServicerContext) -> Iterator[None]:
    """Turns the store's errors into gRPC status codes with their messages."""
    try:
        yield
    except _Abort as error:
        context.abort(error.code, error.message)
    except UnknownGalleryError as error:
        context.abort(grpc.StatusCode.NOT_FOUND, str(error))
    except UnknownSubjectError as error:
        context.abort(grpc.StatusCode.NOT_FOUND, str(error))
    except ModelMismatchError as error:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
    except (InvalidVectorError, InvalidRequestError) as error:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    except TemplateConflictError as error:
        context.abort(grpc.StatusCode.ALREADY_EXISTS, str(error))


def _vectors(embeddings: Sequence[common_pb2.Embedding], model: ModelSpec, gallery: str, kind: str) -> np.ndarray:
    """Stacks embeddings after checking each one's model, version and dimension against the gallery's."""
    for index, embedding in enumerate(embeddings):
        if (embedding.model_id, embedding.model_version) != (model.model_id, model.version):
            got = f"{embedding.model_id or '(empty model_id)'}/{embedding.model_version or '(empty version)'}"
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{kind} {index}: embedding of model {got}, gallery {gallery} expects {model.model_id}/{model.version}",
            )
        if len(embedding.values) != model.dim:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{kind} {index}: embedding has {len(embedding.values)} values, gallery {gallery} expects {model.dim} "
                f"({model.model_id}/{model.version})",
            )
    if not embeddings:
        return np.empty((0, model.dim), dtype=np.float32)
    return np.array([embedding.values for embedding in embeddings], dtype=np.float32)


def _model_info(model: ModelSpec) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(model_id=model.model_id, version=model.version, dim=model.dim)


def _gallery_info(stats: GalleryStats) -> matching_pb2.GalleryInfo:
    return matching_pb2.GalleryInfo(
        name=stats.name,
        templates=stats.templates,
        subjects=stats.subjects,
        threshold=stats.threshold,
        margin=stats.margin,
        model=_model_info(stats.model),
    )


class MatchingServicer(matching_pb2_grpc.MatchingServiceServicer):
    def __init__(self, store: MatchingStore) -> None:
        self.store = store

    def _gallery(self, name: str) -> GalleryStore:
        return self.store.gallery(name)

    def Search(self, request: matching_pb2.SearchRequest, context: grpc.ServicerContext) -> matching_pb2.SearchResponse:
        with _status(context):
            gallery = self._gallery(request.gallery)
            top_k = request.top_k or DEFAULT_TOP_K
            if top_k > MAX_TOP_K:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"top_k {top_k} is above the limit {MAX_TOP_K}")
            if not 0.0 <= request.threshold <= 1.0 or not 0.0 <= request.margin < 1.0:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"threshold {request.threshold} must be in [0, 1] and margin {request.margin} in [0, 1) "
                    "(0 keeps the gallery's)",
                )
            queries = _vectors(request.queries, gallery.model, gallery.policy.name, "query")
            with stage_timer(SERVICE, "search"):
                outcome = gallery.search(
                    queries,
                    top_k=top_k,
                    threshold=request.threshold or None,
                    margin=request.margin or None,
                    subject_ids=list(request.filter.subject_ids),
                    required_tags=list(request.filter.required_tags),
                )
        response = matching_pb2.SearchResponse(threshold=outcome.threshold, margin=outcome.margin)
        plans: list[str] = []
        request_id = current_request_id()
        for index, result in enumerate(outcome.results):
            response.results.append(
                matching_pb2.QueryResult(
                    status=common_pb2.ItemStatus(code=grpc.StatusCode.OK.value[0]),
                    decision=result.decision,
                    candidates=[
                        matching_pb2.SubjectScore(subject_id=c.subject_id, score=c.score, template_id=c.template_id)
                        for c in result.candidates
                    ],
                )
            )
            if result.plan not in plans:
                plans.append(result.plan)
            if result.decision == DECISION_MATCH:
                best = result.candidates[0]
                log.info(
                    "audit.match",
                    audit=True,
                    gallery=gallery.policy.name,
                    subject_id=best.subject_id,
                    template_id=best.template_id,
                    score=round(best.score, 4),
                    threshold=outcome.threshold,
                    query_index=index,
                    request_id=request_id,
                )
        response.plan = ",".join(plans)
        return response

    def Enroll(self, request: matching_pb2.EnrollRequest, context: grpc.ServicerContext) -> matching_pb2.EnrollResponse:
        with _status(context):
            gallery = self._gallery(request.gallery)
            vectors = _vectors([t.embedding for t in request.templates], gallery.model, gallery.policy.name, "template")
            with stage_timer(SERVICE, "enroll"):
                outcome = gallery.enroll(
                    request.subject_id,
                    [t.template_id for t in request.templates],
                    vectors,
                    tags=list(request.tags) or None,
                )
        log.info(
            "matching.enrolled", gallery=gallery.policy.name, subject_id=request.subject_id, templates=outcome.added
        )
        return matching_pb2.EnrollResponse(added=outcome.added, subject_template_count=outcome.subject_template_count)

    def EraseSubject(
        self, request: matching_pb2.EraseSubjectRequest, context: grpc.ServicerContext
    ) -> matching_pb2.EraseSubjectResponse:
        with _status(context):
            if not request.subject_id:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "subject_id is empty")
            removed = self.store.erase_subject(request.gallery, request.subject_id)
        return matching_pb2.EraseSubjectResponse(templates_removed=removed)

    def SetSubjectEligibility(
        self, request: matching_pb2.SetSubjectEligibilityRequest, context: grpc.ServicerContext
    ) -> matching_pb2.SetSubjectEligibilityResponse:
        with _status(context):
            self._gallery(request.gallery).set_tags(request.subject_id, list(request.tags))
        return matching_pb2.SetSubjectEligibilityResponse()

    def ListGalleries(
        self, request: matching_pb2.ListGalleriesRequest, context: grpc.ServicerContext
    ) -> matching_pb2.ListGalleriesResponse:
        return matching_pb2.ListGalleriesResponse(
            galleries=[_gallery_info(gallery.stats()) for gallery in self.store.galleries()]
        )

    def GetStats(
        self, request: matching_pb2.GalleryStatsRequest, context: grpc.ServicerContext
    ) -> matching_pb2.GalleryStats:
        with _status(context):
            stats = self._gallery(request.gallery).stats()
        return matching_pb2.GalleryStats(
            info=_gallery_info(stats),
            memory_bytes=stats.memory_bytes,
            hnsw_m=stats.index.m,
            hnsw_ef_construction=stats.index.ef_construction,
            hnsw_ef_search=stats.index.ef_search,
            search_threads=stats.index.threads,
            log_records_since_snapshot=stats.records_since_snapshot,
            last_snapshot_at=stats.last_snapshot_at,
            search_kernel=stats.search_kernel,
        )

    def Snapshot(
        self, request: matching_pb2.SnapshotRequest, context: grpc.ServicerContext
    ) -> matching_pb2.SnapshotResponse:
        with _status(context):
            names = self.store.snapshot(request.gallery)
        return matching_pb2.SnapshotResponse(galleries=names)


def open_store(config: ServiceConfig) -> MatchingStore:
    """The store configured by the matching settings; startup problems become ConfigError with the fix."""
    get = config.get
    model = ModelSpec(
        get("RETAILFACE_MATCHING_MODEL_ID"),
        get("RETAILFACE_MATCHING_MODEL_VERSION"),
        int(get("RETAILFACE_MATCHING_DIM")),
    )
    try:
        policies = [
            GalleryPolicy(
                "members", get("RETAILFACE_MATCHING_MEMBERS_THRESHOLD"), get("RETAILFACE_MATCHING_MEMBERS_MARGIN")
            ),
            GalleryPolicy(
                "watchlist", get("RETAILFACE_MATCHING_WATCHLIST_THRESHOLD"), get("RETAILFACE_MATCHING_WATCHLIST_MARGIN")
            ),
        ]
        key = load_key(get("RETAILFACE_MATCHING_KEY_FILE"))
        return MatchingStore(
            Path(get("RETAILFACE_MATCHING_DATA_DIR")).expanduser(),
            key,
            policies,
            model,
            IndexParams(
                m=get("RETAILFACE_MATCHING_HNSW_M"),
                ef_construction=get("RETAILFACE_MATCHING_HNSW_EF_CONSTRUCTION"),
                ef_search=get("RETAILFACE_MATCHING_HNSW_EF_SEARCH"),
                threads=get("RETAILFACE_MATCHING_SEARCH_THREADS"),
                initial_capacity=get("RETAILFACE_MATCHING_INITIAL_CAPACITY"),
            ),
            DurabilityPolicy(
                snapshot_every_records=get("RETAILFACE_MATCHING_SNAPSHOT_EVERY"),
                erase_purge_seconds=get("RETAILFACE_MATCHING_ERASE_PURGE_SECONDS"),
                snapshot_on_close=get("RETAILFACE_MATCHING_SNAPSHOT_ON_STOP"),
            ),
            norm_tolerance=get("RETAILFACE_MATCHING_NORM_TOLERANCE"),
        )
    except (KeyConfigError, ModelMismatchError, StoreCorruptedError, DataDirLockedError, ValueError) as error:
        raise ConfigError(str(error)) from error


def build(config: ServiceConfig) -> Registration:
    store = open_store(config)
    admin = frozenset({"admin"})
    return Registration(
        servicer=MatchingServicer(store),
        add_to_server=matching_pb2_grpc.add_MatchingServiceServicer_to_server,
        service_name="retailface.v1.MatchingService",
        method_roles={"Snapshot": admin},
        on_stop=store.close,
    )
