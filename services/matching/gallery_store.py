"""One durable named gallery: its index in memory (gallery_index.py), its log and its snapshot on disk.

A change (one whole enroll of a subject, one erase, one tag update) is one log record, written and
fsynced before it is applied and acknowledged: after a kill -9 it is either entirely there or, when the
crash tore its record, entirely absent. A snapshot writes the whole gallery, then the log segments it
covers are deleted. Starting loads the snapshot and replays the log after it. Requests are validated
here, once, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from prometheus_client import Counter

from retailface import _matcher
from retailface.services.matching.calibration import CalibratedDecision, ProbeQuality
from retailface.services.matching.crypto import RecordCipher
from retailface.services.matching.errors import CalibrationMissingError, InvalidRequestError, UnknownSubjectError
from retailface.services.matching.gallery_index import GalleryIndex
from retailface.services.matching.params import (
    DEFAULT_TOP_K,
    DurabilityPolicy,
    GalleryPolicy,
    IndexParams,
    check_search_options,
)
from retailface.services.matching.recordlog import RecordLog, decode_record, encode_record
from retailface.services.matching.results import EnrollOutcome, GalleryStats, QueryOutcome, SearchOutcome
from retailface.services.matching.snapshots import SNAPSHOT_FILE, write_snapshot
from retailface.services.matching.vectors import validate_vectors
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1.matching_pb2 import DECISION_NO_MATCH

SNAPSHOT_FAILURES = Counter("retailface_matching_snapshot_failures_total", "snapshots that failed", ["gallery"])

log = structlog.get_logger(__name__)


class GalleryStore:
    """One named gallery: its index, its log and snapshot, the locks that order changes and snapshots."""

    def __init__(
        self,
        directory: Path,
        policy: GalleryPolicy,
        model: ModelIdentity,
        index: IndexParams,
        cipher: RecordCipher,
        durability: DurabilityPolicy,
        norm_tolerance: float,
        on_write: Callable[[GalleryStore], None] | None = None,
        calibrated: CalibratedDecision | None = None,
    ) -> None:
        self.policy = policy
        self.calibrated = calibrated  # decides probes that come with their quality
        self.model = model
        self.index_params = index
        self.directory = directory
        self._on_write = on_write  # told after every change (the data dir's snapshot worker listens)
        self._cipher = cipher
        self._durability = durability
        self._norm_tolerance = norm_tolerance
        self._snapshot_path = directory / SNAPSHOT_FILE
        self._write_lock = threading.Lock()  # serialises changes: log append + apply
        self._snapshot_lock = threading.Lock()
        self._snapshot_sequence = 0
        self._last_snapshot_at = ""
        self._erase_purge_due: float | None = None
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A snapshot that a crash interrupted before its rename; the previous snapshot is still whole.
        self._snapshot_path.with_name(SNAPSHOT_FILE + ".tmp").unlink(missing_ok=True)
        self._log = RecordLog(directory, cipher, f"log|{policy.name}")
        self._index = self._load()

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def calibration_id(self) -> str:
        return self.calibrated.calibration.calibration_id if self.calibrated is not None else ""

    def _load(self) -> GalleryIndex:
        started = time.monotonic()
        if self._snapshot_path.exists():
            index, meta = GalleryIndex.from_snapshot(
                self._snapshot_path, self._cipher, self.name, self.model, self.index_params
            )
            self._snapshot_sequence = meta.sequence
            self._last_snapshot_at = meta.created_at
        else:
            index = GalleryIndex(self.name, self.model, self.index_params)
        replayed = 0
        for sequence, plaintext in self._log.replay(self._snapshot_sequence):
            header, vectors = decode_record(plaintext, self.model.dim)
            index.apply(header, vectors, where=f"log record {sequence}")
            replayed += 1
        log.info(
            "matching.gallery.loaded",
            gallery=self.name,
            templates=index.size,
            subjects=len(index.ids),
            snapshot_sequence=self._snapshot_sequence,
            log_records_replayed=replayed,
            seconds=round(time.monotonic() - started, 3),
        )
        return index

    # ------------------------------------------------------------ changes

    def _write(self, header: dict[str, Any], vectors: np.ndarray | None = None) -> int:
        """Log (fsync) then apply; the caller holds the write lock."""
        self._log.append(encode_record(header, vectors))
        return self._index.apply(header, vectors, where="a new record")

    def _after_write(self) -> None:
        if self._on_write is not None:
            self._on_write(self)

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
        with self._write_lock:
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
            added = self._write(header, vectors)
            count = self._index.ids.template_count(subject_id)
            self._after_write()
        return EnrollOutcome(added=added, subject_template_count=count)

    def erase_subject(self, subject_id: str) -> int:
        """Removes every template of the subject; returns how many. Unknown subjects remove nothing."""
        with self._write_lock:
            if subject_id not in self._index.ids:
                return 0
            removed = self._write({"op": "erase", "subject": subject_id})
            if self._erase_purge_due is None:
                self._erase_purge_due = time.monotonic() + self._durability.erase_purge_seconds
            self._after_write()
        log.info("matching.subject.erased", gallery=self.name, subject_id=subject_id, templates=removed)
        return removed

    def set_tags(self, subject_id: str, tags: Sequence[str]) -> None:
        with self._write_lock:
            if subject_id not in self._index.ids:
                raise UnknownSubjectError(f"subject {subject_id} is not enrolled in gallery {self.name}")
            self._write({"op": "tags", "subject": subject_id, "tags": sorted(set(tags))})
            self._after_write()

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
        return self._log.next_sequence - 1 - self._snapshot_sequence

    def snapshot_due(self, now: float) -> bool:
        if self.records_since_snapshot >= self._durability.snapshot_every_records:
            return True
        return self._erase_purge_due is not None and now >= self._erase_purge_due

    def snapshot(self) -> bool:
        """Writes the whole gallery and drops the log it covers; False when nothing changed since the last one."""
        try:
            return self._snapshot()
        except Exception:
            SNAPSHOT_FAILURES.labels(self.name).inc()
            raise

    def _snapshot(self) -> bool:
        with self._snapshot_lock:
            started = time.monotonic()
            with self._write_lock:
                sequence = self._log.next_sequence - 1
                if sequence == self._snapshot_sequence and self._snapshot_path.exists():
                    self._erase_purge_due = None
                    return False
                created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                meta, templates = self._index.contents(sequence, created_at)
                self._log.rotate()
                self._erase_purge_due = None
            write_snapshot(self._snapshot_path, self._cipher, meta, templates)
            with self._write_lock:
                self._snapshot_sequence = sequence
                self._last_snapshot_at = meta.created_at
                dropped = self._log.drop_segments_before(sequence + 1)
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
            last_snapshot_at=self._last_snapshot_at,
            search_kernel=str(_matcher.ISA),
        )

    def export_templates(self) -> dict[str, tuple[str, np.ndarray]]:
        """Template id -> (subject id, vector) of the whole gallery, as the index holds it (tools and checks)."""
        with self._write_lock:
            return self._index.export_templates()

    def subject_templates(self, subject_id: str) -> dict[str, int]:
        """Template id -> native key of a subject (empty when unknown)."""
        return self._index.subject_templates(subject_id)

    def subject_tags(self, subject_id: str) -> frozenset[str]:
        return self._index.subject_tags(subject_id)

    def close(self) -> None:
        # The snapshot lock first: a snapshot still running (the worker's) finishes before the log closes.
        with self._snapshot_lock, self._write_lock:
            self._log.close()
