"""The services the consoles call, through the client library: one channel to each, a token per call.

A person's pages call as that person (the bearer token in their session), so the services' own role checks
and store scopes decide what they may do; the member portal calls with the web's own token (role web) and
only for the member id its session holds. The web never opens a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from retailface.client.consoles import (
    AnalyticsClient,
    MemberPortalClient,
    PrivacyClient,
    StaffConsoleClient,
    StoreAdminClient,
    as_caller,
    open_channel,
)
from retailface.services.shared.config import ServiceConfig

# gRPC status -> HTTP status of the page that made the call.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


@dataclass(frozen=True)
class CallFailure:
    status: int
    code: str
    message: str


def failure_of(error: grpc.RpcError) -> CallFailure:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else ""
    return CallFailure(HTTP_STATUS.get(code, 502), code.name if code else "UNKNOWN", details or "")


class Backend:
    def __init__(self, gateway: grpc.Channel, personalization: grpc.Channel, web_token: str) -> None:
        self._gateway = gateway
        self._personalization = personalization
        self._web_token = web_token

    @classmethod
    def from_config(cls, cfg: ServiceConfig, gateway_addr: str, personalization_addr: str, web_token: str) -> Backend:
        """Channels secured like the other services' own: the web's certificate as the client's, the CA to verify."""
        insecure = bool(cfg.get("RETAILFACE_INSECURE")) and cfg.get("RETAILFACE_TLS_CA") is None
        tls: dict[str, Path | None] = {
            "ca": cfg.get("RETAILFACE_TLS_CA"),
            "cert": cfg.get("RETAILFACE_TLS_CERT"),
            "key": cfg.get("RETAILFACE_TLS_KEY"),
        }
        return cls(
            open_channel(gateway_addr, insecure=insecure, **tls),
            open_channel(personalization_addr, insecure=insecure, **tls),
            web_token,
        )

    def close(self) -> None:
        self._gateway.close()
        self._personalization.close()

    def staff(self, token: str, store_id: str) -> StaffConsoleClient:
        return StaffConsoleClient(as_caller(self._gateway, token), as_caller(self._personalization, token), store_id)

    def privacy(self, token: str) -> PrivacyClient:
        return PrivacyClient(as_caller(self._gateway, token), as_caller(self._personalization, token))

    def admin(self, token: str) -> StoreAdminClient:
        return StoreAdminClient(as_caller(self._personalization, token))

    def analytics(self, token: str) -> AnalyticsClient:
        return AnalyticsClient(as_caller(self._personalization, token))

    def portal(self) -> MemberPortalClient:
        """The member portal's calls, with the web's own token."""
        return MemberPortalClient(as_caller(self._personalization, self._web_token))
