"""The local stack: every service as its own process on loopback, started with the same command
and environment variables as its container (deploy/k8s), for `make demo` and the tests.

    python -m retailface.devtools.localstack [--tls] [--services gateway,matching] [--seed small]

starts the stack, prints each service's health and exits (with --hold it keeps running until
Ctrl-C). Runtime files (tokens, certificates, keys, data) live under --runtime-dir.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from retailface.devtools.devcerts import make_dev_pki
from retailface.services.shared.auth import ROLES
from retailface.services.shared.config import SERVICE_PORTS, SERVICES
from retailface.v1 import personalization_pb2, personalization_pb2_grpc

# Start order: backends before the gateway that calls them.
START_ORDER: tuple[str, ...] = ("matching", "personalization", "detection", "embedding", "gateway")
# The demo store's cameras (the synthetic seed has the store), registered with RegisterCamera once the stack runs.
DEMO_STORE = "store-01"
DEMO_CAMERAS: dict[str, dict[str, str]] = {
    "entrance-1": {"store_id": DEMO_STORE, "role": "entrance", "zone_id": "entrance"},
    "aisle-7": {"store_id": DEMO_STORE, "role": "aisle", "zone_id": "aisle-7"},
    "lane-3": {"store_id": DEMO_STORE, "role": "lane", "zone_id": "checkout", "lane_id": "3"},
}
CAMERA_ROLES = {
    "entrance": personalization_pb2.CAMERA_ROLE_ENTRANCE,
    "aisle": personalization_pb2.CAMERA_ROLE_AISLE,
    "lane": personalization_pb2.CAMERA_ROLE_LANE,
}


def container_command(service: str) -> list[str]:
    """The command a service's container runs (the manifests use exactly this)."""
    return ["python", "-m", f"retailface.services.{service}"]


# Ports handed to services that bind them seconds later (after loading their models) come from below the kernel's
# ephemeral range: a port from inside it can be taken meanwhile as the local port of any outgoing connection.
_FREE_PORTS = range(20_000, 32_000)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A loopback port free now, outside the ephemeral range (so no outgoing connection takes it before use)."""
    candidates = [port for port in _FREE_PORTS if port < _ephemeral_low()]
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # every candidate taken: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Runtime:
    """Secrets and data of one local stack, laid out like the container's mounted volumes."""

    root: Path
    tls: bool = False
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def tokens_file(self) -> Path:
        return self.root / "secrets" / "tokens.json"

    @property
    def service_token_file(self) -> Path:
        return self.root / "secrets" / "service-token"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    def data_dir(self, service: str) -> Path:
        return self.root / "data" / service

    def prepare(self) -> None:
        secrets_dir = self.root / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        if self.tokens_file.is_file():
            self.tokens = {role: tokens[0] for role, tokens in json.loads(self.tokens_file.read_text()).items()}
        else:
            # hex, never a leading '-' that a command line would read as an option
            self.tokens = {role: secrets.token_hex(24) for role in sorted(ROLES)}
            self.tokens_file.write_text(json.dumps({role: [token] for role, token in self.tokens.items()}, indent=2))
            self.tokens_file.chmod(0o600)
        self.service_token_file.write_text(self.tokens["service"])
        self.service_token_file.chmod(0o600)
        key_file = secrets_dir / "matching-template-key"
        if not key_file.is_file():
            key_file.write_text(base64.b64encode(os.urandom(32)).decode())
            key_file.chmod(0o600)
        if self.tls and not (self.pki_dir / "ca.crt").is_file():
            make_dev_pki(self.pki_dir, (*SERVICES, "client"))
        for service in SERVICES:
            self.data_dir(service).mkdir(parents=True, exist_ok=True)

    def seed_personalization(self, scale: str, seed: int = 7) -> dict[str, int]:
        """Fills personalization's database (where its container would find it) with synthetic data.

        Runs before the service starts, as an operator's data load would; a database that already
        has members is left as it is (returns {}).
        """
        from retailface.devtools import synthetic
        from retailface.services.personalization import db

        engine = db.open_engine(db.default_url(self.data_dir("personalization")))
        try:
            return synthetic.generate(engine, seed, scale)
        except synthetic.DatabaseNotEmptyError:
            return {}
        finally:
            engine.dispose()


