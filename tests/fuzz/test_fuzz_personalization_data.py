"""Personalization's data against hostile text and events, on SQLite and PostgreSQL, over real gRPC.

Text fields get SQL metacharacters and Unicode edge cases (NUL, bidi overrides, escaped surrogates,
emoji, combining marks, 10,000 characters): each call is OK or INVALID_ARGUMENT, and what was stored
reads back exactly (display names as `clean_display_name` shows them). Visit events and purchases
arrive duplicated and out of order: each idempotency key is stored once, a repeat says `duplicate`
and pushes nothing, and timestamps far in the past or future are stored and read back without error.
"""

from __future__ import annotations

import itertools

import grpc
from fuzz_servers import FuzzServer
from fuzz_support import NEVER, TIMESTAMP_SECONDS, FuzzCases, fuzz_settings, hostile_text
from google.protobuf import timestamp_pb2
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from retailface.services.personalization import db
from retailface.services.shared.identifiers import clean_display_name
from retailface.v1 import common_pb2, personalization_pb2

TEXT_TARGET = "personalization text fields"
EVENT_TARGET = "personalization events"
STORE = "store-01"
REFUSED_OR_OK = frozenset({grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT})
_serial = itertools.count()
EVENT_TYPES = [
    personalization_pb2.VISIT_EVENT_TYPE_ENTERED,
    personalization_pb2.VISIT_EVENT_TYPE_ZONE_DWELL,
    personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT,
    personalization_pb2.VISIT_EVENT_TYPE_EXITED,
]


def engine_of(server: FuzzServer) -> Engine:
    return server.running.registration.servicer.personalization.engine  # type: ignore[attr-defined, no-any-return]


def fresh_id(kind: str) -> str:
    return f"fz-{kind}-{next(_serial)}"


def consenting_member(server: FuzzServer) -> str:
    member_id = fresh_id("member")
    consent = common_pb2.ConsentRecord(
        policy_version="2026-01",
        source="kiosk",
        scopes=[common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION, common_pb2.CONSENT_SCOPE_PERSONALIZED_OFFERS],
    )
    server.invoke("UpsertMember", personalization_pb2.Member(member_id=member_id, display_name="Ava", consent=consent))
    return member_id


# ---------------------------------------------------------------- text fields


@fuzz_settings(50)
@given(name=hostile_text, loyalty=hostile_text)
@example(name="Robert'); DROP TABLE members;--", loyalty="' OR '1'='1")
@example(name="adm\u202eni\u202c", loyalty="\x00")  # regression: NUL on PostgreSQL was INTERNAL
def test_member_text_is_stored_exactly_or_refused(
    personalization_server: FuzzServer, name: str, loyalty: str, fuzz_cases: FuzzCases
) -> None:
    member_id = fresh_id("member")
    loyalty_number = f"{loyalty}{member_id}"  # unique, so that no other member holds it
    with fuzz_cases.case(TEXT_TARGET):
        outcome = personalization_server.call(
            "UpsertMember",
            personalization_pb2.Member(member_id=member_id, display_name=name, loyalty_number=loyalty_number),
        )
        assert outcome.code in REFUSED_OR_OK, f"{outcome.code.name} {outcome.details}"
        if outcome.code == grpc.StatusCode.OK:
            by_loyalty = personalization_server.invoke(
                "GetMember", personalization_pb2.GetMemberRequest(loyalty_number=loyalty_number)
            )
            assert (by_loyalty.member_id, by_loyalty.display_name, by_loyalty.loyalty_number) == (
                member_id,
                clean_display_name(name),
                loyalty_number,
            )


