"""The process bootstrap every service shares.

`run(name, build)` loads the configuration, configures logging and metrics, builds the
service's servicer, and serves it with grpc.health.v1, server reflection, TLS/mTLS and one
interceptor for authentication, request ids, logging and metrics. On SIGTERM it reports
NOT_SERVING, stops accepting RPCs, lets in-flight RPCs finish within the grace period, and
exits 0.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from retailface.services.shared import config as config_module
from retailface.services.shared import logging as logging_module
from retailface.services.shared.auth import (
    DEFAULT_ROLES,
    Principal,
    TokenStore,
    bearer_token,
    bind_caller,
    unbind_caller,
)
from retailface.services.shared.auth_limiter import AuthLimiter, peer_address
from retailface.services.shared.config import ConfigError, ServiceConfig, Setting
from retailface.services.shared.errors import InvalidArgument, ServiceError
from retailface.services.shared.metrics import (
    AUTH_FAILURES,
    AUTH_LOCKOUTS,
    RPC_ERRORS,
    RPC_IN_FLIGHT,
    RPC_LATENCY,
    serve_metrics,
)
from retailface.services.shared.model_files import ModelMissingError
from retailface.services.shared.reloading import CredentialsWatcher, RotatingCertificate, RotatingTokens, TlsFiles

log = structlog.get_logger(__name__)
SIGNAL_POLL_SECONDS = 0.2

# Probes and tooling must reach these without a token.
OPEN_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)


@dataclass
class Registration:
    """What a service's build() hands to the bootstrap."""

    servicer: object
    add_to_server: Callable[[Any, grpc.Server], None]
    service_name: str  # full proto name, e.g. "retailface.v1.MatchingService"
    method_roles: dict[str, frozenset[str]] = field(default_factory=dict)  # method -> roles; default service/admin
    on_stop: Callable[[], None] | None = None


def _code_name(code: grpc.StatusCode | None) -> str:
    return (code or grpc.StatusCode.OK).name


