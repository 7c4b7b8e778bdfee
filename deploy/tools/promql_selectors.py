"""Parses the PromQL of every rule in rendered manifests and prints what each one selects, as JSON.

    .venv-tools/bin/python deploy/tools/promql_selectors.py rendered.yaml

Runs in .venv-tools (PyYAML, promql-parser); tests/deploy compares the output with the metrics the
services export. Output: [{"rule": name, "expr": ..., "error": null | message,
"selectors": [{"metric": name, "matchers": [[label, op, value], ...]}]}].
"""

from __future__ import annotations

import json
import sys

import promql_parser
import yaml


def selectors(expr: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = [[m.name, str(m.op).rsplit(".", 1)[-1], m.value] for m in node.matchers.matchers]
            found.append({"metric": node.name, "matchers": matchers})
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def main(path: str) -> int:
    results = []
    with open(path, encoding="utf-8") as handle:
        documents = [doc for doc in yaml.safe_load_all(handle) if doc]
    for doc in documents:
        if doc.get("kind") != "PrometheusRule":
            continue
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                try:
                    results.append(
                        {"rule": name, "expr": rule["expr"], "error": None, "selectors": selectors(rule["expr"])}
                    )
                except ValueError as error:
                    results.append({"rule": name, "expr": rule["expr"], "error": str(error), "selectors": []})
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