@fuzz_settings(50)
@given(preferred=hostile_text, categories=st.lists(hostile_text, max_size=3))
def test_preference_text_is_stored_exactly_or_refused(
    personalization_server: FuzzServer, preferred: str, categories: list[str], fuzz_cases: FuzzCases
) -> None:
    member_id = consenting_member(personalization_server)
    preferences = personalization_pb2.MemberPreferences(
        member_id=member_id, preferred_name=preferred, excluded_categories=categories, allow_greeting=True
    )
    with fuzz_cases.case(TEXT_TARGET):
        outcome = personalization_server.call("UpdatePreferences", preferences)
        assert outcome.code in REFUSED_OR_OK, f"{outcome.code.name} {outcome.details}"
        if outcome.code == grpc.StatusCode.OK:
            stored = personalization_server.invoke(
                "GetPreferences", personalization_pb2.GetPreferencesRequest(member_id=member_id)
            )
            assert (stored.preferred_name, list(stored.excluded_categories)) == (
                clean_display_name(preferred),
                sorted(set(categories)),
            )


@fuzz_settings(50)
@given(actor=hostile_text, action=hostile_text, member_id=hostile_text)
@example(actor="' OR 1=1 --", action="%", member_id="\x00")  # regression: NUL on PostgreSQL was INTERNAL
def test_an_audit_query_by_any_text_returns_only_exact_matches(
    personalization_server: FuzzServer, actor: str, action: str, member_id: str, fuzz_cases: FuzzCases
) -> None:
    query = personalization_pb2.AuditQuery(actor=actor, action=action, member_id=member_id, limit=50)
    with fuzz_cases.case(TEXT_TARGET):
        outcome = personalization_server.call("QueryAudit", query)
        assert outcome.code in REFUSED_OR_OK, f"{outcome.code.name} {outcome.details}"
        if outcome.code == grpc.StatusCode.OK:
            entries = personalization_server.invoke("QueryAudit", query).entries
            # An empty actor or action matches any.
            assert {e.actor for e in entries if actor} <= {actor}
            assert {e.action for e in entries if action} <= {action}


@fuzz_settings(40)
@given(sku=hostile_text, query=hostile_text, session=hostile_text)
@example(sku="\x00", query="", session="")  # regression: NUL on PostgreSQL was INTERNAL
def test_online_events_with_any_text_get_a_status_each(
    personalization_server: FuzzServer, sku: str, query: str, session: str, fuzz_cases: FuzzCases
) -> None:
    member_id = consenting_member(personalization_server)
    event = personalization_pb2.OnlineEvent(
        event_id=fresh_id("online"),
        member_id=member_id,
        type=personalization_pb2.ONLINE_EVENT_TYPE_SEARCHED,
        sku=sku,
        query=query,
        session_id=session,
    )
    with fuzz_cases.case(TEXT_TARGET):
        outcome = personalization_server.call(
            "IngestOnlineEvents", personalization_pb2.IngestOnlineEventsRequest(events=[event])
        )
        assert outcome.code in REFUSED_OR_OK, f"{outcome.code.name} {outcome.details}"


# ---------------------------------------------------------------- duplicate and out-of-order events


def stored_event_ids(engine: Engine, prefix: str) -> dict[str, str]:
    """event id -> stored type, of the visit events whose id starts with `prefix`."""
    with db.read(engine) as conn:
        rows = conn.execute(
            select(db.visit_events.c.event_id, db.visit_events.c.type).where(
                db.visit_events.c.event_id.startswith(prefix, autoescape=True)
            )
        ).all()
    return {row.event_id: row.type for row in rows}


