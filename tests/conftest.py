"""Fixtures shared by every test area: runtime secrets, service processes on free ports, a PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer

from retailface.devtools.localstack import LocalStack, Runtime, free_port
from retailface.services.shared.config import SERVICES


def _ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    for name in SERVICES:
        ports[name] = free_port()
        ports[f"{name}-metrics"] = free_port()
    return ports


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    """Tokens, keys and data directories of a fresh local stack (insecure transport)."""
    rt = Runtime(tmp_path / "runtime")
    rt.prepare()
    return rt


@pytest.fixture
def tls_runtime(tmp_path: Path) -> Runtime:
    """Like `runtime`, with a development CA and mutual TLS between every process."""
    rt = Runtime(tmp_path / "runtime-tls", tls=True)
    rt.prepare()
    return rt


@pytest.fixture
def stack(runtime: Runtime) -> Iterator[LocalStack]:
    """Services as real subprocesses on free loopback ports; start them with stack.start(name)."""
    local = LocalStack(runtime, ports=_ports())
    yield local
    local.stop_all()


@pytest.fixture
def tls_stack(tls_runtime: Runtime) -> Iterator[LocalStack]:
    local = LocalStack(tls_runtime, ports=_ports())
    yield local
    local.stop_all()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (tests/postgres_server.py); fails, never skips, without one."""
    try:
        server = PostgresServer()
    except FileNotFoundError as missing:
        pytest.fail(str(missing), pytrace=False)
    server.start()
    yield server
    server.remove()
