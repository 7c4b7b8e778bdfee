"""Matching replicas sharing one PostgreSQL journal: they follow each other, order their writes, and let a
search ask for a replica that holds a given change (read-your-writes)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
import pytest
from conftest import Opener

from retailface.services.matching.errors import DatabaseUnavailableError, KeyConfigError, ReplicaBehindError
from retailface.services.matching.params import DurabilityPolicy, ReplicationPolicy
from retailface.services.matching.pgjournal import PostgresJournal
from retailface.services.matching.store import MatchingStore
from retailface.v1.matching_pb2 import DECISION_MATCH

DIM = 128
# No polling in these tests unless they ask: what arrives, arrives by NOTIFY or by a read on demand.
NOTIFY_ONLY = ReplicationPolicy(poll_seconds=60.0, min_sequence_wait_seconds=0.2)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5)


@pytest.fixture
def replicas(pg_opener: Opener, key: bytes) -> Iterator[tuple[MatchingStore, MatchingStore]]:
    first = pg_opener(key, replication=NOTIFY_ONLY)
    second = pg_opener(key, replication=NOTIFY_ONLY)
    assert first.wait_following(5.0) and second.wait_following(5.0)
    yield first, second
    first.close()
    second.close()


def test_an_enroll_on_one_replica_reaches_the_other_by_notify(
    replicas: tuple[MatchingStore, MatchingStore], rng: np.random.Generator
) -> None:
    first, second = replicas
    vectors = unit_vectors(rng, 2)
    outcome = first.gallery("members").enroll("alice", ["a0", "a1"], vectors)
    assert outcome.sequence == 1
    assert wait_for(lambda: second.gallery("members").applied_sequence == 1)
    found = second.gallery("members").search(vectors[:1], top_k=1).results[0]
    assert (found.decision, found.candidates[0].subject_id, found.candidates[0].template_id) == (
        DECISION_MATCH,
        "alice",
        "a0",
    )


def test_a_search_that_needs_a_newer_change_catches_up_first(
    pg_opener: Opener, key: bytes, rng: np.random.Generator
) -> None:
    writer = pg_opener(key, replication=NOTIFY_ONLY)
    reader = pg_opener(key, replication=NOTIFY_ONLY)
    reader._follower.stop()  # type: ignore[union-attr]  # deaf: only the search's own read can bring the change
    try:
        vectors = unit_vectors(rng, 1)
        sequence = writer.gallery("members").enroll("bob", ["b0"], vectors).sequence
        assert reader.gallery("members").applied_sequence == 0
        reader.gallery("members").await_sequence(sequence)
        assert reader.gallery("members").applied_sequence == sequence
        assert reader.gallery("members").search(vectors, top_k=1).results[0].candidates[0].subject_id == "bob"
    finally:
        writer.close()
        reader.close()


def test_a_replica_that_cannot_reach_the_sequence_answers_unavailable(
    replicas: tuple[MatchingStore, MatchingStore],
) -> None:
    started = time.monotonic()
    with pytest.raises(ReplicaBehindError, match="up to change 0 and the request needs change 5; retry") as error:
        replicas[1].gallery("members").await_sequence(5)
    assert error.value.code.name == "UNAVAILABLE"
    assert 0.2 <= time.monotonic() - started < 1.0


def test_an_erase_on_one_replica_holds_on_the_other_from_its_sequence(
    replicas: tuple[MatchingStore, MatchingStore], rng: np.random.Generator
) -> None:
    first, second = replicas
    vectors = unit_vectors(rng, 1)
    first.gallery("members").enroll("carol", ["c0"], vectors)
    removed, sequences = second.erase_subject("", "carol")  # the second applies the enroll before it erases
    assert (removed, sequences) == (1, {"members": 2, "watchlist": 0})
    first.gallery("members").await_sequence(sequences["members"])
    assert first.gallery("members").search(vectors, top_k=1).results[0].candidates == []


def test_replicas_writing_at_once_keep_one_order_and_hold_the_same_gallery(
    replicas: tuple[MatchingStore, MatchingStore], rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 80)
    sequences: list[int] = []
    lock = threading.Lock()

    def enroll(store: MatchingStore, start: int) -> None:
        for s in range(start, 80, 2):
            done = store.gallery("members").enroll(f"s{s}", [f"s{s}-t"], vectors[s : s + 1])
            with lock:
                sequences.append(done.sequence)

    threads = [threading.Thread(target=enroll, args=(store, start)) for start, store in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sequences) == list(range(1, 81))
    for store in replicas:
        store.gallery("members").await_sequence(80)
    first, second = (store.gallery("members").export_templates() for store in replicas)
    assert sorted(first) == sorted(second) == sorted(f"s{s}-t" for s in range(80))
    for template_id, (subject_id, vector) in first.items():
        assert second[template_id][0] == subject_id
        np.testing.assert_array_equal(second[template_id][1], vector)
    # Same keys on both: a key named by one replica's record is the same template on the other.
    assert first["s7-t"][0] == "s7"
    assert replicas[0].gallery("members").subject_templates("s7") == replicas[1].gallery("members").subject_templates(
        "s7"
    )


def test_a_replica_behind_a_newer_snapshot_reloads_from_it(
    pg_opener: Opener, key: bytes, rng: np.random.Generator
) -> None:
    writer = pg_opener(key, replication=NOTIFY_ONLY)
    late = pg_opener(key, replication=NOTIFY_ONLY)
    late._follower.stop()  # type: ignore[union-attr]
    try:
        vectors = unit_vectors(rng, 6)
        for s in range(6):
            writer.gallery("members").enroll(f"s{s}", [f"s{s}-t"], vectors[s : s + 1])
        writer.erase_subject("members", "s0")
        assert writer.snapshot("members") == ["members"]
        with psycopg.connect(writer._database.conninfo) as conn:  # type: ignore[union-attr]
            assert conn.execute("SELECT count(*) FROM matching_log").fetchone() == (0,)  # the snapshot covers it
        late.gallery("members").await_sequence(7)
        assert sorted(late.gallery("members").export_templates()) == [f"s{s}-t" for s in range(1, 6)]
        assert late.gallery("members").stats().records_since_snapshot == 0
    finally:
        writer.close()
        late.close()


def test_one_replica_at_a_time_writes_a_snapshot(
    replicas: tuple[MatchingStore, MatchingStore], rng: np.random.Generator
) -> None:
    first, second = replicas
    vectors = unit_vectors(rng, 300)
    first.gallery("members").enroll("many", [f"t{t}" for t in range(300)], vectors)
    second.gallery("members").await_sequence(1)
    written: list[bool] = []
    barrier = threading.Barrier(2)

    def snapshot(store: MatchingStore) -> None:
        barrier.wait()
        written.append(store.gallery("members").snapshot())

    threads = [threading.Thread(target=snapshot, args=(store,)) for store in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(written) == [False, True]
    with psycopg.connect(first._database.conninfo) as conn:  # type: ignore[union-attr]
        assert conn.execute("SELECT gallery, sequence FROM matching_snapshots").fetchall() == [("members", 1)]


def test_a_new_replica_loads_the_snapshot_and_the_log_after_it(
    pg_opener: Opener, key: bytes, rng: np.random.Generator
) -> None:
    first = pg_opener(key, replication=NOTIFY_ONLY)
    try:
        vectors = unit_vectors(rng, 4)
        for s in range(3):
            first.gallery("members").enroll(f"s{s}", [f"s{s}-t"], vectors[s : s + 1])
        first.snapshot("members")
        first.gallery("members").enroll("s3", ["s3-t"], vectors[3:])
        joined = pg_opener(key, replication=NOTIFY_ONLY)
        try:
            members = joined.gallery("members")
            assert (members.applied_sequence, members.stats().records_since_snapshot) == (4, 1)
            assert members.export_templates().keys() == first.gallery("members").export_templates().keys()
        finally:
            joined.close()
    finally:
        first.close()


def test_the_database_holds_no_template_or_id_in_clear(pg_opener: Opener, key: bytes, rng: np.random.Generator) -> None:
    store = pg_opener(key, replication=NOTIFY_ONLY)
    try:
        vectors = unit_vectors(rng, 2)
        store.gallery("members").enroll("member-alice", ["alice-photo-1"], vectors[:1])
        store.snapshot("members")
        store.gallery("members").enroll("member-bob", ["bob-photo-1"], vectors[1:])
        with psycopg.connect(store._database.conninfo) as conn:  # type: ignore[union-attr]
            blobs = [bytes(row[0]) for row in conn.execute("SELECT record FROM matching_log")]
            blobs += [bytes(row[0]) for row in conn.execute("SELECT record FROM matching_snapshot_records")]
    finally:
        store.close()
    assert len(blobs) >= 3
    blob = b"".join(blobs)
    for text in (b"member-alice", b"alice-photo-1", b"member-bob", b"bob-photo-1"):
        assert text not in blob
    for vector in vectors:
        raw = vector.astype("<f4").tobytes()
        assert all(raw[start : start + 16] not in blob for start in range(0, len(raw) - 16, 16))


def test_a_wrong_key_is_refused_and_writes_nothing(pg_opener: Opener, key: bytes, rng: np.random.Generator) -> None:
    store = pg_opener(key, replication=NOTIFY_ONLY)
    store.gallery("members").enroll("dan", ["d0"], unit_vectors(rng, 1))
    store.close()
    with pytest.raises(KeyConfigError, match="not the key the galleries in RETAILFACE_MATCHING_DB_URL"):
        pg_opener(os.urandom(32), replication=NOTIFY_ONLY)


def test_a_lost_connection_refuses_the_change_then_reconnects(
    pg_opener: Opener, key: bytes, rng: np.random.Generator
) -> None:
    store = pg_opener(key, replication=NOTIFY_ONLY)
    try:
        members = store.gallery("members")
        members.enroll("erin", ["e0"], unit_vectors(rng, 1))
        journal: PostgresJournal = members._journal  # type: ignore[assignment]
        pid = journal._conn.info.backend_pid  # type: ignore[union-attr]
        with psycopg.connect(store._database.conninfo, autocommit=True) as admin:  # type: ignore[union-attr]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DatabaseUnavailableError, match="cannot be reached while writing a change") as error:
            members.enroll("frank", ["f0"], unit_vectors(rng, 1))
        assert error.value.code.name == "UNAVAILABLE"
        assert "f0" not in members.export_templates()
        assert members.enroll("frank", ["f0"], unit_vectors(rng, 1)).sequence == 2
    finally:
        store.close()


def test_an_erase_followed_by_a_replica_schedules_its_purge_there_too(
    pg_opener: Opener, key: bytes, rng: np.random.Generator
) -> None:
    purge_now = DurabilityPolicy(snapshot_every_records=1_000_000, erase_purge_seconds=0.0, snapshot_on_close=False)
    follower = pg_opener(key, durability=purge_now, replication=NOTIFY_ONLY)
    eraser = pg_opener(key, replication=NOTIFY_ONLY)  # purges only after an hour
    try:
        eraser.gallery("members").enroll("gail", ["g0"], unit_vectors(rng, 1))
        eraser.erase_subject("members", "gail")
        # The follower applies the erase, and its own snapshot worker purges the log that held gail.
        with psycopg.connect(eraser._database.conninfo) as conn:  # type: ignore[union-attr]
            assert wait_for(lambda: conn.execute("SELECT count(*) FROM matching_log").fetchone() == (0,))
            assert conn.execute("SELECT sequence FROM matching_snapshots").fetchall() == [(2,)]
    finally:
        follower.close()
        eraser.close()


def test_a_read_on_a_connection_the_server_dropped_is_made_again_on_a_new_one(
    replicas: tuple[MatchingStore, MatchingStore], rng: np.random.Generator
) -> None:
    first, second = replicas
    journal: PostgresJournal = second.gallery("members")._journal  # type: ignore[assignment]
    second.gallery("members").catch_up()  # the journal's connection is open
    pid = journal._conn.info.backend_pid  # type: ignore[union-attr]
    with psycopg.connect(first._database.conninfo, autocommit=True) as admin:  # type: ignore[union-attr]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    first._follower.stop()  # type: ignore[union-attr]
    second._follower.stop()  # type: ignore[union-attr]
    first.gallery("members").enroll("hana", ["h0"], unit_vectors(rng, 1))
    assert second.gallery("members").catch_up() == 1
    assert journal._conn.info.backend_pid != pid  # type: ignore[union-attr]