@fuzz_settings(50)
@given(
    sends=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(EVENT_TYPES), st.integers(-7 * 86400, 7 * 86400)),
        min_size=1,
        max_size=10,
    ),
    identified=st.booleans(),
)
def test_each_visit_event_id_is_stored_once_however_often_and_in_whatever_order_it_comes(
    personalization_server: FuzzServer, sends: list[tuple[int, int, int]], identified: bool, fuzz_cases: FuzzCases
) -> None:
    member_id = consenting_member(personalization_server) if identified else ""
    prefix = fresh_id("visit") + "-"
    first_type: dict[str, int] = {}
    with fuzz_cases.case(EVENT_TARGET):
        for number, kind, offset in sends:
            event_id = f"{prefix}{number}"
            event = personalization_pb2.VisitEvent(
                event_id=event_id,
                type=kind,
                store_id=STORE,
                member_id=member_id,
                track_id=f"{prefix}track",
                zone_id="produce",
                lane_id="lane-1" if kind == personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT else "",
                at=timestamp_pb2.Timestamp(seconds=1_780_000_000 + offset),
            )
            result = personalization_server.invoke("RecordVisitEvent", event)
            if event_id in first_type:
                assert (result.duplicate, len(result.offers_pushed), len(result.alerts_raised)) == (True, 0, 0)
            else:
                assert result.duplicate is False
                first_type[event_id] = kind
        stored = stored_event_ids(engine_of(personalization_server), prefix)
        names = {
            kind: personalization_pb2.VisitEventType.Name(kind).removeprefix("VISIT_EVENT_TYPE_").lower()
            for kind in EVENT_TYPES
        }
        assert stored == {event_id: names[kind] for event_id, kind in first_type.items()}


@fuzz_settings(30)
@given(sends=st.lists(st.integers(0, 2), min_size=1, max_size=6))
def test_each_purchase_is_stored_once_however_often_it_comes(
    personalization_server: FuzzServer, sends: list[int], fuzz_cases: FuzzCases
) -> None:
    prefix = fresh_id("purchase") + "-"
    seen: set[str] = set()
    with fuzz_cases.case(EVENT_TARGET):
        for number in sends:
            transaction_id = f"{prefix}{number}"
            purchase = personalization_pb2.Purchase(
                transaction_id=transaction_id,
                store_id=STORE,
                lane_id="lane-1",
                lines=[personalization_pb2.PurchaseLine(sku="SKU-00001", quantity=1, unit_price=2.5)],
            )
            result = personalization_server.invoke("RecordPurchase", purchase)
            assert result.duplicate is (transaction_id in seen)
            seen.add(transaction_id)
        with db.read(engine_of(personalization_server)) as conn:
            stored = conn.execute(
                select(func.count()).where(db.transactions.c.transaction_id.startswith(prefix, autoescape=True))
            ).scalar_one()
        assert stored == len(seen)


@fuzz_settings(30)
@given(seconds=st.sampled_from(TIMESTAMP_SECONDS), nanos=st.sampled_from([0, 999_999_999, -1, 1_000_000_000]))
@example(seconds=2**63 - 1, nanos=0)  # regression: stored, then INTERNAL converting its offers' expiry
@example(seconds=253402300799, nanos=999_999_999)  # 9999-12-31: stored; its offers expire past the range's end
def test_a_visit_far_in_the_past_or_future_is_stored_or_refused_and_read_back_with_a_status(
    personalization_server: FuzzServer, seconds: int, nanos: int, fuzz_cases: FuzzCases
) -> None:
    member_id = consenting_member(personalization_server)
    event = personalization_pb2.VisitEvent(
        event_id=fresh_id("far"),
        type=personalization_pb2.VISIT_EVENT_TYPE_ENTERED,
        store_id=STORE,
        member_id=member_id,
        track_id="far-track",
        at=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
    )
    reads = [
        ("GetMemberActivity", personalization_pb2.MemberActivityRequest(member_id=member_id)),
        ("ExportMemberData", personalization_pb2.ExportMemberDataRequest(member_id=member_id, actor="officer")),
        ("QueryAudit", personalization_pb2.AuditQuery(member_id=member_id)),
        ("GetStoreAnalytics", personalization_pb2.StoreAnalyticsRequest(store_id=STORE)),
    ]
    valid = -62135596800 <= seconds <= 253402300799 and 0 <= nanos <= 999_999_999
    with fuzz_cases.case(EVENT_TARGET):
        recorded = personalization_server.call("RecordVisitEvent", event)
        assert recorded.code == (grpc.StatusCode.OK if valid else grpc.StatusCode.INVALID_ARGUMENT), recorded.details
        for method, request in reads:
            outcome = personalization_server.call(method, request)
            assert outcome.code not in NEVER, f"{method}: {outcome.code.name} {outcome.details}"
