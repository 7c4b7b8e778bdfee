"""A gallery's snapshot file: the whole gallery at one log sequence, as encrypted records::

    record 0       meta: gallery, model, sequence, template count, subjects (id, key, tags), next keys, time
    records 1..n   chunks of SNAPSHOT_CHUNK templates: their ids, keys and subject keys, then their vectors
    record n+1     end marker with the template count

It is written whole (``write_atomically``: a crash leaves the previous snapshot) and read whole, so any
damage is corruption, never a torn write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


@dataclass(frozen=True)
class TemplateChunk:
    template_ids: list[str]
    template_keys: np.ndarray  # int64
    subject_keys: np.ndarray  # int64
    vectors: np.ndarray  # float32 [n, dim]


def _context(gallery: str) -> str:
    return f"snapshot|{gallery}"


def write_snapshot(path: Path, cipher: RecordCipher, meta: SnapshotMeta, templates: TemplateChunk) -> None:
    """Replaces the snapshot at ``path`` with ``meta`` and every template, atomically."""
    write_atomically(path, _records(cipher, meta, templates))


def _records(cipher: RecordCipher, meta: SnapshotMeta, templates: TemplateChunk) -> Iterable[bytes]:
    context = _context(meta.gallery)
    sequence = 0
    yield cipher.seal(context, sequence, encode_record(dataclasses.asdict(meta)))
    count = len(templates.template_ids)
    for start in range(0, count, SNAPSHOT_CHUNK):
        stop = start + SNAPSHOT_CHUNK
        chunk = {
            "template_ids": templates.template_ids[start:stop],
            "template_keys": [int(key) for key in templates.template_keys[start:stop]],
            "subject_keys": [int(key) for key in templates.subject_keys[start:stop]],
        }
        sequence += 1
        yield cipher.seal(context, sequence, encode_record(chunk, templates.vectors[start:stop]))
    yield cipher.seal(context, sequence + 1, encode_record({"end": True, "templates": count}))


def read_snapshot(path: Path, cipher: RecordCipher, gallery: str, dim: int) -> tuple[SnapshotMeta, list[TemplateChunk]]:
    """The snapshot's meta and template chunks; raises StoreCorruptedError unless it is whole and consistent."""
    records = read_sealed_file(path, cipher, _context(gallery))
    if len(records) < 2:
        raise StoreCorruptedError(f"{path} is incomplete; restore the data dir from a backup")
    meta, _ = decode_record(records[0], dim)
    end, _ = decode_record(records[-1], dim)
    if meta.get("gallery") != gallery or not end.get("end"):
        raise StoreCorruptedError(f"{path} is not a complete snapshot of {gallery}")
    chunks = []
    for plaintext in records[1:-1]:
        header, vectors = decode_record(plaintext, dim)
        if vectors is None:
            raise StoreCorruptedError(f"{path}: a chunk of templates holds no vectors")
        chunks.append(
            TemplateChunk(
                header["template_ids"],
                np.asarray(header["template_keys"], dtype=np.int64),
                np.asarray(header["subject_keys"], dtype=np.int64),
                vectors,
            )
        )
    loaded = sum(len(chunk.template_keys) for chunk in chunks)
    if loaded != int(meta["templates"]) or loaded != int(end["templates"]):
        raise StoreCorruptedError(f"{path}: {loaded} templates read, {meta['templates']} expected")
    return SnapshotMeta(**meta), chunks
