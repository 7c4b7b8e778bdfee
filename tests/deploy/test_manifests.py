"""What the rendered overlays must hold for an SRE to approve them: the objects, pod hardening, sizing,
autoscaling, disruption budgets, spreading, network isolation, and what each overlay changes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import CHAIN_OVERLAYS, CHAIN_SERVICES, DEPLOY, OVERLAYS, Rendered

from retailface.services.shared.config import COMPONENTS, CONSOLE_PORTS, SERVICE_PORTS, SERVICES

AUTOSCALED = ("detection", "embedding", "gateway", "web")
GPU_SERVICES = ("detection", "embedding")
BACKENDS = ("detection", "embedding", "matching", "personalization")
MONITORING_NAMESPACE = {"kubernetes.io/metadata.name": "monitoring"}
STORE_DEVICES = {"retailface.io/zone": "store-devices"}
WEB_HTTP_PORT = 8480  # RETAILFACE_WEB_HTTP_PORT in base/config/web.env (test_consistency.py checks it)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def quantity(value: str | int) -> float:
    """Kubernetes quantity -> cores or bytes."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_its_objects(rendered: dict[str, Rendered], overlay: str) -> None:
    objects = rendered[overlay]
    assert [ns["metadata"]["name"] for ns in objects.of_kind("Namespace")] == ["retailface"]
    assert (
        objects.get("Namespace", "retailface")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )
    for obj in objects.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "retailface", f"{obj['kind']}/{obj['metadata']['name']}"
    assert not objects.of_kind("Secret"), "secrets are referenced, never committed"
    for service in COMPONENTS:
        account = objects.get("ServiceAccount", service)
        assert account["automountServiceAccountToken"] is False
        objects.get("Service", service)
        budget = objects.get("PodDisruptionBudget", service)
        assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": service}
        if overlay in CHAIN_OVERLAYS and service in CHAIN_SERVICES:
            continue  # replicated on PostgreSQL: minAvailable 1 (test_chain.py)
        assert budget["spec"].get("maxUnavailable") == 1, f"{service}: a one-replica store node must still drain"
    embedded = () if overlay in CHAIN_OVERLAYS else CHAIN_SERVICES
    for name in embedded:
        claim = objects.get("StatefulSet", name)["spec"]["volumeClaimTemplates"][0]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert objects.get("StatefulSet", name)["spec"]["replicas"] == 1, f"{name}: one writer of its files"
        assert objects.get("StatefulSet", name)["spec"]["serviceName"] == name
        assert (
            objects.get("StatefulSet", name)["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
        )
    config_maps = {cm["metadata"]["name"].rsplit("-", 1)[0] for cm in objects.of_kind("ConfigMap")}
    assert {"retailface-common", "retailface-services", *(f"{s}-config" for s in COMPONENTS)} <= config_maps
    for service, workload in objects.workloads().items():
        sources = [s["configMapRef"]["name"].rsplit("-", 1)[0] for s in pod_spec(workload)["containers"][0]["envFrom"]]
        shared = ["retailface-common"] if service in CONSOLE_PORTS else ["retailface-common", "retailface-services"]
        assert sources == [*shared, f"{service}-config"], f"{overlay}/{service}: {sources}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened(rendered: dict[str, Rendered], overlay: str) -> None:
    for service, workload in rendered[overlay].workloads().items():
        pod = pod_spec(workload)
        where = f"{overlay}/{service}"
        assert pod["serviceAccountName"] == service and pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] >= 10000, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"] == {"drop": ["ALL"]} and context.get("privileged") is False, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for field in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][field]), f"{where}: {field}"
        for resource in ("cpu", "memory"):
            assert quantity(container["resources"]["requests"][resource]) <= quantity(
                container["resources"]["limits"][resource]
            ), f"{where}: {resource} request above its limit"
        assert container["image"].startswith("registry.example.com/retailface/retailface:"), where
        assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 60
        spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
        assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": service}


def test_resource_sizes_say_where_they_come_from() -> None:
    checked = 0
    for path in sorted((DEPLOY / "k8s" / "base").glob("*.yaml")):
        text = path.read_text()
        for match in re.finditer(r"^( +)resources:\n((?:\1  #.*\n)*)", text, re.MULTILINE):
            if "cpu:" not in text[match.end() : match.end() + 120]:
                continue  # a volume claim's storage request
            comment = match.group(2)
            assert re.search(r"Sizing|BENCHMARKS|benchmark", comment), f"{path.name}: resources without their source"
            checked += 1
    assert checked == len(COMPONENTS)


@pytest.mark.parametrize("overlay", CHAIN_OVERLAYS)
def test_central_overlays_autoscale_the_stateless_services(rendered: dict[str, Rendered], overlay: str) -> None:
    autoscalers = {hpa["metadata"]["name"]: hpa for hpa in rendered[overlay].of_kind("HorizontalPodAutoscaler")}
    assert set(autoscalers) == {*AUTOSCALED, *CHAIN_SERVICES}  # on PostgreSQL, stateless too
    for name, hpa in autoscalers.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert "replicas" not in rendered[overlay].get("Deployment", name)["spec"], f"{name}: the HPA owns replicas"


