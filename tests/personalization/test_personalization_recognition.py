"""The recognition rule: who may be identified by face and greeted by staff, and by what name."""

from __future__ import annotations

import pytest

from retailface.services.personalization.consent import check_scopes, recognition
from retailface.services.personalization.domain import (
    SCOPE_ANALYTICS,
    SCOPE_FACE_IDENTIFICATION,
    SCOPE_PERSONALIZED_OFFERS,
    SCOPE_STAFF_GREETING,
    Consent,
    Member,
    Preferences,
    Recognition,
)
from retailface.services.shared.errors import InvalidArgument

ALL_SCOPES = frozenset({SCOPE_FACE_IDENTIFICATION, SCOPE_PERSONALIZED_OFFERS, SCOPE_STAFF_GREETING})


def _member(
    scopes: frozenset[str] = ALL_SCOPES,
    *,
    allow_greeting: bool = True,
    preferred_name: str = "",
    display_name: str = "Ava Maria Jensen",
    revoked_at: float | None = None,
    preferences: bool = True,
) -> Member:
    return Member(
        member_id="m-1",
        display_name=display_name,
        consent=Consent(policy_version="2026-01", scopes=scopes, granted_at=1.0, revoked_at=revoked_at),
        preferences=Preferences("m-1", allow_greeting=allow_greeting, preferred_name=preferred_name)
        if preferences
        else None,
    )


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (_member(), Recognition(may_identify=True, may_greet=True, greeting_name="Ava")),
        (_member(preferred_name="Mia"), Recognition(may_identify=True, may_greet=True, greeting_name="Mia")),
        (
            _member(frozenset({SCOPE_FACE_IDENTIFICATION, SCOPE_PERSONALIZED_OFFERS})),
            Recognition(may_identify=True, may_greet=False, greeting_name=""),
        ),
        (_member(allow_greeting=False, preferred_name="Mia"), Recognition(may_identify=True)),
        (_member(preferences=False), Recognition(may_identify=True)),
        (
            _member(frozenset({SCOPE_STAFF_GREETING, SCOPE_PERSONALIZED_OFFERS}), preferred_name="Mia"),
            Recognition(may_identify=False, may_greet=False, greeting_name=""),
        ),
        (_member(revoked_at=2.0, preferred_name="Mia"), Recognition()),
        (_member(frozenset()), Recognition()),
        (_member(display_name="  Ava   Jensen"), Recognition(True, True, "Ava")),
        (_member(display_name=""), Recognition(True, True, "")),
    ],
    ids=[
        "all scopes: the first name, never the full name",
        "preferred name wins over the first name",
        "identified without the greeting scope: not greeted",
        "greeting declined in the preferences: not greeted, no name",
        "no preferences: not greeted",
        "greeting scope without face identification: neither",
        "revoked consent: neither",
        "no consent: neither",
        "spaces around the display name",
        "no name at all",
    ],
)
def test_recognition(member: Member, expected: Recognition) -> None:
    assert recognition(member) == expected


def test_unknown_scopes_are_refused_with_the_known_ones() -> None:
    check_scopes([SCOPE_FACE_IDENTIFICATION, SCOPE_ANALYTICS])
    with pytest.raises(InvalidArgument, match=r"unknown consent scopes \['selfies'\]; scopes are face_identification"):
        check_scopes([SCOPE_FACE_IDENTIFICATION, "selfies"])
