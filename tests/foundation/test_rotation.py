"""Tokens and TLS certificates rotated without a restart (services/shared/reloading.py), alone and behind a
real in-process gRPC server with mutual TLS from the development PKI."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from cryptography import x509

from retailface.client.connection import Connection, FileToken, connect
from retailface.devtools.devcerts import make_ca, make_leaf
from retailface.services.shared import config as config_module
from retailface.services.shared.auth import Principal
from retailface.services.shared.reloading import RotatingCertificate, RotatingTokens, TlsFiles
from retailface.services.shared.server import Registration, RunningServer, start

OLD = "old-service-token-0123456789abcdef"
NEW = "new-service-token-0123456789abcdef"
PING = "/retailface.test.Echo/Ping"
POLL_SECONDS = 0.05
OVERLAP_SECONDS = 3.0
WAIT_SECONDS = 10.0
T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _write_tokens(path: Path, tokens: dict[str, list[str]] | str) -> None:
    """Replaces the file at once (rename), as a Kubernetes Secret volume or an operator's `mv` does."""
    staged = path.with_suffix(".new")
    staged.write_text(tokens if isinstance(tokens, str) else json.dumps(tokens))
    os.replace(staged, path)


# --- RotatingTokens alone, on a fake clock ------------------------------------------------------------------


