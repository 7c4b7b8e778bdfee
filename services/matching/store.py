"""Durable named galleries over the native matcher (``retailface._matcher.Gallery``).

Each gallery (``members``, ``watchlist``...) keeps its templates in the native in-memory index and its
history on disk, in its own folder of the data dir::

    DATA_DIR/.lock                     one service per data dir (flock)
    DATA_DIR/key-check.bin             proves at start that the configured key is this data dir's key
    DATA_DIR/<gallery>/snapshot.bin    the whole gallery at some log sequence S (encrypted records)
    DATA_DIR/<gallery>/wal-<n>.log     every change after S, one encrypted record per change

A change (one whole enroll of a subject, one erase, one tag update) is one log record, written and
fsynced before it is applied and acknowledged: after a kill -9 it is either entirely there or, when the
crash tore its record, entirely absent. Snapshots are written to a temporary file, fsynced, renamed over
the old one and the directory fsynced; then the log segments they cover are deleted. Starting loads the
snapshot and replays the log after it.

Subjects and templates have string ids in the API and int64 keys in the native index; the keys are
allocated here, written in the records, and never reused, so a replay rebuilds exactly the same index.
Searches read the index without taking the write lock; mapping keys back to ids takes a short lock, and
a key whose subject has been erased is never returned.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from prometheus_client import Counter

from retailface.services.matching.crypto import (
    DecryptionError,
    KeyConfigError,
    RecordCipher,
    scan_frames,
)
from retailface.services.matching.recordlog import LogCorruptedError, RecordLog, fsync_dir

SNAPSHOT_FAILURES = Counter("retailface_matching_snapshot_failures_total", "snapshots that failed", ["gallery"])

log = structlog.get_logger(__name__)

SNAPSHOT_FILE = "snapshot.bin"
KEY_CHECK_FILE = "key-check.bin"
KEY_CHECK_TEXT = b"retailface matching data dir key check v1"
SNAPSHOT_CHUNK = 16384  # templates per snapshot record
FILTER_CACHE_ENTRIES = 64
GALLERY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Decision values of the native Gallery; the same numbers as the proto's Decision enum.
DECISION_MATCH = 1
DECISION_NO_MATCH = 2
DECISION_AMBIGUOUS = 3


# ---------------------------------------------------------------- errors


class MatchingError(Exception):
    """Base of the errors a caller can fix; the message says what to change."""


class UnknownGalleryError(MatchingError):
    pass


class UnknownSubjectError(MatchingError):
    pass


class TemplateConflictError(MatchingError):
    """A template id that already belongs to another subject of the gallery."""


class InvalidRequestError(MatchingError):
    pass


class InvalidVectorError(MatchingError):
    """NaN/Inf or not L2-normalised; ``index`` is the vector's position in the request."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class ModelMismatchError(MatchingError):
    """A vector of another model, version or dimension than the gallery's."""


class StoreCorruptedError(RuntimeError):
    """The data dir cannot be loaded without losing acknowledged data."""


class DataDirLockedError(RuntimeError):
    pass


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    version: str
    dim: int

    def describe(self) -> str:
        return f"{self.model_id}/{self.version} (dim {self.dim})"


@dataclass(frozen=True)
class IndexParams:
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    threads: int = 2
    initial_capacity: int = 1024


