"""Every service as a real process: health, reflection, metrics, auth by role, mTLS, graceful SIGTERM."""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from retailface.devtools.localstack import LocalStack, client_channel, free_port
from retailface.v1 import (
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    matching_pb2,
    matching_pb2_grpc,
    personalization_pb2,
    personalization_pb2_grpc,
)


def _frames(count: int) -> Any:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(720, 1280, 3), dtype=np.uint8).tobytes()
    raw = common_pb2.RawImage(width=1280, height=720, format=common_pb2.PIXEL_FORMAT_BGR8, pixels=pixels)
    return detection_pb2.DetectRequest(frames=[common_pb2.Frame(raw=raw, camera_id="c1") for _ in range(count)])


def _chips(count: int) -> Any:
    rng = np.random.default_rng(0)
    chips = [
        common_pb2.AlignedChip(size=112, bgr=rng.integers(0, 255, 112 * 112 * 3, dtype=np.uint8).tobytes())
        for _ in range(count)
    ]
    return embedding_pb2.EmbedRequest(chips=chips, include_attributes=True)


def _queries(count: int) -> Any:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(count, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = [common_pb2.Embedding(values=v, model_id="sface", model_version="2021dec") for v in vectors]
    return matching_pb2.SearchRequest(gallery="members", queries=queries)


def _events(count: int) -> Any:
    events = [
        personalization_pb2.OnlineEvent(
            event_id=f"e{i}",
            member_id=f"m{i % 50}",
            sku=f"sku{i % 97}",
            type=personalization_pb2.ONLINE_EVENT_TYPE_VIEWED,
        )
        for i in range(count)
    ]
    return personalization_pb2.IngestOnlineEventsRequest(events=events)


@dataclass(frozen=True)
class Spec:
    stub: Callable[[grpc.Channel], Any]
    # A call the "service" role may make (succeeds or answers with a domain error, never an auth error).
    allowed_call: Callable[[Any], Any]
    denied_role: str  # a role that may not make allowed_call
    allowed_role: str  # a role that may
    # A call that takes a while, for the in-flight-during-SIGTERM check: size -> (method name, request).
    slow_call: Callable[[int], tuple[str, Any]] | None
    # Services started first, so that slow_call does real downstream work instead of failing fast.
    backends: tuple[str, ...] = ()
    # How allowed_call ends for allowed_role: past authentication and authorization, with this status.
    allowed_outcome: grpc.StatusCode = grpc.StatusCode.OK


SPECS: dict[str, Spec] = {
    "gateway": Spec(
        gateway_pb2_grpc.GatewayServiceStub,
        lambda stub: stub.ListGalleries(matching_pb2.ListGalleriesRequest(), timeout=5),
        "camera",
        "admin",
        # Real detection runs on every frame (no faces in noise, so nothing further downstream is called).
        # Without it the batch fails fast with UNAVAILABLE, too fast to catch in flight on a busy machine.
        lambda size: ("ProcessFrames", gateway_pb2.FrameBatch(frames=_frames(size).frames)),
        backends=("detection",),
        allowed_outcome=grpc.StatusCode.UNAVAILABLE,  # matching, which ListGalleries asks, is not started
    ),
    "detection": Spec(
        detection_pb2_grpc.DetectionServiceStub,
        lambda stub: stub.GetStats(detection_pb2.StatsRequest(), timeout=5),
        "camera",
        "service",
        lambda size: ("Detect", _frames(size)),
    ),
    "embedding": Spec(
        embedding_pb2_grpc.EmbeddingServiceStub,
        lambda stub: stub.GetStats(embedding_pb2.EmbeddingStatsRequest(), timeout=5),
        "pos",
        "service",
        lambda size: ("Embed", _chips(8 * size)),
    ),
    "matching": Spec(
        matching_pb2_grpc.MatchingServiceStub,
        lambda stub: stub.ListGalleries(matching_pb2.ListGalleriesRequest(), timeout=5),
        "staff",
        "service",
        lambda size: ("Search", _queries(4000 * size)),
    ),
    "personalization": Spec(
        personalization_pb2_grpc.PersonalizationServiceStub,
        lambda stub: stub.GetMember(personalization_pb2.GetMemberRequest(member_id="nobody"), timeout=5),
        "camera",
        "service",
        lambda size: ("IngestOnlineEvents", _events(2000 * size)),
        allowed_outcome=grpc.StatusCode.NOT_FOUND,  # there is no member "nobody"
    ),
}


def _outcome(call: Callable[[Any], Any], stub: Any) -> grpc.StatusCode:
    """The status a call ends with: OK, or the code of the error it raised."""
    try:
        call(stub)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _token_metadata(stack: LocalStack, role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.runtime.tokens[role]}"),)


def _metric_value(text: str, name: str, service: str) -> float:
    match = re.search(rf'^{name}\{{service="{service}"\}} ([0-9.e+-]+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.parametrize("service", list(SPECS))
def test_service_process_over_mtls(service: str, tls_stack: LocalStack) -> None:
    spec = SPECS[service]
    for backend in spec.backends:
        tls_stack.start(backend)
        tls_stack.wait_serving(backend)
    proc = tls_stack.start(service)
    assert tls_stack.wait_serving(service) == "SERVING"
    channel = client_channel(proc.target, tls_stack.runtime)
    stub = spec.stub(channel)

    # grpc.health.v1 for the service by name, and reflection lists it.
    health = health_pb2_grpc.HealthStub(channel)
    service_name = f"retailface.v1.{service.capitalize()}Service"
    status = health.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert service_name in {s.name for s in answer.list_services_response.service}

    # No token: UNAUTHENTICATED. Wrong role: PERMISSION_DENIED. Right role: past auth.
    with pytest.raises(grpc.RpcError) as no_token:
        spec.allowed_call(stub)
    assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    wrong_role = spec.stub(grpc.intercept_channel(channel, _Metadata(_token_metadata(tls_stack, spec.denied_role))))
    with pytest.raises(grpc.RpcError) as denied:
        spec.allowed_call(wrong_role)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    authorized = spec.stub(grpc.intercept_channel(channel, _Metadata(_token_metadata(tls_stack, spec.allowed_role))))
    assert _outcome(spec.allowed_call, authorized) == spec.allowed_outcome

    # Prometheus metrics: per-RPC latency histogram and error counts.
    metrics = _metrics(proc.metrics_port)
    assert re.search(
        rf'retailface_rpc_duration_seconds_bucket\{{code="\w+",le="[^"]+",method="\w+",service="{service}"', metrics
    ), metrics[-3000:]
    assert re.search(
        rf'retailface_rpc_errors_total\{{code="PERMISSION_DENIED",method="\w+",service="{service}"\}} 1', metrics
    ), metrics[-3000:]

    # SIGTERM with an RPC in flight: the RPC completes, the process exits 0 within the grace period.
    if spec.slow_call is not None:
        _sigterm_with_rpc_in_flight(tls_stack, service, authorized, spec.slow_call)
    else:
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(timeout=15) == 0
    channel.close()


def _sigterm_with_rpc_in_flight(
    stack: LocalStack, service: str, stub: Any, slow_call: Callable[[int], tuple[str, Any]]
) -> None:
    proc = stack.processes[service]
    for size in (1, 2, 4, 8):
        method, request = slow_call(size)
        outcome: dict[str, Any] = {}

        def call(method: str = method, request: Any = request, outcome: dict[str, Any] = outcome) -> None:
            try:
                outcome["response"] = getattr(stub, method)(request, timeout=60)
            except grpc.RpcError as error:
                outcome["error"] = error

        worker = threading.Thread(target=call)
        worker.start()
        deadline = time.monotonic() + 10
        in_flight = False
        while time.monotonic() < deadline and worker.is_alive():
            if _metric_value(_metrics(proc.metrics_port), "retailface_rpc_in_flight", service) >= 1:
                in_flight = True
                break
            time.sleep(0.005)
        if not in_flight:  # finished before we saw it: try a bigger request
            worker.join()
            continue
        sent = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        worker.join(timeout=60)
        assert "response" in outcome, f"in-flight {method} failed during shutdown: {outcome.get('error')}"
        assert proc.process.wait(timeout=15) == 0
        assert time.monotonic() - sent < 10 + 5  # RETAILFACE_GRACE_SECONDS default + process exit
        return
    pytest.fail(f"could not catch a {service} RPC in flight")


class _Metadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _with(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), *self._metadata])

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with(details), request)


