"""The append-only, encrypted write-ahead log of one gallery, in segment files.

Records carry consecutive sequence numbers. The log lives in ``wal-<first sequence>.log`` segments: a
snapshot that covers everything up to sequence S rotates appends to a fresh segment starting at S + 1,
and once the snapshot is durable the older segments are deleted. A crash between those steps only leaves
segments whose records are skipped on replay, because their sequence numbers are <= S.

``append`` returns only after the record reached the disk (fdatasync), which is what makes an
acknowledgement durable. On open, a torn record at the end of a segment (the append that a crash
interrupted, never acknowledged) is cut off; any other damage stops the service with an error instead
of silently losing acknowledged records.

Also here: the plaintext of one record (a JSON header, then the float32 vectors it carries), which the
snapshot's records share, and the atomic replacement of a whole file that snapshots and the key check use.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import structlog
from prometheus_client import Counter

from retailface.services.matching.crypto import RecordCipher, scan_frames
from retailface.services.matching.errors import LogCorruptedError

LOG_FAILURES = Counter("retailface_matching_log_failures_total", "log appends that failed (the change was refused)")

log = structlog.get_logger(__name__)

SEGMENT_PATTERN = re.compile(r"^wal-(\d{20})\.log$")


def encode_record(header: dict[str, Any], vectors: np.ndarray | None = None) -> bytes:
    meta = orjson.dumps(header)
    payload = b"" if vectors is None else np.ascontiguousarray(vectors, dtype="<f4").tobytes()
    return struct.pack("<I", len(meta)) + meta + payload


def decode_record(plaintext: bytes, dim: int) -> tuple[dict[str, Any], np.ndarray | None]:
    (meta_len,) = struct.unpack_from("<I", plaintext)
    header = orjson.loads(plaintext[4 : 4 + meta_len])
    rest = plaintext[4 + meta_len :]
    if not rest:
        return header, None
    return header, np.frombuffer(rest, dtype="<f4").reshape(-1, dim).astype(np.float32)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomically(path: Path, data: Iterable[bytes]) -> None:
    """temp file, fsync, rename over ``path``, fsync the directory: the file is either old or new, never half."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in data:
            write_fully(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_dir(path.parent)


def segment_name(first_sequence: int) -> str:
    return f"wal-{first_sequence:020d}.log"


@dataclass
class _Segment:
    path: Path
    first_sequence: int


class RecordLog:
    """Encrypted records of one gallery; not thread-safe (the gallery store serialises writers)."""

    def __init__(self, directory: Path, cipher: RecordCipher, context: str) -> None:
        self.directory = directory
        self._cipher = cipher
        self._context = context
        self._fd: int | None = None
        self._segment: _Segment | None = None
        self._next_sequence = 1
        self._size = 0

    @property
    def next_sequence(self) -> int:
        return self._next_sequence

    @property
    def bytes_in_current_segment(self) -> int:
        return self._size

    def _segments(self) -> list[_Segment]:
        found = []
        for entry in self.directory.iterdir():
            match = SEGMENT_PATTERN.match(entry.name)
            if match:
                found.append(_Segment(entry, int(match.group(1))))
        return sorted(found, key=lambda segment: segment.first_sequence)

    def replay(self, after_sequence: int) -> Iterator[tuple[int, bytes]]:
        """Yields (sequence, plaintext) of every record after ``after_sequence``, repairing a torn tail.

        Must be consumed fully before ``append``; afterwards the log appends at the next sequence.
        """
        expected = after_sequence + 1
        segments = self._segments()
        for index, segment in enumerate(segments):
            data = segment.path.read_bytes()
            scan = scan_frames(data)
            if scan.torn_bytes:
                if not scan.tail_is_torn:
                    raise LogCorruptedError(
                        f"{segment.path}: record at byte {scan.valid_end} is damaged and more data follows it; "
                        "this is not an interrupted append. Restore the data dir from a backup"
                    )
                log.warning(
                    "matching.log.torn_tail_dropped",
                    segment=segment.path.name,
                    offset=scan.valid_end,
                    bytes_dropped=scan.torn_bytes,
                )
                self._truncate(segment.path, scan.valid_end)
            for position, frame in enumerate(scan.frames):
                sequence = segment.first_sequence + position
                if sequence < expected:
                    continue  # already in the snapshot
                if sequence > expected:
                    raise LogCorruptedError(
                        f"{segment.path}: records {expected}..{sequence - 1} are missing from the log; "
                        "restore the data dir from a backup"
                    )
                yield sequence, self._cipher.open(self._context, sequence, frame.body)
                expected += 1
            if index == len(segments) - 1:
                end_sequence = segment.first_sequence + len(scan.frames)
                if end_sequence == expected:
                    self._open_segment(segment, scan.valid_end)
        self._next_sequence = expected
        if self._segment is None:
            self._start_segment(expected)

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open_segment(self, segment: _Segment, size: int) -> None:
        self.close()
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
        self._segment = segment
        self._size = size

    def _start_segment(self, first_sequence: int) -> None:
        path = self.directory / segment_name(first_sequence)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.fsync(fd)
        fsync_dir(self.directory)
        self.close()
        self._fd = fd
        self._segment = _Segment(path, first_sequence)
        self._size = 0

    def append(self, plaintext: bytes) -> int:
        """Writes one record and returns its sequence once it is on disk."""
        if self._fd is None:
            raise RuntimeError("the log is not open; call replay() first")
        sequence = self._next_sequence
        frame = self._cipher.seal(self._context, sequence, plaintext)
        try:
            write_fully(self._fd, frame)
            os.fdatasync(self._fd)
        except OSError:
            LOG_FAILURES.inc()
            # Leave no partial record behind for the next append to follow (best effort: the torn-tail
            # repair on open covers a crash here).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(frame)
        self._next_sequence = sequence + 1
        return sequence

    def rotate(self) -> int:
        """Starts a new segment for the following appends; returns its first sequence."""
        if self._size or self._segment is None or self._segment.first_sequence != self._next_sequence:
            self._start_segment(self._next_sequence)
        return self._next_sequence

    def drop_segments_before(self, first_kept_sequence: int) -> int:
        """Deletes segments whose records all precede ``first_kept_sequence`` (a snapshot covers them)."""
        dropped = 0
        for segment in self._segments():
            is_current = self._segment is not None and segment.path == self._segment.path
            if segment.first_sequence < first_kept_sequence and not is_current:
                segment.path.unlink()
                dropped += 1
        if dropped:
            fsync_dir(self.directory)
        return dropped

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
