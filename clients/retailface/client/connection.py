"""A channel to the gateway with the caller's bearer token and (m)TLS."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

DEFAULT_TARGET = "127.0.0.1:50050"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REQUEST_ID_KEY = "x-request-id"


class MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token and a request id (unless the call sets one) to every outgoing call.

    `request_id` gives the id for a call: a new one for an edge client, the current request's
    for a service calling another service.
    """

    def __init__(self, token: str | None, request_id: Callable[[], str | None]) -> None:
        self._token = token
        self._request_id = request_id

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or ())
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        if not any(key == REQUEST_ID_KEY for key, _ in metadata) and (request_id := self._request_id()):
            metadata.append((REQUEST_ID_KEY, request_id))
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request_iterator)


@dataclass
class Connection:
    channel: grpc.Channel

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    target: str = DEFAULT_TARGET,
    token: str | None = None,
    token_file: Path | None = None,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    insecure: bool = False,
) -> Connection:
    """Connects to the gateway. TLS unless `insecure` (local development); mTLS when cert and key are given."""
    if token is None and token_file is not None:
        token = Path(token_file).read_text().strip()
    if not token:
        raise ValueError("a bearer token is required (token= or token_file=)")
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if insecure:
        channel = grpc.insecure_channel(target, options=options)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(ca).read_bytes() if ca else None,
            private_key=Path(key).read_bytes() if key else None,
            certificate_chain=Path(cert).read_bytes() if cert else None,
        )
        channel = grpc.secure_channel(target, credentials, options=options)
    return Connection(grpc.intercept_channel(channel, MetadataInterceptor(token, lambda: uuid.uuid4().hex)))
