"""Every MatchingService RPC against hostile fields, through a real in-process gRPC server.

Each call gets a status: OK or a specific code, never INTERNAL or UNKNOWN, within its deadline, and
the server stays SERVING. Embeddings get the exact code their defect calls for (wrong dimension:
FAILED_PRECONDITION; NaN, Inf, not unit length: INVALID_ARGUMENT), and what was acknowledged is
still found afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from fuzz_servers import DEADLINE, FuzzServer, start_matching, unary_methods
from fuzz_support import NEVER, FuzzCases, fuzz_settings, hostile_text, messages, serving
from hypothesis import example, given
from hypothesis import strategies as st

from retailface.services.matching.params import DEFAULT_NORM_TOLERANCE
from retailface.v1 import common_pb2, matching_pb2

TARGET = "matching RPCs"
DIM = 128
SERVICE = matching_pb2.DESCRIPTOR.services_by_name["MatchingService"]
_ids = itertools.count()


@pytest.fixture(scope="module")
def matching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    server = start_matching(tmp_path_factory.mktemp("matching-fuzz"))
    yield server
    server.stop()


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def embedding(values: list[float] | np.ndarray) -> common_pb2.Embedding:
    return common_pb2.Embedding(values=[float(v) for v in values], model_id="sface", model_version="2021dec")


def expected_code(values: list[float]) -> grpc.StatusCode:
    """What the service must answer for a vector: checked in this order, on the float32 values sent."""
    if len(values) != DIM:
        return grpc.StatusCode.FAILED_PRECONDITION
    with np.errstate(over="ignore"):  # 1e39 becomes Inf as a float32, as on the wire
        vector = np.asarray(values, dtype=np.float32)
    if not np.isfinite(vector).all():
        return grpc.StatusCode.INVALID_ARGUMENT
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    return grpc.StatusCode.OK if abs(norm - 1.0) <= DEFAULT_NORM_TOLERANCE else grpc.StatusCode.INVALID_ARGUMENT


@st.composite
def hostile_vectors(draw: st.DrawFn) -> list[float]:
    """Unit vectors, then damaged: a wrong length, NaN/Inf/huge values, or scaled off unit length."""
    base = unit(draw(st.integers(0, 2**16)))
    damage = draw(st.sampled_from(["none", "length", "non-finite", "scale", "zero", "float32-overflow"]))
    values = [float(v) for v in base]
    if damage == "length":
        size = draw(st.sampled_from([0, 1, DIM - 1, DIM + 1, 512, 4096]))
        values = (values * 40)[:size]
    elif damage == "non-finite":
        where = draw(st.integers(0, DIM - 1))
        values[where] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    elif damage == "scale":
        factor = draw(st.one_of(st.sampled_from([0.5, 0.999, 1.0005, 1.002, 2.0, -1.0, 1e-20, 1e20]), st.floats(0, 4)))
        values = [v * factor for v in values]
    elif damage == "zero":
        values = [0.0] * DIM
    elif damage == "float32-overflow":
        values[0] = 1e39  # a double that becomes Inf as a proto float
    return values


def check_status(server: FuzzServer, method: str, request: object) -> grpc.StatusCode:
    outcome = server.call(method, request)
    assert outcome.code not in NEVER, f"{method}: {outcome.code.name} {outcome.details}"
    assert outcome.code != grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcome.seconds < DEADLINE
    return outcome.code


# ---------------------------------------------------------------- every method, any field


@pytest.mark.parametrize(("method", "request_type"), unary_methods(SERVICE), ids=lambda v: getattr(v, "name", v))
def test_every_method_answers_hostile_fields_with_a_status(
    matching: FuzzServer, method: str, request_type: object, fuzz_cases: FuzzCases
) -> None:
    @fuzz_settings(80)
    @given(request=messages(request_type))  # type: ignore[arg-type]
    def run(request: object) -> None:
        with fuzz_cases.case(TARGET):
            check_status(matching, method, request)

    run()


@pytest.mark.parametrize("method", [method.name for method in SERVICE.methods])
def test_every_method_refuses_bytes_that_are_no_message(
    matching: FuzzServer, method: str, fuzz_cases: FuzzCases
) -> None:
    # Regression: grpc answers INTERNAL "Exception deserializing request!" when a request does not parse
    # (bad UTF-8 in a string field, a corrupt wire format); the bootstrap now says INVALID_ARGUMENT.
    @fuzz_settings(15)
    @given(data=st.binary(max_size=256))
    @example(data=b"\x0a\x02\xff\xfe")  # field 1, a string of 2 bytes that are not UTF-8
    @example(data=b"\x0a\x09\xff")  # a length running past the end
    def run(data: bytes) -> None:
        with fuzz_cases.case(TARGET):
            outcome = matching.call_raw(method, data)
            assert outcome.code not in NEVER, f"{method}: {outcome.code.name} {outcome.details}"
            assert outcome.seconds < DEADLINE

    run()


# ---------------------------------------------------------------- embeddings


@fuzz_settings(150)
@given(values=hostile_vectors())
@example(values=[float("nan")] * DIM)
@example(values=[1.0] + [0.0] * (DIM - 1))
@example(values=[])
def test_an_enrolled_vector_gets_the_code_its_defect_calls_for(
    matching: FuzzServer, values: list[float], fuzz_cases: FuzzCases
) -> None:
    subject = f"fuzz-subject-{next(_ids)}"
    request = matching_pb2.EnrollRequest(
        gallery="members",
        subject_id=subject,
        templates=[matching_pb2.Template(template_id=f"{subject}-t0", embedding=embedding(values))],
    )
    with fuzz_cases.case(TARGET):
        assert check_status(matching, "Enroll", request) == expected_code(values)


@fuzz_settings(150)
@given(values=hostile_vectors())
def test_a_query_vector_gets_the_code_its_defect_calls_for(
    matching: FuzzServer, values: list[float], fuzz_cases: FuzzCases
) -> None:
    request = matching_pb2.SearchRequest(gallery="members", queries=[embedding(values)])
    with fuzz_cases.case(TARGET):
        assert check_status(matching, "Search", request) == expected_code(values)


# ---------------------------------------------------------------- numbers, lists and strings at the limits


@fuzz_settings(80)
@given(
    top_k=st.sampled_from([0, 1, 5, 1000, 1001, 2**31, 2**32 - 1]),
    threshold=st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.1, float("nan"), float("inf"), -0.0]),
    margin=st.sampled_from([0.0, 0.05, 0.99, 1.0, -1.0, float("nan"), float("-inf")]),
    qualities=st.lists(
        st.tuples(
            st.sampled_from([0.0, -5.0, 30.0, 1e30, float("nan"), float("inf")]), st.sampled_from([0, 1, 2**32 - 1])
        ),
        max_size=3,
    ),
    min_sequence=st.sampled_from([0, 1, 2**63, 2**64 - 1]),
    subject_ids=st.sampled_from([[], ["x"] * 10_000, ["\x00", "\u202e", "'; --"]]),
)
def test_search_options_at_and_past_their_limits_get_a_status(
    matching: FuzzServer,
    top_k: int,
    threshold: float,
    margin: float,
    qualities: list[tuple[float, int]],
    min_sequence: int,
    subject_ids: list[str],
    fuzz_cases: FuzzCases,
) -> None:
    request = matching_pb2.SearchRequest(
        gallery="members",
        queries=[embedding(unit(1))],
        top_k=top_k,
        threshold=threshold,
        margin=margin,
        probe_qualities=[matching_pb2.ProbeQuality(inter_eye_px=e, frames=f) for e, f in qualities],
        min_sequence=min_sequence,
        filter=matching_pb2.SubjectFilter(subject_ids=subject_ids),
    )
    with fuzz_cases.case(TARGET):
        check_status(matching, "Search", request)


@fuzz_settings(100)
@given(subject_id=hostile_text, template_id=hostile_text, tags=st.lists(hostile_text, max_size=4), gallery=hostile_text)
@example(subject_id="s" * (1 << 20), template_id="t", tags=[], gallery="members")
@example(subject_id="s\x00", template_id="\u202e", tags=["\ufeff"], gallery="members")
def test_hostile_ids_and_tags_get_a_status(
    matching: FuzzServer, subject_id: str, template_id: str, tags: list[str], gallery: str, fuzz_cases: FuzzCases
) -> None:
    template = matching_pb2.Template(template_id=template_id, embedding=embedding(unit(7)))
    with fuzz_cases.case(TARGET):
        check_status(
            matching,
            "Enroll",
            matching_pb2.EnrollRequest(gallery=gallery, subject_id=subject_id, templates=[template], tags=tags),
        )
        check_status(
            matching,
            "SetSubjectEligibility",
            matching_pb2.SetSubjectEligibilityRequest(gallery=gallery, subject_id=subject_id, tags=tags),
        )
        check_status(matching, "EraseSubject", matching_pb2.EraseSubjectRequest(gallery=gallery, subject_id=subject_id))


def test_a_thousand_templates_in_one_enroll_are_acknowledged_and_found(
    matching: FuzzServer, fuzz_cases: FuzzCases
) -> None:
    vectors = [unit(100_000 + i) for i in range(1000)]
    request = matching_pb2.EnrollRequest(
        gallery="members",
        subject_id="bulk-subject",
        templates=[
            matching_pb2.Template(template_id=f"bulk-{i}", embedding=embedding(v)) for i, v in enumerate(vectors)
        ],
    )
    with fuzz_cases.case(TARGET):
        assert matching.invoke("Enroll", request).added == 1000
        found = matching.invoke(
            "Search", matching_pb2.SearchRequest(gallery="members", queries=[embedding(vectors[500])])
        )
        assert (found.results[0].candidates[0].subject_id, found.results[0].candidates[0].template_id) == (
            "bulk-subject",
            "bulk-500",
        )


# ---------------------------------------------------------------- afterwards


def test_what_was_acknowledged_is_still_found_after_the_fuzzing(matching: FuzzServer, fuzz_cases: FuzzCases) -> None:
    vector = unit(424242)
    enroll = matching_pb2.EnrollRequest(
        gallery="members",
        subject_id="known-after-fuzz",
        templates=[matching_pb2.Template(template_id="known-after-fuzz-t0", embedding=embedding(vector))],
    )
    with fuzz_cases.case(TARGET):
        assert matching.invoke("Enroll", enroll).added == 1
        found = matching.invoke("Search", matching_pb2.SearchRequest(gallery="members", queries=[embedding(vector)]))
        assert found.results[0].decision == matching_pb2.DECISION_MATCH
        assert found.results[0].candidates[0].subject_id == "known-after-fuzz"


def test_the_server_is_still_serving(matching: FuzzServer) -> None:
    assert serving(matching.channel, matching.service_name) == "SERVING"
