"""One gallery's index kept in the order of its journal: the replica's side of the log.

`GalleryReplica` loads the index from the journal (snapshot, then the log after it), writes a change only
once it holds every change before it (`change`), applies the changes other replicas write (`catch_up`),
reloads from a newer snapshot when the log it needs was pruned, and tells a search whether it holds a
given change (`await_sequence`, read-your-writes). The gallery store (gallery_store.py) validates
requests and builds the records; this module owns the position in the log and the write lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog

from retailface.services.matching.errors import LogGapError, ReplicaBehindError
from retailface.services.matching.gallery_index import GalleryIndex
from retailface.services.matching.journal import Change, Journal
from retailface.services.matching.params import IndexParams, ReplicationPolicy
from retailface.services.matching.recordlog import decode_record, encode_record
from retailface.services.shared.model_identity import ModelIdentity

log = structlog.get_logger(__name__)

Record = tuple[dict[str, Any], np.ndarray | None]  # a record's header and its vectors


class GalleryReplica:
    """The index, the journal position it holds (`applied`) and the lock that orders changes."""

    def __init__(
        self,
        journal: Journal,
        name: str,
        model: ModelIdentity,
        params: IndexParams,
        replication: ReplicationPolicy,
        on_erase: Callable[[], None],
    ) -> None:
        self.journal = journal
        self.name = name
        self.model = model
        self.params = params
        self._replication = replication
        self._on_erase = on_erase  # an erase was applied (the store schedules its purge from the log)
        self.write_lock = threading.Lock()  # serialises changes: journal write + apply
        self.applied = 0  # the sequence of the last change this replica applied
        self.snapshot_created_at = ""
        self.index = self._load()

    def _load(self) -> GalleryIndex:
        """A new index from the journal's snapshot and the log after it; sets the applied sequence."""
        started = time.monotonic()
        loaded = self.journal.load()
        if loaded.snapshot is not None:
            meta, chunks = loaded.snapshot
            index = GalleryIndex.from_snapshot(meta, chunks, self.name, self.model, self.params, loaded.where)
            self.applied = meta.sequence
            self.snapshot_created_at = meta.created_at
        else:
            index = GalleryIndex(self.name, self.model, self.params)
            self.applied = 0
        snapshot_sequence = self.applied
        replayed = 0
        for change in loaded.changes:
            header, vectors = decode_record(change.plaintext, self.model.dim)
            index.apply(header, vectors, where=f"log record {change.sequence}")
            self.applied = change.sequence
            replayed += 1
        log.info(
            "matching.gallery.loaded",
            gallery=self.name,
            templates=index.size,
            subjects=len(index.ids),
            snapshot_sequence=snapshot_sequence,
            log_records_replayed=replayed,
            applied_sequence=self.applied,
            seconds=round(time.monotonic() - started, 3),
        )
        return index

    def _apply(self, change: Change) -> int:
        """Applies one change of the log (this replica's or another's); the caller holds the write lock."""
        header, vectors = decode_record(change.plaintext, self.model.dim)
        return self._apply_record(change.sequence, (header, vectors), "log record")

    def _apply_record(self, sequence: int, record: Record, what: str) -> int:
        if sequence != self.applied + 1:
            raise LogGapError(f"gallery {self.name}: change {sequence} follows {self.applied}")
        header, vectors = record
        count = self.index.apply(header, vectors, where=f"{what} {sequence}")
        self.applied = sequence
        if header.get("op") == "erase":
            self._on_erase()
        return count

    def change(self, build: Callable[[], Record | None]) -> tuple[int, int]:
        """Writes one change after every change before it; returns (templates added or removed, its sequence).

        `build()` runs once this replica holds every earlier change and returns the record, or None when
        there is nothing to write (then the sequence returned is the position the answer holds at).
        """
        with self.write_lock:
            for attempt in range(2):
                try:
                    with self.journal.writing(self.applied) as writer:
                        for change in writer.pending:
                            self._apply(change)
                        record = build()
                        if record is None:
                            return 0, self.applied
                        self.journal.append(writer, encode_record(*record))
                    break
                except LogGapError:
                    if attempt:
                        raise
                    self.reload()  # behind a newer snapshot: start again from it
            return self._apply_record(writer.appended, record, "new record"), writer.appended

    def catch_up(self) -> int:
        """Applies the changes other replicas made since this one's position; returns how many."""
        if not self.journal.shared:
            return 0
        with self.write_lock:
            try:
                changes = self.journal.changes_after(self.applied)
            except LogGapError as gap:
                log.warning("matching.gallery.behind_snapshot", gallery=self.name, reason=str(gap))
                self.reload()
                return 0
            for change in changes:
                self._apply(change)
        return len(changes)

    def reload(self) -> None:
        """Replaces the index with the journal's newest snapshot and log; the caller holds the write lock."""
        self.index = self._load()

    def await_sequence(self, minimum: int) -> None:
        """Returns once this replica holds change `minimum`; ReplicaBehindError after the configured wait."""
        if minimum <= self.applied:
            return
        deadline = time.monotonic() + self._replication.min_sequence_wait_seconds
        while True:
            self.catch_up()
            if minimum <= self.applied:
                return
            if time.monotonic() >= deadline:
                raise ReplicaBehindError(
                    f"this matching replica holds gallery {self.name} up to change {self.applied} and the "
                    f"request needs change {minimum}; retry (another replica answers)"
                )
            time.sleep(0.005)
