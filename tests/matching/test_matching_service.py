"""The matching service as a real process: status codes, erase, audit log, and SIGKILL during enrolls."""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from stored_form import self_score

from retailface._matcher import DEFAULT_PARAMS, ISA
from retailface.devtools.localstack import LocalStack, client_channel
from retailface.v1 import common_pb2, matching_pb2, matching_pb2_grpc

DIM = 128


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def embedding(vector: np.ndarray, model_id: str = "sface", version: str = "2021dec") -> common_pb2.Embedding:
    return common_pb2.Embedding(values=[float(x) for x in vector], model_id=model_id, model_version=version)


class Client:
    def __init__(self, stack: LocalStack, role: str = "service") -> None:
        self.channel = client_channel(stack.processes["matching"].target, stack.runtime)
        self.stub = matching_pb2_grpc.MatchingServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {stack.runtime.tokens[role]}"),)

    def __getattr__(self, method: str):  # type: ignore[no-untyped-def]
        call = getattr(self.stub, method)
        return lambda request, **kw: call(request, metadata=self.metadata + kw.pop("extra", ()), timeout=10, **kw)

    def close(self) -> None:
        self.channel.close()


def start_matching(stack: LocalStack) -> Client:
    stack.start("matching")
    stack.wait_serving("matching")
    return Client(stack)


def kill_matching(stack: LocalStack) -> None:
    process = stack.processes.pop("matching").process
    process.kill()  # SIGKILL: no shutdown hook, no snapshot on stop
    process.wait()


@pytest.fixture
def matching(stack: LocalStack) -> Iterator[Client]:
    client = start_matching(stack)
    yield client
    client.close()


def enroll_request(
    subject: str, vectors: np.ndarray, gallery: str = "members", tags: tuple[str, ...] = ()
) -> matching_pb2.EnrollRequest:
    return matching_pb2.EnrollRequest(
        gallery=gallery,
        subject_id=subject,
        templates=[
            matching_pb2.Template(template_id=f"{subject}-t{i}", embedding=embedding(v)) for i, v in enumerate(vectors)
        ],
        tags=list(tags),
    )


