"""Prometheus metrics shared by every service: per-RPC latency and errors, auth failures, per-stage timings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Buckets from 0.5 ms to 10 s: matching is sub-millisecond, a frame batch tens of milliseconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RPC_LATENCY = Histogram(
    "retailface_rpc_duration_seconds", "gRPC handler latency", ["service", "method", "code"], buckets=LATENCY_BUCKETS
)
RPC_ERRORS = Counter(
    "retailface_rpc_errors_total", "gRPC calls that ended with a non-OK status", ["service", "method", "code"]
)
RPC_IN_FLIGHT = Gauge("retailface_rpc_in_flight", "gRPC calls being handled", ["service"])
# Authentication: never labelled by peer address (unbounded); the lockout's log line names the peer.
AUTH_FAILURES = Counter(
    "retailface_auth_failures_total",
    "calls refused by authentication: reason missing/unknown token, role not allowed, or locked (the address is "
    "locked out after failed authentications; its token is not looked at)",
    ["service", "reason"],
)
AUTH_LOCKOUTS = Counter(
    "retailface_auth_lockouts_total", "addresses locked out after failed authentications", ["service"]
)
STAGE_LATENCY = Histogram(
    "retailface_stage_duration_seconds", "time per processing stage", ["service", "stage"], buckets=LATENCY_BUCKETS
)


class Elapsed:
    """How long a `stage_timer` block took, readable once the block has ended."""

    seconds: float = 0.0

    @property
    def ms(self) -> float:
        return self.seconds * 1000


@contextmanager
def stage_timer(service: str, stage: str) -> Iterator[Elapsed]:
    """Times a block into retailface_stage_duration_seconds{service, stage}; `as elapsed` gives the time too."""
    elapsed = Elapsed()
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.seconds = time.perf_counter() - start
        STAGE_LATENCY.labels(service, stage).observe(elapsed.seconds)


def serve_metrics(host: str, port: int) -> None:
    """Starts the /metrics HTTP endpoint in a daemon thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=host)
