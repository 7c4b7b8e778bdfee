"""One gallery in memory: the native index (``retailface._matcher.Gallery``) and the ids that name its keys.

Every change goes through `apply`, for a record just logged and for a record replayed at start alike, so
a replay rebuilds exactly the index that was acknowledged. Searches run on the native index without a
lock; naming the keys they found takes the short maps lock, and a key whose subject has been erased is
never returned.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog

from retailface import _matcher
from retailface.services.matching.errors import ModelMismatchError, StoreCorruptedError
from retailface.services.matching.params import IndexParams
from retailface.services.matching.results import Candidate, QueryOutcome
from retailface.services.matching.snapshots import PackedIds, PackedSubjects, SnapshotMeta, TemplateChunk
from retailface.services.matching.subjects import SubjectIndex
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1.matching_pb2 import DECISION_MATCH, DECISION_NO_MATCH

log = structlog.get_logger(__name__)

# Plan codes of the native search -> the names SearchResponse.plan reports.
PLAN_NAMES = {int(value): name.lower().replace("_", "-") for name, value in _matcher.Plan.__members__.items()}
EMPTY_FILTER_PLAN = "empty-filter"  # a filter that allows no subject: nothing is searched


class GalleryIndex:
    """Changes come from one writer at a time (the gallery store's write lock); searches from any thread."""

    def __init__(self, name: str, model: ModelIdentity, params: IndexParams, expected_templates: int = 0) -> None:
        self.name = name
        self.model = model
        self.params = params
        # The ids; read them without the maps lock only while holding the store's write lock.
        self.ids = SubjectIndex(name)
        self._maps_lock = threading.Lock()  # guards the ids against concurrent searches
        self._native = _matcher.Gallery(
            dim=model.dim,
            capacity=max(params.initial_capacity, expected_templates + params.initial_capacity),
            M=params.m,
            ef_construction=params.ef_construction,
            ef_search=params.ef_search,
            threads=params.threads,
            hnsw_graph=params.hnsw_graph,
        )

    @property
    def size(self) -> int:
        return int(self._native.size)

    @property
    def memory_bytes(self) -> int:
        return sum(self.memory_parts.values())

    @property
    def memory_parts(self) -> dict[str, int]:
        """Bytes per part (vectors, graph, codes, ids, filters); `memory_bytes` is their sum. "ids" holds the
        index's slot ids and the id table's (subject and template id strings, keys, owners, tag set numbers)."""
        parts = {part: int(size) for part, size in self._native.memory_parts.items()}
        parts["ids"] = parts.get("ids", 0) + self.ids.memory_bytes
        return parts

    def model_record(self) -> list[Any]:
        """The model as records store it."""
        return [self.model.model_id, self.model.version, self.model.dim]

    def check_model(self, stored: Sequence[Any], where: str) -> None:
        model_id, version, dim = stored
        if (model_id, version, int(dim)) != (self.model.model_id, self.model.version, self.model.dim):
            raise ModelMismatchError(
                f"gallery {self.name}: {where} holds templates of {model_id}/{version} (dim {dim}) but the "
                f"service is configured for {self.model.describe()}; point RETAILFACE_MATCHING_DATA_DIR at a new "
                "directory and re-enroll, or configure the matching model"
            )

    # ------------------------------------------------------------ snapshots

    @classmethod
    def from_snapshot(
        cls,
        meta: SnapshotMeta,
        chunks: list[TemplateChunk],
        name: str,
        model: ModelIdentity,
        params: IndexParams,
        where: str,
    ) -> GalleryIndex:
        """A new index holding a snapshot (a replica's start). The cyclic garbage collector waits meanwhile: a
        format-2 snapshot's ids are millions of small objects, which it would walk again and again."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            index = cls(name, model, params, expected_templates=meta.templates)
            index.restore(meta, chunks, where=where)
        finally:
            if was_enabled:
                gc.enable()
        return index

    def restore(self, meta: SnapshotMeta, chunks: list[TemplateChunk], where: str) -> None:
        """Loads a snapshot into this (new) index."""
        self.check_model(meta.model, "the snapshot")
        # The ids' bytes (and a length byte each) when the snapshot has them packed (format 3): the id table then
        # takes them without growing.
        id_bytes = sum(
            len(chunk.template_ids) + int(chunk.template_ids.offsets[-1] - chunk.template_ids.offsets[0])
            for chunk in chunks
            if isinstance(chunk.template_ids, PackedIds)
        )
        if isinstance(meta.subjects, PackedSubjects):
            id_bytes += len(meta.subjects) + meta.subjects.id_bytes()
        self.ids.reserve(len(meta.subjects), meta.templates, id_bytes)
        try:
            self.ids.restore(meta.subjects)
        except ValueError as error:
            raise StoreCorruptedError(f"{where}: {error}") from None
        for chunk in chunks:
            if chunk.vectors is not None:  # a format-1 snapshot
                self._native.add(chunk.template_keys, chunk.subject_keys, chunk.vectors)
            else:
                self._native.restore(chunk.template_keys, chunk.subject_keys, chunk.rows, chunk.scales, chunk.codes)
            try:
                self.ids.bind_many(chunk.template_ids, chunk.template_keys, chunk.subject_keys)
            except KeyError as missing:
                raise StoreCorruptedError(f"{where}: a template of subject key {missing} has no subject") from None
        self.ids.next_subject_key = max(self.ids.next_subject_key, meta.next_subject_key)
        self.ids.next_template_key = max(self.ids.next_template_key, meta.next_template_key)

    def contents(self, sequence: int, created_at: str) -> tuple[SnapshotMeta, TemplateChunk]:
        """Everything a snapshot at log ``sequence`` holds; the caller holds the store's write lock."""
        stored = self._native.stored()
        templates = TemplateChunk(
            self.ids.template_ids_packed(stored["template_ids"]),
            stored["template_ids"],
            stored["subject_ids"],
            scales=stored["scales"],
            rows=stored["rows"],
            codes=stored["codes"],
        )
        meta = SnapshotMeta(
            gallery=self.name,
            model=self.model_record(),
            sequence=sequence,
            templates=len(templates),
            subjects=self.ids.export(),
            next_subject_key=self.ids.next_subject_key,
            next_template_key=self.ids.next_template_key,
            created_at=created_at,
        )
        return meta, templates

    # ------------------------------------------------------------ changes (live and replay)

    def apply(self, header: dict[str, Any], vectors: np.ndarray | None, where: str) -> int:
        """Applies one record; returns the templates it added or removed."""
        op = header.get("op")
        if op == "enroll":
            self.check_model(header["model"], where)
            if vectors is None:
                raise StoreCorruptedError(f"gallery {self.name}: {where} enrolls templates without vectors")
            return self._enroll(header, vectors)
        if op == "erase":
            return self._erase(header["subject"])
        if op == "tags":
            if header["subject"] not in self.ids:
                raise StoreCorruptedError(f"gallery {self.name}: {where} tags a subject that is not enrolled")
            with self._maps_lock:
                self.ids.set_tags(header["subject"], frozenset(header["tags"]))
            return 0
        raise StoreCorruptedError(f"gallery {self.name}: {where} has unknown operation {op!r}")

    def _enroll(self, header: dict[str, Any], vectors: np.ndarray) -> int:
        subject_key = int(header["subject_key"])
        template_keys = np.asarray(header["template_keys"], dtype=np.int64)
        # Index first, ids second: a search in between finds keys it cannot name yet and skips them.
        self._native.add(template_keys, np.full(len(template_keys), subject_key, dtype=np.int64), vectors)
        with self._maps_lock:
            if header["subject"] not in self.ids:
                self.ids.add_subject(header["subject"], subject_key, frozenset(header.get("tags") or ()))
            elif header.get("tags") is not None:
                self.ids.set_tags(header["subject"], frozenset(header["tags"]))
            for template_id, template_key in zip(header["templates"], header["template_keys"], strict=True):
                self.ids.bind_template(header["subject"], template_id, int(template_key))
        return len(template_keys)

    def _erase(self, subject_id: str) -> int:
        # Ids first, index second: from here on no search can name the subject, even one already running.
        with self._maps_lock:
            subject = self.ids.remove(subject_id)
        removed = int(self._native.remove_subject(subject.key))
        if removed != len(subject.templates):
            log.warning(
                "matching.erase.count_mismatch",
                gallery=self.name,
                index_removed=removed,
                templates=len(subject.templates),
            )
        return len(subject.templates)

    # ------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        top_k: int,
        threshold: float,
        margin: float,
        subject_ids: Sequence[str],
        required_tags: Sequence[str],
    ) -> list[QueryOutcome]:
        """Valid queries [n, dim], n > 0; the filter (subject ids AND every tag) is applied inside the index."""
        with self._maps_lock:
            allowed = self.ids.allowed_keys(subject_ids, required_tags)
        if allowed is not None and len(allowed) == 0:
            return [QueryOutcome(DECISION_NO_MATCH, [], EMPTY_FILTER_PLAN) for _ in range(len(queries))]
        found = self._native.search(queries, top_k=top_k, threshold=threshold, margin=margin, allowed_subjects=allowed)
        with self._maps_lock:
            subject_names, template_names = self.ids.names(found.subjects, found.template_ids)
        return [self._outcome(found, row, subject_names, template_names) for row in range(len(queries))]

    def searched_subjects(self, subject_ids: Sequence[str], required_tags: Sequence[str]) -> int:
        """How many subjects a search with this filter compares against (the N of its error rates)."""
        with self._maps_lock:
            allowed = self.ids.allowed_keys(subject_ids, required_tags)
            return len(self.ids) if allowed is None else len(allowed)

    @staticmethod
    def _outcome(found: Any, row: int, subject_ids: list[str | None], template_ids: list[str | None]) -> QueryOutcome:
        """One query's row of a native search, with the names the ids gave its keys (flat, row by row)."""
        candidates = []
        top_dropped = False
        top_k = found.subjects.shape[1]
        for rank in range(top_k):
            if found.subjects[row, rank] < 0:
                break
            subject_id, template_id = subject_ids[row * top_k + rank], template_ids[row * top_k + rank]
            if subject_id is None or template_id is None:
                top_dropped = top_dropped or rank == 0
                continue  # erased (or not yet acknowledged) while this search ran
            candidates.append(Candidate(subject_id, template_id, float(found.scores[row, rank])))
        decision = int(found.decisions[row])  # the native codes are retailface.v1.Decision's
        if top_dropped and decision == DECISION_MATCH:
            decision = DECISION_NO_MATCH  # the decision was about a subject that is gone: fail closed
        plan_code = int(found.plans[row])
        return QueryOutcome(decision, candidates, PLAN_NAMES.get(plan_code, str(plan_code)))

    # ------------------------------------------------------------ reading

    def export_templates(self) -> dict[str, tuple[str, np.ndarray]]:
        """Template id -> (subject id, vector); the caller holds the store's write lock."""
        template_keys, _, vectors = self._native.templates()
        with self._maps_lock:
            template_ids = self.ids.template_ids_of(template_keys)
            owners = self.ids.owners_of(template_ids)
        return {
            template_id: (owner, np.array(vectors[row], dtype=np.float32))
            for row, (template_id, owner) in enumerate(zip(template_ids, owners, strict=True))
        }

    def subject_templates(self, subject_id: str) -> dict[str, int]:
        """Template id -> native key of a subject (empty when unknown)."""
        with self._maps_lock:
            return self.ids.templates(subject_id)

    def subject_tags(self, subject_id: str) -> frozenset[str]:
        with self._maps_lock:
            return self.ids.tags(subject_id)
