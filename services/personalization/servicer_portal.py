"""gRPC for member self-service (the portal's sign-in codes, activity, export, erasure requests) and the
privacy office (consent history, erasure receipts).

A mixin of PersonalizationServicer: converts messages and calls the logic, nothing more.
"""

from __future__ import annotations

PORTAL_METHOD_ROLES: dict[str, frozenset[str]] = {}


class PortalRpcs:
    pass
