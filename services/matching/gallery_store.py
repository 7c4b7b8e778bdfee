"""One durable named gallery: its index in memory (gallery_index.py), its log and snapshot in a journal.

A change (one whole enroll of a subject, one erase, one tag update) is one log record, made durable
before it is applied and acknowledged: after a kill -9 it is either entirely there or entirely absent.
The journal (journal.py) is the data dir's files for one replica, or PostgreSQL for several
(pgjournal.py): there, a write first applies what other replicas wrote before it, so every replica
applies the same changes in the same order, and `catch_up` applies the others' changes as they come.
Every change has a sequence number: a search can ask for a replica that holds a given change
(`await_sequence`, read-your-writes). A snapshot writes the whole gallery, then the log it covers is
deleted. Starting loads the snapshot and replays the log after it. Requests are validated here, once,
before anything is written.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import structlog
from prometheus_client import Counter

from retailface import _matcher
from retailface.services.matching.calibration import CalibratedDecision, ProbeQuality
from retailface.services.matching.errors import (
    CalibrationMissingError,
    InvalidRequestError,
    UnknownSubjectError,
)
from retailface.services.matching.gallery_index import GalleryIndex
from retailface.services.matching.journal import Journal
from retailface.services.matching.params import (
    DEFAULT_TOP_K,
    DurabilityPolicy,
    GalleryPolicy,
    IndexParams,
    ReplicationPolicy,
    check_search_options,
)
from retailface.services.matching.replica import GalleryReplica, Record
from retailface.services.matching.results import EnrollOutcome, GalleryStats, QueryOutcome, SearchOutcome
from retailface.services.matching.vectors import validate_vectors
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1.matching_pb2 import DECISION_NO_MATCH

SNAPSHOT_FAILURES = Counter("retailface_matching_snapshot_failures_total", "snapshots that failed", ["gallery"])

log = structlog.get_logger(__name__)


class GalleryStore:
    """One named gallery: its index, its journal, the locks that order changes and snapshots."""

    def __init__(
        self,
        journal: Journal,
        policy: GalleryPolicy,
        model: ModelIdentity,
        index: IndexParams,
        durability: DurabilityPolicy,
        norm_tolerance: float,
        on_write: Callable[[GalleryStore], None] | None = None,
        calibrated: CalibratedDecision | None = None,
        replication: ReplicationPolicy | None = None,
    ) -> None:
        self.policy = policy
        self.calibrated = calibrated  # decides probes that come with their quality
        self.model = model
        self.index_params = index
        self._journal = journal
        self._on_write = on_write  # told after every change (the store's snapshot worker listens)
        self._durability = durability
        self._norm_tolerance = norm_tolerance
        self._snapshot_lock = threading.Lock()
        self._erase_purge_due: float | None = None
        self._replica = GalleryReplica(
            journal, policy.name, model, index, replication or ReplicationPolicy(), self._schedule_purge
        )
        self._last_snapshot_at = self._replica.snapshot_created_at

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def _index(self) -> GalleryIndex:
        return self._replica.index

    @property
    def applied_sequence(self) -> int:
        """The last change of the gallery's log this replica holds (read-your-writes: SearchRequest.min_sequence)."""
        return self._replica.applied

    @property
    def calibration_id(self) -> str:
        return self.calibrated.calibration.calibration_id if self.calibrated is not None else ""

    # ------------------------------------------------------------ changes

    def _schedule_purge(self) -> None:
        """An erase was applied (here or by another replica): a snapshot drops it from the log in time."""
        if self._erase_purge_due is None:
            self._erase_purge_due = time.monotonic() + self._durability.erase_purge_seconds

    def _change(self, build: Callable[[], Record | None]) -> tuple[int, int]:
        count, sequence = self._replica.change(build)
        if self._on_write is not None:
            self._on_write(self)
        return count, sequence

    def catch_up(self) -> int:
        """Applies the changes other replicas made since this one's position; returns how many."""
        applied = self._replica.catch_up()
        if applied and self._on_write is not None:
            self._on_write(self)
        return applied

    def await_sequence(self, minimum: int) -> None:
        """Returns once this replica holds change `minimum`; ReplicaBehindError (UNAVAILABLE) after a short wait."""
        self._replica.await_sequence(minimum)

    def enroll(
        self, subject_id: str, template_ids: Sequence[str], vectors: np.ndarray, tags: Sequence[str] | None = None
    ) -> EnrollOutcome:
        """Adds (or replaces, for a known template id) templates of one subject, all or nothing.

        ``tags`` replace the subject's tags when given and non-empty.
        """
        if not subject_id:
            raise InvalidRequestError("subject_id is empty")
        if not template_ids:
            raise InvalidRequestError("no templates to enroll; use SetSubjectEligibility to change only tags")
        if any(not template_id for template_id in template_ids):
            raise InvalidRequestError("a template_id is empty")
        if len(set(template_ids)) != len(template_ids):
            raise InvalidRequestError("template ids repeat within the request")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(template_ids):
            raise InvalidRequestError(f"{len(template_ids)} template ids but vectors of shape {vectors.shape}")
        validate_vectors(vectors, self.model.dim, self._norm_tolerance, kind="template")

        def record() -> Record:
            subject_key, template_keys = self._index.ids.keys_for_enroll(subject_id, template_ids)
            header = {
                "op": "enroll",
                "subject": subject_id,
                "subject_key": subject_key,
                "tags": sorted(set(tags)) if tags else None,
                "templates": list(template_ids),
                "template_keys": template_keys,
                "model": self._index.model_record(),
            }
            return header, vectors

        added, sequence = self._change(record)
        return EnrollOutcome(
            added=added, subject_template_count=self._index.ids.template_count(subject_id), sequence=sequence
        )

    def erase_subject(self, subject_id: str) -> tuple[int, int]:
        """Removes every template of the subject; returns (how many, the sequence that holds the erasure).

        An unknown subject removes nothing (the sequence is then this replica's position, which holds it).
        """

        def record() -> Record | None:
            if subject_id not in self._index.ids:
                return None
            return {"op": "erase", "subject": subject_id}, None

        removed, sequence = self._change(record)
        if removed:
            log.info("matching.subject.erased", gallery=self.name, subject_id=subject_id, templates=removed)
        return removed, sequence

    def set_tags(self, subject_id: str, tags: Sequence[str]) -> int:
        """Replaces the subject's tags; returns the change's sequence."""

        def record() -> Record:
            if subject_id not in self._index.ids:
                raise UnknownSubjectError(f"subject {subject_id} is not enrolled in gallery {self.name}")
            return {"op": "tags", "subject": subject_id, "tags": sorted(set(tags))}, None

        return self._change(record)[1]

    # ------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        top_k: int = DEFAULT_TOP_K,
        threshold: float | None = None,
        margin: float | None = None,
        subject_ids: Sequence[str] = (),
        required_tags: Sequence[str] = (),
        probes: Sequence[ProbeQuality] = (),
    ) -> SearchOutcome:
        """Searches queries [n, dim]; the filter (subject ids AND every required tag) is applied inside the index.

        A threshold or margin of None or 0 keeps the gallery's. With `probes` (one per query), each
        query is decided at its calibrated operating point for the searched size instead.
        """
        check_search_options(top_k, threshold or 0.0, margin or 0.0)
        if probes and threshold:
            raise InvalidRequestError("threshold must be 0 when probe qualities are given: the calibration sets it")
        threshold = threshold if threshold else self.policy.threshold
        margin = margin if margin else self.policy.margin
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        validate_vectors(queries, self.model.dim, self._norm_tolerance)
        if len(queries) == 0:
            return SearchOutcome(threshold, margin, [])
        if probes:
            return self._calibrated_search(queries, probes, top_k, threshold, margin, subject_ids, required_tags)
        results = self._index.search(queries, top_k, threshold, margin, subject_ids, required_tags)
        return SearchOutcome(threshold, margin, results)

    def _calibrated_search(
        self,
        queries: np.ndarray,
        probes: Sequence[ProbeQuality],
        top_k: int,
        threshold: float,
        margin: float,
        subject_ids: Sequence[str],
        required_tags: Sequence[str],
    ) -> SearchOutcome:
        """Each query at the threshold its quality needs at this size; one native search per threshold."""
        if self.calibrated is None:
            raise CalibrationMissingError(f"gallery {self.name} has no calibration to decide probes by quality")
        if len(probes) != len(queries):
            raise InvalidRequestError(f"{len(probes)} probe qualities for {len(queries)} queries; send one per query")
        points = self.calibrated.points(probes, self._index.searched_subjects(subject_ids, required_tags))
        results: list[QueryOutcome | None] = [None] * len(queries)
        for applied in sorted({min(point.threshold, 1.0) for point in points}):
            rows = [row for row, point in enumerate(points) if min(point.threshold, 1.0) == applied]
            found = self._index.search(queries[rows], top_k, applied, margin, subject_ids, required_tags)
            for row, outcome in zip(rows, found, strict=True):
                point = points[row]
                decision = outcome.decision if point.identifiable else DECISION_NO_MATCH
                results[row] = QueryOutcome(decision, outcome.candidates, outcome.plan, point)
        return SearchOutcome(threshold, margin, [result for result in results if result is not None])

    # ------------------------------------------------------------ snapshot & stats

    @property
    def records_since_snapshot(self) -> int:
        return self._replica.applied - (self._journal.snapshot_sequence() or 0)

    def refresh_snapshot_sequence(self) -> None:
        """Learns of a snapshot another replica wrote (it resets what is due here)."""
        newest = self._journal.refresh_snapshot_sequence()
        if newest is not None and newest >= self._replica.applied:
            self._erase_purge_due = None

    def snapshot_due(self, now: float) -> bool:
        if self.records_since_snapshot >= self._durability.snapshot_every_records:
            return True
        return self._erase_purge_due is not None and now >= self._erase_purge_due

    def snapshot(self) -> bool:
        """Writes the whole gallery and drops the log it covers; False when nothing changed since the last one
        (or, with replicas, when another replica wrote it)."""
        try:
            return self._snapshot()
        except Exception:
            SNAPSHOT_FAILURES.labels(self.name).inc()
            raise

    def _snapshot(self) -> bool:
        with self._snapshot_lock:
            started = time.monotonic()
            newest = self._journal.refresh_snapshot_sequence()
            with self._replica.write_lock:
                sequence = self._replica.applied
                if newest is not None and sequence <= newest:
                    self._erase_purge_due = None
                    return False
                created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                meta, templates = self._index.contents(sequence, created_at)
                self._journal.prepare_snapshot()
                self._erase_purge_due = None
            written = self._journal.write_snapshot(meta, templates)
            if not written:
                return False
            with self._replica.write_lock:
                self._last_snapshot_at = meta.created_at
                dropped = self._journal.finish_snapshot(sequence)
            log.info(
                "matching.gallery.snapshot",
                gallery=self.name,
                sequence=sequence,
                templates=meta.templates,
                log_segments_dropped=dropped,
                seconds=round(time.monotonic() - started, 3),
            )
            return True

    def stats(self) -> GalleryStats:
        return GalleryStats(
            name=self.name,
            templates=self._index.size,
            subjects=len(self._index.ids),
            threshold=self.policy.threshold,
            margin=self.policy.margin,
            model=self.model,
            memory_bytes=self._index.memory_bytes,
            memory_parts=self._index.memory_parts,
            index=self.index_params,
            records_since_snapshot=self.records_since_snapshot,
            applied_sequence=self._replica.applied,
            last_snapshot_at=self._last_snapshot_at,
            search_kernel=str(_matcher.ISA),
        )

    def export_templates(self) -> dict[str, tuple[str, np.ndarray]]:
        """Template id -> (subject id, vector) of the whole gallery, as the index holds it (tools and checks)."""
        with self._replica.write_lock:
            return self._index.export_templates()

    def subject_templates(self, subject_id: str) -> dict[str, int]:
        """Template id -> native key of a subject (empty when unknown)."""
        return self._index.subject_templates(subject_id)

    def subject_tags(self, subject_id: str) -> frozenset[str]:
        return self._index.subject_tags(subject_id)

    def close(self) -> None:
        # The snapshot lock first: a snapshot still running (the worker's) finishes before the log closes.
        with self._snapshot_lock, self._replica.write_lock:
            self._journal.close()
