"""Channels to other services: TLS/mTLS, the service's bearer token, request-id propagation,
message limits and retries of UNAVAILABLE with backoff (gRPC's own retry policy)."""

from __future__ import annotations

import json
from typing import Any

import grpc

from retailface.client.connection import MetadataInterceptor
from retailface.services.shared.config import ServiceConfig
from retailface.services.shared.logging import current_request_id

# round_robin over every address the name resolves to (headless Services in Kubernetes), so that
# added detection/embedding replicas share the load instead of one pod taking every call.
RETRY_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],  # every method
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


def authority_options(target: str) -> list[tuple[str, Any]]:
    """An `ipv4:`/`ipv6:` target that lists several addresses (the replicas of the local stack) has no name of
    its own: gRPC would check the servers' certificates against the whole list and fail. Its first address
    names them all (they are one service, with one certificate)."""
    scheme, _, addresses = target.partition(":")
    if scheme in ("ipv4", "ipv6") and "," in addresses:
        return [("grpc.default_authority", addresses.split(",")[0])]
    return []


def open_channel(target: str, cfg: ServiceConfig, token: str | None = None) -> grpc.Channel:
    """A channel to another RetailFace service, secured like this service is."""
    if token is None and cfg.get("RETAILFACE_SERVICE_TOKEN_FILE") is not None:
        token = cfg.get("RETAILFACE_SERVICE_TOKEN_FILE").read_text().strip()
    max_bytes = int(cfg.get("RETAILFACE_MAX_MESSAGE_MB")) * 1024 * 1024
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", RETRY_SERVICE_CONFIG),
        *authority_options(target),
    ]
    if cfg.get("RETAILFACE_INSECURE") and cfg.get("RETAILFACE_TLS_CA") is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        ca = cfg.get("RETAILFACE_TLS_CA")
        cert, key = cfg.get("RETAILFACE_TLS_CERT"), cfg.get("RETAILFACE_TLS_KEY")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes() if ca else None,
            private_key=key.read_bytes() if key else None,
            certificate_chain=cert.read_bytes() if cert else None,
        )
        channel = grpc.secure_channel(target, credentials, options=options)
    return grpc.intercept_channel(channel, MetadataInterceptor(token, current_request_id))
