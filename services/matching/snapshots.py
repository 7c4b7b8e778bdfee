"""A gallery's snapshot file: the whole gallery at one log sequence, as encrypted records::

    record 0       meta: gallery, model, sequence, template count, subjects (id, key, tags), next keys, time
    records 1..n   chunks of SNAPSHOT_CHUNK templates: their ids (JSON), then their template keys, subject
                   keys, scales, int8 rows and sign codes as little-endian blocks
    record n+1     end marker with the template count

The blocks are the native gallery's stored form (`_matcher.Gallery.stored`): loading decrypts each chunk
and hands its blocks to `Gallery.restore` as numpy views, with no rounding, no encoding and no work per
template. It is written whole (``write_atomically``: a crash leaves the previous snapshot) and read whole,
so any damage is corruption, never a torn write. Format 1 (float vectors) is still read.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from retailface import _matcher
from retailface.services.matching.crypto import RecordCipher, read_sealed_file
from retailface.services.matching.errors import StoreCorruptedError
from retailface.services.matching.recordlog import decode_record, encode_record, write_atomically

SNAPSHOT_FILE = "snapshot.bin"
SNAPSHOT_CHUNK = 16384  # templates per snapshot record


@dataclass(frozen=True)
class SnapshotMeta:
    gallery: str
    model: list[Any]  # [model id, version, dim]
    sequence: int  # the last log record the snapshot holds
    templates: int
    subjects: list[list[Any]]  # [subject id, subject key, sorted tags]
    next_subject_key: int
    next_template_key: int
    created_at: str  # ISO 8601 UTC


SNAPSHOT_FORMAT = 2


@dataclass(frozen=True)
class TemplateChunk:
    """Templates in the gallery's stored form (or, from a format-1 snapshot, as float vectors)."""

    template_ids: list[str]
    template_keys: np.ndarray  # int64 [n]
    subject_keys: np.ndarray  # int64 [n]
    scales: np.ndarray | None = None  # float32 [n]
    rows: np.ndarray | None = None  # int8 [n, dim]
    codes: np.ndarray | None = None  # uint64 [n, _matcher.CODE_WORDS]
    vectors: np.ndarray | None = None  # float32 [n, dim], format 1 only

    def __len__(self) -> int:
        return len(self.template_keys)


def _blocks(dim: int) -> list[tuple[str, str, int]]:
    """(field, little-endian dtype, values per template) of a chunk's payload, in order."""
    return [
        ("template_keys", "<i8", 1),
        ("subject_keys", "<i8", 1),
        ("scales", "<f4", 1),
        ("rows", "i1", dim),
        ("codes", "<u8", _matcher.CODE_WORDS),
    ]


def _context(gallery: str) -> str:
    return f"snapshot|{gallery}"


def write_snapshot(path: Path, cipher: RecordCipher, meta: SnapshotMeta, templates: TemplateChunk) -> None:
    """Replaces the snapshot at ``path`` with ``meta`` and every template, atomically."""
    write_atomically(path, snapshot_frames(cipher, meta, templates, _context(meta.gallery)))


def snapshot_frames(
    cipher: RecordCipher, meta: SnapshotMeta, templates: TemplateChunk, context: str
) -> Iterable[bytes]:
    """The snapshot's sealed records in order (meta, chunks, end), record i sealed as (context, i)."""
    sequence = 0
    yield cipher.seal(context, sequence, encode_record(dataclasses.asdict(meta) | {"format": SNAPSHOT_FORMAT}))
    count = len(templates.template_ids)
    dim = int(meta.model[2])
    for start in range(0, count, SNAPSHOT_CHUNK):
        stop = start + SNAPSHOT_CHUNK
        header = orjson.dumps({"template_ids": templates.template_ids[start:stop]})
        payload = [struct.pack("<I", len(header)), header]
        for field, dtype, _ in _blocks(dim):
            payload.append(np.ascontiguousarray(getattr(templates, field)[start:stop], dtype=dtype).tobytes())
        sequence += 1
        yield cipher.seal(context, sequence, b"".join(payload))
    yield cipher.seal(context, sequence + 1, encode_record({"end": True, "templates": count}))


def read_snapshot(path: Path, cipher: RecordCipher, gallery: str, dim: int) -> tuple[SnapshotMeta, list[TemplateChunk]]:
    """The snapshot file's meta and template chunks; raises StoreCorruptedError unless it is whole and consistent."""
    return parse_snapshot(read_sealed_file(path, cipher, _context(gallery)), gallery, dim, str(path))


def parse_snapshot(
    records: list[bytes], gallery: str, dim: int, where: str
) -> tuple[SnapshotMeta, list[TemplateChunk]]:
    """Meta and chunks from a snapshot's decrypted records, checked whole and consistent (`where` names them)."""
    if len(records) < 2:
        raise StoreCorruptedError(f"{where} is incomplete; restore it from a backup")
    meta, _ = decode_record(records[0], dim)
    end, _ = decode_record(records[-1], dim)
    if meta.get("gallery") != gallery or not end.get("end"):
        raise StoreCorruptedError(f"{where} is not a complete snapshot of {gallery}")
    read_chunk = _stored_chunk if meta.get("format", 1) >= 2 else _float_chunk
    chunks = [read_chunk(where, plaintext, dim) for plaintext in records[1:-1]]
    loaded = sum(len(chunk) for chunk in chunks)
    if loaded != int(meta["templates"]) or loaded != int(end["templates"]):
        raise StoreCorruptedError(f"{where}: {loaded} templates read, {meta['templates']} expected")
    meta.pop("format", None)
    return SnapshotMeta(**meta), chunks


def _stored_chunk(where: str, plaintext: bytes, dim: int) -> TemplateChunk:
    """A format-2 chunk: its blocks become numpy views of the decrypted bytes (no copy)."""
    (header_len,) = struct.unpack_from("<I", plaintext)
    template_ids = orjson.loads(plaintext[4 : 4 + header_len])["template_ids"]
    count, offset, fields = len(template_ids), 4 + header_len, {}
    for field, dtype, per_template in _blocks(dim):
        size = count * per_template * np.dtype(dtype).itemsize
        if offset + size > len(plaintext):
            raise StoreCorruptedError(f"{where}: a chunk of {count} templates is shorter than its blocks")
        values = np.frombuffer(plaintext, dtype=dtype, count=count * per_template, offset=offset)
        fields[field] = values.reshape(count, per_template) if per_template > 1 else values
        offset += size
    if offset != len(plaintext):
        raise StoreCorruptedError(f"{where}: a chunk of {count} templates has {len(plaintext) - offset} bytes too many")
    return TemplateChunk(template_ids, **fields)


def _float_chunk(where: str, plaintext: bytes, dim: int) -> TemplateChunk:
    """A format-1 chunk: ids and keys in JSON, float vectors (added, and so rounded, on load)."""
    header, vectors = decode_record(plaintext, dim)
    if vectors is None:
        raise StoreCorruptedError(f"{where}: a chunk of templates holds no vectors")
    return TemplateChunk(
        header["template_ids"],
        np.asarray(header["template_keys"], dtype=np.int64),
        np.asarray(header["subject_keys"], dtype=np.int64),
        vectors=vectors,
    )
