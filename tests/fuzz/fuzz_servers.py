"""In-process gRPC servers for the fuzz tests: the real bootstrap (shared.server.start) on a free port.

Each server gets its own tokens file (one token per role), insecure transport, and the settings the
caller adds; `FuzzServer.call` invokes one method by name with the admin token and a deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from fuzz_support import Outcome, bearer, outcome_of
from google.protobuf import descriptor_pool
from in_process import insecure_config

from retailface.devtools import synthetic
from retailface.services.detection import servicer as detection_servicer
from retailface.services.embedding import servicer as embedding_servicer
from retailface.services.gateway import servicer as gateway_servicer
from retailface.services.matching import servicer as matching_servicer
from retailface.services.matching.crypto import generate_key_file
from retailface.services.personalization import app, db
from retailface.services.personalization import settings as personalization_settings
from retailface.services.shared.config import ServiceConfig, Setting
from retailface.services.shared.server import Registration, RunningServer, start
from retailface.v1 import (
    detection_pb2_grpc,
    embedding_pb2_grpc,
    gateway_pb2_grpc,
    matching_pb2_grpc,
    personalization_pb2_grpc,
)

ROLES = ("service", "pos", "staff", "admin", "camera")
TOKENS = {role: f"{role}-fuzz-token-0123456789abcdef" for role in ROLES}
DEADLINE = 10.0  # seconds: every call must be answered within it (a hang is DEADLINE_EXCEEDED, a failure)


def service_config(service: str, settings: list[Setting], directory: Path, environ: Mapping[str, str]) -> ServiceConfig:
    return insecure_config(service, settings, directory, {role: [token] for role, token in TOKENS.items()}, environ)


@dataclass(repr=False)
class FuzzServer:
    running: RunningServer
    channel: grpc.Channel
    service_name: str  # "retailface.v1.MatchingService"
    stub: Any
    descriptor: Any  # the service's ServiceDescriptor

    @classmethod
    def start(cls, service: str, registration: Registration, cfg: ServiceConfig, stub_class: Callable[..., Any]):  # type: ignore[no-untyped-def]
        running = start(service, registration, cfg)
        channel = grpc.insecure_channel(
            f"127.0.0.1:{running.port}",
            options=[("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)],
        )
        descriptor = _service_descriptor(registration.service_name)
        return cls(running, channel, registration.service_name, stub_class(channel), descriptor)

    def __repr__(self) -> str:
        return f"FuzzServer({self.service_name} on port {self.running.port})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis prints arguments with it
        printer.text(repr(self))

    def call(self, method: str, request: Any, role: str = "admin", timeout: float = DEADLINE) -> Outcome:
        rpc = getattr(self.stub, method)
        return outcome_of(lambda: rpc(request, metadata=bearer(TOKENS[role]), timeout=timeout))

    def call_raw(self, method: str, data: bytes, role: str = "admin", timeout: float = DEADLINE) -> Outcome:
        """Sends `data` as the request's bytes, whatever they are; a streaming method reads one response."""
        path = f"/{self.service_name}/{method}"
        descriptor = self.descriptor.methods_by_name[method]
        metadata = bearer(TOKENS[role])
        if descriptor.client_streaming or descriptor.server_streaming:
            stream = self.channel.stream_stream(path)
            return outcome_of(lambda: next(iter(stream(iter([data]), metadata=metadata, timeout=timeout)), None))
        unary = self.channel.unary_unary(path)
        return outcome_of(lambda: unary(data, metadata=metadata, timeout=timeout))

    def invoke(self, method: str, request: Any, role: str = "admin", timeout: float = DEADLINE) -> Any:
        """The response of a call that must succeed."""
        return getattr(self.stub, method)(request, metadata=bearer(TOKENS[role]), timeout=timeout)

    def stop(self) -> None:
        self.channel.close()
        self.running.shutdown(grace=1)


def _service_descriptor(full_name: str) -> Any:
    return descriptor_pool.Default().FindServiceByName(full_name)


def unary_methods(service_descriptor: Any) -> list[tuple[str, Any]]:
    """(method name, request descriptor) of every unary-request, unary-response method."""
    return [
        (method.name, method.input_type)
        for method in service_descriptor.methods
        if not method.client_streaming and not method.server_streaming
    ]


# ---------------------------------------------------------------- each service, as the fuzz tests start it


def start_matching(directory: Path) -> FuzzServer:
    directory.mkdir(parents=True, exist_ok=True)
    generate_key_file(directory / "matching.key")
    cfg = service_config(
        "matching",
        matching_servicer.SETTINGS,
        directory,
        {
            "RETAILFACE_MATCHING_DATA_DIR": str(directory / "data"),
            "RETAILFACE_MATCHING_KEY_FILE": str(directory / "matching.key"),
            "RETAILFACE_MATCHING_INITIAL_CAPACITY": "64",
        },
    )
    return FuzzServer.start("matching", matching_servicer.build(cfg), cfg, matching_pb2_grpc.MatchingServiceStub)


def start_personalization(directory: Path, url: str) -> FuzzServer:
    """On the database at `url`, seeded first with the small synthetic retail data."""
    engine = db.open_engine(url)
    synthetic.generate(engine, seed=7, scale_name="small")
    engine.dispose()
    cfg = service_config(
        "personalization",
        personalization_settings.SETTINGS,
        directory,
        {
            "RETAILFACE_PERSONALIZATION_DB_URL": url,
            "RETAILFACE_PERSONALIZATION_MODEL_REFRESH_SECONDS": "0",
            "RETAILFACE_PERSONALIZATION_OUTBOX_POLL_SECONDS": "0.5",
        },
    )
    return FuzzServer.start("personalization", app.build(cfg), cfg, personalization_pb2_grpc.PersonalizationServiceStub)


def start_detection(directory: Path) -> FuzzServer:
    cfg = service_config(
        "detection",
        detection_servicer.SETTINGS,
        directory,
        {"RETAILFACE_DETECTION_THREADS": "1", "RETAILFACE_DETECTION_PROVIDER": "cpu"},
    )
    return FuzzServer.start("detection", detection_servicer.build(cfg), cfg, detection_pb2_grpc.DetectionServiceStub)


def start_embedding(directory: Path) -> FuzzServer:
    cfg = service_config("embedding", embedding_servicer.SETTINGS, directory, {})
    return FuzzServer.start("embedding", embedding_servicer.build(cfg), cfg, embedding_pb2_grpc.EmbeddingServiceStub)


def start_gateway(directory: Path, backends: Mapping[str, FuzzServer]) -> FuzzServer:
    """Calling the given detection, embedding, matching and personalization servers with the service token."""
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "service-token"
    token_file.write_text(TOKENS["service"])
    environ = {
        f"RETAILFACE_GATEWAY_{name.upper()}_ADDR": f"127.0.0.1:{server.running.port}"
        for name, server in backends.items()
    }
    environ |= {"RETAILFACE_SERVICE_TOKEN_FILE": str(token_file), "RETAILFACE_GATEWAY_CAMERAS_REFRESH_SECONDS": "0.5"}
    cfg = service_config("gateway", gateway_servicer.SETTINGS, directory, environ)
    return FuzzServer.start("gateway", gateway_servicer.build(cfg), cfg, gateway_pb2_grpc.GatewayServiceStub)
