"""A channel to the gateway with the caller's bearer token and (m)TLS.

Rotated credentials are picked up without a restart: a token file and the TLS files (CA, certificate, key)
are checked for changes every few seconds, on a call. A new token goes out with the next call; new TLS files
open a new connection for the calls that follow, while calls in flight finish on the old one.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

DEFAULT_TARGET = "127.0.0.1:50050"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REQUEST_ID_KEY = "x-request-id"
RELOAD_CHECK_SECONDS = 5.0
log = logging.getLogger(__name__)


def files_digest(paths: Sequence[Path]) -> str:
    """One SHA-256 over the files' contents (a missing file counts as empty), to notice any change."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError:
            data = b""
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


class _Throttle:
    """True at most once every `seconds` (the first time at once)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds, self._clock, self._next = seconds, clock, float("-inf")
        self._lock = threading.Lock()

    def due(self) -> bool:
        now = self._clock()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self._seconds
            return True


class FileToken:
    """The bearer token in a file, read again when the file changes (checked every `check_seconds`).

    An empty or unreadable new file keeps the token read before (logged): a rotation caught half-written
    is retried on the next check.
    """

    def __init__(self, path: Path, check_seconds: float = RELOAD_CHECK_SECONDS) -> None:
        self.path = Path(path)
        self._throttle = _Throttle(check_seconds)
        self._digest = ""
        self._token: str | None = None
        self()
        if not self._token:
            raise ValueError(f"{self.path}: no bearer token in the file")

    def __call__(self) -> str | None:
        if self._throttle.due() and (digest := files_digest([self.path])) != self._digest:
            self._digest = digest
            try:
                token = self.path.read_text().strip()
            except OSError as error:
                token = ""
                log.error("cannot read the token file %s: %s; keeping the previous token", self.path, error.strerror)
            if token:
                self._token = token
            elif self._token:
                log.error("the token file %s is empty; keeping the previous token", self.path)
        return self._token


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

    def __init__(self, token: str | Callable[[], str | None] | None, request_id: Callable[[], str | None]) -> None:
        self._token = token
        self._request_id = request_id

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or ())
        token = self._token() if callable(self._token) else self._token
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
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


@dataclass(frozen=True)
class ChannelTls:
    """The PEM files a TLS channel is made of; None: the system's CAs, or no client certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def paths(self) -> list[Path]:
        return [Path(path) for path in (self.ca, self.cert, self.key) if path is not None]

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca).read_bytes() if self.ca else None,
            private_key=Path(self.key).read_bytes() if self.key else None,
            certificate_chain=Path(self.cert).read_bytes() if self.cert else None,
        )


