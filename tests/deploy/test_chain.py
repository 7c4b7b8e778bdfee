"""The two shapes of matching and personalization. The chain overlays (cpu, gpu, through
components/chain-postgres) run them replicated on PostgreSQL: Deployments of at least 2 pods, a disruption
budget that keeps one, an HPA, spreading over nodes and zones, the database URL from a Secret and its CA
mounted for `sslmode=verify-full`. store-edge keeps the embedded backends: one StatefulSet pod with its PVC,
no database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import CHAIN_OVERLAYS, CHAIN_SERVICES, OVERLAYS, REPO, Rendered

from retailface.services.shared.config import COMPONENTS

POSTGRES_SECRET = "retailface-postgres"
CA_DIR = "/etc/retailface/postgres"  # where the database's CA is mounted: sslrootcert=/etc/retailface/postgres/ca.crt
DB_URLS = {  # service -> (setting, key of retailface-postgres)
    "matching": ("RETAILFACE_MATCHING_DB_URL", "matching-url"),
    "personalization": ("RETAILFACE_PERSONALIZATION_DB_URL", "personalization-url"),
}
CHAIN = [pytest.param(overlay, service, id=f"{overlay}-{service}") for overlay in CHAIN_OVERLAYS for service in DB_URLS]
EDGE = "store-edge"
OPERATIONS = REPO / "docs" / "OPERATIONS.md"
URL_DOCUMENTS = (
    OPERATIONS,
    REPO / "README.md",
    REPO / "deploy" / "k8s" / "components" / "chain-postgres" / "kustomization.yaml",
)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def mounts_by_volume(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in pod_spec(workload)["containers"][0]["volumeMounts"]}


def postgres_volumes(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in pod_spec(workload)["volumes"] if v.get("secret", {}).get("secretName") == POSTGRES_SECRET]


# ------------------------------------------------------------------ chain overlays: replicated on PostgreSQL


@pytest.mark.parametrize(("overlay", "service"), CHAIN)
def test_chain_runs_a_deployment_without_volume_claims(
    rendered: dict[str, Rendered], overlay: str, service: str
) -> None:
    workload = rendered[overlay].workloads()[service]
    assert workload["kind"] == "Deployment"
    assert not {"volumeClaimTemplates", "serviceName", "podManagementPolicy"} & set(workload["spec"])
    assert "replicas" not in workload["spec"], "the HPA owns the replica count"


@pytest.mark.parametrize(("overlay", "service"), CHAIN)
def test_chain_rollout_starts_the_new_pod_before_stopping_an_old_one(
    rendered: dict[str, Rendered], overlay: str, service: str
) -> None:
    strategy = rendered[overlay].get("Deployment", service)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


@pytest.mark.parametrize(("overlay", "service"), CHAIN)
def test_chain_autoscaler_keeps_at_least_two_replicas_on_cpu(
    rendered: dict[str, Rendered], overlay: str, service: str
) -> None:
    hpa = rendered[overlay].get("HorizontalPodAutoscaler", service)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] > 2
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]


@pytest.mark.parametrize(("overlay", "service"), CHAIN)
def test_chain_disruption_budget_keeps_one_pod_available(
    rendered: dict[str, Rendered], overlay: str, service: str
) -> None:
    budget = rendered[overlay].get("PodDisruptionBudget", service)
    assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": service}}}


@pytest.mark.parametrize(("overlay", "service"), CHAIN)
def test_chain_pods_spread_strictly_over_nodes_and_softly_over_zones(
    rendered: dict[str, Rendered], overlay: str, service: str
) -> None:
    constraints = pod_spec(rendered[overlay].get("Deployment", service))["topologySpreadConstraints"]
    expected = {
        "maxSkew": 1,
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": service}},
        "matchLabelKeys": ["pod-template-hash"],
    }
    assert constraints == [
        expected | {"topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"},
        expected | {"topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
    ]


@pytest.mark.parametrize(("overlay", "service"), CHAIN)
def test_chain_database_url_comes_from_the_postgres_secret(
    rendered: dict[str, Rendered], overlay: str, service: str
) -> None:
    workload = rendered[overlay].get("Deployment", service)
    setting, key = DB_URLS[service]
    assert rendered[overlay].secret_env(workload) == {setting: (POSTGRES_SECRET, key)}
    assert setting not in rendered[overlay].container_env(workload)


@pytest.mark.parametrize(("overlay", "service"), CHAIN)
def test_chain_mounts_only_the_database_ca_read_only(rendered: dict[str, Rendered], overlay: str, service: str) -> None:
    workload = rendered[overlay].get("Deployment", service)
    (volume,) = postgres_volumes(workload)
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the URLs never become files"
    mount = mounts_by_volume(workload)[volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": CA_DIR, "readOnly": True}


@pytest.mark.parametrize(("overlay", "service"), CHAIN)
def test_chain_service_resolves_only_ready_replicas(rendered: dict[str, Rendered], overlay: str, service: str) -> None:
    """The gateway's dns:/// round_robin channel balances over the addresses of the headless Service: only
    Ready pods, so a matching replica still catching up with the log gets no search."""
    spec = rendered[overlay].get("Service", service)["spec"]
    assert spec["clusterIP"] == "None"
    assert spec.get("publishNotReadyAddresses", False) is False
    gateway = rendered[overlay].get("Deployment", "gateway")
    port = next(p["port"] for p in spec["ports"] if p["name"] == "grpc")
    target = rendered[overlay].container_env(gateway)[f"RETAILFACE_GATEWAY_{service.upper()}_ADDR"]
    assert target == f"dns:///{service}:{port}"


@pytest.mark.parametrize("overlay", CHAIN_OVERLAYS)
def test_chain_matching_keeps_no_persistent_volume(rendered: dict[str, Rendered], overlay: str) -> None:
    workload = rendered[overlay].get("Deployment", "matching")
    env = rendered[overlay].container_env(workload)
    mounts = {m["mountPath"]: m["name"] for m in pod_spec(workload)["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    data = volumes[mounts[env["RETAILFACE_MATCHING_DATA_DIR"]]]
    assert set(data) == {"name", "emptyDir"}
    key_dir = env["RETAILFACE_MATCHING_KEY_FILE"].rsplit("/", 1)[0]
    assert volumes[mounts[key_dir]]["secret"]["secretName"] == "retailface-matching-key"


@pytest.mark.parametrize("overlay", CHAIN_OVERLAYS)
def test_chain_personalization_has_no_data_dir(rendered: dict[str, Rendered], overlay: str) -> None:
    workload = rendered[overlay].get("Deployment", "personalization")
    assert "RETAILFACE_PERSONALIZATION_DATA_DIR" not in rendered[overlay].container_env(workload)
    mount_paths = [m["mountPath"] for m in pod_spec(workload)["containers"][0]["volumeMounts"]]
    assert not [path for path in mount_paths if path.startswith("/var/lib/retailface")]


@pytest.mark.parametrize("overlay", CHAIN_OVERLAYS)
def test_chain_lets_only_matching_and_personalization_reach_the_database(
    rendered: dict[str, Rendered], overlay: str
) -> None:
    policy = rendered[overlay].get("NetworkPolicy", "allow-postgres-egress")["spec"]
    assert policy["podSelector"] == {
        "matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["matching", "personalization"]}
        ]
    }
    assert policy["policyTypes"] == ["Egress"]
    assert policy["egress"] == [{"ports": [{"port": 5432, "protocol": "TCP"}]}]


@pytest.mark.parametrize("overlay", CHAIN_OVERLAYS)
def test_chain_overlays_hold_no_statefulset(rendered: dict[str, Rendered], overlay: str) -> None:
    assert not rendered[overlay].of_kind("StatefulSet", "PersistentVolumeClaim")


@pytest.mark.parametrize("document", URL_DOCUMENTS, ids=lambda p: p.name)
def test_documented_database_urls_verify_the_server_with_the_mounted_ca(document: Path) -> None:
    urls = re.findall(r"postgresql(?:\+psycopg)?://[^\s'\"`]+", document.read_text())
    assert urls, f"{document.name} shows no PostgreSQL URL"
    for url in urls:
        query = parse_qs(urlsplit(url).query)
        assert query.get("sslmode") == ["verify-full"], f"{document.name}: {url}"
        assert query.get("sslrootcert") == [f"{CA_DIR}/ca.crt"], f"{document.name}: {url}"


# ------------------------------------------------------------------ store-edge: the embedded backends


@pytest.mark.parametrize("service", CHAIN_SERVICES)
def test_store_edge_runs_one_statefulset_pod_with_its_volume(rendered: dict[str, Rendered], service: str) -> None:
    workload = rendered[EDGE].workloads()[service]
    assert workload["kind"] == "StatefulSet"
    assert workload["spec"]["replicas"] == 1
    assert [claim["metadata"]["name"] for claim in workload["spec"]["volumeClaimTemplates"]] == ["data"]
    assert rendered[EDGE].get("PodDisruptionBudget", service)["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("service", CHAIN_SERVICES)
def test_store_edge_sets_no_database_url(rendered: dict[str, Rendered], service: str) -> None:
    workload = rendered[EDGE].workloads()[service]
    setting, _ = DB_URLS[service]
    assert setting not in rendered[EDGE].container_env(workload)
    assert setting not in rendered[EDGE].secret_env(workload)
    assert not postgres_volumes(workload)


def test_store_edge_has_no_database_egress(rendered: dict[str, Rendered]) -> None:
    names = [policy["metadata"]["name"] for policy in rendered[EDGE].of_kind("NetworkPolicy")]
    assert "allow-postgres-egress" not in names
    assert POSTGRES_SECRET not in str(rendered[EDGE].objects)


# ------------------------------------------------------------------ every overlay: the Secrets an operator creates


def documented_secrets() -> dict[str, set[str]]:
    """docs/OPERATIONS.md's Secrets table: Secret name -> the keys it lists."""
    section = OPERATIONS.read_text().split("\n### Secrets\n", 1)[1].split("\n### ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        if line.startswith("| `retailface-"):
            name_cell, keys_cell = line.strip("|").split("|")[:2]
            name = re.search(r"`([^`]+)`", name_cell)
            assert name is not None, line
            table[name.group(1)] = set(re.findall(r"`([^`]+)`", keys_cell))
    return table


def referenced_secrets(rendered: Rendered) -> dict[str, set[str]]:
    """Secret name -> the keys the workloads name (items of a volume, secretKeyRef); a per-service TLS
    Secret (the web consoles' included) as retailface-<service>-tls."""
    tls = re.compile(rf"retailface-({'|'.join(COMPONENTS)})-tls")  # the web's too
    refs: dict[str, set[str]] = {}
    for workload in rendered.workloads().values():
        for volume in pod_spec(workload)["volumes"]:
            if "secret" in volume:
                name = tls.sub("retailface-<service>-tls", volume["secret"]["secretName"])
                refs.setdefault(name, set()).update(item["key"] for item in volume["secret"].get("items", []))
        for secret, key in rendered.secret_env(workload).values():
            refs.setdefault(secret, set()).add(key)
    return refs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_the_workloads_use_is_documented_with_its_keys(
    rendered: dict[str, Rendered], overlay: str
) -> None:
    documented = documented_secrets()
    for secret, keys in referenced_secrets(rendered[overlay]).items():
        assert secret in documented, f"{overlay}: {secret} is not in docs/OPERATIONS.md#secrets"
        assert keys <= documented[secret], f"{overlay}: {secret}: keys {sorted(keys - documented[secret])} undocumented"
