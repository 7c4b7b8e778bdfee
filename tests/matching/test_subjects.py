"""A gallery's ids (subjects.py over the native id table) and how snapshots carry them: format 3 packs the ids,
formats 1 and 2 (JSON ids) still load."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import orjson
import pytest

from retailface import _matcher
from retailface.services.matching import snapshots
from retailface.services.matching.crypto import RecordCipher
from retailface.services.matching.errors import StoreCorruptedError, TemplateConflictError
from retailface.services.matching.gallery_index import GalleryIndex
from retailface.services.matching.params import IndexParams
from retailface.services.matching.recordlog import encode_record, write_atomically
from retailface.services.matching.snapshots import (
    PackedIds,
    PackedSubjects,
    SnapshotMeta,
    TemplateChunk,
    read_snapshot,
    write_snapshot,
)
from retailface.services.matching.subjects import SubjectIndex
from retailface.services.shared.model_identity import ModelIdentity

DIM = 128
MODEL = ModelIdentity("sface", "2021dec", DIM)
TAGS = ["consent:face", "store:1", "store:2", "vip", "ünïcode"]


class Reference:
    """The ids as plain Python dicts: what SubjectIndex answered before its ids moved into native code."""

    def __init__(self) -> None:
        self.subjects: dict[str, tuple[int, frozenset[str], dict[str, int]]] = {}

    def allowed(self, subject_ids: list[str], tags: list[str]) -> np.ndarray | None:
        if not subject_ids and not tags:
            return None
        keys = {
            key
            for subject_id, (key, held, _) in self.subjects.items()
            if frozenset(tags) <= held and (not subject_ids or subject_id in subject_ids)
        }
        return np.array(sorted(keys), dtype=np.int64)


def random_changes(seed: int, steps: int = 600) -> tuple[SubjectIndex, Reference]:
    """Enrolls, re-enrolls, tag changes and erasures at random, applied to both."""
    rng = np.random.default_rng(seed)
    ids, reference = SubjectIndex("members"), Reference()
    for _ in range(steps):
        subject_id = f"s-{int(rng.integers(60))}-Ω"
        action = rng.random()
        if action < 0.6:
            count = int(rng.integers(1, 4))
            template_ids = [f"{subject_id}/t{int(rng.integers(5))}" for _ in range(count)]
            template_ids = list(dict.fromkeys(template_ids))
            tags = frozenset(rng.choice(TAGS, size=int(rng.integers(0, 3)), replace=False).tolist())
            key, template_keys = ids.keys_for_enroll(subject_id, template_ids)
            if subject_id not in ids:
                ids.add_subject(subject_id, key, tags)
                reference.subjects[subject_id] = (key, tags, {})
            for template_id, template_key in zip(template_ids, template_keys, strict=True):
                ids.bind_template(subject_id, template_id, template_key)
                reference.subjects[subject_id][2][template_id] = template_key
        elif action < 0.8 and subject_id in ids:
            tags = frozenset(rng.choice(TAGS, size=int(rng.integers(0, 4)), replace=False).tolist())
            ids.set_tags(subject_id, tags)
            key, _, templates = reference.subjects[subject_id]
            reference.subjects[subject_id] = (key, tags, templates)
        elif subject_id in ids:
            removed = ids.remove(subject_id)
            key, tags, templates = reference.subjects.pop(subject_id)
            assert (removed.key, removed.tags, removed.templates) == (key, tags, templates)
    return ids, reference


def assert_same(ids: SubjectIndex, reference: Reference) -> None:
    assert len(ids) == len(reference.subjects)
    for subject_id, (key, tags, templates) in reference.subjects.items():
        assert subject_id in ids
        subject = ids.get(subject_id)
        assert subject is not None and (subject.key, subject.tags, subject.templates) == (key, tags, templates)
        assert ids.tags(subject_id) == tags and ids.templates(subject_id) == templates
        assert ids.template_count(subject_id) == len(templates) and ids.subject_id(key) == subject_id
        for template_id, template_key in templates.items():
            assert ids.template_id(template_key) == template_id and ids.owner(template_id) == subject_id
    names = sorted(reference.subjects)
    filters = [([], [tag]) for tag in TAGS] + [([], ["store:1", "consent:face"]), ([], ["unknown"])]
    filters += [(names[:5], []), ([*names[::3], "nobody"], ["consent:face"]), (["nobody"], [])]
    for subject_ids, tags in filters:
        allowed, expected = ids.allowed_keys(subject_ids, tags), reference.allowed(subject_ids, tags)
        assert allowed is not None and expected is not None
        assert allowed.dtype == np.int64 and allowed.tolist() == expected.tolist(), (subject_ids, tags)
    assert ids.allowed_keys([], []) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_ids_answer_as_python_dicts_did_through_enrolls_tags_and_erasures(seed: int) -> None:
    ids, reference = random_changes(seed)
    assert_same(ids, reference)
    # A tag set no subject has any more is forgotten (its number reused): the tag sets stay few.
    assert len(ids._tag_set_numbers) == len({tags for _, tags, _ in reference.subjects.values()})


def test_a_cached_filter_follows_every_change() -> None:
    ids = SubjectIndex("members")
    ids.add_subject("a", 1, frozenset({"vip"}))
    assert ids.allowed_keys([], ["vip"]).tolist() == [1]
    ids.add_subject("b", 2, frozenset({"vip"}))
    assert ids.allowed_keys([], ["vip"]).tolist() == [1, 2]
    ids.set_tags("a", frozenset())
    assert ids.allowed_keys([], ["vip"]).tolist() == [2]
    ids.remove("b")
    assert ids.allowed_keys([], ["vip"]).tolist() == []


@pytest.mark.parametrize("form", ["lists", "packed"])
def test_a_restore_holds_what_the_changes_made(form: str) -> None:
    ids, reference = random_changes(seed=4)
    exported = ids.export()
    subjects = [list(subject) for subject in exported] if form == "lists" else exported
    restored = SubjectIndex("members")
    restored.restore(subjects)
    keys = np.array([key for _, key, _ in exported], dtype=np.int64)
    template_ids = [t for subject_id, _, _ in exported for t in reference.subjects[subject_id][2]]
    template_keys = np.array([k for subject_id, _, _ in exported for k in reference.subjects[subject_id][2].values()])
    owners = np.array([reference.subjects[ids.owner(t)][0] for t in template_ids], dtype=np.int64)
    packed = PackedIds.pack(template_ids) if form == "packed" else template_ids
    restored.bind_many(packed, template_keys.astype(np.int64), owners)
    assert_same(restored, reference)
    assert restored.next_subject_key == int(keys.max()) + 1
    assert restored.next_template_key == int(template_keys.max()) + 1
    with pytest.raises(KeyError):
        restored.bind_many(["orphan"], np.array([10_000], dtype=np.int64), np.array([99_999], dtype=np.int64))


def test_enroll_keys_are_the_held_ones_or_new_and_a_template_of_another_subject_conflicts() -> None:
    ids = SubjectIndex("members")
    ids.add_subject("alice", 1, frozenset())
    ids.bind_template("alice", "a1", 1)
    ids.next_template_key = 5
    assert ids.keys_for_enroll("alice", ["a1", "a2", "a3"]) == (1, [1, 5, 6])
    assert ids.keys_for_enroll("bob", ["b1"]) == (2, [5])
    with pytest.raises(TemplateConflictError, match="a1 already belongs to another subject"):
        ids.keys_for_enroll("bob", ["b1", "a1"])
    with pytest.raises(ValueError):
        ids.add_subject("alice", 9, frozenset({"vip"}))
    assert ids._tag_set_numbers.keys() == {frozenset()}  # the refused subject's tag set is not kept


# ------------------------------------------------------------ snapshots


def enrolled_index(rng: np.random.Generator) -> tuple[GalleryIndex, np.ndarray]:
    index = GalleryIndex("members", MODEL, IndexParams(initial_capacity=16))
    vectors = rng.standard_normal((40, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for s in range(20):
        header = {
            "op": "enroll",
            "model": index.model_record(),
            "subject": f"Zoë-{s}" if s % 2 else f"名前-{s}",
            "subject_key": s + 1,
            "tags": [TAGS[s % len(TAGS)]] if s % 3 else None,
            "templates": [f"t-{s}-a", f"t-{s}-🙂"],
            "template_keys": [2 * s + 1, 2 * s + 2],
        }
        index.apply(header, vectors[2 * s : 2 * s + 2], "test")
    index.apply({"op": "erase", "subject": "名前-4"}, None, "test")
    index.apply({"op": "tags", "subject": "Zoë-5", "tags": ["vip", "store:1"]}, None, "test")
    return index, vectors


def answers(index: GalleryIndex, vectors: np.ndarray) -> list[object]:
    found = index.search(vectors, top_k=3, threshold=0.3, margin=0.05, subject_ids=[], required_tags=[])
    scoped = index.search(vectors[:6], top_k=2, threshold=0.3, margin=0.05, subject_ids=[], required_tags=["vip"])
    return [(o.decision, [(c.subject_id, c.template_id, c.score) for c in o.candidates]) for o in found + scoped]


def test_a_format_3_snapshot_carries_the_ids_packed_and_loads_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "SNAPSHOT_CHUNK", 7)  # several subject and template records
    index, vectors = enrolled_index(np.random.default_rng(0))
    meta, templates = index.contents(sequence=3, created_at="2026-12-02T00:00:00+00:00")
    cipher = RecordCipher(os.urandom(32))
    write_snapshot(tmp_path / "snapshot.bin", cipher, meta, templates)
    read_meta, chunks = read_snapshot(tmp_path / "snapshot.bin", cipher, "members", DIM)
    assert isinstance(read_meta.subjects, PackedSubjects) and len(read_meta.subjects.chunks) == 3  # 19 subjects
    assert all(isinstance(chunk.template_ids, PackedIds) for chunk in chunks) and len(chunks) == 6  # 38 templates
    # As sequences they read as format 2's lists did.
    assert list(read_meta.subjects) == list(meta.subjects)
    assert ["Zoë-5", 6, ["store:1", "vip"]] in list(read_meta.subjects)
    assert [t for chunk in chunks for t in chunk.template_ids] == list(templates.template_ids)
    assert "t-4-a" not in [t for chunk in chunks for t in chunk.template_ids]  # erased
    loaded = GalleryIndex.from_snapshot(read_meta, chunks, "members", MODEL, IndexParams(initial_capacity=16), "x")
    assert answers(loaded, vectors) == answers(index, vectors)
    for subject_id in ["Zoë-5", "名前-6", "名前-4"]:
        assert loaded.subject_templates(subject_id) == index.subject_templates(subject_id)
        assert loaded.subject_tags(subject_id) == index.subject_tags(subject_id)
    assert (loaded.ids.next_subject_key, loaded.ids.next_template_key) == (21, 41)
    assert loaded.export_templates().keys() == index.export_templates().keys()


def write_format_2(path: Path, cipher: RecordCipher, meta: SnapshotMeta, templates: TemplateChunk) -> None:
    """A snapshot as format 2 wrote it: subjects in the meta, each chunk's template ids in JSON."""
    blocks = [("template_keys", "<i8"), ("subject_keys", "<i8"), ("scales", "<f4"), ("rows", "i1"), ("codes", "<u8")]
    header = {
        "gallery": meta.gallery,
        "model": meta.model,
        "sequence": meta.sequence,
        "templates": meta.templates,
        "subjects": [list(subject) for subject in meta.subjects],
        "next_subject_key": meta.next_subject_key,
        "next_template_key": meta.next_template_key,
        "created_at": meta.created_at,
        "format": 2,
    }
    records = [encode_record(header)]
    for start in range(0, len(templates), 16):
        json_ids = orjson.dumps({"template_ids": list(templates.template_ids)[start : start + 16]})
        payload = [struct.pack("<I", len(json_ids)), json_ids]
        for field, dtype in blocks:
            payload.append(np.ascontiguousarray(getattr(templates, field)[start : start + 16], dtype=dtype).tobytes())
        records.append(b"".join(payload))
    records.append(encode_record({"end": True, "templates": len(templates)}))
    write_atomically(path, [cipher.seal("snapshot|members", i, record) for i, record in enumerate(records)])