@dataclass(frozen=True)
class GalleryPolicy:
    name: str
    threshold: float
    margin: float

    def __post_init__(self) -> None:
        if not GALLERY_NAME.match(self.name):
            raise ValueError(f"gallery name {self.name!r} must match {GALLERY_NAME.pattern}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"gallery {self.name}: threshold {self.threshold} must be in (0, 1]")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"gallery {self.name}: margin {self.margin} must be in [0, 1)")


@dataclass(frozen=True)
class DurabilityPolicy:
    snapshot_every_records: int = 10_000  # a snapshot bounds the replay time after a restart
    erase_purge_seconds: float = 60.0  # erased templates leave the log (by a snapshot) within this delay
    snapshot_on_close: bool = True


# ---------------------------------------------------------------- vectors


def validate_vectors(vectors: np.ndarray, dim: int, norm_tolerance: float, kind: str = "query") -> None:
    """Raises the error that names the first bad vector: wrong dimension, NaN/Inf, or not unit length."""
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        got = vectors.shape[1] if vectors.ndim == 2 else vectors.shape
        raise ModelMismatchError(f"{kind} vectors have dimension {got}, the gallery expects {dim}")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise InvalidVectorError(f"{kind} {index}: the vector contains NaN or Inf", index)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    bad = np.abs(norms - 1.0) > norm_tolerance
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise InvalidVectorError(
            f"{kind} {index}: the vector has L2 norm {norms[index]:.6f}; send L2-normalised embeddings "
            f"(norm 1 within {norm_tolerance})",
            index,
        )


# ---------------------------------------------------------------- records


def encode_record(header: dict[str, Any], vectors: np.ndarray | None = None) -> bytes:
    meta = json.dumps(header, separators=(",", ":")).encode()
    payload = b"" if vectors is None else np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    return struct.pack("<I", len(meta)) + meta + payload


def decode_record(plaintext: bytes, dim: int) -> tuple[dict[str, Any], np.ndarray | None]:
    (meta_len,) = struct.unpack_from("<I", plaintext)
    header = json.loads(plaintext[4 : 4 + meta_len])
    rest = plaintext[4 + meta_len :]
    if not rest:
        return header, None
    return header, np.frombuffer(rest, dtype="<f4").reshape(-1, dim).astype(np.float32)


def write_atomically(path: Path, data: Iterable[bytes]) -> None:
    """temp file, fsync, rename over ``path``, fsync the directory: the file is either old or new, never half."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in data:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_dir(path.parent)


def read_sealed_file(path: Path, cipher: RecordCipher, context: str) -> list[bytes]:
    """Every record of a file written by ``write_atomically``; any damage is corruption, not a torn write."""
    scan = scan_frames(path.read_bytes())
    if scan.torn_bytes:
        raise StoreCorruptedError(f"{path} is damaged at byte {scan.valid_end}; restore the data dir from a backup")
    return [cipher.open(context, index, frame.body) for index, frame in enumerate(scan.frames)]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Candidate:
    subject_id: str
    template_id: str
    score: float


@dataclass(frozen=True)
class QueryOutcome:
    decision: int
    candidates: list[Candidate]
    plan: str


@dataclass(frozen=True)
class SearchOutcome:
    threshold: float
    margin: float
    results: list[QueryOutcome]


@dataclass(frozen=True)
class EnrollOutcome:
    added: int
    subject_template_count: int


@dataclass(frozen=True)
class GalleryStats:
    name: str
    templates: int
    subjects: int
    threshold: float
    margin: float
    model: ModelSpec
    memory_bytes: int
    index: IndexParams
    records_since_snapshot: int
    last_snapshot_at: str  # ISO 8601 UTC, empty before the first snapshot
    search_kernel: str  # "avx512" or "x86-64-v3": the native scan's code path on this CPU


@dataclass
class _Subject:
    key: int
    tags: frozenset[str]
    templates: dict[str, int] = field(default_factory=dict)  # template id -> template key


def _plan_names() -> dict[int, str]:
    """Plan codes of the native search -> the names SearchResponse.plan reports."""
    from retailface import _matcher

    plan_enum = getattr(_matcher, "Plan", None)
    if plan_enum is None:
        return {}
    return {int(value): name.lower().replace("_", "-") for name, value in plan_enum.__members__.items()}


def _search_kernel() -> str:
    from retailface import _matcher

    return str(_matcher.ISA)


# ---------------------------------------------------------------- one gallery


class GalleryStore:
    """One named gallery: the native index, its id maps and tags, its log and snapshot."""

    def __init__(
        self,
        directory: Path,
        policy: GalleryPolicy,
        model: ModelSpec,
        index: IndexParams,
        cipher: RecordCipher,
        durability: DurabilityPolicy,
        norm_tolerance: float,
        on_write: Callable[[GalleryStore], None] | None = None,
    ) -> None:
        self.policy = policy
        self._on_write = on_write  # told after every change (the data dir's snapshot thread listens)
        self.model = model
        self.index_params = index
        self.directory = directory
        self._cipher = cipher
        self._durability = durability
        self._norm_tolerance = norm_tolerance
        self._snapshot_path = directory / SNAPSHOT_FILE
        self._write_lock = threading.Lock()  # serialises changes: log append + apply
        self._maps_lock = threading.Lock()  # guards the id maps against concurrent searches
        self._snapshot_lock = threading.Lock()
        self._subjects: dict[str, _Subject] = {}
        self._subject_ids_by_key: dict[int, str] = {}
        self._template_ids_by_key: dict[int, str] = {}
        self._template_owner: dict[str, str] = {}
        self._subjects_by_tag: dict[str, set[int]] = {}
        self._next_subject_key = 1
        self._next_template_key = 1
        self._maps_version = 0
        self._filter_cache: dict[frozenset[str], tuple[int, np.ndarray]] = {}
        self._snapshot_sequence = 0
        self._last_snapshot_at = ""
        self._erase_purge_due: float | None = None
        self._plan_names = _plan_names()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A snapshot that a crash interrupted before its rename; the previous snapshot is still whole.
        self._snapshot_path.with_name(SNAPSHOT_FILE + ".tmp").unlink(missing_ok=True)
        self._log = RecordLog(directory, cipher, f"log|{policy.name}")
        self._gallery = self._load()

    # ------------------------------------------------------------ loading

    def _new_gallery(self, expected_templates: int) -> Any:
        from retailface._matcher import Gallery

        params = self.index_params
        return Gallery(
            dim=self.model.dim,
            capacity=max(params.initial_capacity, expected_templates + params.initial_capacity),
            M=params.m,
            ef_construction=params.ef_construction,
            ef_search=params.ef_search,
            threads=params.threads,
        )

    def _check_model(self, stored: Sequence[Any], where: str) -> None:
        model_id, version, dim = stored
        if (model_id, version, int(dim)) != (self.model.model_id, self.model.version, self.model.dim):
            raise ModelMismatchError(
                f"gallery {self.policy.name}: {where} holds templates of {model_id}/{version} (dim {dim}) but the "
                f"service is configured for {self.model.describe()}; point RETAILFACE_MATCHING_DATA_DIR at a new "
                "directory and re-enroll, or configure the matching model"
            )

    def _model_tuple(self) -> list[Any]:
        return [self.model.model_id, self.model.version, self.model.dim]

    def _load(self) -> Any:
        started = time.monotonic()
        try:
            gallery = self._load_snapshot() if self._snapshot_path.exists() else self._new_gallery(0)
            self._gallery = gallery
            replayed = 0
            for sequence, plaintext in self._log.replay(self._snapshot_sequence):
                header, vectors = decode_record(plaintext, self.model.dim)
                self._apply(header, vectors, where=f"log record {sequence}")
                replayed += 1
        except DecryptionError as exc:
            raise StoreCorruptedError(str(exc)) from exc
        except LogCorruptedError as exc:
            raise StoreCorruptedError(str(exc)) from exc
        log.info(
            "matching.gallery.loaded",
            gallery=self.policy.name,
            templates=int(gallery.size),
            subjects=len(self._subjects),
            snapshot_sequence=self._snapshot_sequence,
            log_records_replayed=replayed,
            seconds=round(time.monotonic() - started, 3),
        )
        return gallery

    def _load_snapshot(self) -> Any:
        records = read_sealed_file(self._snapshot_path, self._cipher, f"snapshot|{self.policy.name}")
        if len(records) < 2:
            raise StoreCorruptedError(f"{self._snapshot_path} is incomplete; restore the data dir from a backup")
        meta, _ = decode_record(records[0], self.model.dim)
        end, _ = decode_record(records[-1], self.model.dim)
        if meta.get("gallery") != self.policy.name or not end.get("end"):
            raise StoreCorruptedError(f"{self._snapshot_path} is not a complete snapshot of {self.policy.name}")
        self._check_model(meta["model"], "the snapshot")
        gallery = self._new_gallery(int(meta["templates"]))
        self._gallery = gallery
        for subject_id, key, tags in meta["subjects"]:
            self._add_subject(subject_id, int(key), frozenset(tags))
        loaded = 0
        for plaintext in records[1:-1]:
            chunk, vectors = decode_record(plaintext, self.model.dim)
            assert vectors is not None
            template_keys = np.asarray(chunk["template_keys"], dtype=np.int64)
            subject_keys = np.asarray(chunk["subject_keys"], dtype=np.int64)
            gallery.add(template_keys, subject_keys, vectors)
            for template_id, template_key, subject_key in zip(
                chunk["template_ids"], chunk["template_keys"], chunk["subject_keys"], strict=True
            ):
                self._bind_template(self._subject_ids_by_key[subject_key], template_id, template_key)
            loaded += len(template_keys)
        if loaded != int(meta["templates"]) or loaded != int(end["templates"]):
            raise StoreCorruptedError(f"{self._snapshot_path}: {loaded} templates read, {meta['templates']} expected")
        self._next_subject_key = max(self._next_subject_key, int(meta["next_subject_key"]))
        self._next_template_key = max(self._next_template_key, int(meta["next_template_key"]))
        self._snapshot_sequence = int(meta["sequence"])
        self._last_snapshot_at = str(meta["created_at"])
        return gallery

    # ------------------------------------------------------------ applying changes (live and replay)

    def _add_subject(self, subject_id: str, key: int, tags: frozenset[str]) -> _Subject:
        subject = _Subject(key, tags)
        self._subjects[subject_id] = subject
        self._subject_ids_by_key[key] = subject_id
        for tag in tags:
            self._subjects_by_tag.setdefault(tag, set()).add(key)
        self._next_subject_key = max(self._next_subject_key, key + 1)
        self._maps_version += 1
        return subject

    def _bind_template(self, subject_id: str, template_id: str, template_key: int) -> None:
        self._subjects[subject_id].templates[template_id] = template_key
        self._template_ids_by_key[template_key] = template_id
        self._template_owner[template_id] = subject_id
        self._next_template_key = max(self._next_template_key, template_key + 1)

    def _set_tags(self, subject: _Subject, tags: frozenset[str]) -> None:
        for tag in subject.tags - tags:
            holders = self._subjects_by_tag.get(tag)
            if holders is not None:
                holders.discard(subject.key)
                if not holders:
                    del self._subjects_by_tag[tag]
        for tag in tags - subject.tags:
            self._subjects_by_tag.setdefault(tag, set()).add(subject.key)
        subject.tags = tags
        self._maps_version += 1

    def _apply(self, header: dict[str, Any], vectors: np.ndarray | None, where: str) -> int:
        op = header.get("op")
        if op == "enroll":
            self._check_model(header["model"], where)
            assert vectors is not None
            return self._apply_enroll(header, vectors)
        if op == "erase":
            return self._apply_erase(header["subject"])
        if op == "tags":
            with self._maps_lock:
                self._set_tags(self._subjects[header["subject"]], frozenset(header["tags"]))
            return 0
        raise StoreCorruptedError(f"gallery {self.policy.name}: {where} has unknown operation {op!r}")

    def _apply_enroll(self, header: dict[str, Any], vectors: np.ndarray) -> int:
        subject_key = int(header["subject_key"])
        template_keys = np.asarray(header["template_keys"], dtype=np.int64)
        # Index first, ids second: a search in between finds keys it cannot name yet and skips them.
        self._gallery.add(template_keys, np.full(len(template_keys), subject_key, dtype=np.int64), vectors)
        with self._maps_lock:
            subject = self._subjects.get(header["subject"])
            if subject is None:
                subject = self._add_subject(header["subject"], subject_key, frozenset(header.get("tags") or ()))
            elif header.get("tags") is not None:
                self._set_tags(subject, frozenset(header["tags"]))
            for template_id, template_key in zip(header["templates"], header["template_keys"], strict=True):
                self._bind_template(header["subject"], template_id, int(template_key))
        return len(template_keys)

    def _apply_erase(self, subject_id: str) -> int:
        # Ids first, index second: from here on no search can name the subject, even one already running.
        with self._maps_lock:
            subject = self._subjects.pop(subject_id)
            del self._subject_ids_by_key[subject.key]
            for template_id, template_key in subject.templates.items():
                del self._template_ids_by_key[template_key]
                del self._template_owner[template_id]
            self._set_tags(subject, frozenset())
        removed = int(self._gallery.remove_subject(subject.key))
        if removed != len(subject.templates):
            log.warning(
                "matching.erase.count_mismatch",
                gallery=self.policy.name,
                index_removed=removed,
                templates=len(subject.templates),
            )
        return len(subject.templates)

    # ------------------------------------------------------------ changes

    def _write(self, header: dict[str, Any], vectors: np.ndarray | None = None) -> int:
        """Log (fsync) then apply; the caller holds the write lock."""
        self._log.append(encode_record(header, vectors))
        return self._apply(header, vectors, where="a new record")

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
            subject = self._subjects.get(subject_id)
            for template_id in template_ids:
                owner = self._template_owner.get(template_id)
                if owner is not None and owner != subject_id:
                    raise TemplateConflictError(
                        f"template id {template_id} already belongs to another subject of gallery {self.policy.name}"
                    )
            subject_key = subject.key if subject is not None else self._next_subject_key
            template_keys = []
            next_key = self._next_template_key
            for template_id in template_ids:
                existing = subject.templates.get(template_id) if subject is not None else None
                if existing is None:
                    existing, next_key = next_key, next_key + 1
                template_keys.append(existing)
            header = {
                "op": "enroll",
                "subject": subject_id,
                "subject_key": subject_key,
                "tags": sorted(set(tags)) if tags else None,
                "templates": list(template_ids),
                "template_keys": template_keys,
                "model": self._model_tuple(),
            }
            added = self._write(header, vectors)
            count = len(self._subjects[subject_id].templates)
            self._after_write()
        return EnrollOutcome(added=added, subject_template_count=count)

    def erase_subject(self, subject_id: str) -> int:
        """Removes every template of the subject; returns how many. Unknown subjects remove nothing."""
        with self._write_lock:
            if subject_id not in self._subjects:
                return 0
            removed = self._write({"op": "erase", "subject": subject_id})
            if self._erase_purge_due is None:
                self._erase_purge_due = time.monotonic() + self._durability.erase_purge_seconds
            self._after_write()
        log.info("matching.subject.erased", gallery=self.policy.name, subject_id=subject_id, templates=removed)
        return removed

    def set_tags(self, subject_id: str, tags: Sequence[str]) -> None:
        with self._write_lock:
            if subject_id not in self._subjects:
                raise UnknownSubjectError(f"subject {subject_id} is not enrolled in gallery {self.policy.name}")
            self._write({"op": "tags", "subject": subject_id, "tags": sorted(set(tags))})
            self._after_write()

    def _after_write(self) -> None:
        if self._on_write is not None:
            self._on_write(self)

    # ------------------------------------------------------------ search

    def _allowed_keys(self, subject_ids: Sequence[str], required_tags: Sequence[str]) -> np.ndarray | None:
        """The subject keys a filter allows, or None for no filter; the caller holds the maps lock."""
        if not subject_ids and not required_tags:
            return None
        tags = frozenset(required_tags)
        if not subject_ids:
            cached = self._filter_cache.get(tags)
            if cached is not None and cached[0] == self._maps_version:
                return cached[1]
        allowed: set[int] | None = None
        for tag in sorted(tags, key=lambda name: len(self._subjects_by_tag.get(name, ()))):
            holders = self._subjects_by_tag.get(tag, set())
            allowed = set(holders) if allowed is None else allowed & holders
        if subject_ids:
            by_id = {self._subjects[s].key for s in subject_ids if s in self._subjects}
            allowed = by_id if allowed is None else allowed & by_id
        assert allowed is not None
        keys = np.sort(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
        if not subject_ids:
            if len(self._filter_cache) >= FILTER_CACHE_ENTRIES:
                self._filter_cache.clear()
            self._filter_cache[tags] = (self._maps_version, keys)
        return keys

    def search(
        self,
        queries: np.ndarray,
        top_k: int = 5,
        threshold: float | None = None,
        margin: float | None = None,
        subject_ids: Sequence[str] = (),
        required_tags: Sequence[str] = (),
    ) -> SearchOutcome:
        """Searches queries [n, dim]; the filter (subject ids AND every required tag) is applied inside the index."""
        threshold = threshold if threshold else self.policy.threshold
        margin = margin if margin else self.policy.margin
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        validate_vectors(queries, self.model.dim, self._norm_tolerance)
        if len(queries) == 0:
            return SearchOutcome(threshold, margin, [])
        with self._maps_lock:
            allowed = self._allowed_keys(subject_ids, required_tags)
        if allowed is not None and len(allowed) == 0:
            empty = QueryOutcome(DECISION_NO_MATCH, [], "empty-filter")
            return SearchOutcome(threshold, margin, [empty for _ in range(len(queries))])
        found = self._gallery.search(queries, top_k=top_k, threshold=threshold, margin=margin, allowed_subjects=allowed)
        results = []
        with self._maps_lock:
            for row in range(len(queries)):
                candidates = []
                top_dropped = False
                for rank in range(found.subjects.shape[1]):
                    subject_key = int(found.subjects[row, rank])
                    if subject_key < 0:
                        break
                    subject_id = self._subject_ids_by_key.get(subject_key)
                    template_id = self._template_ids_by_key.get(int(found.template_ids[row, rank]))
                    if subject_id is None or template_id is None:
                        top_dropped = top_dropped or rank == 0
                        continue  # erased (or not yet acknowledged) while this search ran
                    candidates.append(Candidate(subject_id, template_id, float(found.scores[row, rank])))
                decision = int(found.decisions[row])
                if top_dropped and decision == DECISION_MATCH:
                    decision = DECISION_NO_MATCH  # the decision was about a subject that is gone: fail closed
                plan_code = int(found.plans[row])
                results.append(QueryOutcome(decision, candidates, self._plan_names.get(plan_code, str(plan_code))))
        return SearchOutcome(threshold, margin, results)

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
            SNAPSHOT_FAILURES.labels(self.policy.name).inc()
            raise

    def _snapshot(self) -> bool:
        with self._snapshot_lock:
            started = time.monotonic()
            with self._write_lock:
                sequence = self._log.next_sequence - 1
                if sequence == self._snapshot_sequence and self._snapshot_path.exists():
                    self._erase_purge_due = None
                    return False
                template_keys, subject_keys, vectors = self._gallery.templates()
                template_ids = [self._template_ids_by_key[int(key)] for key in template_keys]
                subjects = [[sid, s.key, sorted(s.tags)] for sid, s in self._subjects.items()]
                next_keys = (self._next_subject_key, self._next_template_key)
                self._log.rotate()
                self._erase_purge_due = None
            created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            meta = {
                "gallery": self.policy.name,
                "model": self._model_tuple(),
                "sequence": sequence,
                "templates": len(template_ids),
                "subjects": subjects,
                "next_subject_key": next_keys[0],
                "next_template_key": next_keys[1],
                "created_at": created_at,
            }
            write_atomically(
                self._snapshot_path, self._snapshot_records(meta, template_ids, template_keys, subject_keys, vectors)
            )
            with self._write_lock:
                self._snapshot_sequence = sequence
                self._last_snapshot_at = created_at
                dropped = self._log.drop_segments_before(sequence + 1)
            log.info(
                "matching.gallery.snapshot",
                gallery=self.policy.name,
                sequence=sequence,
                templates=len(template_ids),
                log_segments_dropped=dropped,
                seconds=round(time.monotonic() - started, 3),
            )
            return True

    def _snapshot_records(
        self,
        meta: dict[str, Any],
        template_ids: list[str],
        template_keys: np.ndarray,
        subject_keys: np.ndarray,
        vectors: np.ndarray,
    ) -> Iterable[bytes]:
        context = f"snapshot|{self.policy.name}"
        sequence = 0
        yield self._cipher.seal(context, sequence, encode_record(meta))
        for start in range(0, len(template_ids), SNAPSHOT_CHUNK):
            stop = start + SNAPSHOT_CHUNK
            chunk = {
                "template_ids": template_ids[start:stop],
                "template_keys": [int(key) for key in template_keys[start:stop]],
                "subject_keys": [int(key) for key in subject_keys[start:stop]],
            }
            sequence += 1
            yield self._cipher.seal(context, sequence, encode_record(chunk, vectors[start:stop]))
        yield self._cipher.seal(context, sequence + 1, encode_record({"end": True, "templates": len(template_ids)}))

    def stats(self) -> GalleryStats:
        return GalleryStats(
            name=self.policy.name,
            templates=int(self._gallery.size),
            subjects=len(self._subjects),
            threshold=self.policy.threshold,
            margin=self.policy.margin,
            model=self.model,
            memory_bytes=int(self._gallery.memory_bytes),
            index=self.index_params,
            records_since_snapshot=self.records_since_snapshot,
            last_snapshot_at=self._last_snapshot_at,
            search_kernel=_search_kernel(),
        )

    def export_templates(self) -> dict[str, tuple[str, np.ndarray]]:
        """Template id -> (subject id, vector) of the whole gallery, as the index holds it (tools and checks)."""
        with self._write_lock:
            template_keys, _, vectors = self._gallery.templates()
            with self._maps_lock:
                return {
                    self._template_ids_by_key[int(key)]: (
                        self._template_owner[self._template_ids_by_key[int(key)]],
                        np.array(vectors[row], dtype=np.float32),
                    )
                    for row, key in enumerate(template_keys)
                }

    def subject_templates(self, subject_id: str) -> dict[str, int]:
        """Template id -> native key of a subject (empty when unknown)."""
        with self._maps_lock:
            subject = self._subjects.get(subject_id)
            return dict(subject.templates) if subject is not None else {}

    def subject_tags(self, subject_id: str) -> frozenset[str]:
        with self._maps_lock:
            subject = self._subjects.get(subject_id)
            return subject.tags if subject is not None else frozenset()

    def close(self) -> None:
        with self._write_lock:
            self._log.close()


# ---------------------------------------------------------------- the data dir


class MatchingStore:
    """Every configured gallery of one data dir, with the key check, the dir lock and the snapshot thread."""

    def __init__(
        self,
        data_dir: Path,
        key: bytes,
        galleries: Sequence[GalleryPolicy],
        model: ModelSpec,
        index: IndexParams | None = None,
        durability: DurabilityPolicy | None = None,
        norm_tolerance: float = 1e-3,
    ) -> None:
        if not galleries:
            raise ValueError("configure at least one gallery")
        self.data_dir = Path(data_dir).expanduser()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._durability = durability or DurabilityPolicy()
        self._cipher = RecordCipher(key)
        self._lock_fd = self._lock_data_dir()
        self._galleries: dict[str, GalleryStore] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        try:
            key_check_missing = self._check_key()
            for policy in galleries:
                store = GalleryStore(
                    self.data_dir / policy.name,
                    policy,
                    model,
                    index or IndexParams(),
                    self._cipher,
                    self._durability,
                    norm_tolerance,
                    on_write=self._wake_if_due,
                )
                self._galleries[policy.name] = store
            if key_check_missing:
                # Only once every gallery decrypted with this key: a wrong key must not claim the data dir.
                write_atomically(self.data_dir / KEY_CHECK_FILE, [self._cipher.seal("key-check", 0, KEY_CHECK_TEXT)])
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._maintain, name="matching-snapshots", daemon=True)
        self._thread.start()

    def _lock_data_dir(self) -> int:
        fd = os.open(self.data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise DataDirLockedError(f"another matching service is using {self.data_dir}") from exc
        return fd

    def _check_key(self) -> bool:
        """Raises when the key does not open this data dir's key check; True when there is none yet."""
        path = self.data_dir / KEY_CHECK_FILE
        if not path.exists():
            return True
        try:
            records = read_sealed_file(path, self._cipher, "key-check")
        except DecryptionError as exc:
            raise KeyConfigError(
                f"the key in RETAILFACE_MATCHING_KEY_FILE is not the key the data dir {self.data_dir} was written "
                "with; configure the original key (a data dir cannot be read without it)"
            ) from exc
        if records != [KEY_CHECK_TEXT]:
            raise StoreCorruptedError(f"{path} is not a RetailFace matching key check file")
        return False

    def _wake_if_due(self, store: GalleryStore) -> None:
        if store.snapshot_due(time.monotonic()):
            self._wake.set()

    def _maintain(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            now = time.monotonic()
            for store in self._galleries.values():
                if self._stop.is_set():
                    break
                if store.snapshot_due(now):
                    try:
                        store.snapshot()
                    except Exception:
                        log.exception("matching.gallery.snapshot_failed", gallery=store.policy.name)

    def gallery(self, name: str) -> GalleryStore:
        store = self._galleries.get(name)
        if store is None:
            raise UnknownGalleryError(f"unknown gallery {name!r}; galleries: {', '.join(self._galleries)}")
        return store

    def galleries(self) -> list[GalleryStore]:
        return list(self._galleries.values())

    def erase_subject(self, gallery: str, subject_id: str) -> int:
        """Erases from one gallery, or from every gallery when ``gallery`` is empty."""
        targets = [self.gallery(gallery)] if gallery else self.galleries()
        return sum(store.erase_subject(subject_id) for store in targets)

    def snapshot(self, gallery: str = "") -> list[str]:
        targets = [self.gallery(gallery)] if gallery else self.galleries()
        for store in targets:
            store.snapshot()
        return [store.policy.name for store in targets]

    def _release(self) -> None:
        for store in self._galleries.values():
            store.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        if self._durability.snapshot_on_close:
            for store in self._galleries.values():
                if store.records_since_snapshot:
                    store.snapshot()
        self._release()
