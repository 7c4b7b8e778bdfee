"""Every PersonalizationService RPC against hostile fields, on SQLite and on PostgreSQL, over real gRPC.

Each call gets a status, OK or a specific code, never INTERNAL or UNKNOWN, within its deadline; the
staff alert stream ends with its deadline at worst; the schema is unchanged afterwards (no SQL
injection dropped or altered a table) and the server is still SERVING.
"""

from __future__ import annotations

import grpc
import pytest
from fuzz_servers import DEADLINE, FuzzServer, unary_methods
from fuzz_support import NEVER, FuzzCases, fuzz_settings, messages, outcome_of, serving
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect

from retailface.services.personalization import db
from retailface.v1 import personalization_pb2

TARGET = "personalization RPCs"
SERVICE = personalization_pb2.DESCRIPTOR.services_by_name["PersonalizationService"]
STREAM_SECONDS = 0.5


def engine_of(server: FuzzServer) -> Engine:
    return server.running.registration.servicer.personalization.engine  # type: ignore[attr-defined, no-any-return]


def test_the_schema_holds_every_table_before_the_fuzzing(personalization_server: FuzzServer) -> None:
    assert set(db.metadata.tables) <= set(inspect(engine_of(personalization_server)).get_table_names())


@pytest.mark.parametrize(("method", "request_type"), unary_methods(SERVICE), ids=lambda v: getattr(v, "name", v))
def test_every_method_answers_hostile_fields_with_a_status(
    personalization_server: FuzzServer, method: str, request_type: object, fuzz_cases: FuzzCases
) -> None:
    @fuzz_settings(25)
    @given(request=messages(request_type))  # type: ignore[arg-type]
    def run(request: object) -> None:
        with fuzz_cases.case(TARGET):
            outcome = personalization_server.call(method, request)
            assert outcome.code not in NEVER, f"{method}: {outcome.code.name} {outcome.details}"
            assert outcome.code != grpc.StatusCode.DEADLINE_EXCEEDED
            assert outcome.seconds < DEADLINE

    run()


@fuzz_settings(20)
@given(request=messages(personalization_pb2.StaffAlertsRequest.DESCRIPTOR))
def test_the_staff_alert_stream_answers_hostile_fields_with_a_status(
    personalization_server: FuzzServer, request: personalization_pb2.StaffAlertsRequest, fuzz_cases: FuzzCases
) -> None:
    def read_all() -> None:
        stream = personalization_server.invoke("StreamStaffAlerts", request, timeout=STREAM_SECONDS)
        for _ in stream:
            pass

    with fuzz_cases.case(TARGET):
        outcome = outcome_of(read_all)
        assert outcome.code not in NEVER, f"{outcome.code.name} {outcome.details}"
        assert outcome.seconds < STREAM_SECONDS + 2.0


@pytest.mark.parametrize("method", ["RecordVisitEvent", "UpsertMember", "QueryAudit", "StreamStaffAlerts"])
def test_bytes_that_are_no_message_are_refused(
    personalization_server: FuzzServer, method: str, fuzz_cases: FuzzCases
) -> None:
    @fuzz_settings(20)
    @given(data=st.binary(max_size=128))
    @example(data=b"\x0a\x02\xff\xfe")  # field 1, a string that is not UTF-8
    def run(data: bytes) -> None:
        with fuzz_cases.case(TARGET):
            outcome = personalization_server.call_raw(method, data, timeout=STREAM_SECONDS)
            assert outcome.code not in NEVER, f"{method}: {outcome.code.name} {outcome.details}"

    run()


def test_the_schema_still_holds_every_table_after_the_fuzzing(personalization_server: FuzzServer) -> None:
    assert set(db.metadata.tables) <= set(inspect(engine_of(personalization_server)).get_table_names())


def test_the_server_is_still_serving(personalization_server: FuzzServer) -> None:
    assert serving(personalization_server.channel, personalization_server.service_name) == "SERVING"
