"""gRPC MatchingService: protos in and out of the durable gallery store (store.py).

The store raises `ServiceError`s (errors.py) that the server turns into their status and message, so
no method here maps errors. Every MATCH is logged as ``audit.match``, never with the vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import structlog

from retailface.services.matching.calibration import OperatingPoint, ProbeQuality
from retailface.services.matching.params import DEFAULT_TOP_K
from retailface.services.matching.results import GalleryStats, SearchOutcome
from retailface.services.matching.settings import SETTINGS, open_store
from retailface.services.matching.store import MatchingStore
from retailface.services.matching.vectors import stack_embeddings
from retailface.services.shared.config import ServiceConfig
from retailface.services.shared.logging import current_request_id
from retailface.services.shared.metrics import stage_timer
from retailface.services.shared.server import Registration
from retailface.v1 import common_pb2, matching_pb2, matching_pb2_grpc

# SETTINGS: the server reads a service's settings from the module of its `build`, the settings catalog from here.
__all__ = ["SETTINGS", "MatchingServicer", "build"]

log = structlog.get_logger(__name__)
SERVICE = "matching"


def _gallery_info(stats: GalleryStats) -> matching_pb2.GalleryInfo:
    return matching_pb2.GalleryInfo(
        name=stats.name,
        templates=stats.templates,
        subjects=stats.subjects,
        threshold=stats.threshold,
        margin=stats.margin,
        model=stats.model.to_proto(),
    )


def calibration_to_proto(point: OperatingPoint, calibration_id: str) -> common_pb2.Calibration:
    return common_pb2.Calibration(
        quality_bin=point.quality_bin,
        threshold=point.threshold if point.identifiable else 0.0,
        estimated_fpir=point.estimated_fpir,
        estimated_fnir=point.estimated_fnir,
        frames=point.frames,
        calibration_id=calibration_id,
    )


def probes_from_proto(qualities: Sequence[matching_pb2.ProbeQuality]) -> list[ProbeQuality]:
    return [ProbeQuality(q.inter_eye_px, max(1, q.frames)) for q in qualities]


def _search_response(outcome: SearchOutcome, calibration_id: str) -> matching_pb2.SearchResponse:
    response = matching_pb2.SearchResponse(threshold=outcome.threshold, margin=outcome.margin)
    plans: list[str] = []
    for result in outcome.results:
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
        if result.calibration is not None:
            response.results[-1].calibration.CopyFrom(calibration_to_proto(result.calibration, calibration_id))
        if result.plan not in plans:
            plans.append(result.plan)
    response.plan = ",".join(plans)
    return response


def _audit_matches(gallery: str, outcome: SearchOutcome) -> None:
    request_id = current_request_id()
    for index, result in enumerate(outcome.results):
        if result.decision == matching_pb2.DECISION_MATCH:
            best = result.candidates[0]
            log.info(
                "audit.match",
                audit=True,
                gallery=gallery,
                subject_id=best.subject_id,
                template_id=best.template_id,
                score=round(best.score, 4),
                threshold=result.calibration.threshold if result.calibration else outcome.threshold,
                quality_bin=result.calibration.quality_bin if result.calibration else None,
                estimated_fpir=result.calibration.estimated_fpir if result.calibration else None,
                query_index=index,
                request_id=request_id,
            )


class MatchingServicer(matching_pb2_grpc.MatchingServiceServicer):
    def __init__(self, store: MatchingStore) -> None:
        self.store = store

    def Search(self, request: matching_pb2.SearchRequest, context: grpc.ServicerContext) -> matching_pb2.SearchResponse:
        gallery = self.store.gallery(request.gallery)
        queries = stack_embeddings(request.queries, gallery.model, gallery.name, "query")
        gallery.await_sequence(request.min_sequence)
        with stage_timer(SERVICE, "search"):
            outcome = gallery.search(
                queries,
                top_k=request.top_k or DEFAULT_TOP_K,
                threshold=request.threshold,
                margin=request.margin,
                subject_ids=list(request.filter.subject_ids),
                required_tags=list(request.filter.required_tags),
                probes=probes_from_proto(request.probe_qualities),
            )
        response = _search_response(outcome, gallery.calibration_id)
        _audit_matches(gallery.name, outcome)
        return response

    def Enroll(self, request: matching_pb2.EnrollRequest, context: grpc.ServicerContext) -> matching_pb2.EnrollResponse:
        gallery = self.store.gallery(request.gallery)
        vectors = stack_embeddings([t.embedding for t in request.templates], gallery.model, gallery.name, "template")
        with stage_timer(SERVICE, "enroll"):
            outcome = gallery.enroll(
                request.subject_id, [t.template_id for t in request.templates], vectors, tags=list(request.tags) or None
            )
        log.info("matching.enrolled", gallery=gallery.name, subject_id=request.subject_id, templates=outcome.added)
        return matching_pb2.EnrollResponse(
            added=outcome.added, subject_template_count=outcome.subject_template_count, sequence=outcome.sequence
        )

    def EraseSubject(
        self, request: matching_pb2.EraseSubjectRequest, context: grpc.ServicerContext
    ) -> matching_pb2.EraseSubjectResponse:
        removed, sequences = self.store.erase_subject(request.gallery, request.subject_id)
        return matching_pb2.EraseSubjectResponse(templates_removed=removed, sequences=sequences)

    def SetSubjectEligibility(
        self, request: matching_pb2.SetSubjectEligibilityRequest, context: grpc.ServicerContext
    ) -> matching_pb2.SetSubjectEligibilityResponse:
        sequence = self.store.gallery(request.gallery).set_tags(request.subject_id, list(request.tags))
        return matching_pb2.SetSubjectEligibilityResponse(sequence=sequence)

    def ListGalleries(
        self, request: matching_pb2.ListGalleriesRequest, context: grpc.ServicerContext
    ) -> matching_pb2.ListGalleriesResponse:
        return matching_pb2.ListGalleriesResponse(
            galleries=[_gallery_info(gallery.stats()) for gallery in self.store.galleries()]
        )

    def GetStats(
        self, request: matching_pb2.GalleryStatsRequest, context: grpc.ServicerContext
    ) -> matching_pb2.GalleryStats:
        stats = self.store.gallery(request.gallery).stats()
        return matching_pb2.GalleryStats(
            info=_gallery_info(stats),
            memory_bytes=stats.memory_bytes,
            memory_parts=stats.memory_parts,
            hnsw_m=stats.index.m,
            hnsw_ef_construction=stats.index.ef_construction,
            hnsw_ef_search=stats.index.ef_search,
            search_threads=stats.index.threads,
            log_records_since_snapshot=stats.records_since_snapshot,
            last_snapshot_at=stats.last_snapshot_at,
            search_kernel=stats.search_kernel,
            applied_sequence=stats.applied_sequence,
        )

    def Snapshot(
        self, request: matching_pb2.SnapshotRequest, context: grpc.ServicerContext
    ) -> matching_pb2.SnapshotResponse:
        return matching_pb2.SnapshotResponse(galleries=self.store.snapshot(request.gallery))


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
