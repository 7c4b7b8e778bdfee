"""Disk faults on matching's data directory, under a camera's load: the directory is a small tmpfs
(root only), filled up while the stack runs.

    python benchmarks/soak/chaos_disk.py [--tmpfs-mb 16]

Asserted: an enrollment that cannot be made durable is refused with a clear status and not
acknowledged (the gallery keeps its template count); identification (reads) keeps working while
the disk is full; once space is back an enrollment is acknowledged again; and after a restart the
gallery holds exactly the acknowledged templates. A failing fsync is not injected (it needs a
device-mapper or FUSE layer this machine does not provide). Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from soak import LoadRun, SoakConfig, log
from soak_stack import member_record

from retailface.client import AdminClient
from retailface.devtools.localstack import Runtime
from retailface.devtools.models import testdata_path

MAX_ENROLLS_WHEN_FULL = 20
FILL_CHUNKS = (1 << 20, 1 << 12, 1)  # big writes first, then pages, then bytes: no free byte is left


def fill(directory: Path) -> int:
    """Writes a filler file until the file system has no byte left; returns the bytes written."""
    written = 0
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in FILL_CHUNKS:
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


class DiskFault:
    def __init__(self, load: LoadRun) -> None:
        self.load = load
        self.admin = AdminClient(load.shop.connection("admin"))
        self.directory = load.stack.runtime.data_dir("matching")

    def templates(self, retry_s: float = 30.0) -> int:
        """The gallery's template count (retried while the gateway reconnects to a restarted matching)."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                return sum(int(g.templates) for g in self.admin.galleries(timeout=10).galleries)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def enroll(self, member_id: str) -> tuple[str, str, int]:
        photo = testdata_path("face_recognition/obama.jpg").read_bytes()
        try:
            response = self.admin.enroll(member_record(member_id, "Disk"), [photo], actor="chaos", timeout=15)
        except grpc.RpcError as error:
            return error.code().name, error.details() or "", 0
        return "OK", "", int(response.templates_added)

    def identified_after(self, t: float, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answers, _ = self.load.recorder.snapshot()
            if any(a.identified and a.code == 0 and a.sent >= t for a in answers):
                return True
            time.sleep(0.25)
        return False

    def run(self) -> dict[str, Any]:
        recorder = self.load.recorder
        before = self.templates()
        filled = fill(self.directory)
        full_at = recorder.now()
        # A record can still fit in the last page of the log's segment: enroll until one is refused.
        acknowledged, added_full, code, details = 0, 0, "OK", ""
        while code == "OK" and acknowledged < MAX_ENROLLS_WHEN_FULL:
            code, details, added = self.enroll(f"m{201 + acknowledged:05d}")
            if code == "OK":
                acknowledged, added_full = acknowledged + 1, added_full + added
        templates_full = self.templates()
        reads = self.identified_after(full_at)
        log(f"disk full ({filled} bytes of filler): {acknowledged} enrolled, then {code} {details!r}; reads {reads}")
        (self.directory / "filler").unlink()
        code_after, _, added_after = self.enroll("m00299")
        expected = before + added_full + added_after
        stack = self.load.stack
        stack.stop("matching")
        stack.start("matching")
        stack.wait_serving("matching", timeout=90)
        return {
            "tmpfs_bytes_filled": filled,
            "templates_before": before,
            "enrolls_acknowledged_when_full": acknowledged,
            "enroll_when_full": code,
            "enroll_when_full_details": details,
            "templates_added_when_full": added_full,
            "templates_when_full": templates_full,
            "identified_while_full": reads,
            "enroll_after_space_freed": code_after,
            "templates_expected": expected,
            "templates_after_restart": self.templates(),
        }


def mount_tmpfs(megabytes: float) -> Any:
    def before_start(runtime: Runtime) -> None:
        directory = runtime.data_dir("matching")
        size = f"size={int(megabytes * 1024)}k"
        subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(directory)], check=True, capture_output=True)

    return before_start


def run(megabytes: float) -> dict[str, Any]:
    config = SoakConfig(minutes=600.0, cameras=1, fps=2.0, overload_minutes=0.0)
    with tempfile.TemporaryDirectory(prefix="retailface-disk-") as scratch:
        root = Path(scratch)
        load: LoadRun | None = None
        try:
            load = LoadRun(config, root, before_start=mount_tmpfs(megabytes))
            load.start_cameras()
            fault = DiskFault(load)
            if not fault.identified_after(0.0, timeout=60):
                raise SystemExit("the member is never identified: nothing to check reads against")
            result = fault.run()
            load.stop_cameras()
            result["health_at_end"] = load.health()
            result["errors"] = sum(1 for a in load.recorder.snapshot()[0] if a.code != 0)
        finally:
            if load is not None:
                load.shop.stop()
            subprocess.run(["umount", str(root / "runtime" / "data" / "matching")], check=False, capture_output=True)
    return {"benchmark": "chaos-disk", "tmpfs_mb": megabytes, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tmpfs-mb", type=float, default=16.0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.tmpfs_mb)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