def test_gpu_overlay_puts_detection_and_embedding_on_gpus(rendered: dict[str, Rendered]) -> None:
    gpu = rendered["gpu"]
    for service, workload in gpu.workloads().items():
        pod = pod_spec(workload)
        (container,) = pod["containers"]
        env = gpu.container_env(workload)
        if service in GPU_SERVICES:
            assert container["image"].endswith("-gpu"), service
            assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
            assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            assert env[f"RETAILFACE_{service.upper()}_PROVIDER"] == "cuda"
        else:
            assert container["image"].endswith("-cpu") and "nodeSelector" not in pod, service
            assert "nvidia.com/gpu" not in container["resources"]["limits"], service
    for overlay in ("cpu", "store-edge"):
        for workload in rendered[overlay].workloads().values():
            assert "nvidia.com/gpu" not in str(workload)
            assert pod_spec(workload)["containers"][0]["image"].endswith("-cpu")


def test_store_edge_fits_one_small_node(rendered: dict[str, Rendered]) -> None:
    edge = rendered["store-edge"]
    assert not edge.of_kind("HorizontalPodAutoscaler")
    cpu = memory = 0.0
    for service, workload in edge.workloads().items():
        assert workload["spec"]["replicas"] == 1, service
        requests = pod_spec(workload)["containers"][0]["resources"]["requests"]
        cpu += quantity(requests["cpu"])
        memory += quantity(requests["memory"])
        central = rendered["cpu"].workloads()[service]
        assert quantity(requests["cpu"]) < quantity(pod_spec(central)["containers"][0]["resources"]["requests"]["cpu"])
        for claim in workload["spec"].get("volumeClaimTemplates", []):
            assert quantity(claim["spec"]["resources"]["requests"]["storage"]) <= 2 * 2**30
    # A 4-core, 8 GiB store node, minus ~0.5 core and ~1.5 GiB for the kubelet, system pods and monitoring.
    assert cpu <= 3.5 and memory <= 6.5 * 2**30, f"requests {cpu} cores, {memory / 2**30:.2f} GiB"


def _rule_peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return list(rule.get("from", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_isolate_the_services(rendered: dict[str, Rendered], overlay: str) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in rendered[overlay].of_kind("NetworkPolicy")}
    default = policies["default-deny"]
    assert default["podSelector"] == {} and set(default["policyTypes"]) == {"Ingress", "Egress"}
    assert not default.get("ingress") and not default.get("egress")
    dns = policies["allow-dns-egress"]["egress"][0]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    for service in SERVICES:
        spec = policies[service]
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": service}}
        grpc_port, metrics_port = SERVICE_PORTS[service]
        allowed: dict[int, list[dict[str, Any]]] = {}
        for rule in spec["ingress"]:
            for port in rule["ports"]:
                allowed.setdefault(port["port"], []).extend(_rule_peers(rule))
        assert set(allowed) == {grpc_port, metrics_port}, f"{service}: ingress ports {set(allowed)}"
        assert allowed[metrics_port] == [{"namespaceSelector": {"matchLabels": MONITORING_NAMESPACE}}]
        peers = allowed[grpc_port]
        from_gateway = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}
        from_devices = {"namespaceSelector": {"matchLabels": STORE_DEVICES}}
        from_web = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "web"}}}
        if service == "gateway":  # and the web consoles: staff alerts, erasures
            assert sorted(map(str, peers)) == sorted(map(str, [from_devices, from_web]))
        elif service == "personalization":  # its POS and staff methods grant the pos/staff roles directly
            assert sorted(map(str, peers)) == sorted(map(str, [from_gateway, from_devices, from_web]))
        else:
            assert peers == [from_gateway], f"{service}: only the gateway may call it"
    gateway_egress = {
        (rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], rule["ports"][0]["port"])
        for rule in policies["gateway"]["egress"]
    }
    assert gateway_egress == {(backend, SERVICE_PORTS[backend][0]) for backend in BACKENDS}

    # The web consoles: HTTPS from store devices (staff screens), metrics from monitoring, nothing on their
    # health-only gRPC port; they call the gateway and personalization, nothing else.
    web = policies["web"]
    assert web["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "web"}}
    assert set(web["policyTypes"]) == {"Ingress", "Egress"}
    web_ingress = {port["port"]: _rule_peers(rule) for rule in web["ingress"] for port in rule["ports"]}
    web_grpc, web_metrics = CONSOLE_PORTS["web"]
    assert web_ingress == {
        WEB_HTTP_PORT: [{"namespaceSelector": {"matchLabels": STORE_DEVICES}}],
        web_metrics: [{"namespaceSelector": {"matchLabels": MONITORING_NAMESPACE}}],
    }
    assert web_grpc not in web_ingress
    web_egress = {
        (rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], rule["ports"][0]["port"])
        for rule in web["egress"]
    }
    assert web_egress == {(name, SERVICE_PORTS[name][0]) for name in ("gateway", "personalization")}
