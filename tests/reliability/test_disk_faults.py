"""Disk faults on matching's data directory: a change that cannot be made durable is refused with a clear
status and never applied, and reads keep working (docs/RELIABILITY.md, ## Chaos).

The status mapping is checked on the journal itself; `benchmarks/soak/chaos_disk.py` fills a real tmpfs
under the running stack (root only, as `make chaos` and the last test here run it)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from retailface.services.matching.crypto import RecordCipher
from retailface.services.matching.journal import FileJournal, LogWriter
from retailface.services.matching.recordlog import RecordLog
from retailface.services.shared.errors import ResourceExhausted, Unavailable

ROOT = Path(__file__).resolve().parents[2]
CHAOS_DISK = ROOT / "benchmarks" / "soak" / "chaos_disk.py"


def failing_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> FileJournal:
    journal = FileJournal(tmp_path / "gallery", RecordCipher(os.urandom(32)), "members", 128)
    journal.load()

    def refuse(self: RecordLog, plaintext: bytes) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(RecordLog, "append", refuse)
    return journal


def test_a_full_disk_refuses_the_change_as_resource_exhausted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = failing_journal(tmp_path, monkeypatch, errno.ENOSPC)
    with pytest.raises(ResourceExhausted, match=r"could not be written durably .* the data directory is full"):
        journal.append(LogWriter(), b"record")


def test_an_io_error_refuses_the_change_as_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = failing_journal(tmp_path, monkeypatch, errno.EIO)
    with pytest.raises(Unavailable, match=r"could not be written durably .* cannot be written"):
        journal.append(LogWriter(), b"record")


@pytest.fixture(scope="module")
def disk_full() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(CHAOS_DISK), "--tmpfs-mb", "16"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_an_enrollment_on_a_full_data_dir_is_refused_with_a_clear_status(disk_full: dict[str, Any]) -> None:
    assert disk_full["enroll_when_full"] == "RESOURCE_EXHAUSTED"
    assert "the data directory is full" in disk_full["enroll_when_full_details"]


def test_a_refused_enrollment_is_not_applied(disk_full: dict[str, Any]) -> None:
    expected = disk_full["templates_before"] + disk_full["templates_added_when_full"]
    assert disk_full["templates_when_full"] == expected


def test_identification_keeps_working_on_a_full_data_dir(disk_full: dict[str, Any]) -> None:
    assert disk_full["identified_while_full"] is True
    assert disk_full["errors"] == 0


def test_every_acknowledged_template_survives_a_restart_after_the_fault(disk_full: dict[str, Any]) -> None:
    assert disk_full["enroll_after_space_freed"] == "OK"
    assert disk_full["templates_after_restart"] == disk_full["templates_expected"]