def status_of(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


VECTORS = unit(np.random.default_rng(21).standard_normal((6, DIM)))  # 5 enrolled below; 5 is a stranger's


@pytest.fixture
def enrolled(matching: Client) -> Client:
    """members: alice (2 templates) and bob, tagged consent:face, and eve without tags; watchlist: mallory."""
    assert matching.Enroll(enroll_request("alice", VECTORS[:2], tags=("consent:face",))).added == 2
    matching.Enroll(enroll_request("bob", VECTORS[2:3], tags=("consent:face",)))
    matching.Enroll(enroll_request("eve", VECTORS[3:4]))
    matching.Enroll(enroll_request("mallory", VECTORS[4:5], gallery="watchlist"))
    return matching


def search_request(*queries: np.ndarray, gallery: str = "members", **fields: object) -> matching_pb2.SearchRequest:
    return matching_pb2.SearchRequest(gallery=gallery, queries=[embedding(q) for q in queries], **fields)


def test_search_identifies_the_enrolled_subject_and_no_one_for_a_stranger(enrolled: Client) -> None:
    response = enrolled.Search(search_request(VECTORS[1], VECTORS[5], top_k=3))
    first, second = response.results
    assert first.decision == matching_pb2.DECISION_MATCH
    assert (first.candidates[0].subject_id, first.candidates[0].template_id) == ("alice", "alice-t1")
    assert first.candidates[0].score == pytest.approx(self_score(VECTORS[1]), abs=1e-5)
    assert second.decision == matching_pb2.DECISION_NO_MATCH
    assert (response.threshold, response.margin) == (pytest.approx(0.48), pytest.approx(0.05))
    assert response.plan == "exact-scan"


def test_a_tag_filter_returns_only_subjects_with_the_tag(enrolled: Client) -> None:
    # eve (no consent tag) is her own vector's best match, but may not be returned until she has the tag.
    consented = search_request(VECTORS[3], filter=matching_pb2.SubjectFilter(required_tags=["consent:face"]))
    before = enrolled.Search(consented)
    assert {c.subject_id for c in before.results[0].candidates} == {"alice", "bob"}
    assert before.plan == "filtered-scan"
    enrolled.SetSubjectEligibility(
        matching_pb2.SetSubjectEligibilityRequest(gallery="members", subject_id="eve", tags=["consent:face"])
    )
    after = enrolled.Search(consented)
    assert after.results[0].candidates[0].subject_id == "eve"
    assert after.results[0].decision == matching_pb2.DECISION_MATCH


def test_erase_counts_the_templates_and_takes_effect_for_the_next_search(enrolled: Client) -> None:
    assert enrolled.EraseSubject(matching_pb2.EraseSubjectRequest(subject_id="alice")).templates_removed == 2
    after = enrolled.Search(search_request(VECTORS[0], top_k=10))
    assert {c.subject_id for c in after.results[0].candidates} == {"bob", "eve"}
    assert enrolled.EraseSubject(matching_pb2.EraseSubjectRequest(subject_id="alice")).templates_removed == 0


def test_every_change_answers_its_sequence_and_a_search_can_require_one(enrolled: Client) -> None:
    # members: alice, bob, eve were changes 1-3; watchlist: mallory was its change 1.
    assert enrolled.Enroll(enroll_request("zoe", VECTORS[5:6])).sequence == 4
    eligibility = matching_pb2.SetSubjectEligibilityRequest(gallery="members", subject_id="zoe", tags=["x"])
    assert enrolled.SetSubjectEligibility(eligibility).sequence == 5
    erased = enrolled.EraseSubject(matching_pb2.EraseSubjectRequest(subject_id="zoe"))
    assert dict(erased.sequences) == {"members": 6, "watchlist": 1}
    assert enrolled.Search(search_request(VECTORS[5], min_sequence=6)).results[0].candidates[0].subject_id != "zoe"
    code, message = status_of(lambda: enrolled.Search(search_request(VECTORS[5], min_sequence=7)))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert message == (
        "this matching replica holds gallery members up to change 6 and the request needs change 7; "
        "retry (another replica answers)"
    )


def _with_inf(vector: np.ndarray) -> np.ndarray:
    bad = vector.copy()
    bad[3] = np.inf
    return bad


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (
            lambda c: c.Search(search_request(VECTORS[0], unit(np.ones(64)))),
            grpc.StatusCode.FAILED_PRECONDITION,
            r"^query 1: embedding has 64 values, gallery members expects 128",
        ),
        (
            lambda c: c.Search(
                matching_pb2.SearchRequest(
                    gallery="members",
                    queries=[embedding(VECTORS[0]), embedding(VECTORS[1], model_id="arcface", version="r100")],
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            r"^query 1: embedding of model arcface/r100, gallery members expects sface/2021dec",
        ),
        (
            lambda c: c.Search(search_request(VECTORS[0], _with_inf(VECTORS[1]))),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"^query 1: the vector contains NaN or Inf",
        ),
        (
            lambda c: c.Search(search_request(VECTORS[0], VECTORS[1] * 0.9)),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"^query 1: the vector has L2 norm 0\.9",
        ),
        (
            lambda c: c.Search(search_request(VECTORS[0], gallery="staff")),
            grpc.StatusCode.NOT_FOUND,
            r"^unknown gallery 'staff'",
        ),
        (
            lambda c: c.Search(search_request(VECTORS[0], top_k=101)),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"^top_k 101 is above the limit 100",
        ),
        (
            lambda c: c.Enroll(enroll_request("x", VECTORS[:1] * 2)),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"^template 0: the vector has L2 norm 2\.0",
        ),
        (
            lambda c: c.SetSubjectEligibility(
                matching_pb2.SetSubjectEligibilityRequest(gallery="members", subject_id="nobody", tags=[])
            ),
            grpc.StatusCode.NOT_FOUND,
            r"^subject nobody is not enrolled in gallery members",
        ),
        (
            lambda c: c.EraseSubject(matching_pb2.EraseSubjectRequest(subject_id="")),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"^subject_id is empty",
        ),
        (
            lambda c: c.Snapshot(matching_pb2.SnapshotRequest()),
            grpc.StatusCode.PERMISSION_DENIED,
            r"",
        ),
    ],
    ids=[
        "dimension",
        "model",
        "inf",
        "norm",
        "gallery",
        "top-k",
        "template-norm",
        "unknown-subject",
        "no-subject-id",
        "snapshot-needs-admin",
    ],
)
def test_a_refused_request_gets_its_status_and_message(
    enrolled: Client, call: Callable[[Client], object], code: grpc.StatusCode, message: str
) -> None:
    got_code, details = status_of(lambda: call(enrolled))
    assert got_code == code
    assert re.search(message, details), details
    assert enrolled.GetStats(matching_pb2.GalleryStatsRequest(gallery="members")).info.templates == 4, "nothing changed"


def test_stats_report_the_gallery_its_index_and_its_log(enrolled: Client) -> None:
    enrolled.SetSubjectEligibility(
        matching_pb2.SetSubjectEligibilityRequest(gallery="members", subject_id="eve", tags=["consent:face"])
    )
    enrolled.EraseSubject(matching_pb2.EraseSubjectRequest(subject_id="alice"))
    stats = enrolled.GetStats(matching_pb2.GalleryStatsRequest(gallery="members"))
    assert (stats.info.name, stats.info.templates, stats.info.subjects) == ("members", 2, 2)
    assert (stats.info.threshold, stats.info.margin) == (pytest.approx(0.48), pytest.approx(0.05))
    assert (stats.info.model.model_id, stats.info.model.version, stats.info.model.dim) == ("sface", "2021dec", 128)
    index = (stats.hnsw_m, stats.hnsw_ef_construction, stats.hnsw_ef_search, stats.search_threads)
    defaults = (DEFAULT_PARAMS["M"], DEFAULT_PARAMS["ef_construction"], DEFAULT_PARAMS["ef_search"])
    assert index == (*defaults, DEFAULT_PARAMS["threads"])
    # The rows (int8 and a scale) and codes of the slots the index reserves at start, far from a gigabyte; by part.
    assert DEFAULT_PARAMS["capacity"] * (DIM + 4) <= stats.memory_bytes < 64 << 20
    assert dict(stats.memory_parts) == {
        "vectors": DEFAULT_PARAMS["capacity"] * (DIM + 4),
        "codes": DEFAULT_PARAMS["capacity"] * 32,
        "graph": 0,
        "ids": stats.memory_parts["ids"],
        "filters": stats.memory_parts["filters"],
    }
    assert sum(stats.memory_parts.values()) == stats.memory_bytes
    assert stats.search_kernel == ISA  # this machine's, as the test process sees it
    assert stats.log_records_since_snapshot == 5  # 3 enrolls, 1 tag change, 1 erase
    assert stats.applied_sequence == 5
    assert stats.last_snapshot_at == ""
    galleries = enrolled.ListGalleries(matching_pb2.ListGalleriesRequest()).galleries
    assert {g.name: (g.templates, g.subjects, g.threshold) for g in galleries} == {
        "members": (2, 2, pytest.approx(0.48)),
        "watchlist": (1, 1, pytest.approx(0.55)),
    }


def test_an_admin_snapshot_covers_every_gallery_and_empties_the_log(stack: LocalStack, enrolled: Client) -> None:
    admin = Client(stack, role="admin")
    try:
        assert list(admin.Snapshot(matching_pb2.SnapshotRequest()).galleries) == ["members", "watchlist"]
        stats = admin.GetStats(matching_pb2.GalleryStatsRequest(gallery="members"))
    finally:
        admin.close()
    assert stats.log_records_since_snapshot == 0
    assert stats.last_snapshot_at.endswith("+00:00")


def test_every_match_is_audited_without_the_vector(stack: LocalStack, enrolled: Client) -> None:
    request_id = "req-audit-1"
    enrolled.Search(search_request(VECTORS[1], VECTORS[5], top_k=3), extra=(("x-request-id", request_id),))
    log_path = stack.processes["matching"].log_path
    audit = [json.loads(line) for line in log_path.read_text().splitlines() if '"audit.match"' in line]
    assert [(e["subject_id"], e["template_id"], e["gallery"], e["request_id"], e["query_index"]) for e in audit] == [
        ("alice", "alice-t1", "members", request_id, 0)
    ]
    assert audit[0]["score"] > 0.99 and audit[0]["threshold"] == pytest.approx(0.48)
    assert all(not any(isinstance(v, list) for v in e.values()) for e in audit), "no vectors in audit events"


def test_sigkill_during_enroll_stream_keeps_every_acknowledged_enroll(stack: LocalStack) -> None:
    """Two clients stream two-template enrolls; the service is SIGKILLed mid-stream three times (with
    snapshots and log rotation happening in between). After each restart every acknowledged template is
    there with its exact vector and every subject has both of its templates or none."""
    stack.extra_env["matching"] = {"RETAILFACE_MATCHING_SNAPSHOT_EVERY": "40"}
    rng = np.random.default_rng(99)
    acknowledged: dict[str, np.ndarray] = {}
    attempted: dict[str, np.ndarray] = {}
    lock = threading.Lock()
    client = start_matching(stack)

    for cycle in range(3):
        stop = threading.Event()

        def stream(worker: int, client: Client = client, stop: threading.Event = stop, cycle: int = cycle) -> None:
            sequence = 0
            while not stop.is_set():
                subject = f"c{cycle}-w{worker}-{sequence}"
                sequence += 1
                with lock:
                    vectors = unit(rng.standard_normal((2, DIM)))
                    attempted[subject] = vectors
                try:
                    response = client.Enroll(enroll_request(subject, vectors))
                except grpc.RpcError:
                    return  # the server died under this call: not acknowledged
                assert response.added == 2
                with lock:
                    acknowledged[subject] = vectors

        workers = [threading.Thread(target=stream, args=(w,)) for w in range(2)]
        for worker in workers:
            worker.start()
        time.sleep(0.6 + 0.3 * cycle)
        kill_matching(stack)
        stop.set()
        for worker in workers:
            worker.join()
        client.close()
        client = start_matching(stack)
        check_after_restart(client, acknowledged, attempted)
    client.close()
    assert len(acknowledged) > 50, "the stream was too short to exercise snapshots and rotation"


def check_after_restart(client: Client, acknowledged: dict[str, np.ndarray], attempted: dict[str, np.ndarray]) -> None:
    stats = client.GetStats(matching_pb2.GalleryStatsRequest(gallery="members"))
    assert stats.info.templates == 2 * stats.info.subjects, "some subject has only one of its two templates"
    assert len(acknowledged) <= stats.info.subjects <= len(attempted)
    unacknowledged = [s for s in attempted if s not in acknowledged]
    subjects = list(acknowledged) + unacknowledged

    def templates_found(results, batch) -> dict[str, int]:  # type: ignore[no-untyped-def]
        found: dict[str, int] = {}
        for (subject, index, _), result in zip(batch, results, strict=True):
            top = result.candidates[0] if result.candidates else None
            if top is not None and top.subject_id == subject and top.template_id == f"{subject}-t{index}":
                vector = attempted[subject][index]
                assert top.score == pytest.approx(self_score(vector), abs=1e-5), "the template's vector changed"
                found[subject] = found.get(subject, 0) + 1
        return found

    # One batch search over the whole gallery for speed; any subject it does not show fully is checked again
    # with a search restricted to that subject (exact), so an approximate miss cannot pass for a lost template.
    queries = [(subject, index, attempted[subject][index]) for subject in subjects for index in (0, 1)]
    present: dict[str, int] = {}
    for start in range(0, len(queries), 256):
        batch = queries[start : start + 256]
        response = client.Search(
            matching_pb2.SearchRequest(
                gallery="members", queries=[embedding(vector) for _, _, vector in batch], top_k=1
            )
        )
        present |= templates_found(response.results, batch)
    for subject in subjects:
        if present.get(subject) != 2:
            batch = [(subject, index, attempted[subject][index]) for index in (0, 1)]
            response = client.Search(
                matching_pb2.SearchRequest(
                    gallery="members",
                    queries=[embedding(vector) for _, _, vector in batch],
                    top_k=1,
                    filter=matching_pb2.SubjectFilter(subject_ids=[subject]),
                )
            )
            present[subject] = templates_found(response.results, batch).get(subject, 0)
    for subject in acknowledged:
        assert present[subject] == 2, f"acknowledged {subject} lost {2 - present[subject]} templates"
    for subject in unacknowledged:
        assert present[subject] in (0, 2), f"unacknowledged {subject} is half there"
    assert sum(1 for s in subjects if present[s]) == stats.info.subjects


def test_service_refuses_to_start_without_a_usable_key(stack: LocalStack, tmp_path: Path) -> None:
    def start_and_expect_exit(key_file: Path, expected: str) -> None:
        stack.extra_env["matching"] = {"RETAILFACE_MATCHING_KEY_FILE": str(key_file)}
        service = stack.start("matching")
        assert service.process.wait(timeout=30) == 2
        stack.processes.pop("matching")
        assert expected in service.log_path.read_text()

    short = tmp_path / "short.key"
    short.write_text(base64.b64encode(os.urandom(16)).decode())
    start_and_expect_exit(short, "neither 32 raw bytes nor the base64 text of 32 bytes")
    start_and_expect_exit(tmp_path / "absent.key", "cannot read the matching key file")

    stack.extra_env["matching"] = {}
    client = start_matching(stack)
    client.Enroll(enroll_request("alice", unit(np.random.default_rng(0).standard_normal((1, DIM)))))
    client.close()
    assert stack.stop("matching") == 0
    other = tmp_path / "other.key"
    other.write_text(base64.b64encode(os.urandom(32)).decode())
    start_and_expect_exit(other, "is not the key the data dir")
