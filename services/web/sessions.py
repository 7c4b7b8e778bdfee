"""Sessions in one encrypted, authenticated cookie (AES-256-GCM): nothing is kept on the server.

A session is one of:
- anonymous: only a CSRF token, so that the sign-in forms carry one too;
- a person (staff, manager, privacy, admin): the bearer token they signed in with, which the web presents
  on every gRPC call it makes for them, so the services' role checks and store scopes apply to them;
- a member: the member id a redeemed single-use code named. The web calls for the member with its own token.

The cookie's plaintext is JSON; AES-GCM encrypts it (the token never shows) and authenticates it (a changed
byte fails to open). Each session has an absolute expiry inside the ciphertext; an expired or unreadable
cookie is no session at all. The cookie is HttpOnly, SameSite=Strict, Secure over HTTPS, and its
Max-Age ends with the session.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE_NAME = "rf_session"
_AAD = b"retailface-web-session-v1"
_NONCE_BYTES = 12
MAX_COOKIE_CHARS = 3800  # under the 4 KB browsers keep

ANONYMOUS, PERSON, MEMBER = "anonymous", "person", "member"
PEOPLE_ROLES = frozenset({"staff", "manager", "privacy", "admin"})


@dataclass(frozen=True)
class Session:
    kind: str
    csrf: str
    expires_at: float
    role: str = ""
    stores: tuple[str, ...] = ()  # empty: every store
    token: str = field(default="", repr=False)  # a person's bearer token
    member_id: str = ""
    label: str = ""  # how the page greets them ("staff", "member")

    @property
    def signed_in(self) -> bool:
        return self.kind in (PERSON, MEMBER)

    def may_act_for(self, store_id: str) -> bool:
        return not self.stores or store_id in self.stores


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def anonymous(seconds: float, clock: Callable[[], float] = time.time) -> Session:
    return Session(ANONYMOUS, new_csrf(), clock() + seconds)


def person(
    role: str, stores: frozenset[str], token: str, seconds: float, clock: Callable[[], float] = time.time
) -> Session:
    # A new CSRF token at sign-in: one seen before it (anonymous) is worth nothing afterwards.
    return Session(
        PERSON, new_csrf(), clock() + seconds, role=role, stores=tuple(sorted(stores)), token=token, label=role
    )


def member(member_id: str, expires_at: float) -> Session:
    return Session(MEMBER, new_csrf(), expires_at, role="member", member_id=member_id, label="member")


class SessionCodec:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(key) != 32:
            raise ValueError("the session key must be 32 bytes")
        self._aead = AESGCM(key)
        self._clock = clock

    def seal(self, session: Session) -> str:
        plaintext = json.dumps(asdict(session), separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, plaintext, _AAD)).decode().rstrip("=")
        if len(sealed) > MAX_COOKIE_CHARS:
            raise ValueError("session too large for a cookie")
        return sealed

    def open(self, cookie: str | None) -> Session | None:
        """The session in `cookie`; None when absent, altered, made with another key, or expired."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            plaintext = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD)
            data = json.loads(plaintext)
            session = Session(**{**data, "stores": tuple(data.get("stores", ()))})
        except (binascii.Error, InvalidTag, ValueError, TypeError):
            return None
        if session.expires_at <= self._clock():
            return None
        return session

    def remaining(self, session: Session) -> int:
        return max(0, int(session.expires_at - self._clock()))
