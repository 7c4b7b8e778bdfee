"""`make audit-deps` (pip-audit on the lock file) fails on a known-vulnerable pin, and on a pin it cannot check.

The audit asks pypi.org's JSON API for each pinned release's advisories. A pin it cannot check fails the run
(--strict) rather than passing silently: where that API is not served (a registry mirror without the
per-release endpoint), every pin fails as "could not be audited" and the known-vulnerable pins with it, so
these tests hold either way. docs/RELIABILITY.md#security gives the lock file's last result.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _audit(requirements: Path) -> subprocess.CompletedProcess[str]:
    """`make audit-deps` on `requirements` (-o install: the environment is the one running the tests)."""
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "audit-deps", "-o", "install", f"AUDIT_REQUIREMENTS={requirements}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("package", "version"), [("urllib3", "1.26.4"), ("jinja2", "2.10")])
def test_a_known_vulnerable_pin_fails_the_audit(tmp_path: Path, package: str, version: str) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{package}=={version}\n")
    result = _audit(requirements)
    output = result.stdout + result.stderr
    assert result.returncode == 2  # make's status when the recipe (pip-audit) fails
    assert re.search(rf"{package}\W+(\S+\W+)?{re.escape(version)}", output, re.IGNORECASE) is not None, output


def test_a_pin_that_cannot_be_checked_fails_the_audit(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("retailface-no-such-package==0.0.1\n")
    result = _audit(requirements)
    assert result.returncode == 2
    assert "could not be audited: retailface-no-such-package (0.0.1)" in result.stderr
