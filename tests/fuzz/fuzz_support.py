"""What the fuzz tests share: the Hypothesis profile they run under, hostile values, and status checks.

`fuzz_settings(examples)` is the profile named by HYPOTHESIS_PROFILE (conftest.py registers
"fuzz-ci", the default: bounded, derandomised, and "fuzz-long": many more examples, random) with a
target's own number of examples scaled by the profile. The strategies build hostile field values
for any protobuf message from its descriptor, so every RPC's request is covered without a
hand-written strategy per message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz-ci")
CI_EXAMPLES = 100  # the ci profile's max_examples: a target's `examples` is a share of it
LONG_FACTOR = 20

settings.register_profile(
    "fuzz-ci",
    max_examples=CI_EXAMPLES,
    deadline=5000,  # ms per example: a hang fails the example, a slow machine does not
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile(
    "fuzz-long",
    parent=settings.get_profile("fuzz-ci"),
    max_examples=CI_EXAMPLES * LONG_FACTOR,
    derandomize=False,
    deadline=20000,
)
settings.register_profile("long", parent=settings.get_profile("fuzz-long"))


def fuzz_settings(examples: int) -> settings:
    """The active profile with `examples` examples (at the ci profile's scale)."""
    profile = settings.get_profile(PROFILE if PROFILE in ("fuzz-ci", "fuzz-long", "long") else "fuzz-ci")
    scaled = examples if profile.max_examples <= CI_EXAMPLES else examples * LONG_FACTOR
    return settings(profile, max_examples=scaled)


@dataclass
class TargetCount:
    cases: int = 0
    failed: int = 0


@dataclass
class FuzzCases:
    """Cases run and failed per fuzz target (frame decoding, each service's RPCs, the log...)."""

    targets: dict[str, TargetCount] = field(default_factory=dict)

    @contextmanager
    def case(self, target: str) -> Iterator[None]:
        count = self.targets.setdefault(target, TargetCount())
        count.cases += 1
        try:
            yield
        except BaseException:
            count.failed += 1
            raise

    def as_json(self, seconds: float, command: str) -> dict[str, object]:
        return {
            "profile": PROFILE,
            "seconds": round(seconds, 1),
            "command": command,
            "targets": {
                name: {"cases": count.cases, "failed": count.failed} for name, count in sorted(self.targets.items())
            },
            "total": {
                "cases": sum(count.cases for count in self.targets.values()),
                "failed": sum(count.failed for count in self.targets.values()),
            },
        }


# ---------------------------------------------------------------- hostile values

SQL_METACHARACTERS = (
    "'",
    "''",
    '"',
    "'; DROP TABLE members; --",
    "' OR '1'='1",
    '" OR 1=1 --',
    "%",
    "_",
    "%_%",
    "\\",
    "\\'",
    "/*",
    "*/",
    "$$",
    "$1",
    ":member_id",
    "?",
    "E'\\x00'",
    "'||(SELECT pg_sleep(5))||'",
    "'; SELECT load_extension('x'); --",
)
UNICODE_EDGES = (
    "",
    "\x00",
    "a\x00b",
    "\u202e",  # right-to-left override
    "admin\u202egnp.exe",
    "\u2066x\u2069",  # bidi isolates
    "\u200b\u200d\ufeff",  # zero-width space, joiner, BOM
    "\\ud800",  # a surrogate, as an escape in text (a lone surrogate cannot be UTF-8 on the wire)
    "\\udfff\\ud83d",
    "e\u0301\u0301\u0301\u0301\u0301\u0301",  # combining marks
    "Z\u0351\u0355\u0347\u035a" * 20,
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # a ZWJ emoji family
    "\U0001f600" * 50,
    "\u0645\u0631\u062d\u0628\u0627",  # Arabic
    "\u2028\u2029\r\n\t\x7f\x1b[31m",
    "\ufffd",
    "\U0010ffff",
    "../../etc/passwd",
    "%s%n%x{0}",
    "<script>alert(1)</script>",
)
LONG_TEXT = ("x" * 10_000, "\U0001f600" * 5_000, "'" * 4_096)

# Values the services know (galleries, model, seeded stores, members and products), so that hostile
# requests also get past the first lookup now and then.
PLAUSIBLE = ("members", "watchlist", "sface", "2021dec", "store-01", "m00001", "m00002", "SKU-00001", "admin", "en")

hostile_text: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.sampled_from(SQL_METACHARACTERS + UNICODE_EDGES),
    st.sampled_from(LONG_TEXT),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,20}", fullmatch=True),  # a valid id now and then
)

