"""The rendered manifests and the Dockerfiles pass the tools an SRE would run: kubernetes-validate
(strict, against the newest Kubernetes it knows), checkov, hadolint, and a PromQL parse of every alert."""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest
from conftest import DEPLOY, OVERLAYS, REPO, Rendered, run_tool, tool
from prometheus_client import REGISTRY

import retailface.services.matching.servicer
import retailface.services.personalization.servicer  # noqa: F401  (registers the services' metrics)
from retailface.services.shared.config import SERVICES
from retailface.v1 import common_pb2, detection_pb2, embedding_pb2, gateway_pb2, matching_pb2, personalization_pb2

KUBERNETES_VERSION = "1.37.0"  # the newest kubernetes-validate 1.37.0 ships schemas for
NO_SCHEMA_KINDS = {"PrometheusRule"}  # a CRD: checked by test_prometheus_rules_* below
DOCKERFILES = (DEPLOY / "docker" / "Dockerfile.cpu", DEPLOY / "docker" / "Dockerfile.gpu")
# Metrics the alerts may use: name -> label names (services/shared/metrics.py, matching, personalization).
ALERT_METRICS = (
    "retailface_rpc_errors_total",
    "retailface_rpc_duration_seconds",
    "retailface_auth_lockouts_total",
    "retailface_outbox_pending",
    "retailface_matching_log_failures_total",
    "retailface_matching_snapshot_failures_total",
)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, Rendered], overlay: str, tmp_path: Path
) -> None:
    kinds = {obj["kind"] for obj in rendered[overlay].objects}
    assert kinds & NO_SCHEMA_KINDS == NO_SCHEMA_KINDS, f"{overlay}: the PrometheusRule is missing"
    # kubernetes-validate only warns about kinds it has no schema for; leave those out so that a kind
    # without a schema cannot pass unnoticed, and feed it one document per file for precise messages.
    python = tool("python")
    split = run_tool(
        [
            python,
            "-c",
            "import sys, yaml\n"
            "docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d['kind'] not in sys.argv[3:]]\n"
            "for i, d in enumerate(docs): yaml.safe_dump(d, open(f'{sys.argv[2]}/{i:03d}.yaml', 'w'))\n"
            "print(len(docs))",
            rendered[overlay].path,
            tmp_path,
            *NO_SCHEMA_KINDS,
        ]
    )
    count = int(split.stdout)
    assert count == len(rendered[overlay].objects) - len(rendered[overlay].of_kind(*NO_SCHEMA_KINDS))
    files = sorted(tmp_path.glob("*.yaml"))
    result = run_tool([tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, *files], check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count(" passed for resource ") == count, f"expected {count} objects to pass:\n{output}"


def _metric_labels() -> dict[str, set[str]]:
    """Sample names the services export -> their label names."""
    exported: dict[str, set[str]] = {}
    for collector, names in REGISTRY._collector_to_names.items():  # the registry's own index of sample names
        labels = set(getattr(collector, "_labelnames", ()))
        for name in names:
            exported[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    return exported


def test_prometheus_rules_parse_and_select_exported_metrics(rendered: dict[str, Rendered]) -> None:
    exported = _metric_labels()
    for name in ALERT_METRICS:
        assert any(sample.startswith(name) for sample in exported), f"{name} is exported by no service"
    known_values = {
        "service": set(SERVICES),
        "code": {code.name for code in grpc.StatusCode},
        "method": {
            method.name
            for module in (common_pb2, detection_pb2, embedding_pb2, gateway_pb2, matching_pb2, personalization_pb2)
            for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods
        },
    }
    result = run_tool([tool("python"), REPO / "deploy" / "tools" / "promql_selectors.py", rendered["cpu"].path])
    rules = json.loads(result.stdout)
    alerts = {rule["rule"] for rule in rules}
    for expected in (
        "HighErrorRate",
        "AuthGuessing",
        "EndToEndLatencyHigh",
        "MatchingLogWriteFailing",
        "MatchingSnapshotFailing",
        "OutboxBacklog",
    ):
        assert f"RetailFace{expected}" in alerts
    for rule in rules:
        assert rule["error"] is None, f"{rule['rule']}: PromQL does not parse: {rule['error']}\n{rule['expr']}"
        assert rule["selectors"], f"{rule['rule']} selects nothing"
        for selector in rule["selectors"]:
            metric = selector["metric"]
            assert metric in exported, f"{rule['rule']}: {metric} is not exported by any service"
            assert any(metric.startswith(name) for name in ALERT_METRICS), f"{rule['rule']}: {metric}"
            for label, op, value in selector["matchers"]:
                assert label in exported[metric], f"{rule['rule']}: {metric} has no label {label}"
                if label in known_values and op in ("Equal", "Re", "NotEqual", "NotRe"):
                    unknown = set(value.split("|")) - known_values[label]
                    assert not unknown, f"{rule['rule']}: {label} never takes the values {unknown}"


def test_prometheus_rules_are_complete_alerts(rendered: dict[str, Rendered]) -> None:
    operations = (REPO / "docs" / "OPERATIONS.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in operations.splitlines()
        if line.startswith("#")
    }
    for overlay in OVERLAYS:
        (rule_object,) = rendered[overlay].of_kind("PrometheusRule")
        assert rule_object["apiVersion"] == "monitoring.coreos.com/v1"
        for group in rule_object["spec"]["groups"]:
            assert group["name"] and group["rules"]
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
                assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
                assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
                if "for" in rule:
                    assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
                anchor = rule["annotations"]["runbook_url"].partition("#")[2]
                assert anchor == rule["alert"].lower() and anchor in anchors, f"{rule['alert']}: no runbook {anchor}"


def test_checkov_passes_with_every_skip_explained(rendered: dict[str, Rendered]) -> None:
    files = [arg for overlay in OVERLAYS for arg in ("-f", rendered[overlay].path)]
    reports = []
    for framework, target in (("kubernetes", files), ("dockerfile", ["-d", DEPLOY / "docker"])):
        result = run_tool(
            [tool("checkov"), *target, "--framework", framework, "--skip-download", "-o", "json"],
            check=False,
            timeout=170,
        )
        output = json.loads(result.stdout)
        reports += output if isinstance(output, list) else [output]
    for report in reports:
        summary = report["summary"]
        assert summary["parsing_errors"] == 0, summary
        assert summary["resource_count"] > 0, summary
        failed = [
            (c["check_id"], c["check_name"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]
        ]
        assert not failed, "checkov failures:\n" + "\n".join(map(str, failed))
        for skipped in report["results"]["skipped_checks"]:
            reason = (
                (skipped.get("check_result") or {}).get("suppress_comment") or skipped.get("suppress_comment") or ""
            )
            assert len(reason) > 30, f"{skipped['check_id']} on {skipped['resource']}: skip without a reason"


def test_hadolint_finds_no_errors_in_the_dockerfiles() -> None:
    result = run_tool([tool("hadolint"), "-f", "json", "--failure-threshold", "error", *DOCKERFILES], check=False)
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["level"] == "error"]
    assert not errors and result.returncode == 0, json.dumps(findings, indent=1)
    # Warnings are fixed or ignored inline with a reason, not left to accumulate.
    assert not [f for f in findings if f["level"] == "warning"], json.dumps(findings, indent=1)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_are_multi_stage_non_root_and_bake_models(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    stages = re.findall(r"^FROM (\S+) AS ([\w.-]+)", text, re.MULTILINE)
    assert [name for _, name in stages][-1] == "runtime" and "builder" in [name for _, name in stages]
    runtime = text[text.index(" AS runtime") :]
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE), "the final stage runs as a numeric non-root user"
    assert "g++" not in runtime and "cmake" not in runtime, "compilers stay in the builder"
    assert "ARG BAKE_MODELS=true" in text and "python -m retailface.devtools.models fetch" in text
    assert "-c requirements/lock.txt ./clients" in text, "the client package first, pinned"
    extra = "gpu" if dockerfile.name.endswith("gpu") else "cpu"
    assert f"'.[{extra}]'" in text
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text()
    assert ignore.splitlines()[2] == "*", "the build context is an allow-list"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_install_the_consoles_chart_js_from_the_lock(dockerfile: Path) -> None:
    """The web consoles serve /static/vendor/chart.umd.min.js (git-ignored): the image gets it from `npm ci` of
    services/web's lock file in a stage of its own, and only that file reaches the installed package."""
    text = dockerfile.read_text()
    stages = {name: image for image, name in re.findall(r"^FROM (\S+) AS ([\w.-]+)", text, re.MULTILINE)}
    assert stages["web-assets"] == "${NODE_IMAGE}"
    assert re.search(r"^ARG NODE_IMAGE=node:\d+-bookworm-slim$", text, re.MULTILINE), "a versioned node tag"
    assets = text[text.index(" AS web-assets") : text.index(" AS builder")]
    assert "COPY services/web/package.json services/web/package-lock.json ./" in assets
    assert re.search(r"^RUN npm ci\b.*--ignore-scripts", assets, re.MULTILINE), "npm ci: exactly the lock"
    builder = text[text.index(" AS builder") : text.index(" AS runtime")]
    copy = "COPY --from=web-assets /web/node_modules/chart.js/dist/chart.umd.min.js"
    assert copy in builder and text.count("--from=web-assets") == 1, "one file out of the npm stage"
    assert builder.index("'.[") < builder.index(copy), "after the package is installed"
    assert 'static/vendor/chart.umd.min.js"' in builder
    lock = json.loads((REPO / "services" / "web" / "package-lock.json").read_text())
    assert "node_modules/chart.js" in lock["packages"]
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text().splitlines()
    assert "**/node_modules" in ignore and "services/web/static/vendor/" in ignore, "no local copy in the context"
