"""One truth for manifests and code: every port, environment variable, probe and command in the rendered
manifests is one the services serve or read, and the local stack (`make demo`) starts each service with
the container's command and (a subset of) its environment."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from conftest import CHAIN_OVERLAYS, CHAIN_SERVICES, OVERLAYS, REPO, Rendered

from retailface.devtools.console import ConsoleStack
from retailface.devtools.localstack import Runtime, container_command, service_environment
from retailface.services.shared.config import (
    COMMON_SETTINGS,
    COMPONENTS,
    CONSOLE_PORTS,
    SERVICE_PORTS,
    SERVICES,
    Setting,
    parse_path,
)
from retailface.services.shared.settings_catalog import service_settings

BACKENDS = ("detection", "embedding", "matching", "personalization")
# The URL that moves a service's state from its embedded store (data dir) to PostgreSQL.
DB_URLS = {"matching": "RETAILFACE_MATCHING_DB_URL", "personalization": "RETAILFACE_PERSONALIZATION_DB_URL"}
# Settings that only locate an embedded store, which the DB URL replaces: absent where the URL is set.
EMBEDDED_ONLY = {"personalization": {"RETAILFACE_PERSONALIZATION_DATA_DIR"}}
# Common settings the web consoles never read: they call as the person signed in (or with their own web
# token), never with the "service" token, and load no models (services/web; devtools/console.py leaves
# them out too). Their container must not get them, nor the Secret behind the first.
NOT_READ_BY_WEB = {"RETAILFACE_SERVICE_TOKEN_FILE", "RETAILFACE_MODELS_DIR"}
WEB_HTTP_PORT = "RETAILFACE_WEB_HTTP_PORT"


def settings_of(service: str) -> dict[str, Setting]:
    """COMMON_SETTINGS plus the service's own SETTINGS, read from its servicer module."""
    return {s.name: s for s in (*COMMON_SETTINGS, *service_settings(service))}


def expected_kind(overlay: str, service: str) -> str:
    """matching and personalization: one StatefulSet pod with a PVC (embedded), Deployments on PostgreSQL."""
    if service in CHAIN_SERVICES and overlay not in CHAIN_OVERLAYS:
        return "StatefulSet"
    return "Deployment"


def on_postgres(rendered: Rendered, workload: dict[str, Any]) -> bool:
    """Whether the workload's service keeps its state in PostgreSQL (its DB URL is set)."""
    url = DB_URLS.get(workload["metadata"]["name"])
    return url is not None and (url in rendered.secret_env(workload) or bool(rendered.container_env(workload).get(url)))


