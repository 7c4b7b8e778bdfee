"""Durable named galleries over the native matcher: every configured gallery, on files or on PostgreSQL.

Each gallery (``members``, ``watchlist``...) keeps its templates in the native in-memory index and its
history in a journal (journal.py). Without a database URL, that is its own folder of the data dir, for
one replica::

    DATA_DIR/.lock                     one service per data dir (flock)             datadir.py
    DATA_DIR/key-check.bin             proves that the configured key is this dir's datadir.py
    DATA_DIR/<gallery>/snapshot.bin    the whole gallery at some log sequence S     snapshots.py
    DATA_DIR/<gallery>/wal-<n>.log     every change after S, one record per change  recordlog.py

With RETAILFACE_MATCHING_DB_URL, the same encrypted records live in PostgreSQL (pgjournal.py) and any
number of replicas share them: each loads the newest snapshot and the log after it, then follows the
others' changes, told by NOTIFY and, as a fallback, by polling (the follower here).

One gallery is a `GalleryStore` (gallery_store.py). This facade opens them all with one key, checks the
key, runs the snapshot worker (woken after every change, it snapshots the galleries that are due) and,
on PostgreSQL, the follower.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from retailface.services.matching.calibration import CalibratedDecision
from retailface.services.matching.crypto import RecordCipher
from retailface.services.matching.datadir import DataDir
from retailface.services.matching.errors import InvalidRequestError, UnknownGalleryError
from retailface.services.matching.gallery_store import GalleryStore
from retailface.services.matching.journal import FileJournal, Journal
from retailface.services.matching.params import (
    DEFAULT_NORM_TOLERANCE,
    DurabilityPolicy,
    GalleryPolicy,
    IndexParams,
    ReplicationPolicy,
)
from retailface.services.matching.pgjournal import CHANNEL, MatchingDatabase, PostgresJournal
from retailface.services.shared.model_identity import ModelIdentity
from retailface.services.shared.periodic import PeriodicWorker
from retailface.services.shared.pglisten import NotificationListener

log = structlog.get_logger(__name__)

SNAPSHOT_CHECK_SECONDS = 1.0  # how often the worker checks for due snapshots when no change wakes it


class MatchingStore:
    """Every configured gallery, with the key check, the snapshot worker, and the data dir lock (files) or the
    follower of the other replicas' changes (PostgreSQL)."""

    def __init__(
        self,
        data_dir: Path,
        key: bytes,
        galleries: Sequence[GalleryPolicy],
        model: ModelIdentity,
        index: IndexParams | None = None,
        durability: DurabilityPolicy | None = None,
        norm_tolerance: float = DEFAULT_NORM_TOLERANCE,
        calibrated: CalibratedDecision | None = None,
        database_url: str = "",
        replication: ReplicationPolicy | None = None,
    ) -> None:
        if not galleries:
            raise ValueError("configure at least one gallery")
        self._durability = durability or DurabilityPolicy()
        self._replication = replication or ReplicationPolicy()
        cipher = RecordCipher(key)
        self._data_dir: DataDir | None = None
        self._database: MatchingDatabase | None = None
        self.data_dir = Path(data_dir).expanduser()
        self._galleries: dict[str, GalleryStore] = {}
        self._follower: NotificationListener | None = None
        try:
            if database_url:
                self._database = MatchingDatabase(database_url, cipher)
                key_check_missing = self._database.check_key()
            else:
                self._data_dir = DataDir(self.data_dir, cipher)
                key_check_missing = self._data_dir.check_key()
            for policy in galleries:
                journal: Journal
                if self._database is not None:
                    journal = PostgresJournal(self._database, policy.name, model.dim)
                else:
                    journal = FileJournal(self.data_dir / policy.name, cipher, policy.name, model.dim)
                self._galleries[policy.name] = GalleryStore(
                    journal,
                    policy,
                    model,
                    index or IndexParams(),
                    self._durability,
                    norm_tolerance,
                    on_write=self._wake_if_due,
                    calibrated=calibrated,
                    replication=self._replication,
                )
            if key_check_missing and self._database is not None:
                self._database.write_key_check()
            elif key_check_missing and self._data_dir is not None:
                self._data_dir.write_key_check()
        except BaseException:
            self._release()
            raise
        self._worker = PeriodicWorker("matching-snapshots", SNAPSHOT_CHECK_SECONDS, self._snapshot_due_galleries)
        self._worker.start()
        if self._database is not None:
            self._follower = NotificationListener(
                "matching-follower",
                self._database.conninfo,
                [CHANNEL],
                self._heard,
                on_connect=self.catch_up,
                on_poll=self._poll,
                poll_seconds=self._replication.poll_seconds,
            )
            self._follower.start()

    @property
    def replicated(self) -> bool:
        """True on PostgreSQL: other replicas share the galleries."""
        return self._database is not None

    def wait_following(self, timeout: float) -> bool:
        """True once the follower listens (at once on files: nothing to follow)."""
        return self._follower is None or self._follower.wait_listening(timeout)

    def _heard(self, channel: str, payload: str) -> None:
        """A NOTIFY "<gallery> <sequence>": catch that gallery up unless it holds the change already."""
        name, _, sequence = payload.partition(" ")
        store = self._galleries.get(name)
        if store is not None and (not sequence.isdigit() or int(sequence) > store.applied_sequence):
            store.catch_up()

    def catch_up(self) -> None:
        for store in self._galleries.values():
            store.catch_up()

    def _poll(self) -> None:
        """The fallback when no notification came: catch up, and learn of other replicas' snapshots."""
        for store in self._galleries.values():
            store.catch_up()
            store.refresh_snapshot_sequence()

    def _wake_if_due(self, store: GalleryStore) -> None:
        if store.snapshot_due(time.monotonic()):
            self._worker.wake()

    def _snapshot_due_galleries(self) -> None:
        now = time.monotonic()
        for store in self._galleries.values():
            if self._worker.stopping:
                break
            if store.snapshot_due(now):
                try:
                    store.snapshot()
                except Exception:  # one gallery's failure must not keep the others from their snapshots
                    log.exception("matching.gallery.snapshot_failed", gallery=store.name)

    def gallery(self, name: str) -> GalleryStore:
        store = self._galleries.get(name)
        if store is None:
            raise UnknownGalleryError(f"unknown gallery {name!r}; galleries: {', '.join(self._galleries)}")
        return store

    def galleries(self) -> list[GalleryStore]:
        return list(self._galleries.values())

    def _targets(self, gallery: str) -> list[GalleryStore]:
        """One gallery by name, or every gallery when the name is empty."""
        return [self.gallery(gallery)] if gallery else self.galleries()

    def erase_subject(self, gallery: str, subject_id: str) -> tuple[int, dict[str, int]]:
        """Erases from one gallery, or from every gallery when ``gallery`` is empty.

        Returns the templates removed and, per gallery, the sequence from which the erasure holds.
        """
        if not subject_id:
            raise InvalidRequestError("subject_id is empty")
        removed, sequences = 0, {}
        for store in self._targets(gallery):
            count, sequences[store.name] = store.erase_subject(subject_id)
            removed += count
        return removed, sequences

    def snapshot(self, gallery: str = "") -> list[str]:
        targets = self._targets(gallery)
        for store in targets:
            store.snapshot()
        return [store.name for store in targets]

    def _release(self) -> None:
        if self._follower is not None:
            self._follower.stop()
        for store in self._galleries.values():
            store.close()
        if self._data_dir is not None:
            self._data_dir.release()

    def close(self) -> None:
        if self._follower is not None:
            self._follower.stop()
        self._worker.stop()
        if self._durability.snapshot_on_close:
            for store in self._galleries.values():
                if store.records_since_snapshot:
                    try:
                        store.snapshot()
                    except Exception:  # the log still holds every change: the next start replays it
                        log.exception("matching.gallery.snapshot_on_close_failed", gallery=store.name)
        self._release()
