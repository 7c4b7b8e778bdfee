"""Bearer tokens per caller role.

Callers present `authorization: Bearer <token>`; the tokens file maps each role to the tokens
it accepts. Each RPC declares which roles may call it (Registration.method_roles).

A token is a string, or an object that also names the stores its holder acts for:

    {"camera": ["..."], "staff": [{"token": "...", "stores": ["store-1"]}], "manager": [...]}

A token without stores acts for every store. The web consoles sign people in with the same file:
staff and managers see only their stores.
"""

from __future__ import annotations

import hmac
import json
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

# camera: camera controllers; pos: checkout systems; staff: store devices and the staff screen;
# manager: store analytics; privacy: the privacy office; web: the consoles' own calls;
# service: service-to-service; admin: everything.
ROLES: frozenset[str] = frozenset({"camera", "pos", "staff", "manager", "privacy", "web", "admin", "service"})
DEFAULT_ROLES: frozenset[str] = frozenset({"service", "admin"})


@dataclass(frozen=True)
class Principal:
    """Who holds a token: a role, and the stores it acts for (empty: every store)."""

    role: str
    stores: frozenset[str] = frozenset()

    def may_act_for(self, store_id: str) -> bool:
        return not self.stores or store_id in self.stores


# The caller of the RPC being served (set by the bootstrap's interceptor for the call's duration).
_CALLER: ContextVar[Principal | None] = ContextVar("retailface_caller", default=None)


def current_caller() -> Principal | None:
    """Who is calling the RPC this thread serves; None outside an authenticated call."""
    return _CALLER.get()


def bind_caller(principal: Principal | None) -> object:
    """Sets the caller for the current call; returns the token `unbind_caller` takes."""
    return _CALLER.set(principal)


def unbind_caller(token: object) -> None:
    _CALLER.reset(token)  # type: ignore[arg-type]


class TokenStore:
    def __init__(self, tokens_by_role: dict[str, list[str]]) -> None:
        unknown = set(tokens_by_role) - ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)} in tokens file; roles are {sorted(ROLES)}")
        self._entries: list[tuple[bytes, Principal]] = []
        for role, tokens in tokens_by_role.items():
            if isinstance(tokens, (str, dict)):
                tokens = [tokens]
            for entry in tokens:
                token, stores = _token_entry(role, entry)
                if len(token) < 16:
                    raise ValueError(f"a token of role {role!r} is shorter than 16 characters")
                self._entries.append((token.encode(), Principal(role, stores)))

    @classmethod
    def from_file(cls, path: Path) -> TokenStore:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f'{path}: expected an object like {{"camera": ["token"]}}')
        return cls(data)

    def principal_of(self, token: str) -> Principal | None:
        """Who holds a token, compared in constant time against every entry."""
        candidate = token.encode()
        found = None
        for expected, principal in self._entries:
            if hmac.compare_digest(candidate, expected):
                found = principal
        return found

    def role_of(self, token: str) -> str | None:
        """The role of a token, compared in constant time against every entry."""
        principal = self.principal_of(token)
        return principal.role if principal else None


def _token_entry(role: str, entry: object) -> tuple[str, frozenset[str]]:
    if isinstance(entry, str):
        return entry, frozenset()
    if isinstance(entry, dict) and isinstance(entry.get("token"), str):
        stores = entry.get("stores", [])
        if not isinstance(stores, list) or not all(isinstance(store, str) and store for store in stores):
            raise ValueError(f'a token of role {role!r}: "stores" must be a list of store ids')
        return entry["token"], frozenset(stores)
    raise ValueError(f'a token of role {role!r} must be a string or {{"token": "...", "stores": ["..."]}}')


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    return None