def services_of(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """The gRPC services' workloads (SERVICES), without the web consoles'."""
    return {name: workload for name, workload in rendered.workloads().items() if name in SERVICES}


def first_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container per pod expected"
    return dict(containers[0])


@pytest.fixture(scope="module")
def tls_runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    runtime = Runtime(tmp_path_factory.mktemp("localstack"), tls=True)
    runtime.prepare()
    return runtime


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_workload_per_service_running_the_service_command(rendered: dict[str, Rendered], overlay: str) -> None:
    workloads = rendered[overlay].workloads()
    assert set(workloads) == set(COMPONENTS)  # the services and the web consoles
    for service, workload in workloads.items():
        assert workload["kind"] == expected_kind(overlay, service), f"{overlay}/{service}"
        container = first_container(workload)
        assert container["name"] == service
        assert container["command"] == container_command(service), f"{overlay}/{service}: command"
        assert "args" not in container, f"{overlay}/{service}: flags would hide settings from the ConfigMaps"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_env_var_is_a_setting_of_the_service_with_a_valid_value(
    rendered: dict[str, Rendered], overlay: str
) -> None:
    for service, workload in rendered[overlay].workloads().items():
        settings = settings_of(service)
        env = rendered[overlay].container_env(workload)
        from_secrets = rendered[overlay].secret_env(workload)
        unknown = sorted((set(env) | set(from_secrets)) - set(settings))
        assert not unknown, f"{overlay}/{service}: the service reads no {unknown}"
        assert not set(env) & set(from_secrets), f"{overlay}/{service}: set twice"
        for name, value in env.items():
            settings[name].convert(value, f"{overlay}/{service} {name}")  # raises ConfigError on a bad value
        missing = [s.name for s in settings.values() if s.required and s.name not in {*env, *from_secrets}]
        assert not missing, f"{overlay}/{service}: required settings not set: {missing}"
        assert "RETAILFACE_INSECURE" not in env, f"{overlay}/{service}: containers always serve TLS"
        assert env.get("RETAILFACE_TLS_REQUIRE_CLIENT_CERT") == "true", f"{overlay}/{service}: mTLS between services"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secret_settings_come_from_secrets(rendered: dict[str, Rendered], overlay: str) -> None:
    """A secret setting's value (never logged: a database URL with its password) is never a ConfigMap value
    or a literal in the manifest. Secret files (a TLS key) are paths into Secret volumes: see
    test_file_settings_point_into_mounted_volumes."""
    for service, workload in rendered[overlay].workloads().items():
        settings = settings_of(service)
        literal = [
            name
            for name in rendered[overlay].container_env(workload)
            if settings[name].secret and settings[name].parse is not parse_path
        ]
        assert not literal, f"{overlay}/{service}: secret settings in plain configuration: {literal}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probes_are_the_ones_the_service_serves(rendered: dict[str, Rendered], overlay: str) -> None:
    for service, workload in services_of(rendered[overlay]).items():
        env = rendered[overlay].container_env(workload)
        grpc_port, metrics_port = SERVICE_PORTS[service]
        health_port = int(env["RETAILFACE_HEALTH_PORT"])
        assert health_port not in (0, grpc_port, metrics_port)
        assert int(env.get("RETAILFACE_PORT", grpc_port)) == grpc_port
        assert int(env.get("RETAILFACE_METRICS_PORT", metrics_port)) == metrics_port
        container = first_container(workload)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": grpc_port, "metrics": metrics_port, "grpc-health": health_port}, f"{overlay}/{service}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            # Native gRPC probes on the plaintext health-only listener; the gRPC port demands client certificates.
            assert container[probe] == container[probe] | {"grpc": {"port": health_port}}, (
                f"{overlay}/{service} {probe}"
            )
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == metrics_port

        kube_service = rendered[overlay].get("Service", service)
        assert kube_service["spec"]["selector"] == workload["spec"]["selector"]["matchLabels"]
        service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in kube_service["spec"]["ports"]}
        assert service_ports == {"grpc": (grpc_port, "grpc"), "metrics": (metrics_port, "metrics")}
        if service in BACKENDS:  # the gateway balances round_robin over pod addresses (shared/channels.py)
            assert kube_service["spec"].get("clusterIP") == "None", f"{overlay}/{service}: headless Service"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_dials_the_backends_services(rendered: dict[str, Rendered], overlay: str) -> None:
    env = rendered[overlay].container_env(rendered[overlay].get("Deployment", "gateway"))
    for backend in BACKENDS:
        assert env[f"RETAILFACE_GATEWAY_{backend.upper()}_ADDR"] == f"dns:///{backend}:{SERVICE_PORTS[backend][0]}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_file_settings_point_into_mounted_volumes(rendered: dict[str, Rendered], overlay: str) -> None:
    for service, workload in rendered[overlay].workloads().items():
        settings = settings_of(service)
        env = rendered[overlay].container_env(workload)
        container = first_container(workload)
        pod = workload["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        volumes |= {c["metadata"]["name"]: {"pvc": c} for c in workload["spec"].get("volumeClaimTemplates", [])}
        for name, value in env.items():
            setting = settings.get(name)  # unknown names fail the test above
            if setting is None or setting.parse is not parse_path or name == "RETAILFACE_MODELS_DIR":  # in the image
                continue
            path = PurePosixPath(value)
            mount_path = next((m for m in mounts if path == PurePosixPath(m) or PurePosixPath(m) in path.parents), None)
            assert mount_path is not None, f"{overlay}/{service}: {name}={value} is on no mounted volume"
            mount = mounts[mount_path]
            volume = volumes[mount["name"]]
            if name.endswith("_DATA_DIR"):
                assert not mount.get("readOnly"), f"{overlay}/{service}: {name} must be writable"
                if on_postgres(rendered[overlay], workload):  # the state is in the database: scratch space
                    assert "emptyDir" in volume, f"{overlay}/{service}: {name} on PostgreSQL needs no PVC"
                else:
                    assert "pvc" in volume, f"{overlay}/{service}: {name} needs its PVC"
                continue
            assert mount.get("readOnly"), f"{overlay}/{service}: {name} is configuration, mount it read-only"
            if "configMap" in volume:  # the key must exist in the ConfigMap, and the content must load
                config_map = rendered[overlay].get("ConfigMap", volume["configMap"]["name"])
                key = str(path.relative_to(mount_path))
                assert key in config_map["data"], f"{overlay}/{service}: {name}: no key {key}"
            else:
                assert volume["secret"]["secretName"].startswith("retailface-"), f"{overlay}/{service}: {name}"
        tmp = mounts.get("/tmp")
        assert tmp is not None and "emptyDir" in volumes[tmp["name"]], f"{overlay}/{service}: writable /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_local_stack_uses_the_container_command_and_environment(
    rendered: dict[str, Rendered], overlay: str, tls_runtime: Runtime
) -> None:
    """`make demo` / `make stack` start each service like its container: same command, and every variable
    the local stack sets is one the container sets too (values differ: loopback, temp paths)."""
    for service, workload in services_of(rendered[overlay]).items():
        assert first_container(workload)["command"] == container_command(service)
        local_names = set(service_environment(service, tls_runtime))
        if on_postgres(rendered[overlay], workload):  # the local stack keeps the embedded stores
            local_names -= EMBEDDED_ONLY.get(service, set())
        container_names = set(rendered[overlay].container_env(workload)) | set(rendered[overlay].secret_env(workload))
        assert local_names <= container_names, (
            f"{overlay}/{service}: not in the container: {local_names - container_names}"
        )


