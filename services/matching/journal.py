"""Where a gallery's history is kept: its change log and its snapshot, behind one interface.

A gallery store (gallery_store.py) applies changes in log order and snapshots itself; it does not know
where the records live. Two journals implement that:

- `FileJournal` (here): the snapshot file and the segment log in the gallery's folder of the data dir,
  for one replica (`make demo`, the store-edge overlay);
- `PostgresJournal` (pgjournal.py): the same encrypted records in PostgreSQL, shared by every replica of
  a chain deployment, each following the others' changes.

Every change is written inside `writing(applied)`: the journal first hands over what other writers
appended after `applied` (nothing, for a file), the store applies that, then appends its own record.
The record is durable when the block exits; only then does the store apply it.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from retailface.services.matching.crypto import RecordCipher
from retailface.services.matching.recordlog import RecordLog
from retailface.services.matching.snapshots import (
    SNAPSHOT_FILE,
    SnapshotMeta,
    TemplateChunk,
    read_snapshot,
    write_snapshot,
)
from retailface.services.shared.errors import ResourceExhausted, Unavailable


@dataclass(frozen=True)
class Change:
    """One log record: its sequence and its decrypted plaintext (recordlog.decode_record reads it)."""

    sequence: int
    plaintext: bytes


@dataclass
class Loaded:
    """A gallery's newest snapshot (None: none yet) and every change after it, in order."""

    snapshot: tuple[SnapshotMeta, list[TemplateChunk]] | None
    changes: Iterable[Change]
    where: str  # names the source in errors ("/data/members/snapshot.bin", "PostgreSQL gallery members")


@dataclass
class LogWriter:
    """Inside `Journal.writing`: the other writers' changes to apply first, and the append of one record."""

    pending: list[Change] = field(default_factory=list)
    head: int = 0  # the last sequence written before this block (a shared journal's)
    appended: int = 0  # the sequence of the record appended in this block (0: none)


class Journal(Protocol):
    shared: bool  # other replicas append to it too (they must be followed)

    def load(self) -> Loaded:
        """The snapshot and the log after it; the changes must be consumed before the first write."""
        ...

    def writing(self, applied: int) -> AbstractContextManager[LogWriter]:
        """Orders one write after every other: yields the changes after `applied` to apply first."""
        ...

    def append(self, writer: LogWriter, plaintext: bytes) -> int:
        """Appends one record inside `writing`; returns its sequence."""
        ...

    def changes_after(self, applied: int) -> list[Change]:
        """Changes other replicas made after `applied`; raises LogGapError when the log no longer has them."""
        ...

    def snapshot_sequence(self) -> int | None:
        """The sequence of the newest snapshot (None: there is none), as last read."""
        ...

    def refresh_snapshot_sequence(self) -> int | None:
        """`snapshot_sequence`, read again (another replica may have written a newer snapshot)."""
        ...

    def prepare_snapshot(self) -> None:
        """Called under the store's write lock, with the contents of the snapshot about to be written."""
        ...

    def write_snapshot(self, meta: SnapshotMeta, templates: TemplateChunk) -> bool:
        """Writes it; False when another replica wrote one as new or is writing one now."""
        ...

    def finish_snapshot(self, sequence: int) -> int:
        """Called under the write lock once the snapshot at `sequence` is durable: drops the log it covers."""
        ...

    def close(self) -> None: ...


class FileJournal:
    """The snapshot file and the segment log of one gallery's folder; one writer (the data dir's lock)."""

    shared = False

    def __init__(self, directory: Path, cipher: RecordCipher, gallery: str, dim: int) -> None:
        self.directory = directory
        self._cipher = cipher
        self._gallery = gallery
        self._dim = dim
        self._snapshot_path = directory / SNAPSHOT_FILE
        self._snapshot_sequence = 0
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A snapshot that a crash interrupted before its rename; the previous snapshot is still whole.
        self._snapshot_path.with_name(SNAPSHOT_FILE + ".tmp").unlink(missing_ok=True)
        self._log = RecordLog(directory, cipher, f"log|{gallery}")

    def load(self) -> Loaded:
        snapshot = None
        if self._snapshot_path.exists():
            snapshot = read_snapshot(self._snapshot_path, self._cipher, self._gallery, self._dim)
            self._snapshot_sequence = snapshot[0].sequence
        changes = (Change(sequence, plaintext) for sequence, plaintext in self._log.replay(self._snapshot_sequence))
        return Loaded(snapshot, changes, str(self._snapshot_path if snapshot else self.directory))

    @contextmanager
    def writing(self, applied: int) -> Iterator[LogWriter]:
        yield LogWriter()

    def append(self, writer: LogWriter, plaintext: bytes) -> int:
        """Appends the change once it is on disk; a change that cannot be made durable is refused, not applied."""
        try:
            writer.appended = self._log.append(plaintext)
        except OSError as error:
            reason = f"{self._gallery}: the change could not be written durably ({error.strerror}) and was not applied"
            if error.errno == errno.ENOSPC:
                raise ResourceExhausted(f"{reason}: the data directory is full") from error
            raise Unavailable(f"{reason}: the data directory cannot be written") from error
        return writer.appended

    def changes_after(self, applied: int) -> list[Change]:
        return []

    def snapshot_sequence(self) -> int | None:
        return self._snapshot_sequence if self._snapshot_path.exists() else None

    def refresh_snapshot_sequence(self) -> int | None:
        return self.snapshot_sequence()

    def prepare_snapshot(self) -> None:
        self._log.rotate()  # appends from here on go to a segment the snapshot does not cover

    def write_snapshot(self, meta: SnapshotMeta, templates: TemplateChunk) -> bool:
        write_snapshot(self._snapshot_path, self._cipher, meta, templates)
        return True

    def finish_snapshot(self, sequence: int) -> int:
        self._snapshot_sequence = sequence
        return self._log.drop_segments_before(sequence + 1)

    def close(self) -> None:
        self._log.close()
