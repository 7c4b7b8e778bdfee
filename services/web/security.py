"""The consoles' web security: headers on every response, CSRF tokens, and failed sign-ins limited and counted.

- Content-Security-Policy: `default-src 'self'` with no inline script or style anywhere (scripts are ES
  modules under /static), no framing (also X-Frame-Options DENY), no referrer (a member's sign-in link
  never leaves in a Referer header), nothing cached.
- CSRF: every session (anonymous ones too) holds a random token; every POST must send it back, as the
  form field `csrf_token` or the `X-CSRF-Token` header (the staff screen's fetch calls), or get 403.
- Sign-ins: a wrong token or a bad member code counts against the address (the services' AuthLimiter,
  auth_limiter.py); a locked-out address gets 429 before its attempt is looked at. Both are counted in
  retailface_web_sign_in_failures_total{kind, reason}.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

from retailface.services.shared.auth_limiter import AuthLimiter

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

SIGN_IN_FAILURES = Counter(
    "retailface_web_sign_in_failures_total",
    "failed sign-ins to the consoles: kind person (token) or member (code); reason unknown/role/code/locked",
    ["kind", "reason"],
)
SIGN_INS = Counter("retailface_web_sign_ins_total", "sign-ins to the consoles", ["role"])
WEB_REQUESTS = Histogram(
    "retailface_web_request_duration_seconds",
    "the consoles' HTTP requests by method, route and status (an alert stream counts when it ends)",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SIGN_IN_LOCKOUTS = Counter("retailface_web_sign_in_lockouts_total", "addresses locked out after failed sign-ins")


async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.url.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def csrf_matches(expected: str, sent: str | None) -> bool:
    return bool(expected) and sent is not None and hmac.compare_digest(expected.encode(), sent.encode())


class SignInGuard:
    """Failed sign-ins per client address, with the services' doubling lockout."""

    def __init__(self, limiter: AuthLimiter) -> None:
        self._limiter = limiter

    def locked_for(self, address: str, kind: str) -> int:
        """Seconds the address must wait (0: it may try); a refusal is counted."""
        wait = self._limiter.locked_for(address)
        if wait > 0:
            SIGN_IN_FAILURES.labels(kind, "locked").inc()
            return max(1, math.ceil(wait))
        return 0

    def failed(self, address: str, kind: str, reason: str) -> None:
        SIGN_IN_FAILURES.labels(kind, reason).inc()
        if self._limiter.record_failure(address) is not None:
            SIGN_IN_LOCKOUTS.inc()
