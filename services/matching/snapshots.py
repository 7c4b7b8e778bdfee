"""A gallery's snapshot file: the whole gallery at one log sequence, as encrypted records::

    record 0           meta: gallery, model, sequence, template and subject counts, the distinct tag sets, the
                       number of subject records, next keys, time
    records 1..s       chunks of SNAPSHOT_CHUNK subjects: their keys, id offsets, tag set numbers (into the meta's
                       tag sets) and ids (one UTF-8 blob), as little-endian blocks
    records s+1..s+n   chunks of SNAPSHOT_CHUNK templates: their template keys, subject keys, sign codes, id
                       offsets, scales, int8 rows and ids (one UTF-8 blob)
    record s+n+1       end marker with the template count

The blocks are the native gallery's stored form (`_matcher.Gallery.stored`) and the id table's packed ids
(`_matcher.IdTable`): loading decrypts each chunk and hands its blocks to `Gallery.restore` and the id table as
numpy views, with no rounding, no encoding and no Python object per template or subject. Each chunk starts with
its count (8 bytes) and its 8-byte blocks come first, so that every block is aligned in the decrypted record.
It is written whole (``write_atomically``: a crash leaves the previous snapshot) and read whole, so any damage is
corruption, never a torn write. Format 2 (subjects and template ids in JSON) and format 1 (float vectors too) are
still read.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import orjson

from retailface import _matcher
from retailface.services.matching.crypto import RecordCipher, read_sealed_file
from retailface.services.matching.errors import StoreCorruptedError
from retailface.services.matching.recordlog import decode_record, encode_record, write_atomically

SNAPSHOT_FILE = "snapshot.bin"
SNAPSHOT_CHUNK = 16384  # templates (or subjects) per snapshot record


class PackedIds(Sequence[str]):
    """Ids end to end in one UTF-8 blob, id i being blob[offsets[i]:offsets[i + 1]]: how snapshots and the id table
    pass ids in bulk, without a str per id. A sequence of str (each made when asked for)."""

    __slots__ = ("blob", "offsets")

    def __init__(self, offsets: np.ndarray, blob: bytes | memoryview | np.ndarray) -> None:
        self.offsets = offsets  # uint64 [n + 1]
        # bytes-like (bytes, a numpy uint8 array: numpy's stubs do not declare its buffer), viewed without a copy
        self.blob = memoryview(blob).cast("B")  # type: ignore[arg-type]

    @classmethod
    def pack(cls, ids: Iterable[str]) -> PackedIds:
        encoded = [value.encode() for value in ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.uint64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.uint64, count=len(encoded)), out=offsets[1:])
        return cls(offsets, b"".join(encoded))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> PackedIds: ...
    def __getitem__(self, index: int | slice) -> str | PackedIds:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return PackedIds.pack([self[i] for i in range(start, stop, step)])
            return PackedIds(self.offsets[start : max(start, stop) + 1], self.blob)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("id index out of range")
        return str(self.blob[int(self.offsets[index]) : int(self.offsets[index + 1])], "utf-8")

    def __iter__(self) -> Iterator[str]:
        blob, bounds = self.blob, self.offsets.tolist()
        for start, stop in itertools.pairwise(bounds):
            yield str(blob[start:stop], "utf-8")

    def blocks(self) -> tuple[np.ndarray, memoryview]:
        """(offsets from 0, the ids' bytes) of these ids alone, as a chunk stores them."""
        start, stop = int(self.offsets[0]), int(self.offsets[-1])
        return (self.offsets - np.uint64(start)).astype("<u8"), self.blob[start:stop]


@dataclass(frozen=True, eq=False)
class SubjectChunk:
    ids: PackedIds
    keys: np.ndarray  # int64 [n]
    tag_sets: np.ndarray  # uint32 [n]: numbers into PackedSubjects.tag_sets

    def __len__(self) -> int:
        return len(self.keys)


class PackedSubjects(Sequence[list[Any]]):
    """A snapshot's subjects in bulk form: chunks of ids, keys and tag set numbers, and the distinct tag sets
    (sorted tags) the numbers name. A sequence of [subject id, subject key, sorted tags], as format 2 has them."""

    __slots__ = ("chunks", "tag_sets")

    def __init__(self, tag_sets: list[list[str]], chunks: list[SubjectChunk]) -> None:
        self.tag_sets = tag_sets
        self.chunks = chunks

    @classmethod
    def from_lists(cls, subjects: Iterable[Sequence[Any]]) -> PackedSubjects:
        """From [subject id, subject key, tags] lists (format 2's, or a caller's)."""
        numbers: dict[tuple[str, ...], int] = {}
        ids, keys, tag_sets = [], [], []
        for subject_id, key, tags in subjects:
            ids.append(subject_id)
            keys.append(int(key))
            tag_sets.append(numbers.setdefault(tuple(sorted(tags)), len(numbers)))
        chunk = SubjectChunk(
            PackedIds.pack(ids), np.asarray(keys, dtype=np.int64), np.asarray(tag_sets, dtype=np.uint32)
        )
        return cls([list(tags) for tags in numbers], [chunk])

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def __getitem__(self, index: int) -> list[Any]:  # type: ignore[override]
        if index < 0:
            index += len(self)
        for chunk in self.chunks:
            if index < len(chunk):
                return [chunk.ids[index], int(chunk.keys[index]), list(self.tag_sets[int(chunk.tag_sets[index])])]
            index -= len(chunk)
        raise IndexError("subject index out of range")

    def __iter__(self) -> Iterator[list[Any]]:
        for chunk in self.chunks:
            for subject_id, key, number in zip(chunk.ids, chunk.keys.tolist(), chunk.tag_sets.tolist(), strict=True):
                yield [subject_id, key, list(self.tag_sets[number])]

    def id_bytes(self) -> int:
        return sum(int(chunk.ids.offsets[-1] - chunk.ids.offsets[0]) for chunk in self.chunks)


@dataclass(frozen=True)
class SnapshotMeta:
    gallery: str
    model: list[Any]  # [model id, version, dim]
    sequence: int  # the last log record the snapshot holds
    templates: int
    # [subject id, subject key, sorted tags] each: PackedSubjects (read from format 3, and from the gallery), or lists
    subjects: Sequence[Sequence[Any]]
    next_subject_key: int
    next_template_key: int
    created_at: str  # ISO 8601 UTC


SNAPSHOT_FORMAT = 3


@dataclass(frozen=True)
class TemplateChunk:
    """Templates in the gallery's stored form (or, from a format-1 snapshot, as float vectors)."""

    template_ids: Sequence[str]  # PackedIds (format 3, and from the gallery) or a list
    template_keys: np.ndarray  # int64 [n]
    subject_keys: np.ndarray  # int64 [n]
    scales: np.ndarray | None = None  # float32 [n]
    rows: np.ndarray | None = None  # int8 [n, dim]
    codes: np.ndarray | None = None  # uint64 [n, _matcher.CODE_WORDS]
    vectors: np.ndarray | None = None  # float32 [n, dim], format 1 only

    def __len__(self) -> int:
        return len(self.template_keys)


def _blocks(dim: int) -> list[tuple[str, str, int]]:
    """(field, little-endian dtype, values per template) of a format-2 chunk's payload, in order."""
    return [
        ("template_keys", "<i8", 1),
        ("subject_keys", "<i8", 1),
        ("scales", "<f4", 1),
        ("rows", "i1", dim),
        ("codes", "<u8", _matcher.CODE_WORDS),
    ]


# Format 3's chunks: (field, dtype, values per item, extra values) before the ids' blob; 8-byte blocks first.
# "offsets" are the ids' (n + 1 of them, from 0).
_TEMPLATE_BLOCKS = [
    ("template_keys", "<i8", 1, 0),
    ("subject_keys", "<i8", 1, 0),
    ("codes", "<u8", _matcher.CODE_WORDS, 0),
    ("offsets", "<u8", 1, 1),
    ("scales", "<f4", 1, 0),
    ("rows", "i1", -1, 0),  # dim per template
]
_SUBJECT_BLOCKS = [
    ("keys", "<i8", 1, 0),
    ("offsets", "<u8", 1, 1),
    ("tag_sets", "<u4", 1, 0),
]
_COUNT = struct.Struct("<Q")


def _context(gallery: str) -> str:
    return f"snapshot|{gallery}"


def write_snapshot(path: Path, cipher: RecordCipher, meta: SnapshotMeta, templates: TemplateChunk) -> None:
    """Replaces the snapshot at ``path`` with ``meta`` and every template, atomically."""
    write_atomically(path, snapshot_frames(cipher, meta, templates, _context(meta.gallery)))


def snapshot_frames(
    cipher: RecordCipher, meta: SnapshotMeta, templates: TemplateChunk, context: str
) -> Iterable[bytes]:
    """The snapshot's sealed records in order (meta, subject chunks, template chunks, end), record i sealed as
    (context, i)."""
    subjects = meta.subjects if isinstance(meta.subjects, PackedSubjects) else PackedSubjects.from_lists(meta.subjects)
    template_ids = templates.template_ids
    if not isinstance(template_ids, PackedIds):
        template_ids = PackedIds.pack(template_ids)
    subject_slices = [
        (chunk, start, min(start + SNAPSHOT_CHUNK, len(chunk)))
        for chunk in subjects.chunks
        for start in range(0, len(chunk), SNAPSHOT_CHUNK)
    ]
    header = {field.name: getattr(meta, field.name) for field in dataclasses.fields(meta)}
    header |= {
        "subjects": len(subjects),
        "tag_sets": subjects.tag_sets,
        "subject_records": len(subject_slices),
        "format": SNAPSHOT_FORMAT,
    }
    sequence = 0
    yield cipher.seal(context, sequence, encode_record(header))
    for chunk, start, stop in subject_slices:
        offsets, blob = chunk.ids[start:stop].blocks()
        fields = {"keys": chunk.keys[start:stop], "offsets": offsets, "tag_sets": chunk.tag_sets[start:stop]}
        sequence += 1
        yield cipher.seal(context, sequence, _chunk_payload(stop - start, _SUBJECT_BLOCKS, fields, blob))
    count = len(templates)
    for start in range(0, count, SNAPSHOT_CHUNK):
        stop = min(start + SNAPSHOT_CHUNK, count)
        offsets, blob = template_ids[start:stop].blocks()
        fields = {name: getattr(templates, name)[start:stop] for name in ("template_keys", "subject_keys", "codes")}
        fields |= {"offsets": offsets, "scales": templates.scales[start:stop], "rows": templates.rows[start:stop]}  # type: ignore[index]
        sequence += 1
        yield cipher.seal(context, sequence, _chunk_payload(stop - start, _TEMPLATE_BLOCKS, fields, blob))
    yield cipher.seal(context, sequence + 1, encode_record({"end": True, "templates": count}))


def _chunk_payload(
    count: int, blocks: list[tuple[str, str, int, int]], fields: dict[str, Any], blob: memoryview
) -> bytes:
    payload: list[Any] = [_COUNT.pack(count)]
    for field, dtype, _, _ in blocks:
        payload.append(np.ascontiguousarray(fields[field], dtype=dtype).tobytes())
    payload.append(blob)
    return b"".join(payload)


def read_snapshot(path: Path, cipher: RecordCipher, gallery: str, dim: int) -> tuple[SnapshotMeta, list[TemplateChunk]]:
    """The snapshot file's meta and template chunks; raises StoreCorruptedError unless it is whole and consistent."""
    return parse_snapshot(read_sealed_file(path, cipher, _context(gallery)), gallery, dim, str(path))


def parse_snapshot(
    records: list[bytes], gallery: str, dim: int, where: str
) -> tuple[SnapshotMeta, list[TemplateChunk]]:
    """Meta and chunks from a snapshot's decrypted records, checked whole and consistent (`where` names them)."""
    if len(records) < 2:
        raise StoreCorruptedError(f"{where} is incomplete; restore it from a backup")
    try:
        meta, _ = decode_record(records[0], dim)
        end, _ = decode_record(records[-1], dim)
    except (struct.error, ValueError) as error:  # a chunk where the end marker should be: records are missing
        raise StoreCorruptedError(f"{where} is not a complete snapshot of {gallery}") from error
    if not isinstance(meta, dict) or not isinstance(end, dict) or meta.get("gallery") != gallery or not end.get("end"):
        raise StoreCorruptedError(f"{where} is not a complete snapshot of {gallery}")
    snapshot_format = meta.pop("format", 1)
    first = 1
    if snapshot_format >= 3:
        subject_records = int(meta.pop("subject_records"))
        tag_sets = meta.pop("tag_sets")
        first += subject_records
        subjects = PackedSubjects(tag_sets, [_subject_chunk(where, plaintext) for plaintext in records[1:first]])
        if len(subjects) != int(meta["subjects"]):
            raise StoreCorruptedError(f"{where}: {len(subjects)} subjects read, {meta['subjects']} expected")
        if any(len(chunk) and int(chunk.tag_sets.max()) >= len(tag_sets) for chunk in subjects.chunks):
            raise StoreCorruptedError(f"{where}: a subject has a tag set the snapshot does not list")
        meta["subjects"] = subjects
        chunks = [_packed_chunk(where, plaintext, dim) for plaintext in records[first:-1]]
    else:
        read_chunk = _stored_chunk if snapshot_format >= 2 else _float_chunk
        chunks = [read_chunk(where, plaintext, dim) for plaintext in records[1:-1]]
    loaded = sum(len(chunk) for chunk in chunks)
    if loaded != int(meta["templates"]) or loaded != int(end["templates"]):
        raise StoreCorruptedError(f"{where}: {loaded} templates read, {meta['templates']} expected")
    return SnapshotMeta(**meta), chunks


def _read_blocks(
    where: str, plaintext: bytes, blocks: list[tuple[str, str, int, int]], dim: int
) -> tuple[int, dict[str, np.ndarray], PackedIds]:
    """A format-3 chunk: its count, its blocks as numpy views of the decrypted bytes (no copy), its ids."""
    if len(plaintext) < _COUNT.size:
        raise StoreCorruptedError(f"{where}: a chunk is shorter than its count")
    (count,) = _COUNT.unpack_from(plaintext)
    offset, fields = _COUNT.size, {}
    for field, dtype, per_item, extra in blocks:
        per_item = dim if per_item < 0 else per_item
        values_count = count * per_item + extra
        size = values_count * np.dtype(dtype).itemsize
        if offset + size > len(plaintext):
            raise StoreCorruptedError(f"{where}: a chunk of {count} is shorter than its blocks")
        values = np.frombuffer(plaintext, dtype=dtype, count=values_count, offset=offset)
        fields[field] = values.reshape(count, per_item) if per_item > 1 else values
        offset += size
    offsets = fields.pop("offsets")
    blob = np.frombuffer(plaintext, dtype=np.uint8, offset=offset)
    if offsets[0] != 0 or int(offsets[-1]) != len(blob) or (count and bool((offsets[1:] < offsets[:-1]).any())):
        raise StoreCorruptedError(f"{where}: a chunk of {count} has id offsets that do not fit its ids")
    return count, fields, PackedIds(offsets, blob)


def _subject_chunk(where: str, plaintext: bytes) -> SubjectChunk:
    _, fields, ids = _read_blocks(where, plaintext, _SUBJECT_BLOCKS, 0)
    return SubjectChunk(ids, fields["keys"], fields["tag_sets"])


def _packed_chunk(where: str, plaintext: bytes, dim: int) -> TemplateChunk:
    _, fields, ids = _read_blocks(where, plaintext, _TEMPLATE_BLOCKS, dim)
    return TemplateChunk(ids, **fields)


def _stored_chunk(where: str, plaintext: bytes, dim: int) -> TemplateChunk:
    """A format-2 chunk: ids in JSON, then its blocks as numpy views of the decrypted bytes (no copy)."""
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
