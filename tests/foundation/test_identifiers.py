"""The one rule for identifiers and display names (services/shared/identifiers.py)."""

from __future__ import annotations

import pytest

from retailface.services.shared.errors import InvalidArgument
from retailface.services.shared.identifiers import MAX_NAME_LENGTH, check_id, clean_display_name


@pytest.mark.parametrize("value", ["m00042", "entrance-1", "m00042:5e1f0c", "a", "store.7", "x@y", "A" * 128])
def test_a_valid_id_is_returned_as_it_is(value: str) -> None:
    assert check_id(value, "member_id") == value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("m 1", "'m 1'"),
        ("-leading", "'-leading'"),
        ("nul\x00byte", "'nul\\\\x00byte...'"),
        ("rtl\u202eevil", "'rtl\\\\u202eevil...'"),
        ("A" * 129, "'" + "A" * 40 + "...'"),
        ("ümlaut", "'ümlaut'"),
    ],
)
def test_an_invalid_id_is_refused_with_the_rule(value: str, shown: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        check_id(value, "member_id")
    assert str(error.value) == (
        f"member_id {shown} is not a valid id: use 1 to 128 characters of letters, digits and . _ : @ -, "
        "starting with a letter or digit"
    )


def test_an_empty_id_is_required() -> None:
    with pytest.raises(InvalidArgument, match=r"^camera_id is required$"):
        check_id("", "camera_id")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Lena", "Lena"),
        ("  Lena \t Wolf\n", "Lena Wolf"),
        ("Lena\u202e floW", "Lena floW"),  # a right-to-left override would show "Wolf" reversed
        ("Le\x00na\x1b[31m", "Lena[31m"),
        ("Zoe\u0301", "Zoé"),  # NFC: the combining accent joins its letter
        ("\u2066Admin\u2069", "Admin"),
    ],
)
def test_a_display_name_loses_control_format_and_bidi_characters(raw: str, shown: str) -> None:
    assert clean_display_name(raw) == shown


def test_a_display_name_is_bounded() -> None:
    assert clean_display_name("x" * 10_000) == "x" * MAX_NAME_LENGTH
