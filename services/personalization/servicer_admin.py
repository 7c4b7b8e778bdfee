"""gRPC for stores, cameras, the watchlist and store analytics (admins, managers; the gateway reads cameras).

A mixin of PersonalizationServicer: converts messages and calls the logic, nothing more.
"""

from __future__ import annotations

ADMIN_METHOD_ROLES: dict[str, frozenset[str]] = {}


class AdminRpcs:
    pass
