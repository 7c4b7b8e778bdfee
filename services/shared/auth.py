"""Bearer tokens per caller role.

Callers present `authorization: Bearer <token>`; the tokens file maps each role to the tokens
it accepts. Each RPC declares which roles may call it (Registration.method_roles).
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

ROLES: frozenset[str] = frozenset({"camera", "pos", "staff", "admin", "service"})
DEFAULT_ROLES: frozenset[str] = frozenset({"service", "admin"})


class TokenStore:
    def __init__(self, tokens_by_role: dict[str, list[str]]) -> None:
        unknown = set(tokens_by_role) - ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)} in tokens file; roles are {sorted(ROLES)}")
        self._entries: list[tuple[bytes, str]] = []
        for role, tokens in tokens_by_role.items():
            if isinstance(tokens, str):
                tokens = [tokens]
            for token in tokens:
                if len(token) < 16:
                    raise ValueError(f"a token of role {role!r} is shorter than 16 characters")
                self._entries.append((token.encode(), role))

    @classmethod
    def from_file(cls, path: Path) -> TokenStore:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f'{path}: expected an object like {{"camera": ["token"]}}')
        return cls(data)

    def role_of(self, token: str) -> str | None:
        """The role of a token, compared in constant time against every entry."""
        candidate = token.encode()
        role = None
        for expected, entry_role in self._entries:
            if hmac.compare_digest(candidate, expected):
                role = entry_role
        return role


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    return None