class ServiceInterceptor(grpc.ServerInterceptor):
    """Authentication by role, request ids, structured access logs and RPC metrics, in one place.

    Failed authentications are limited per peer address (auth_limiter): a locked-out peer is refused with
    RESOURCE_EXHAUSTED before the outcome of its token is used, recorded or logged.
    """

    def __init__(
        self,
        service: str,
        registration: Registration,
        tokens: TokenStore | RotatingTokens,
        limiter: AuthLimiter | None = None,
    ) -> None:
        self._service = service
        self._registration = registration
        self._tokens = tokens
        self._limiter = limiter or AuthLimiter()

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full_method: str = handler_call_details.method  # "/pkg.Service/Method"
        service_name, _, method = full_method.lstrip("/").partition("/")
        if service_name in OPEN_SERVICES:
            return handler
        handler = _refusing_undecodable(handler)
        metadata = tuple(handler_call_details.invocation_metadata or ())
        allowed = self._registration.method_roles.get(method, DEFAULT_ROLES)
        token = bearer_token(metadata)
        principal = self._tokens.principal_of(token) if token else None
        request_id = next((str(v) for k, v in metadata if k == logging_module.REQUEST_ID_KEY), "") or uuid.uuid4().hex

        if principal is None:
            message = (
                "missing bearer token: send metadata 'authorization: Bearer <token>'"
                if token is None
                else "unknown bearer token"
            )
            denied = _reject(handler, grpc.StatusCode.UNAUTHENTICATED, message)
            wrapped = _wrap(denied, self._service, method, Principal("anonymous"), request_id)
            return self._guard(wrapped, method, "missing" if token is None else "unknown")
        role = principal.role
        if role not in allowed and role != "admin":
            denied = _reject(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {role!r} may not call {method}; allowed: {', '.join(sorted(allowed))}",
            )
            return self._guard(_wrap(denied, self._service, method, principal, request_id), method, "role")
        return self._guard(_wrap(handler, self._service, method, principal, request_id), method, None)

    def _guard(self, handler: grpc.RpcMethodHandler, method: str, failure: str | None) -> grpc.RpcMethodHandler:
        """Runs `handler` unless the peer is locked out; counts `failure` (missing/unknown/role or None)."""

        def admit(context: grpc.ServicerContext) -> None:
            peer = peer_address(context.peer() or "")
            wait = self._limiter.locked_for(peer)
            if wait > 0:  # not logged per call: a guesser must not flood the logs
                AUTH_FAILURES.labels(self._service, "locked").inc()
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many failed authentications from this address: retry in {math.ceil(wait)} s",
                )
            if failure is None:
                return
            AUTH_FAILURES.labels(self._service, failure).inc()
            if failure == "role":  # the caller holds a valid token: not guessing
                return
            lockout = self._limiter.record_failure(peer)
            if lockout is not None:
                AUTH_LOCKOUTS.labels(self._service).inc()
                log.warning(
                    "auth_lockout", peer=peer, method=method, failures=lockout.failures, seconds=lockout.seconds
                )

        def unary(behavior):  # type: ignore[no-untyped-def]
            def call(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
                admit(context)
                return behavior(request_or_iterator, context)

            return call

        def streaming(behavior):  # type: ignore[no-untyped-def]
            def call(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                admit(context)
                yield from behavior(request_or_iterator, context)

            return call

        return _map_handler(handler, unary, streaming)


def _map_handler(handler: grpc.RpcMethodHandler, unary, streaming):  # type: ignore[no-untyped-def]
    """A handler of the same kind whose behavior is `unary(behavior)` or `streaming(behavior)`."""
    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **kwargs)


def _reject(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    def deny_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        context.abort(code, message)
        yield  # pragma: no cover - abort raises

    return _map_handler(handler, lambda _behavior: deny, lambda _behavior: deny_stream)


class _Undecodable:
    """A request whose bytes are not a valid message (bad wire format, bad UTF-8 in a string field)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _refusing_undecodable(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler`, answering a request that does not parse with INVALID_ARGUMENT (grpc itself says INTERNAL)."""
    deserialize = handler.request_deserializer
    if deserialize is None:
        return handler

    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:  # google.protobuf.message.DecodeError, or a parser's own error type
            return _Undecodable(error)

    def checked(request: Any) -> Any:
        if isinstance(request, _Undecodable):
            raise InvalidArgument(f"the request is not a valid message: {request.error}")
        return request

    def requests(request_or_iterator: Any) -> Any:
        if handler.request_streaming:
            return (checked(request) for request in request_or_iterator)
        return checked(request_or_iterator)

    def unary(behavior):  # type: ignore[no-untyped-def]
        return lambda request_or_iterator, context: behavior(requests(request_or_iterator), context)

    def streaming(behavior):  # type: ignore[no-untyped-def]
        def call(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            yield from behavior(requests(request_or_iterator), context)

        return call

    return _map_handler(handler, unary, streaming)._replace(request_deserializer=tolerant)


class _CallScope:
    """Binds the request id, records latency/errors and writes one access-log line per RPC."""

    def __init__(self, service: str, method: str, principal: Principal, request_id: str, context: grpc.ServicerContext):
        self.service, self.method, self.principal = service, method, principal
        self.role, self.request_id, self.context = principal.role, request_id, context

    def __enter__(self) -> _CallScope:
        self.start = time.perf_counter()
        self._caller = bind_caller(self.principal)
        structlog.contextvars.bind_contextvars(request_id=self.request_id, method=self.method, role=self.role)
        self.context.set_trailing_metadata(((logging_module.REQUEST_ID_KEY, self.request_id),))
        RPC_IN_FLIGHT.labels(self.service).inc()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        elapsed = time.perf_counter() - self.start
        code = self.context.code() if hasattr(self.context, "code") else None
        if exc is not None and code in (None, grpc.StatusCode.OK):
            code = grpc.StatusCode.UNKNOWN
            log.error("rpc_failed", error=repr(exc), exc_info=(exc_type, exc, tb))
        name = _code_name(code if isinstance(code, grpc.StatusCode) else None)
        RPC_IN_FLIGHT.labels(self.service).dec()
        RPC_LATENCY.labels(self.service, self.method, name).observe(elapsed)
        if name != "OK":
            RPC_ERRORS.labels(self.service, self.method, name).inc()
        details = self.context.details() if hasattr(self.context, "details") else None
        if isinstance(details, bytes):
            details = details.decode(errors="replace")
        log.info("rpc", code=name, ms=round(elapsed * 1000, 3), details=details or None)
        structlog.contextvars.unbind_contextvars("request_id", "method", "role")
        unbind_caller(self._caller)


def _wrap(handler: grpc.RpcMethodHandler, service: str, method: str, principal: Principal, request_id: str):  # type: ignore[no-untyped-def]
    # The one place where a ServiceError raised anywhere below a servicer becomes its status.
    def unary(behavior):  # type: ignore[no-untyped-def]
        def call(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            with _CallScope(service, method, principal, request_id, context):
                try:
                    return behavior(request_or_iterator, context)
                except ServiceError as error:
                    context.abort(error.code, error.message)
                except Exception as error:
                    _internal_error(context, method, request_id, error)

        return call

    def streaming(behavior):  # type: ignore[no-untyped-def]
        def call(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with _CallScope(service, method, principal, request_id, context):
                try:
                    yield from behavior(request_or_iterator, context)
                except ServiceError as error:
                    context.abort(error.code, error.message)
                except Exception as error:
                    _internal_error(context, method, request_id, error)

        return call

    return _map_handler(handler, unary, streaming)


def _internal_error(context: grpc.ServicerContext, method: str, request_id: str, error: Exception) -> None:
    """An unexpected exception is logged with its traceback; the caller gets INTERNAL and the request id, never
    the exception's text (it can hold rows, paths or secrets). A servicer's own context.abort() stands."""
    if context.code() not in (None, grpc.StatusCode.OK):
        raise error
    log.error("rpc_failed", error=repr(error), exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: report request id {request_id}")


def auth_limiter(cfg: ServiceConfig) -> AuthLimiter:
    lockout, lockout_max = (
        float(cfg.get("RETAILFACE_AUTH_LOCKOUT_SECONDS")),
        cfg.get("RETAILFACE_AUTH_LOCKOUT_MAX_SECONDS"),
    )
    if lockout_max < lockout:
        raise ConfigError(
            f"RETAILFACE_AUTH_LOCKOUT_MAX_SECONDS={lockout_max} is below RETAILFACE_AUTH_LOCKOUT_SECONDS={lockout}"
        )
    return AuthLimiter(
        max_failures=int(cfg.get("RETAILFACE_AUTH_MAX_FAILURES")),
        window=float(cfg.get("RETAILFACE_AUTH_FAILURE_WINDOW_SECONDS")),
        lockout=lockout,
        lockout_max=float(lockout_max),
    )


def server_certificate(cfg: ServiceConfig) -> RotatingCertificate | None:
    """The TLS certificate (and, with mutual TLS, the CA verifying clients), reloaded when its files change."""
    cert = cfg.get("RETAILFACE_TLS_CERT")
    if cert is None:
        return None
    ca_path = cfg.get("RETAILFACE_TLS_CA") if cfg.get("RETAILFACE_TLS_REQUIRE_CLIENT_CERT") else None
    return RotatingCertificate(TlsFiles(cert, cfg.get("RETAILFACE_TLS_KEY"), ca_path))


def grpc_options(cfg: ServiceConfig) -> list[tuple[str, Any]]:
    max_bytes = int(cfg.get("RETAILFACE_MAX_MESSAGE_MB")) * 1024 * 1024
    return [
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 60_000),
        # Clients reconnect every few minutes, so that round_robin picks up new backend replicas; a
        # long-lived stream (a camera's) runs on over its aged connection for the grace period.
        ("grpc.max_connection_age_ms", int(float(cfg.get("RETAILFACE_MAX_CONNECTION_AGE_SECONDS")) * 1000)),
        ("grpc.max_connection_age_grace_ms", int(float(cfg.get("RETAILFACE_MAX_CONNECTION_AGE_GRACE_SECONDS")) * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
    ]


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    registration: Registration
    config: ServiceConfig
    port: int
    health_server: grpc.Server | None = None
    credentials_watcher: CredentialsWatcher | None = None  # reloads rotated tokens and certificates

    def shutdown(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING first, then drain in-flight RPCs within the grace period."""
        grace = float(self.config.get("RETAILFACE_GRACE_SECONDS")) if grace is None else grace
        if self.credentials_watcher is not None:
            self.credentials_watcher.stop()
        self.health.enter_graceful_shutdown()
        log.info("draining", grace_seconds=grace)
        self.server.stop(grace).wait()
        if self.health_server is not None:
            self.health_server.stop(0).wait()
        if self.registration.on_stop is not None:
            self.registration.on_stop()
        log.info("stopped")


def start(service: str, registration: Registration, cfg: ServiceConfig) -> RunningServer:
    """Starts serving (non-blocking) and returns the running server."""
    tokens = RotatingTokens(
        cfg.get("RETAILFACE_AUTH_TOKENS_FILE"), float(cfg.get("RETAILFACE_TOKEN_ROTATION_OVERLAP_SECONDS"))
    )
    certificate = server_certificate(cfg)
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=int(cfg.get("RETAILFACE_MAX_WORKERS")), thread_name_prefix=f"{service}-rpc"
        ),
        interceptors=[ServiceInterceptor(service, registration, tokens, auth_limiter(cfg))],
        options=grpc_options(cfg),
        maximum_concurrent_rpcs=int(cfg.get("RETAILFACE_MAX_CONCURRENT_RPCS")),
    )
    registration.add_to_server(registration.servicer, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (registration.service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{cfg.get('RETAILFACE_HOST')}:{cfg.port}"
    if certificate is not None:
        port = server.add_secure_port(address, certificate.credentials())
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise ConfigError(f"cannot bind the gRPC server to {address} (port in use?)")
    server.start()
    health_server = _start_probe_server(cfg, health_servicer)
    for name in ("", registration.service_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    watcher = CredentialsWatcher(float(cfg.get("RETAILFACE_CREDENTIALS_POLL_SECONDS")), tokens, certificate)
    watcher.start()
    return RunningServer(server, health_servicer, registration, cfg, port, health_server, watcher)


def _start_probe_server(cfg: ServiceConfig, health_servicer: health.HealthServicer) -> grpc.Server | None:
    """A plaintext listener with nothing but the health service, for kubelet's gRPC probes."""
    probe_port = int(cfg.get("RETAILFACE_HEALTH_PORT"))
    if not probe_port:
        return None
    probe_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe_server)
    address = f"{cfg.get('RETAILFACE_HOST')}:{probe_port}"
    if probe_server.add_insecure_port(address) == 0:
        raise ConfigError(f"cannot bind the health probe server to {address} (port in use?)")
    probe_server.start()
    return probe_server


def _settings_of(build: Callable[..., Registration]) -> Iterable[Setting]:
    return getattr(sys.modules.get(build.__module__), "SETTINGS", ())


def run(
    service: str,
    build: Callable[[ServiceConfig], Registration],
    argv: list[str] | None = None,
    settings: Iterable[Setting] | None = None,
) -> int:
    """Entry point of `python -m retailface.services.<service>`; returns the exit code."""
    try:
        cfg = config_module.load(service, settings if settings is not None else _settings_of(build), argv)
    except ConfigError as error:
        print(f"{service}: configuration error: {error}", file=sys.stderr)
        return 2
    logging_module.configure(service, cfg.get("RETAILFACE_LOG_LEVEL"), cfg.get("RETAILFACE_LOG_FORMAT"))
    if cfg.get("RETAILFACE_MODELS_DIR") is not None:  # so that models.models_dir() honours the flag too
        os.environ["RETAILFACE_MODELS_DIR"] = str(cfg.get("RETAILFACE_MODELS_DIR"))
    if cfg.get("RETAILFACE_INSECURE"):
        log.warning("insecure_mode", detail="serving without TLS; RETAILFACE_INSECURE=true is for development only")
    try:
        registration = build(cfg)
        running = start(service, registration, cfg)
    except (ConfigError, ModelMissingError, ValueError, OSError) as error:
        log.error("startup_failed", error=str(error))
        print(f"{service}: cannot start: {error}", file=sys.stderr)
        return 2
    serve_metrics(cfg.get("RETAILFACE_HOST"), cfg.metrics_port)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("serving", port=running.port, metrics_port=cfg.metrics_port, config=cfg.public_values())
    # Wake up now and then: the kernel may deliver SIGTERM to any thread (gRPC's, the matcher's), and
    # Python runs its handler only when the main thread gets back to the interpreter. An untimed
    # wait could sleep through the signal.
    while not stop.wait(SIGNAL_POLL_SECONDS):
        pass
    running.shutdown()
    return 0