def test_new_tokens_take_effect_on_reload(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _write_tokens(path, {"service": [OLD]})
    tokens = RotatingTokens(path, overlap_seconds=60, clock=Clock())
    _write_tokens(path, {"camera": [NEW]})
    assert tokens.reload() is True
    assert tokens.principal_of(NEW) == Principal("camera")


def test_dropped_tokens_are_accepted_until_the_overlap_ends(tmp_path: Path) -> None:
    path, clock = tmp_path / "tokens.json", Clock()
    _write_tokens(path, {"service": [OLD]})
    tokens = RotatingTokens(path, overlap_seconds=60, clock=clock)
    _write_tokens(path, {"service": [NEW]})
    tokens.reload()
    clock.now += 59.9
    assert tokens.role_of(OLD) == "service"
    clock.now += 0.1
    assert tokens.role_of(OLD) is None
    assert tokens.role_of(NEW) == "service"


def test_an_unchanged_file_is_not_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _write_tokens(path, {"service": [OLD]})
    tokens = RotatingTokens(path, overlap_seconds=60, clock=Clock())
    _write_tokens(path, {"service": [OLD]})  # rewritten, same content
    assert tokens.reload() is False


@pytest.mark.parametrize(
    "content",
    ["{not json", '["a list"]', '{"wizard": ["new-service-token-0123456789abcdef"]}', '{"service": ["short"]}'],
)
def test_a_bad_tokens_file_keeps_the_previous_tokens(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.json"
    _write_tokens(path, {"service": [OLD]})
    tokens = RotatingTokens(path, overlap_seconds=0, clock=Clock())
    _write_tokens(path, content)
    assert tokens.reload() is False
    assert tokens.role_of(OLD) == "service"


def test_a_file_fixed_after_a_bad_one_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _write_tokens(path, {"service": [OLD]})
    tokens = RotatingTokens(path, overlap_seconds=0, clock=Clock())
    _write_tokens(path, "{not json")
    tokens.reload()
    _write_tokens(path, {"service": [NEW]})
    assert (tokens.reload(), tokens.role_of(NEW), tokens.role_of(OLD)) == (True, "service", None)


# --- behind a real server with mutual TLS -------------------------------------------------------------------


@dataclass
class Pki:
    directory: Path
    ca: Path
    ca_cert: x509.Certificate
    ca_key: object
    client_cert: Path
    client_key: Path

    def new_leaf(self, name: str) -> tuple[Path, Path]:
        staging = self.directory / "staging"
        staging.mkdir(exist_ok=True)
        return make_leaf(staging, name, self.ca_cert, self.ca_key)  # type: ignore[arg-type]


@dataclass
class Served:
    running: RunningServer
    pki: Pki
    tokens_file: Path
    cert: Path
    key: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def channel(self) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca.read_bytes(),
            private_key=self.pki.client_key.read_bytes(),
            certificate_chain=self.pki.client_cert.read_bytes(),
        )
        return grpc.secure_channel(self.target, credentials)

    def install_certificate(self, cert: Path, key: Path) -> None:
        os.replace(cert, self.cert)
        os.replace(key, self.key)

    def served_serial(self) -> int:
        """The serial number of the certificate a new TLS connection to the server gets."""
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        context.set_alpn_protocols(["h2"])
        with (
            socket.create_connection(("127.0.0.1", self.running.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    directory = tmp_path / "pki"
    ca, ca_cert, ca_key = make_ca(directory)
    cert, key = make_leaf(directory, "matching", ca_cert, ca_key)
    client_cert, client_key = make_leaf(directory, "client", ca_cert, ca_key)
    tokens_file = tmp_path / "tokens.json"
    _write_tokens(tokens_file, {"service": [OLD]})
    cfg = config_module.load(
        "matching",
        (),
        argv=[],
        environ={
            "RETAILFACE_PORT": "0",
            "RETAILFACE_METRICS_PORT": "0",
            "RETAILFACE_AUTH_TOKENS_FILE": str(tokens_file),
            "RETAILFACE_AUTH_MAX_FAILURES": "1000",  # the tests poll with tokens not yet (or no longer) valid
            "RETAILFACE_TLS_CERT": str(cert),
            "RETAILFACE_TLS_KEY": str(key),
            "RETAILFACE_TLS_CA": str(ca),
            "RETAILFACE_TLS_REQUIRE_CLIENT_CERT": "true",
            "RETAILFACE_TOKEN_ROTATION_OVERLAP_SECONDS": str(OVERLAP_SECONDS),
            "RETAILFACE_CREDENTIALS_POLL_SECONDS": str(POLL_SECONDS),
        },
    )
    echo = grpc.method_handlers_generic_handler(
        "retailface.test.Echo",
        {
            "Ping": grpc.unary_unary_rpc_method_handler(lambda request, _context: request),
            "Peer": grpc.unary_unary_rpc_method_handler(_client_serial),
        },
    )
    registration = Registration(
        servicer=None,
        add_to_server=lambda _servicer, server: server.add_generic_rpc_handlers((echo,)),
        service_name="retailface.test.Echo",
    )
    running = start("matching", registration, cfg)
    yield Served(running, Pki(directory, ca, ca_cert, ca_key, client_cert, client_key), tokens_file, cert, key)
    running.shutdown(grace=1)


def _client_serial(_request: bytes, context: grpc.ServicerContext) -> bytes:
    """The serial number of the certificate the calling client presented."""
    (pem,) = context.auth_context()["x509_pem_cert"]
    return str(x509.load_pem_x509_certificate(pem).serial_number).encode()


def _ping(channel: grpc.Channel, token: str) -> tuple[grpc.StatusCode, str]:
    try:
        channel.unary_unary(PING)(b"hi", metadata=(("authorization", f"Bearer {token}"),), timeout=5)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def _eventually(probe: Callable[[], T], expected: T) -> T:
    """`probe()` once it returns `expected`, or its last value after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    value = probe()
    while value != expected and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        value = probe()
    return value


OK = (grpc.StatusCode.OK, "")
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")


def test_a_rotated_token_is_accepted_without_a_restart(served: Served) -> None:
    with served.channel() as channel:
        assert _ping(channel, NEW) == REFUSED
        _write_tokens(served.tokens_file, {"service": [NEW]})
        assert _eventually(lambda: _ping(channel, NEW), OK) == OK


def test_the_old_token_is_accepted_during_the_overlap(served: Served) -> None:
    with served.channel() as channel:
        _write_tokens(served.tokens_file, {"service": [NEW]})
        assert _eventually(lambda: _ping(channel, NEW), OK) == OK
        assert _ping(channel, OLD) == OK  # the new file is in force, the overlap has just begun


def test_the_old_token_is_refused_after_the_overlap(served: Served) -> None:
    with served.channel() as channel:
        written = time.monotonic()  # the reload, and so the overlap's start, comes after this
        _write_tokens(served.tokens_file, {"service": [NEW]})
        assert _eventually(lambda: _ping(channel, OLD), REFUSED) == REFUSED
        assert time.monotonic() - written >= OVERLAP_SECONDS


def test_a_corrupt_tokens_file_keeps_the_old_tokens(served: Served) -> None:
    with served.channel() as channel:
        _write_tokens(served.tokens_file, '{"service": [')
        time.sleep(10 * POLL_SECONDS)  # many polls: the watcher has seen it
        assert _ping(channel, OLD) == OK


def test_a_new_connection_gets_the_rotated_server_certificate(served: Served) -> None:
    before = served.served_serial()
    cert, key = served.pki.new_leaf("matching")
    rotated = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    served.install_certificate(cert, key)
    assert _eventually(served.served_serial, rotated) == rotated
    assert rotated != before
    with served.channel() as channel:  # and gRPC clients trusting the CA connect to it
        assert _ping(channel, OLD) == OK


def test_a_connection_opened_before_the_rotation_lives_on(served: Served) -> None:
    with served.channel() as channel:
        assert _ping(channel, OLD) == OK
        cert, key = served.pki.new_leaf("matching")
        rotated = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
        served.install_certificate(cert, key)
        assert _eventually(served.served_serial, rotated) == rotated
        assert _ping(channel, OLD) == OK


def test_a_key_that_is_not_the_certificates_keeps_the_old_certificate(served: Served) -> None:
    before = served.served_serial()
    _other_cert, other_key = served.pki.new_leaf("other")
    os.replace(other_key, served.key)  # the certificate stays, its key is replaced by another's
    time.sleep(10 * POLL_SECONDS)
    assert served.served_serial() == before


def test_a_mismatched_key_is_refused_by_reload(tmp_path: Path) -> None:
    ca, ca_cert, ca_key = make_ca(tmp_path)
    cert, key = make_leaf(tmp_path, "matching", ca_cert, ca_key)
    certificate = RotatingCertificate(TlsFiles(cert, key, ca))
    (tmp_path / "other").mkdir()
    _other_cert, other_key = make_leaf(tmp_path / "other", "other", ca_cert, ca_key)
    os.replace(other_key, key)
    assert (certificate.reload(), certificate.fetch()) == (False, None)


# --- the client side: connect() and the services' channels follow rotated files -----------------------------


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _peer_serial(channel: grpc.Channel) -> int:
    """The serial number of the client certificate the server saw on this call."""
    return int(channel.unary_unary("/retailface.test.Echo/Peer")(b"", timeout=5))


def test_a_file_token_is_read_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "service-token"
    path.write_text(OLD + "\n")
    token = FileToken(path, check_seconds=POLL_SECONDS)
    _write_tokens(path, NEW)
    assert (token(), _eventually(token, NEW)) == (OLD, NEW)


def test_an_emptied_token_file_keeps_the_previous_token(tmp_path: Path) -> None:
    path = tmp_path / "service-token"
    path.write_text(OLD)
    token = FileToken(path, check_seconds=POLL_SECONDS)
    _write_tokens(path, "")
    time.sleep(2 * POLL_SECONDS)
    assert token() == OLD


def test_connect_follows_a_token_rotation_past_the_overlap(served: Served, tmp_path: Path) -> None:
    token_file = tmp_path / "client-token"
    token_file.write_text(OLD)
    pki = served.pki
    with connect(
        served.target,
        token_file=token_file,
        ca=pki.ca,
        cert=pki.client_cert,
        key=pki.client_key,
        reload_seconds=POLL_SECONDS,
    ) as connection:
        ping = connection.channel.unary_unary(PING)
        assert ping(b"before", timeout=5) == b"before"
        _write_tokens(served.tokens_file, {"service": [NEW]})
        _write_tokens(token_file, NEW)
        with served.channel() as other:
            assert _eventually(lambda: _ping(other, OLD), REFUSED) == REFUSED  # the overlap is over
        assert ping(b"after", timeout=5) == b"after"


def _client_connection(served: Served, directory: Path) -> tuple[Connection, Path, Path]:
    """A connection whose client certificate and key are files of its own, to rotate."""
    directory.mkdir()
    cert, key = directory / "client.crt", directory / "client.key"
    cert.write_bytes(served.pki.client_cert.read_bytes())
    key.write_bytes(served.pki.client_key.read_bytes())
    connection = connect(served.target, token=OLD, ca=served.pki.ca, cert=cert, key=key, reload_seconds=POLL_SECONDS)
    return connection, cert, key


def test_a_rotated_client_certificate_is_used_by_the_next_connection(served: Served, tmp_path: Path) -> None:
    connection, cert, key = _client_connection(served, tmp_path / "client")
    with connection:
        before = _peer_serial(connection.channel)
        new_cert, new_key = served.pki.new_leaf("client")
        os.replace(new_cert, cert)
        os.replace(new_key, key)
        after = _eventually(lambda: _peer_serial(connection.channel), _serial(cert))
    assert (before, after) == (_serial(served.pki.client_cert), _serial(cert))


def test_a_mismatched_client_key_keeps_the_previous_certificate(served: Served, tmp_path: Path) -> None:
    connection, cert, key = _client_connection(served, tmp_path / "client")
    with connection:
        _other_cert, other_key = served.pki.new_leaf("other")
        os.replace(other_key, key)
        time.sleep(10 * POLL_SECONDS)
        assert _peer_serial(connection.channel) == _serial(cert)