def test_a_format_2_snapshot_with_json_ids_still_loads(tmp_path: Path) -> None:
    index, vectors = enrolled_index(np.random.default_rng(1))
    meta, templates = index.contents(sequence=3, created_at="2026-12-02T00:00:00+00:00")
    cipher = RecordCipher(os.urandom(32))
    write_format_2(tmp_path / "snapshot.bin", cipher, meta, templates)
    read_meta, chunks = read_snapshot(tmp_path / "snapshot.bin", cipher, "members", DIM)
    assert isinstance(read_meta.subjects, list) and isinstance(chunks[0].template_ids, list)
    loaded = GalleryIndex.from_snapshot(read_meta, chunks, "members", MODEL, IndexParams(initial_capacity=16), "x")
    assert answers(loaded, vectors) == answers(index, vectors)
    assert loaded.subject_tags("Zoë-5") == frozenset({"vip", "store:1"})


def test_a_snapshot_naming_a_subject_twice_is_corrupt(tmp_path: Path) -> None:
    index, _ = enrolled_index(np.random.default_rng(2))
    meta, templates = index.contents(sequence=3, created_at="2026-12-02T00:00:00+00:00")
    subjects = list(meta.subjects)
    subjects.append([subjects[0][0], 999, []])  # the same id under another key
    cipher = RecordCipher(os.urandom(32))
    twice = SnapshotMeta(**{**meta.__dict__, "subjects": subjects})
    write_snapshot(tmp_path / "snapshot.bin", cipher, twice, templates)
    read_meta, chunks = read_snapshot(tmp_path / "snapshot.bin", cipher, "members", DIM)
    with pytest.raises(StoreCorruptedError, match="already a subject's"):
        GalleryIndex.from_snapshot(read_meta, chunks, "members", MODEL, IndexParams(initial_capacity=16), "x")


def test_the_ids_are_in_the_memory_parts() -> None:
    index, _ = enrolled_index(np.random.default_rng(3))
    parts = index.memory_parts
    assert parts["ids"] >= index.ids.memory_bytes + _matcher.Gallery(dim=DIM, capacity=16).memory_parts["ids"]
    assert index.memory_bytes == sum(parts.values())