def service_environment(
    service: str,
    runtime: Runtime,
    ports: dict[str, int] | None = None,
    backend_targets: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment variables of a service, as its container gets them from ConfigMaps and Secrets.

    `backend_targets`: the gateway's target for a backend that runs as several replicas (a gRPC name that
    resolves to all of them, as a headless Service's DNS name does in Kubernetes).
    """
    ports = ports or {name: SERVICE_PORTS[name][0] for name in SERVICES}
    backend_targets = backend_targets or {}
    env = {
        "RETAILFACE_HOST": "127.0.0.1",
        "RETAILFACE_PORT": str(ports[service]),
        "RETAILFACE_METRICS_PORT": str(ports.get(f"{service}-metrics", SERVICE_PORTS[service][1])),
        "RETAILFACE_LOG_FORMAT": "json",
        "RETAILFACE_AUTH_TOKENS_FILE": str(runtime.tokens_file),
        "RETAILFACE_SERVICE_TOKEN_FILE": str(runtime.service_token_file),
    }
    # Service-specific state, mounted from the PersistentVolume / Secrets in Kubernetes.
    if service == "matching":
        env["RETAILFACE_MATCHING_DATA_DIR"] = str(runtime.data_dir("matching"))
        env["RETAILFACE_MATCHING_KEY_FILE"] = str(runtime.root / "secrets" / "matching-template-key")
    elif service == "personalization":
        env["RETAILFACE_PERSONALIZATION_DATA_DIR"] = str(runtime.data_dir("personalization"))
    elif service == "gateway":  # the gateway calls the other services on this stack's ports, not the defaults
        for backend in ("detection", "embedding", "matching", "personalization"):
            env[f"RETAILFACE_GATEWAY_{backend.upper()}_ADDR"] = backend_targets.get(
                backend, f"127.0.0.1:{ports[backend]}"
            )
    if runtime.tls:
        env |= {
            "RETAILFACE_TLS_CERT": str(runtime.pki_dir / f"{service}.crt"),
            "RETAILFACE_TLS_KEY": str(runtime.pki_dir / f"{service}.key"),
            "RETAILFACE_TLS_CA": str(runtime.pki_dir / "ca.crt"),
            "RETAILFACE_TLS_REQUIRE_CLIENT_CERT": "true",
        }
    else:
        env["RETAILFACE_INSECURE"] = "true"
    return env


def health_status(target: str, runtime: Runtime, timeout: float = 2.0) -> str:
    """grpc.health.v1 status of the server at `target` ("SERVING", "NOT_SERVING", or the error)."""
    channel = client_channel(target, runtime)
    try:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    except grpc.RpcError as error:
        return f"{error.code().name}"
    finally:
        channel.close()


def client_channel(target: str, runtime: Runtime, identity: str = "client") -> grpc.Channel:
    if not runtime.tls:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(runtime.pki_dir / "ca.crt").read_bytes(),
        private_key=(runtime.pki_dir / f"{identity}.key").read_bytes(),
        certificate_chain=(runtime.pki_dir / f"{identity}.crt").read_bytes(),
    )
    return grpc.secure_channel(target, credentials)


@dataclass
class ServiceProcess:
    name: str
    port: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


class LocalStack:
    """Services as processes on loopback. `replicas` runs a service as several processes (`matching-1`,
    `matching-2`...), each on ports of its own; the gateway then reaches all of them through one
    `ipv4:` target that gRPC's round_robin balances over, as it does over a headless Service."""

    def __init__(
        self,
        runtime: Runtime,
        ports: dict[str, int] | None = None,
        extra_env: dict[str, dict[str, str]] | None = None,
        replicas: dict[str, int] | None = None,
    ) -> None:
        self.runtime = runtime
        self.ports = ports or {name: SERVICE_PORTS[name][0] for name in SERVICES} | {
            f"{name}-metrics": SERVICE_PORTS[name][1] for name in SERVICES
        }
        self.extra_env = extra_env or {}
        self.replicas = {service: count for service, count in (replicas or {}).items() if count > 1}
        for service in self.replicas:
            for instance in self.instances(service):
                self.ports.setdefault(instance, free_port())
                self.ports.setdefault(f"{instance}-metrics", free_port())
        self.processes: dict[str, ServiceProcess] = {}

    def instances(self, service: str) -> list[str]:
        """The process names of a service: itself, or `service-1`..`service-n` when it has replicas."""
        count = self.replicas.get(service, 1)
        return [service] if count == 1 else [f"{service}-{index}" for index in range(1, count + 1)]

    def service_of(self, instance: str) -> str:
        base, _, index = instance.rpartition("-")
        return base if index.isdigit() and base in self.replicas else instance

    def environment(self, instance: str) -> dict[str, str]:
        service = self.service_of(instance)
        ports = self.ports | {service: self.ports[instance], f"{service}-metrics": self.ports[f"{instance}-metrics"]}
        targets = {
            backend: "ipv4:" + ",".join(f"127.0.0.1:{self.ports[name]}" for name in self.instances(backend))
            for backend in self.replicas
        }
        env = service_environment(service, self.runtime, ports, targets) | self.extra_env.get(service, {})
        if instance != service:  # a replica's own state and its own per-instance settings
            env |= {
                key: str(Path(value).with_name(instance))
                for key, value in env.items()
                if key.endswith("_DATA_DIR") and Path(value).name == service
            }
            env |= self.extra_env.get(instance, {})
        return env

    def start(self, instance: str) -> ServiceProcess:
        log_dir = self.runtime.root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{instance}.log"
        command = [sys.executable, *container_command(self.service_of(instance))[1:]]
        env = {key: value for key, value in os.environ.items() if not key.startswith("RETAILFACE_")}
        env |= self.environment(instance)
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=self.runtime.root
            )
        started = ServiceProcess(instance, self.ports[instance], self.ports[f"{instance}-metrics"], process, log_path)
        self.processes[instance] = started
        return started

    def wait_serving(self, service: str, timeout: float = 60.0) -> str:
        proc = self.processes[service]
        deadline = time.monotonic() + timeout
        status = "UNAVAILABLE"
        while time.monotonic() < deadline:
            if proc.process.poll() is not None:
                raise RuntimeError(
                    f"{service} exited with {proc.process.returncode}; last log lines:\n{tail(proc.log_path)}"
                )
            status = health_status(proc.target, self.runtime, timeout=1.0)
            if status == "SERVING":
                return status
            time.sleep(0.2)
        raise TimeoutError(f"{service} not SERVING after {timeout:.0f}s (last: {status}); log:\n{tail(proc.log_path)}")

    def start_all(self, services: tuple[str, ...] = START_ORDER) -> None:
        instances = [instance for service in services for instance in self.instances(service)]
        for instance in instances:
            self.start(instance)
        for instance in instances:
            self.wait_serving(instance)

    def _personalization_admin(self) -> tuple[grpc.Channel, personalization_pb2_grpc.PersonalizationServiceStub]:
        channel = client_channel(self.processes[self.instances("personalization")[0]].target, self.runtime)
        return channel, personalization_pb2_grpc.PersonalizationServiceStub(channel)

    def register_store(self, store_id: str, name: str, timezone: str = "UTC", watchlist_enabled: bool = False) -> None:
        """Creates (or updates) a store, as an admin does with UpsertStore."""
        channel, stub = self._personalization_admin()
        with channel:
            store = personalization_pb2.Store(
                store_id=store_id, name=name, timezone=timezone, watchlist_enabled=watchlist_enabled, actor="localstack"
            )
            stub.UpsertStore(store, metadata=self._admin_metadata(), timeout=30)

    def register_cameras(self, cameras: Mapping[str, Mapping[str, str]]) -> None:
        """Registers a camera map (id -> store_id, role, zone_id, lane_id) with personalization, as an admin does
        with RegisterCamera; the gateway knows them from the first frame each sends. Their stores must exist."""
        channel, stub = self._personalization_admin()
        with channel:
            for camera_id, info in cameras.items():
                camera = personalization_pb2.Camera(
                    camera_id=camera_id,
                    store_id=info["store_id"],
                    role=CAMERA_ROLES[info["role"]],
                    zone_id=info.get("zone_id", ""),
                    lane_id=info.get("lane_id", ""),
                    actor="localstack",
                )
                stub.RegisterCamera(camera, metadata=self._admin_metadata(), timeout=30)

    def _admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.runtime.tokens['admin']}"),)

    def stop(self, service: str, timeout: float = 30.0) -> int:
        proc = self.processes.pop(service)
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
            try:
                proc.process.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
        return int(proc.process.returncode)

    def stop_all(self) -> None:
        ordered = [instance for service in START_ORDER for instance in self.instances(service)]
        for instance in reversed([name for name in ordered if name in self.processes]):
            self.stop(instance)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime-dir", type=Path, default=Path(".cache/localstack"))
    parser.add_argument("--tls", action="store_true", help="mutual TLS with development certificates")
    parser.add_argument("--services", default=",".join(START_ORDER))
    parser.add_argument("--hold", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--seed", choices=("none", "small", "full"), default="small", help="synthetic retail data")
    args = parser.parse_args(argv)
    runtime = Runtime(args.runtime_dir.resolve(), tls=args.tls)
    runtime.prepare()
    if args.seed != "none":
        runtime.seed_personalization(args.seed)
    stack = LocalStack(runtime)
    services = tuple(name for name in START_ORDER if name in args.services.split(","))
    try:
        for service in services:
            proc = stack.start(service)
            print(f"starting {service:16s} {' '.join(container_command(service))}  (port {proc.port})", flush=True)
        for service in services:
            stack.wait_serving(service)
        if args.seed != "none" and "personalization" in services:
            stack.register_cameras(DEMO_CAMERAS)
            print(f"registered the demo cameras of {DEMO_STORE}: {', '.join(DEMO_CAMERAS)}")
        print("\nservice          address            health    metrics")
        for service in services:
            proc = stack.processes[service]
            print(
                f"{service:16s} {proc.target:18s} {health_status(proc.target, runtime):9s} "
                f"http://127.0.0.1:{proc.metrics_port}/metrics"
            )
        if args.hold:
            print("\nrunning; Ctrl-C stops every service", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stack.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
