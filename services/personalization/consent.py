"""The consent rules, in one place: which scopes exist, and who may be identified and greeted, by what name.

`recognition(member)` is the one home of the greeting rule: the staff greeting, the name on a
dissatisfaction alert and `Member.recognition` (which the gateway reads) all come from it.
"""

from __future__ import annotations

from collections.abc import Iterable

from retailface.services.personalization.domain import (
    SCOPE_FACE_IDENTIFICATION,
    SCOPE_STAFF_GREETING,
    SCOPES,
    Member,
    Recognition,
)
from retailface.services.shared.errors import InvalidArgument


def recognition(member: Member) -> Recognition:
    """May the member be identified by face; may staff greet them, and by which name.

    Identified: active consent with the face_identification scope. Greeted: identified, the
    staff_greeting scope, and the member's own allow_greeting. The name staff use is the preferred
    name, else the first name of the display name (never the full name).
    """
    may_identify = member.consent.allows(SCOPE_FACE_IDENTIFICATION)
    allow_greeting = member.preferences is not None and member.preferences.allow_greeting
    may_greet = may_identify and member.consent.allows(SCOPE_STAFF_GREETING) and allow_greeting
    if not may_greet:
        return Recognition(may_identify=may_identify)
    assert member.preferences is not None
    first_name = next(iter(member.display_name.split()), "")
    return Recognition(may_identify, True, member.preferences.preferred_name or first_name)


def check_scopes(scopes: Iterable[str]) -> None:
    """INVALID_ARGUMENT naming any scope that is not one of SCOPES."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise InvalidArgument(f"unknown consent scopes {sorted(unknown)}; scopes are {', '.join(SCOPES)}")