INT32 = (-(2**31), -1, 0, 1, 2**31 - 1)
UINT32 = (0, 1, 2**31, 2**32 - 1)
INT64 = (-(2**63), -(2**31) - 1, -1, 0, 1, 2**53 + 1, 2**63 - 1)
UINT64 = (0, 1, 2**32, 2**63, 2**64 - 1)
FLOATS = (float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e-45, -1.0, 3.4e38, -3.4e38, 1.0, 0.5)
DOUBLES = (*FLOATS, 1e308, -1e308, 5e-324)
# Timestamps: 0001-01-01, 9999-12-31, just outside both, far outside, and the epoch.
TIMESTAMP_SECONDS = (-62135596800, 253402300799, -62135596801, 253402300800, -(2**63), 2**63 - 1, 0)
TIMESTAMP_NANOS = (0, 999_999_999, -1, 1_000_000_000, 2**31 - 1)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return hostile_text
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\x00" * 4096))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.sampled_from([*known, -1, 99, 2**31 - 1])  # unknown values too (open enums)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.one_of(st.sampled_from(FLOATS), st.floats(width=32))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.one_of(st.sampled_from(DOUBLES), st.floats())
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.one_of(st.sampled_from(INT32), st.integers(-(2**31), 2**31 - 1))
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(st.sampled_from(UINT32), st.integers(0, 2**32 - 1))
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return st.one_of(st.sampled_from(INT64), st.integers(-(2**63), 2**63 - 1))
    return st.one_of(st.sampled_from(UINT64), st.integers(0, 2**64 - 1))


def _timestamp(message_type: type[Message]) -> st.SearchStrategy[Message]:
    seconds = st.one_of(st.sampled_from(TIMESTAMP_SECONDS), st.integers(-(2**40), 2**40))
    nanos = st.one_of(st.sampled_from(TIMESTAMP_NANOS), st.integers(0, 999_999_999))
    return st.builds(lambda s, n: message_type(seconds=s, nanos=n), seconds, nanos)


def _field_value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return _scalar(field)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with hostile values in any subset of its fields (3 levels deep)."""
    message_type = _message_class(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _timestamp(message_type)
    if depth > 3:
        return st.just(message_type())

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = message_type()
        for entry in descriptor.fields:
            if not draw(st.booleans()):
                continue
            if entry.message_type is not None and entry.message_type.GetOptions().map_entry:
                key_field, value_field = (
                    entry.message_type.fields_by_name["key"],
                    entry.message_type.fields_by_name["value"],
                )
                entries = draw(st.dictionaries(_scalar(key_field), _field_value(value_field, depth), max_size=3))
                target = getattr(message, entry.name)
                for key, value in entries.items():
                    if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                        target[key].CopyFrom(value)
                    else:
                        target[key] = value
                continue
            if entry.is_repeated:
                values = draw(st.lists(_field_value(entry, depth), max_size=4))
                if entry.type != FieldDescriptor.TYPE_MESSAGE and draw(st.booleans()):
                    values = values * 50  # now and then a long list
                getattr(message, entry.name).extend(values)
                continue
            value = draw(_field_value(entry, depth))
            if entry.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, entry.name).CopyFrom(value)
            else:
                setattr(message, entry.name, value)
        return message

    return build()


def _message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


# ---------------------------------------------------------------- calls and their status

NEVER = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    seconds: float


def outcome_of(call: Callable[[], object]) -> Outcome:
    """The call's status (OK, or the error's code) and how long it took."""
    start = time.perf_counter()
    try:
        call()
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "", time.perf_counter() - start)
    return Outcome(grpc.StatusCode.OK, "", time.perf_counter() - start)


def serving(channel: grpc.Channel, service: str) -> str:
    """The server's health status for `service`, by name ("SERVING")."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
