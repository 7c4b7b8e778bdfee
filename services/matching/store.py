"""Durable named galleries over the native matcher: every configured gallery of one data dir.

Each gallery (``members``, ``watchlist``...) keeps its templates in the native in-memory index and its
history on disk, in its own folder of the data dir::

    DATA_DIR/.lock                     one service per data dir (flock)             datadir.py
    DATA_DIR/key-check.bin             proves that the configured key is this dir's datadir.py
    DATA_DIR/<gallery>/snapshot.bin    the whole gallery at some log sequence S     snapshots.py
    DATA_DIR/<gallery>/wal-<n>.log     every change after S, one record per change  recordlog.py

One gallery is a `GalleryStore` (gallery_store.py). This facade opens them all with one key, checks the
key, and runs the snapshot worker: woken after every change, it snapshots the galleries that are due.
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
from retailface.services.matching.params import DEFAULT_NORM_TOLERANCE, DurabilityPolicy, GalleryPolicy, IndexParams
from retailface.services.shared.model_identity import ModelIdentity
from retailface.services.shared.periodic import PeriodicWorker

log = structlog.get_logger(__name__)

SNAPSHOT_CHECK_SECONDS = 1.0  # how often the worker checks for due snapshots when no change wakes it


class MatchingStore:
    """Every configured gallery of one data dir, with the key check, the dir lock and the snapshot worker."""

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
    ) -> None:
        if not galleries:
            raise ValueError("configure at least one gallery")
        self._durability = durability or DurabilityPolicy()
        cipher = RecordCipher(key)
        self._data_dir = DataDir(data_dir, cipher)
        self.data_dir = self._data_dir.path
        self._galleries: dict[str, GalleryStore] = {}
        try:
            key_check_missing = self._data_dir.check_key()
            for policy in galleries:
                self._galleries[policy.name] = GalleryStore(
                    self.data_dir / policy.name,
                    policy,
                    model,
                    index or IndexParams(),
                    cipher,
                    self._durability,
                    norm_tolerance,
                    on_write=self._wake_if_due,
                    calibrated=calibrated,
                )
            if key_check_missing:
                self._data_dir.write_key_check()
        except BaseException:
            self._release()
            raise
        self._worker = PeriodicWorker("matching-snapshots", SNAPSHOT_CHECK_SECONDS, self._snapshot_due_galleries)
        self._worker.start()

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

    def erase_subject(self, gallery: str, subject_id: str) -> int:
        """Erases from one gallery, or from every gallery when ``gallery`` is empty."""
        if not subject_id:
            raise InvalidRequestError("subject_id is empty")
        return sum(store.erase_subject(subject_id) for store in self._targets(gallery))

    def snapshot(self, gallery: str = "") -> list[str]:
        targets = self._targets(gallery)
        for store in targets:
            store.snapshot()
        return [store.name for store in targets]

    def _release(self) -> None:
        for store in self._galleries.values():
            store.close()
        self._data_dir.release()

    def close(self) -> None:
        self._worker.stop()
        if self._durability.snapshot_on_close:
            for store in self._galleries.values():
                if store.records_since_snapshot:
                    store.snapshot()
        self._release()