def check_tls(tls: ChannelTls) -> None:
    """The CA bundle loads, and the certificate and key load as a pair (the standard library's OpenSSL, as gRPC
    would); ssl.SSLError (an OSError) or ValueError says which file is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca is not None:
        context.load_verify_locations(cafile=str(tls.ca))
    if tls.cert is not None and tls.key is not None:
        try:
            context.load_cert_chain(str(tls.cert), str(tls.key), password=lambda: b"")  # never a prompt
        except ssl.SSLError as error:
            raise ValueError(f"{tls.key} and {tls.cert} are not a certificate and its private key ({error})") from None


class _LazyCall(
    grpc.UnaryUnaryMultiCallable,
    grpc.UnaryStreamMultiCallable,
    grpc.StreamUnaryMultiCallable,
    grpc.StreamStreamMultiCallable,
):
    """A method of a ReloadingChannel: each call goes out on the channel current at the time of the call."""

    def __init__(self, owner: ReloadingChannel, kind: str, method: str, kwargs: dict[str, Any]) -> None:
        self._owner, self._kind, self._method, self._kwargs = owner, kind, method, kwargs
        self._cached: tuple[int, Any] = (-1, None)  # (channel generation, that channel's multi-callable)

    def _resolve(self) -> Any:
        generation, channel = self._owner.current()
        cached_generation, call = self._cached
        if cached_generation != generation:
            call = getattr(channel, self._kind)(self._method, **self._kwargs)
            self._cached = (generation, call)
        return call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve().with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve().future(*args, **kwargs)


class ReloadingChannel(grpc.Channel):
    """A TLS channel whose CA, certificate and key files may be rotated while it is in use.

    gRPC cannot swap a channel's credentials, so when the files change (checked on a call, at most every
    `check_seconds`) a new channel is opened from them and later calls use it; calls in flight finish on
    the old one, closed with this channel (or once `keep_retired` newer ones exist). Files that fail
    `check` (a half-written rotation, say) are logged and the previous ones stay in use.
    """

    def __init__(
        self,
        target: str,
        tls: ChannelTls,
        options: Sequence[tuple[str, Any]] = (),
        check_seconds: float = RELOAD_CHECK_SECONDS,
        check: Callable[[ChannelTls], None] = check_tls,
        keep_retired: int = 4,
    ) -> None:
        self.target, self.tls = target, tls
        self._options, self._check, self._keep_retired = list(options), check, keep_retired
        self._throttle = _Throttle(check_seconds)
        self._lock = threading.Lock()
        check(tls)  # at start, bad files are the caller's error
        self._digest = files_digest(tls.paths)
        self._channel = grpc.secure_channel(target, tls.credentials(), options=self._options)
        self._generation = 0
        self._retired: list[grpc.Channel] = []

    def current(self) -> tuple[int, grpc.Channel]:
        """The generation and channel new calls use, after loading rotated files when a check is due."""
        if self._throttle.due():
            self._reload()
        with self._lock:
            return self._generation, self._channel

    def _reload(self) -> None:
        digest = files_digest(self.tls.paths)
        if digest == self._digest:
            return
        self._digest = digest
        try:
            self._check(self.tls)
            credentials = self.tls.credentials()
        except (OSError, ValueError) as error:
            log.error("TLS files for %s not loaded (%s): new connections keep the previous ones", self.target, error)
            return
        channel = grpc.secure_channel(self.target, credentials, options=self._options)
        with self._lock:
            self._retired.append(self._channel)
            self._channel, self._generation = channel, self._generation + 1
            excess = self._retired[: -self._keep_retired] if self._keep_retired else list(self._retired)
            self._retired = self._retired[len(excess) :]
        for old in excess:
            old.close()
        log.info("TLS files for %s reloaded: new connections use them", self.target)

    def _lazy(self, kind: str, method: str, serializer: Any, deserializer: Any, registered: bool) -> _LazyCall:
        kwargs = {"request_serializer": serializer, "response_deserializer": deserializer}
        return _LazyCall(self, kind, method, kwargs | {"_registered_method": registered})

    def unary_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):  # type: ignore[no-untyped-def, override]
        return self._lazy("unary_unary", method, request_serializer, response_deserializer, _registered_method)

    def unary_stream(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):  # type: ignore[no-untyped-def, override]
        return self._lazy("unary_stream", method, request_serializer, response_deserializer, _registered_method)

    def stream_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):  # type: ignore[no-untyped-def, override]
        return self._lazy("stream_unary", method, request_serializer, response_deserializer, _registered_method)

    def stream_stream(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):  # type: ignore[no-untyped-def, override]
        return self._lazy("stream_stream", method, request_serializer, response_deserializer, _registered_method)

    def subscribe(self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False) -> None:
        self.current()[1].subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self.current()[1].unsubscribe(callback)

    def close(self) -> None:
        with self._lock:
            channels, self._retired = [self._channel, *self._retired], []
        for channel in channels:
            channel.close()

    def __enter__(self) -> ReloadingChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    reload_seconds: float = RELOAD_CHECK_SECONDS,
) -> Connection:
    """Connects to the gateway. TLS unless `insecure` (local development); mTLS when cert and key are given.

    A `token_file` and the TLS files are read again when they change (checked every `reload_seconds`), so
    that a long-running client follows a rotation without a restart.
    """
    if not token and token_file is None:
        raise ValueError("a bearer token is required (token= or token_file=)")
    source: str | FileToken = token if token else FileToken(Path(token_file), reload_seconds)  # type: ignore[arg-type]
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    channel: grpc.Channel
    if insecure:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = ReloadingChannel(target, ChannelTls(ca, cert, key), options, check_seconds=reload_seconds)
    return Connection(grpc.intercept_channel(channel, MetadataInterceptor(source, lambda: uuid.uuid4().hex)))