def test_mtls_rejects_a_client_without_certificate(tls_stack: LocalStack) -> None:
    proc = tls_stack.start("gateway")
    tls_stack.wait_serving("gateway")
    ca = (tls_stack.runtime.pki_dir / "ca.crt").read_bytes()
    channel = grpc.secure_channel(proc.target, grpc.ssl_channel_credentials(root_certificates=ca))
    with pytest.raises(grpc.RpcError) as error:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    plain = grpc.insecure_channel(proc.target)
    with pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_request_id_comes_back_and_is_logged(stack: LocalStack) -> None:
    proc = stack.start("gateway")
    stack.wait_serving("gateway")
    channel = grpc.insecure_channel(proc.target)
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    metadata = (*_token_metadata(stack, "admin"), ("x-request-id", "req-42-abc"))
    with pytest.raises(grpc.RpcError) as error:
        stub.EraseMember(gateway_pb2.EraseMemberRequest(member_id="m1"), metadata=metadata, timeout=5)
    # Matching is not running: the gateway says so instead of hanging or crashing.
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "erasure is unavailable" in (error.value.details() or "")
    assert ("x-request-id", "req-42-abc") in tuple(error.value.trailing_metadata())
    stack.stop("gateway")
    lines = [line for line in proc.log_path.read_text().splitlines() if '"req-42-abc"' in line]
    assert lines and '"method": "EraseMember"' in lines[0] and '"code": "UNAVAILABLE"' in lines[0]


def test_plaintext_health_port_for_kubelet_probes(tls_stack: LocalStack) -> None:
    probe_port = free_port()
    tls_stack.extra_env["gateway"] = {"RETAILFACE_HEALTH_PORT": str(probe_port)}
    tls_stack.start("gateway")
    tls_stack.wait_serving("gateway")
    channel = grpc.insecure_channel(f"127.0.0.1:{probe_port}")
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as error:  # nothing but health on the plaintext port
        gateway_pb2_grpc.GatewayServiceStub(channel).ListGalleries(matching_pb2.ListGalleriesRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
