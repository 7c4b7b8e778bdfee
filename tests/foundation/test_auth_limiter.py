"""Failed authentications limited per peer (services/shared/auth_limiter.py), alone and behind the interceptor."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from in_process import insecure_config
from prometheus_client import REGISTRY

from retailface.services.shared.auth_limiter import AuthLimiter, Lockout, peer_address
from retailface.services.shared.config import ConfigError, ServiceConfig
from retailface.services.shared.server import Registration, RunningServer, auth_limiter, start


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter(clock: Clock, **overrides: float) -> AuthLimiter:
    options = {"max_failures": 3, "window": 60.0, "lockout": 1.0, "lockout_max": 8.0, **overrides}
    return AuthLimiter(clock=clock, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:51234", "ipv4:127.0.0.1"),
        ("ipv6:[::1]:443", "ipv6:[::1]"),
        ("ipv6:%5B::1%5D:443", "ipv6:%5B::1%5D"),
        ("unix:/run/retailface.sock", "unix:/run/retailface.sock"),
        ("ipv4:10.0.0.7", "ipv4:10.0.0.7"),
        ("", ""),
    ],
)
def test_peer_address_drops_the_port_only(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_failures_below_the_limit_within_the_window_do_not_lock() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    assert limiter.record_failure("a") is None
    clock.now += 30
    assert limiter.record_failure("a") is None
    clock.now += 31  # the first failure has left the window
    assert limiter.record_failure("a") is None
    assert limiter.locked_for("a") == 0.0


def test_the_nth_failure_in_the_window_locks_only_that_peer() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    assert [limiter.record_failure("a") for _ in range(3)] == [None, None, Lockout(seconds=1.0, failures=3)]
    assert limiter.locked_for("a") == 1.0
    assert limiter.locked_for("b") == 0.0
    clock.now += 0.4
    assert limiter.locked_for("a") == pytest.approx(0.6)
    clock.now += 0.6
    assert limiter.locked_for("a") == 0.0


def test_each_further_failure_doubles_the_lockout_up_to_the_cap() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    for _ in range(3):
        lockout = limiter.record_failure("a")
    seconds = []
    while lockout is not None:
        seconds.append(lockout.seconds)
        if len(seconds) == 6:
            break
        clock.now += lockout.seconds  # the lock has just expired: one more wrong guess
        lockout = limiter.record_failure("a")
        assert lockout is not None and lockout.failures == 1
    assert seconds == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_calls_refused_while_locked_do_not_lengthen_the_lock() -> None:
    clock = Clock()
    limiter = _limiter(clock)
    for _ in range(3):
        limiter.record_failure("a")
    clock.now += 0.5
    assert limiter.record_failure("a") is None  # a racing failure while locked: ignored
    assert limiter.locked_for("a") == pytest.approx(0.5)


def test_a_peer_quiet_for_the_window_after_its_lock_is_forgiven() -> None:
    clock = Clock()
    limiter = _limiter(clock, window=10.0)
    for _ in range(3):
        limiter.record_failure("a")
    clock.now += 1.0 + 9.9  # lock over, not yet quiet for the window: the next failure locks for 2 s
    assert limiter.record_failure("a") == Lockout(seconds=2.0, failures=1)
    clock.now += 2.0 + 10.0  # quiet for the window after the lock: forgotten, a fresh budget
    assert limiter.locked_for("a") == 0.0
    assert limiter.tracked_peers() == 0
    assert [limiter.record_failure("a") for _ in range(3)] == [None, None, Lockout(seconds=1.0, failures=3)]


def test_success_does_not_shorten_a_lock_or_reset_the_count() -> None:
    """There is no way to report a success: a valid token from a locked peer is refused like any other call
    (the interceptor checks the lock first), and a valid call between failures leaves them counted."""
    clock = Clock()
    limiter = _limiter(clock)
    assert not hasattr(limiter, "record_success")
    limiter.record_failure("a")
    limiter.record_failure("a")
    assert limiter.locked_for("a") == 0.0  # what a valid call in between does: look, nothing more
    assert limiter.record_failure("a") == Lockout(seconds=1.0, failures=3)


def test_tracked_peers_are_capped_evicting_the_least_recently_failing() -> None:
    clock = Clock()
    limiter = _limiter(clock, max_peers=100)
    for _ in range(3):
        limiter.record_failure("guesser")
    for index in range(99):
        limiter.record_failure(f"flood-{index}")
    assert limiter.tracked_peers() == 100
    assert limiter.locked_for("guesser") == 1.0
    limiter.record_failure("flood-99")  # the 101st peer: the guesser failed least recently, it goes
    assert limiter.tracked_peers() == 100
    assert limiter.locked_for("guesser") == 0.0
    assert limiter.locked_for("flood-0") == 0.0 and limiter.tracked_peers() == 100


def test_many_threads_count_every_failure_once() -> None:
    limiter = AuthLimiter(max_failures=800, window=600.0, lockout=1.0, lockout_max=2.0)
    lockouts: list[Lockout] = []

    def fail() -> None:
        for _ in range(100):
            if (lockout := limiter.record_failure("a")) is not None:
                lockouts.append(lockout)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lockouts == [Lockout(seconds=1.0, failures=800)]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_failures": 0}, {"window": 0.0}, {"lockout": 0.0}, {"lockout": 2.0, "lockout_max": 1.0}, {"max_peers": 0}],
)
def test_bad_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AuthLimiter(**kwargs)  # type: ignore[arg-type]


# --- behind the interceptor, over real gRPC -----------------------------------------------------------------

RIGHT = "service-token-0123456789abcdef"
WRONG = "guessed-token-0123456789abcdef"
PING = "/retailface.test.Echo/Ping"


def _config(tmp_path: Path, **environ: str) -> ServiceConfig:
    return insecure_config("matching", [], tmp_path, {"service": [RIGHT]}, environ)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    cfg = _config(
        tmp_path,
        RETAILFACE_AUTH_MAX_FAILURES="3",
        RETAILFACE_AUTH_LOCKOUT_SECONDS="1",
        RETAILFACE_AUTH_LOCKOUT_MAX_SECONDS="2",
    )
    echo = grpc.method_handlers_generic_handler(
        "retailface.test.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(lambda request, _context: request)}
    )
    registration = Registration(
        servicer=None,
        add_to_server=lambda _servicer, server: server.add_generic_rpc_handlers((echo,)),
        service_name="retailface.test.Echo",
    )
    running = start("matching", registration, cfg)
    yield running
    running.shutdown(grace=1)


def _ping(channel: grpc.Channel, token: str) -> tuple[grpc.StatusCode, str]:
    try:
        channel.unary_unary(PING)(b"hi", metadata=(("authorization", f"Bearer {token}"),), timeout=5)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "matching", **labels}) or 0.0


def test_a_token_guesser_is_locked_out_even_with_the_right_token(server: RunningServer) -> None:
    before = {
        reason: _count("retailface_auth_failures_total", reason=reason) for reason in ("unknown", "locked", "missing")
    }
    lockouts_before = _count("retailface_auth_lockouts_total")
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel, structlog.testing.capture_logs() as logs:
        assert _ping(channel, RIGHT) == (grpc.StatusCode.OK, "")
        for _ in range(3):
            assert _ping(channel, WRONG) == (grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        # Locked for 1 s: the right token is refused too, and health stays open.
        code, details = _ping(channel, RIGHT)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == "too many failed authentications from this address: retry in 1 s"
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        time.sleep(1.1)
        assert _ping(channel, RIGHT) == (grpc.StatusCode.OK, "")
        # A further wrong token right after the lock: locked again at once, for twice as long (the cap).
        assert _ping(channel, WRONG)[0] == grpc.StatusCode.UNAUTHENTICATED
        code, details = _ping(channel, RIGHT)
        assert (code, details) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many failed authentications from this address: retry in 2 s",
        )
    assert _count("retailface_auth_failures_total", reason="unknown") == before["unknown"] + 4
    assert _count("retailface_auth_failures_total", reason="locked") == before["locked"] + 2
    assert _count("retailface_auth_failures_total", reason="missing") == before["missing"]
    assert _count("retailface_auth_lockouts_total") == lockouts_before + 2
    warnings = [entry for entry in logs if entry["event"] == "auth_lockout"]
    assert [(w["peer"], w["seconds"], w["failures"]) for w in warnings] == [
        ("ipv4:127.0.0.1", 1.0, 3),
        ("ipv4:127.0.0.1", 2.0, 1),
    ]
    assert all(RIGHT not in repr(entry) and WRONG not in repr(entry) for entry in logs)


def test_lockout_max_below_lockout_is_a_configuration_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path, RETAILFACE_AUTH_LOCKOUT_SECONDS="10", RETAILFACE_AUTH_LOCKOUT_MAX_SECONDS="5")
    with pytest.raises(ConfigError, match=r"RETAILFACE_AUTH_LOCKOUT_MAX_SECONDS=5\.0 is below"):
        auth_limiter(cfg)
