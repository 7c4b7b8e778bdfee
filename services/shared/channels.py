"""Channels to other services: TLS/mTLS, the service's bearer token, request-id propagation,
message limits and retries of UNAVAILABLE with backoff (gRPC's own retry policy).

The token file and the TLS files are checked for changes every RETAILFACE_CREDENTIALS_POLL_SECONDS (on a
call): a rotated token goes out with the next call, rotated certificates are used by the next connection."""

from __future__ import annotations

import json
from typing import Any

import grpc

from retailface.client.connection import ChannelTls, FileToken, MetadataInterceptor, ReloadingChannel
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
    poll = float(cfg.get("RETAILFACE_CREDENTIALS_POLL_SECONDS"))
    source: str | FileToken | None = token
    if token is None and cfg.get("RETAILFACE_SERVICE_TOKEN_FILE") is not None:
        source = FileToken(cfg.get("RETAILFACE_SERVICE_TOKEN_FILE"), check_seconds=poll)
    max_bytes = int(cfg.get("RETAILFACE_MAX_MESSAGE_MB")) * 1024 * 1024
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", RETRY_SERVICE_CONFIG),
        *authority_options(target),
    ]
    channel: grpc.Channel
    if cfg.get("RETAILFACE_INSECURE") and cfg.get("RETAILFACE_TLS_CA") is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        tls = ChannelTls(cfg.get("RETAILFACE_TLS_CA"), cfg.get("RETAILFACE_TLS_CERT"), cfg.get("RETAILFACE_TLS_KEY"))
        channel = ReloadingChannel(target, tls, options, check_seconds=poll)
    return grpc.intercept_channel(channel, MetadataInterceptor(source, current_request_id))
