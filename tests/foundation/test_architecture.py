"""The dependency rules and size limits of docs/ARCHITECTURE.md, checked on the source itself.

- A service imports only `retailface.services.shared`, itself, and the contract
  (`retailface.v1`, `retailface.client`); `services/shared` imports no service.
- Nothing under `services/` imports `retailface.devtools` (development tooling).
- The client library and the native module import nothing of the services or the tooling.
- No hand-written module in `services/` is over 500 lines, and no class over 300.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").is_file())
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300


def imported_modules(path: Path) -> list[str]:
    """Every absolute module name a file imports (`import a.b`, `from a.b import c` gives a.b and a.b.c)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def service_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["retailface", "services"] and len(parts) > 2:
        return parts[2]
    return None


def forbidden_imports(path: Path, allowed_services: set[str]) -> list[str]:
    bad = []
    for module in imported_modules(path):
        if module == "retailface.devtools" or module.startswith("retailface.devtools."):
            bad.append(module)
        service = service_of(module)
        if service is not None and service not in allowed_services:
            bad.append(module)
    return bad


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_only_itself_and_shared(service: str) -> None:
    allowed = {"shared"} if service == "shared" else {"shared", service}
    offenders = {
        str(path.relative_to(ROOT)): bad
        for path in python_files(ROOT / "services" / service)
        if (bad := forbidden_imports(path, allowed))
    }
    assert offenders == {}


@pytest.mark.parametrize("folder", ["clients", "native"])
def test_clients_and_native_import_no_service_or_tooling(folder: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): bad
        for path in python_files(ROOT / folder)
        if (bad := forbidden_imports(path, allowed_services=set()))
    }
    assert offenders == {}


def test_native_sources_include_nothing_of_the_python_services() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "native").rglob("*"))
        if path.suffix in {".cpp", ".hpp", ".h"} and "services/" in path.read_text()
    ]
    assert offenders == []


def test_the_rule_checker_sees_a_cross_service_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from retailface.services.matching.store import MatchingStore\n"
        "import retailface.devtools.localstack\n"
        "from retailface.services.shared import errors\n"
    )
    assert forbidden_imports(sample, {"shared", "gateway"}) == [
        "retailface.services.matching.store",
        "retailface.services.matching.store.MatchingStore",
        "retailface.devtools.localstack",
    ]


def test_no_service_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in python_files(ROOT / "services")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_service_class_is_over_the_line_limit() -> None:
    long = {}
    for path in python_files(ROOT / "services"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    long[f"{path.relative_to(ROOT)}::{node.name}"] = lines
    assert long == {}
