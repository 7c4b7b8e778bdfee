"""What an identifier and a display name may be: one rule for every service.

Identifiers (member, subject, template, camera, store ids) are 1 to 128 characters of ASCII
letters, digits and `. _ : @ -`, starting with a letter or digit. That keeps them safe in logs,
file names, metrics labels and URLs, and refuses the empty id, NUL bytes, control and bidi
characters and oversized ids at the door.

Display names are free text shown to staff: they are NFC-normalised, stripped of control, format
(including the bidi overrides U+202A-202E and U+2066-2069 that could make a name read as something
else on a staff screen), surrogate and private-use characters, have their whitespace collapsed,
and are limited to MAX_NAME_LENGTH characters.
"""

from __future__ import annotations

import re
import unicodedata

from retailface.services.shared.errors import InvalidArgument

MAX_ID_LENGTH = 128
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
MAX_NAME_LENGTH = 100
_UNSHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def check_id(value: str, field: str) -> str:
    """`value` when it is a valid identifier; InvalidArgument naming the field and the rule otherwise."""
    if ID_PATTERN.fullmatch(value):
        return value
    if not value:
        raise InvalidArgument(f"{field} is required")
    shown = value if len(value) <= 40 and value.isprintable() else f"{value[:40].encode('unicode_escape').decode()}..."
    raise InvalidArgument(
        f"{field} {shown!r} is not a valid id: use 1 to {MAX_ID_LENGTH} characters of letters, digits and . _ : @ -, "
        "starting with a letter or digit"
    )


def clean_display_name(name: str) -> str:
    """The name as it may be shown: no control, format or bidi characters, whitespace collapsed, bounded."""
    normalised = unicodedata.normalize("NFC", name)
    kept = "".join(ch for ch in normalised if unicodedata.category(ch) not in _UNSHOWN_CATEGORIES)
    return " ".join(kept.split())[:MAX_NAME_LENGTH]
