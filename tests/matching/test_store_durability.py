"""The durable gallery store over the real native Gallery: replay, snapshots, torn records, keys, encryption."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Opener
from stored_form import stored_form

from retailface.services.matching.crypto import RecordCipher, load_key, scan_frames
from retailface.services.matching.errors import (
    DataDirLockedError,
    KeyConfigError,
    ModelMismatchError,
    StoreCorruptedError,
)
from retailface.services.matching.params import DurabilityPolicy, GalleryPolicy, IndexParams
from retailface.services.matching.recordlog import encode_record
from retailface.services.matching.snapshots import read_snapshot
from retailface.services.matching.store import MatchingStore
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1.matching_pb2 import DECISION_MATCH

DIM = 128
MODEL = ModelIdentity("sface", "2021dec", DIM)
POLICIES = [GalleryPolicy("members", 0.48, 0.05), GalleryPolicy("watchlist", 0.55, 0.08)]
MANUAL = DurabilityPolicy(snapshot_every_records=1_000_000, erase_purge_seconds=3600, snapshot_on_close=False)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def open_store(
    data_dir: Path, key: bytes, durability: DurabilityPolicy = MANUAL, model: ModelIdentity = MODEL
) -> MatchingStore:
    # A small initial capacity keeps the ~1,000 reopenings of the torn-record test fast; the index grows.
    return MatchingStore(data_dir, key, POLICIES, model, IndexParams(initial_capacity=16), durability=durability)


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def store(tmp_path: Path, key: bytes) -> Iterator[MatchingStore]:
    opened = open_store(tmp_path / "data", key)
    yield opened
    opened.close()


def segments(gallery_dir: Path) -> list[Path]:
    return sorted(gallery_dir.glob("wal-*.log"))


def enroll_subjects(
    store: MatchingStore,
    rng: np.random.Generator,
    subjects: int,
    per_subject: int,
    gallery: str = "members",
    prefix: str = "s",
) -> dict[str, tuple[str, np.ndarray]]:
    enrolled: dict[str, tuple[str, np.ndarray]] = {}
    for s in range(subjects):
        vectors = unit_vectors(rng, per_subject)
        template_ids = [f"{prefix}{s}-t{t}" for t in range(per_subject)]
        store.gallery(gallery).enroll(f"{prefix}{s}", template_ids, vectors, tags=["consent:face"])
        for template_id, vector in zip(template_ids, vectors, strict=True):
            enrolled[template_id] = (f"{prefix}{s}", vector)
    return enrolled


def assert_holds_exactly(
    store: MatchingStore, expected: dict[str, tuple[str, np.ndarray]], gallery: str = "members"
) -> None:
    held = store.gallery(gallery).export_templates()
    assert sorted(held) == sorted(expected)
    for template_id, (subject_id, vector) in expected.items():
        assert held[template_id][0] == subject_id
        np.testing.assert_array_equal(held[template_id][1], stored_form(vector[None])[0])  # as the gallery holds it


def test_log_replay_restores_enrolls_erases_and_tags(opener: Opener, key: bytes, rng: np.random.Generator) -> None:
    store = opener(key)
    enrolled = enroll_subjects(store, rng, subjects=6, per_subject=3)
    watch = enroll_subjects(store, rng, subjects=2, per_subject=1, gallery="watchlist", prefix="w")
    members = store.gallery("members")
    assert members.erase_subject("s2")[0] == 3
    members.set_tags("s3", ["consent:face", "region:eu"])
    replaced = unit_vectors(rng, 1)
    assert members.enroll("s4", ["s4-t0"], replaced).subject_template_count == 3
    store.close()
    for template_id in ("s2-t0", "s2-t1", "s2-t2"):
        del enrolled[template_id]
    enrolled["s4-t0"] = ("s4", replaced[0])

    reopened = opener(key)
    try:
        assert_holds_exactly(reopened, enrolled)
        assert_holds_exactly(reopened, watch, gallery="watchlist")
        members = reopened.gallery("members")
        assert members.stats().records_since_snapshot == 6 + 1 + 1 + 1
        assert members.subject_tags("s3") == {"consent:face", "region:eu"}
        assert members.subject_tags("s2") == frozenset()
        # The erased subject's own template, searched verbatim, finds someone else or nothing.
        outcome = members.search(unit_vectors(rng, 1), top_k=10)
        assert all(c.subject_id != "s2" for r in outcome.results for c in r.candidates)
        exact = members.search(enrolled["s3-t1"][1][None, :], top_k=3, required_tags=["region:eu"])
        assert exact.results[0].decision == DECISION_MATCH
        assert [c.subject_id for c in exact.results[0].candidates] == ["s3"]
        # Keys keep growing after a replay: a new subject does not collide with an existing one.
        reenrolled = unit_vectors(rng, 1)
        members.enroll("new", ["new-t0"], reenrolled)
        assert members.search(reenrolled, top_k=1).results[0].candidates[0].subject_id == "new"
        assert members.search(enrolled["s5-t0"][1][None, :], top_k=1).results[0].candidates[0].subject_id == "s5"
    finally:
        reopened.close()


def test_a_gallery_loaded_from_its_snapshot_answers_identically(
    opener: Opener, key: bytes, rng: np.random.Generator
) -> None:
    store = opener(key)
    enroll_subjects(store, rng, subjects=300, per_subject=2)
    queries = unit_vectors(rng, 50)
    queries[:25] = unit_vectors(rng, 25) * 0.5 + store.gallery("members").export_templates()["s7-t1"][1]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    before = store.gallery("members").search(queries, top_k=5)
    store.snapshot("members")
    store.close()
    reopened = opener(key)
    try:
        assert reopened.gallery("members").stats().records_since_snapshot == 0  # loaded from the snapshot alone
        assert reopened.gallery("members").search(queries, top_k=5) == before
    finally:
        reopened.close()


def test_a_format_1_snapshot_of_float_vectors_still_loads(tmp_path: Path, key: bytes, rng: np.random.Generator) -> None:
    gallery_dir = tmp_path / "data" / "members"
    gallery_dir.mkdir(parents=True, mode=0o700)
    vectors = unit_vectors(rng, 3)
    cipher, context = RecordCipher(key), "snapshot|members"
    meta = {
        "gallery": "members",
        "model": [MODEL.model_id, MODEL.version, DIM],
        "sequence": 0,
        "templates": 3,
        "subjects": [["a", 1, ["consent:face"]], ["b", 2, []]],
        "next_subject_key": 3,
        "next_template_key": 4,
        "created_at": "2026-11-30T12:00:00+00:00",
    }
    chunk = {"template_ids": ["a-1", "a-2", "b-1"], "template_keys": [1, 2, 3], "subject_keys": [1, 1, 2]}
    records = [encode_record(meta), encode_record(chunk, vectors), encode_record({"end": True, "templates": 3})]
    (gallery_dir / "snapshot.bin").write_bytes(b"".join(cipher.seal(context, i, r) for i, r in enumerate(records)))
    store = open_store(tmp_path / "data", key)
    try:
        held = {"a-1": ("a", vectors[0]), "a-2": ("a", vectors[1]), "b-1": ("b", vectors[2])}
        assert_holds_exactly(store, held)
    finally:
        store.close()


def test_snapshot_plus_log_and_log_truncation(tmp_path: Path, key: bytes, rng: np.random.Generator) -> None:
    data_dir = tmp_path / "data"
    store = open_store(data_dir, key)
    before = enroll_subjects(store, rng, subjects=5, per_subject=2)
    before_snapshot = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert store.snapshot("members") == ["members"]
    stats = store.gallery("members").stats()
    assert stats.records_since_snapshot == 0
    assert before_snapshot <= dt.datetime.fromisoformat(stats.last_snapshot_at) <= dt.datetime.now(dt.UTC)
    # The snapshot covers every record so far: only the fresh, empty segment is left.
    [segment] = segments(data_dir / "members")
    assert segment.stat().st_size == 0
    after = enroll_subjects(store, rng, subjects=2, per_subject=2, prefix="late")
    store.gallery("members").erase_subject("s0")
    assert store.gallery("members").stats().records_since_snapshot == 3
    store.close()

    expected = {k: v for k, v in (before | after).items() if v[0] != "s0"}
    reopened = open_store(data_dir, key)
    try:
        assert_holds_exactly(reopened, expected)
        assert reopened.gallery("members").stats().records_since_snapshot == 3
        reopened.snapshot()
    finally:
        reopened.close()
    again = open_store(data_dir, key)
    try:
        assert_holds_exactly(again, expected)
        assert again.gallery("members").stats().records_since_snapshot == 0
    finally:
        again.close()


def test_snapshot_interrupted_before_dropping_the_log_replays_nothing_twice(
    tmp_path: Path, key: bytes, rng: np.random.Generator
) -> None:
    """A crash after the snapshot's rename but before the old segments are deleted leaves records the
    snapshot already holds; replay must skip them (a second enroll of an erased subject would resurrect it)."""
    data_dir = tmp_path / "data"
    store = open_store(data_dir, key)
    expected = enroll_subjects(store, rng, subjects=3, per_subject=2)
    store.gallery("members").erase_subject("s1")
    old_segments = {path: path.read_bytes() for path in segments(data_dir / "members")}
    store.snapshot("members")
    store.close()
    for path, data in old_segments.items():
        path.write_bytes(data)  # as if the process died before drop_segments_before
    reopened = open_store(data_dir, key)
    try:
        assert_holds_exactly(reopened, {k: v for k, v in expected.items() if v[0] != "s1"})
        assert reopened.gallery("members").stats().records_since_snapshot == 0
    finally:
        reopened.close()


def test_torn_last_record_is_dropped_at_every_byte_offset(tmp_path: Path, key: bytes, rng: np.random.Generator) -> None:
    data_dir = tmp_path / "data"
    store = open_store(data_dir, key)
    acknowledged = enroll_subjects(store, rng, subjects=3, per_subject=2)
    torn_vectors = unit_vectors(rng, 2)
    store.gallery("members").enroll("torn", ["torn-t0", "torn-t1"], torn_vectors)
    store.close()
    [segment] = segments(data_dir / "members")
    data = segment.read_bytes()
    last = scan_frames(data).frames[-1]
    assert last.end == len(data)

    for cut in range(last.start, last.end):
        segment.write_bytes(data[:cut])
        reopened = open_store(data_dir, key)
        try:
            # All of the acknowledged subjects, none of the torn enroll (not one of its two templates).
            assert_holds_exactly(reopened, acknowledged)
            assert reopened.gallery("members").subject_templates("torn") == {}
        finally:
            reopened.close()
        assert segment.stat().st_size == last.start, f"cut at {cut}: the torn tail is not cut off"

    # After the repair, new appends land after the good records and survive the next restart.
    segment.write_bytes(data[: last.start + 5])
    reopened = open_store(data_dir, key)
    later = enroll_subjects(reopened, rng, subjects=1, per_subject=1, prefix="later")
    reopened.close()
    final = open_store(data_dir, key)
    try:
        assert_holds_exactly(final, acknowledged | later)
    finally:
        final.close()


def test_bad_checksum_on_last_record_drops_it_and_in_the_middle_refuses_to_start(
    tmp_path: Path, key: bytes, rng: np.random.Generator
) -> None:
    data_dir = tmp_path / "data"
    store = open_store(data_dir, key)
    acknowledged = enroll_subjects(store, rng, subjects=3, per_subject=1)
    store.close()
    [segment] = segments(data_dir / "members")
    data = bytearray(segment.read_bytes())
    frames = scan_frames(bytes(data)).frames

    last = bytearray(data)
    last[frames[-1].end - 3] ^= 0x40  # inside the GCM tag: the CRC no longer matches
    segment.write_bytes(bytes(last))
    reopened = open_store(data_dir, key)
    try:
        assert_holds_exactly(reopened, {k: v for k, v in acknowledged.items() if v[0] != "s2"})
    finally:
        reopened.close()

    middle = bytearray(data)
    middle[frames[1].start + 20] ^= 0x01
    segment.write_bytes(bytes(middle))
    with pytest.raises(StoreCorruptedError, match="damaged and more data follows"):
        open_store(data_dir, key)
    assert segment.read_bytes() == bytes(middle), "a store that refuses to start must not 'repair' the log"


def test_wrong_key_fails_clearly_and_changes_nothing(tmp_path: Path, key: bytes, rng: np.random.Generator) -> None:
    data_dir = tmp_path / "data"
    store = open_store(data_dir, key)
    enroll_subjects(store, rng, subjects=2, per_subject=1)
    store.close()
    before = {path: path.read_bytes() for path in data_dir.rglob("*") if path.is_file()}
    with pytest.raises(KeyConfigError, match="not the key the data dir"):
        open_store(data_dir, os.urandom(32))
    assert before == {path: path.read_bytes() for path in data_dir.rglob("*") if path.is_file()}
    # Without the key check file, the log itself refuses a wrong key instead of dropping records, and the
    # wrong key does not get to write a key check of its own.
    (data_dir / "key-check.bin").unlink()
    with pytest.raises(StoreCorruptedError, match="does not decrypt"):
        open_store(data_dir, os.urandom(32))
    assert not (data_dir / "key-check.bin").exists()
    assert {p: b for p, b in before.items() if p.name != "key-check.bin"} == {
        path: path.read_bytes() for path in data_dir.rglob("*") if path.is_file()
    }
    open_store(data_dir, key).close()
    assert (data_dir / "key-check.bin").exists()


@pytest.mark.parametrize("encode", [bytes, lambda raw: base64.b64encode(raw) + b"\n"], ids=["raw", "base64"])
def test_a_key_file_holds_the_key_raw_or_in_base64(tmp_path: Path, encode: Callable[[bytes], bytes]) -> None:
    raw = os.urandom(32)
    (tmp_path / "matching.key").write_bytes(encode(raw))
    assert load_key(tmp_path / "matching.key") == raw


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (None, None, "RETAILFACE_MATCHING_KEY_FILE is not set"),
        ("absent.key", None, "cannot read the matching key file"),
        ("short.key", base64.b64encode(os.urandom(16)), "neither 32 raw bytes nor the base64"),
    ],
    ids=["unset", "absent", "short"],
)
def test_an_unusable_key_file_says_how_to_fix_it(
    tmp_path: Path, name: str | None, content: bytes | None, message: str
) -> None:
    if name is not None and content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(KeyConfigError, match=message) as error:
        load_key(None if name is None else tmp_path / name)
    assert "keygen" in str(error.value)


def test_templates_and_ids_are_encrypted_at_rest(tmp_path: Path, key: bytes, rng: np.random.Generator) -> None:
    data_dir = tmp_path / "data"
    store = open_store(data_dir, key)
    in_snapshot = enroll_subjects(store, rng, subjects=4, per_subject=2, prefix="member-alice-")
    store.snapshot()
    in_log = enroll_subjects(store, rng, subjects=4, per_subject=2, prefix="member-bob-")
    store.close()
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert any(path.name == "snapshot.bin" for path in files) and any(path.suffix == ".log" for path in files)
    blob = b"".join(path.read_bytes() for path in files)
    for template_id, (subject_id, vector) in (in_snapshot | in_log).items():
        raw = vector.astype("<f4").tobytes()
        for start in range(0, len(raw) - 16, 16):
            assert raw[start : start + 16] not in blob, f"template {template_id} is readable at rest"
        assert template_id.encode() not in blob and subject_id.encode() not in blob


def test_erase_is_immediate_and_purged_from_disk_by_the_next_snapshot(
    tmp_path: Path, key: bytes, rng: np.random.Generator
) -> None:
    data_dir = tmp_path / "data"
    store = open_store(data_dir, key, DurabilityPolicy(1_000_000, erase_purge_seconds=0.0, snapshot_on_close=False))
    try:
        enrolled = enroll_subjects(store, rng, subjects=4, per_subject=2)
        members = store.gallery("members")
        probe = enrolled["s1-t0"][1][None, :]
        assert members.search(probe, top_k=1).results[0].candidates[0].subject_id == "s1"
        assert store.erase_subject("", "s1")[0] == 2
        assert all(c.subject_id != "s1" for c in members.search(probe, top_k=4).results[0].candidates)
        assert store.erase_subject("", "s1")[0] == 0
        # The background thread snapshots within erase_purge_seconds and drops the log holding s1's templates.
        for _ in range(100):
            if members.stats().records_since_snapshot == 0:
                break
            time.sleep(0.05)
        assert members.stats().records_since_snapshot == 0
    finally:
        store.close()
    cipher = RecordCipher(key)
    for segment in segments(data_dir / "members"):
        assert scan_frames(segment.read_bytes()).frames == []
    meta, chunks = read_snapshot(data_dir / "members" / "snapshot.bin", cipher, "members", DIM)
    assert "s1" not in [subject_id for subject_id, _, _ in meta.subjects]
    assert "s1-t0" not in [template_id for chunk in chunks for template_id in chunk.template_ids]


def test_a_second_store_on_the_same_data_dir_is_refused(tmp_path: Path, key: bytes) -> None:
    store = open_store(tmp_path / "data", key)
    try:
        with pytest.raises(DataDirLockedError, match="another matching service is using"):
            open_store(tmp_path / "data", key)
    finally:
        store.close()
    open_store(tmp_path / "data", key).close()  # free again once the first one closed


@pytest.mark.parametrize("snapshot", [False, True], ids=["in-the-log", "in-the-snapshot"])
def test_templates_of_another_model_refuse_to_load(
    opener: Opener, key: bytes, rng: np.random.Generator, snapshot: bool
) -> None:
    store = opener(key)
    enroll_subjects(store, rng, subjects=1, per_subject=1)
    if snapshot:
        store.snapshot()
    store.close()
    where = "the snapshot" if snapshot else "log record 1"
    with pytest.raises(
        ModelMismatchError, match=rf"{where} holds .*sface/2021dec \(dim 128\).*configured for sface/2024"
    ):
        opener(key, model=ModelIdentity("sface", "2024", DIM))