# ------------------------------------------------------------------ the web consoles


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_env_names_only_settings_the_web_reads(rendered: dict[str, Rendered], overlay: str) -> None:
    workload = rendered[overlay].get("Deployment", "web")
    names = set(rendered[overlay].container_env(workload)) | set(rendered[overlay].secret_env(workload))
    reads = set(settings_of("web")) - NOT_READ_BY_WEB
    assert not sorted(names - reads), f"{overlay}/web: the web reads no {sorted(names - reads)}"
    assert {s.name for s in service_settings("web") if s.required} <= names
    secrets = {v["secret"]["secretName"] for v in workload["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert "retailface-service-token" not in secrets, f"{overlay}/web: the web never holds the service token"
    assert {"retailface-web-tls", "retailface-tokens", "retailface-web-token", "retailface-web-session-key"} <= secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_ports_and_probes_are_the_ones_it_serves(rendered: dict[str, Rendered], overlay: str) -> None:
    workload = rendered[overlay].get("Deployment", "web")
    env = rendered[overlay].container_env(workload)
    grpc_port, metrics_port = CONSOLE_PORTS["web"]
    http_port = int(env.get(WEB_HTTP_PORT, settings_of("web")[WEB_HTTP_PORT].default))
    health_port = int(env["RETAILFACE_HEALTH_PORT"])
    assert int(env["RETAILFACE_PORT"]) == grpc_port and int(env["RETAILFACE_METRICS_PORT"]) == metrics_port
    assert len({http_port, grpc_port, metrics_port, health_port}) == 4
    assert env["RETAILFACE_TLS_CERT"], f"{overlay}/web: the consoles serve HTTPS"
    container = first_container(workload)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": http_port, "grpc": grpc_port, "metrics": metrics_port, "grpc-health": health_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # GET /healthz of the HTML server itself (app.py), over HTTPS like the pages.
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}, probe
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == metrics_port

    kube_service = rendered[overlay].get("Service", "web")
    assert kube_service["spec"]["selector"] == workload["spec"]["selector"]["matchLabels"]
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in kube_service["spec"]["ports"]}
    assert service_ports == {
        "https": (http_port, "https"),
        "grpc": (grpc_port, "grpc"),
        "metrics": (metrics_port, "metrics"),
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_web_dials_the_gateway_and_personalization_services(rendered: dict[str, Rendered], overlay: str) -> None:
    env = rendered[overlay].container_env(rendered[overlay].get("Deployment", "web"))
    assert env["RETAILFACE_WEB_GATEWAY_ADDR"] == f"gateway:{SERVICE_PORTS['gateway'][0]}"
    assert env["RETAILFACE_WEB_PERSONALIZATION_ADDR"] == f"dns:///personalization:{SERVICE_PORTS['personalization'][0]}"
    for name in ("gateway", "personalization"):
        rendered[overlay].get("Service", name)
    assert env["RETAILFACE_WEB_PUBLIC_URL"].startswith("https://"), "member sign-in links go out over HTTPS"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_local_consoles_use_the_web_container_command_and_environment(
    rendered: dict[str, Rendered], overlay: str, tmp_path: Path
) -> None:
    """`make console` starts the web like its container: same command, and every variable it sets is one the
    container sets too."""
    workload = rendered[overlay].get("Deployment", "web")
    assert first_container(workload)["command"] == container_command("web")
    local_names = set(ConsoleStack(tmp_path).web_environment())
    container_names = set(rendered[overlay].container_env(workload)) | set(rendered[overlay].secret_env(workload))
    assert local_names <= container_names, f"{overlay}/web: not in the container: {local_names - container_names}"


@pytest.mark.parametrize("document", ["docs/OPERATIONS.md", "README.md"])
def test_documents_name_only_settings_the_code_reads(document: str) -> None:
    """Every RETAILFACE_* variable the operator documents is one some service reads (a renamed or
    removed setting fails here, not in a cluster)."""
    known = {name for service in COMPONENTS for name in settings_of(service)}
    text = (REPO / document).read_text()
    named = set(re.findall(r"\bRETAILFACE_[A-Z0-9_]*[A-Z0-9]\b", text))
    assert named, f"{document} names no setting"
    assert not sorted(named - known), f"{document}: no service reads {sorted(named - known)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_covers_the_drain(rendered: dict[str, Rendered], overlay: str) -> None:
    for service, workload in rendered[overlay].workloads().items():
        env = rendered[overlay].container_env(workload)
        grace = float(env["RETAILFACE_GRACE_SECONDS"])
        pod = workload["spec"]["template"]["spec"]
        pre_stop = first_container(workload)["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > pre_stop + grace, f"{overlay}/{service}"
