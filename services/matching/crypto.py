"""The gallery encryption key and the framed, checksummed, AES-GCM-encrypted records of the data dir.

Templates are biometric data, so nothing about a subject reaches the disk in clear: every record of
the log and of the snapshot is encrypted with AES-256-GCM. The key is a 32-byte file named by
``RETAILFACE_MATCHING_KEY_FILE`` (raw bytes or base64 text). Create one with::

    python -m retailface.services.matching.keygen /etc/retailface/matching.key

(or ``head -c 32 /dev/urandom > matching.key && chmod 600 matching.key``). Keep it in a secret store,
never in the data dir: a copy of the data dir alone reveals nothing.

Frame of one record (little endian)::

    u32 body_length | u32 crc32(length bytes + body) | body = nonce (12 bytes) + ciphertext + GCM tag (16 bytes)

The CRC tells a torn write (a crash in the middle of an append) from a record that was written whole;
the GCM tag, whose associated data binds the record to its file kind, gallery and sequence number,
tells a wrong key or a tampered, reordered or spliced record from a good one.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from retailface.services.matching.errors import DecryptionError, KeyConfigError, StoreCorruptedError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER = struct.Struct("<II")
MAX_BODY_BYTES = 1 << 30  # a longer length can only be garbage from a torn or corrupted header
KEY_HINT = (
    "create one with `python -m retailface.services.matching.keygen PATH` (32 random bytes, base64) "
    "and point RETAILFACE_MATCHING_KEY_FILE at it"
)


def load_key(path: Path | str | None) -> bytes:
    """Reads a 32-byte key stored raw or as base64 text (whitespace around it is ignored)."""
    if path is None or str(path) == "":
        raise KeyConfigError(f"RETAILFACE_MATCHING_KEY_FILE is not set; {KEY_HINT}")
    key_path = Path(path).expanduser()
    try:
        data = key_path.read_bytes()
    except OSError as exc:
        raise KeyConfigError(f"cannot read the matching key file {key_path}: {exc.strerror}; {KEY_HINT}") from exc
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != KEY_BYTES:
        raise KeyConfigError(
            f"the matching key file {key_path} holds {len(data)} bytes that are neither 32 raw bytes nor the "
            f"base64 text of 32 bytes; {KEY_HINT}"
        )
    return decoded


def generate_key_file(path: Path) -> None:
    """Writes a new random key as base64 text, readable by the owner only; refuses to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
        out.flush()
        os.fsync(out.fileno())


@dataclass(frozen=True)
class RecordCipher:
    """Seals and opens records; ``context`` (file kind + gallery) and the sequence number go in the AAD."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise KeyConfigError(f"the matching key must be {KEY_BYTES} bytes, got {len(self.key)}")

    def _aad(self, context: str, sequence: int) -> bytes:
        return b"retailface.matching/v1|" + context.encode() + b"|" + sequence.to_bytes(8, "little")

    def seal(self, context: str, sequence: int, plaintext: bytes) -> bytes:
        """Returns the whole framed record (header + body) ready to append."""
        nonce = os.urandom(NONCE_BYTES)
        body = nonce + AESGCM(self.key).encrypt(nonce, plaintext, self._aad(context, sequence))
        length = struct.pack("<I", len(body))
        return length + struct.pack("<I", zlib.crc32(length + body)) + body

    def open(self, context: str, sequence: int, body: bytes) -> bytes:
        try:
            return AESGCM(self.key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], self._aad(context, sequence))
        except InvalidTag as exc:
            raise DecryptionError(
                f"{context} record {sequence} does not decrypt: the key in RETAILFACE_MATCHING_KEY_FILE is not the "
                "one this data dir was written with, or the file was modified"
            ) from exc


@dataclass(frozen=True)
class Frame:
    """One record read back: where it starts and ends in the file, and its still-encrypted body."""

    start: int
    end: int
    body: bytes


@dataclass(frozen=True)
class FrameScan:
    frames: list[Frame]
    valid_end: int  # offset after the last whole, checksum-valid record
    torn_bytes: int  # bytes after valid_end that do not form a whole valid record
    # True when those bytes look like an interrupted append: a prefix of one record (it runs to the end of
    # the file) or zeros (space the file system allocated but never wrote). False: a bad record with more
    # data after it, which a crash cannot produce.
    tail_is_torn: bool


def scan_frames(data: bytes) -> FrameScan:
    """Splits a file into checksum-valid frames, stopping at the first one that is short or fails its CRC.

    Whatever follows the stop is reported as torn; the caller decides whether a torn tail is allowed
    (the end of the log) or is corruption (a snapshot, or a bad record with good records after it).
    """
    frames: list[Frame] = []
    offset = 0
    tail_is_torn = True
    while offset < len(data):
        if len(data) - offset < HEADER.size:
            break
        length, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if length < NONCE_BYTES + TAG_BYTES or length > MAX_BODY_BYTES:
            tail_is_torn = not any(data[offset:])  # an append writes a real length first; garbage is corruption
            break
        if end > len(data):
            # A prefix of a record (the append was interrupted), unless a whole record follows: then the
            # length itself is damaged, and cutting here would drop acknowledged records.
            tail_is_torn = not _holds_a_whole_frame(data, offset + 1)
            break
        body = data[offset + HEADER.size : end]
        if zlib.crc32(data[offset : offset + 4] + body) != crc:
            tail_is_torn = end == len(data) or not any(data[offset:])
            break
        frames.append(Frame(offset, end, body))
        offset = end
    return FrameScan(frames, offset, len(data) - offset, tail_is_torn)


def _holds_a_whole_frame(data: bytes, start: int) -> bool:
    """True when a checksum-valid frame starts at some offset from `start` on (only read when a log looks torn)."""
    view = memoryview(data)
    for offset in range(start, len(data) - HEADER.size - NONCE_BYTES - TAG_BYTES + 1):
        length, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        fits = NONCE_BYTES + TAG_BYTES <= length <= MAX_BODY_BYTES and end <= len(data)
        if fits and zlib.crc32(view[offset + HEADER.size : end], zlib.crc32(view[offset : offset + 4])) == crc:
            return True
    return False


def read_sealed_file(path: Path, cipher: RecordCipher, context: str) -> list[bytes]:
    """Every record of a file written whole (``recordlog.write_atomically``): any damage is corruption."""
    scan = scan_frames(path.read_bytes())
    if scan.torn_bytes:
        raise StoreCorruptedError(f"{path} is damaged at byte {scan.valid_end}; restore the data dir from a backup")
    return [cipher.open(context, index, frame.body) for index, frame in enumerate(scan.frames)]


def open_record(cipher: RecordCipher, context: str, sequence: int, data: bytes, where: str) -> bytes:
    """One whole sealed record stored on its own (a database row, as `seal` returned it): damage is corruption."""
    scan = scan_frames(data)
    if scan.torn_bytes or len(scan.frames) != 1:
        raise StoreCorruptedError(f"{where} is damaged; restore the database from a backup")
    return cipher.open(context, sequence, scan.frames[0].body)
