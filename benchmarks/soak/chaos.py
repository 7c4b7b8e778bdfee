"""Chaos: under the soak load, each service in turn is SIGKILLed and restarted, SIGTERMed (a rolling
restart), and paused (SIGSTOP for longer than the deadlines, then SIGCONT).

    python benchmarks/soak/chaos.py [--faults kill,term,pause] [--services matching,...] [--cameras 3]

Per fault: the time until the member's camera gets identified frames again, the frames that got an
error status, the stream breaks, and whether every acknowledged enrollment is still there (one just
before the fault, one attempted during it). At the end: no visit event lost or duplicated, no offer
pushed twice, no wrong identity, no staff alert lost. Progress on stderr; the last stdout line is
one JSON object (docs/RELIABILITY.md, ## Chaos).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from chaos_checks import StaffScreen, check, stored, wait_for_relay
from soak import LoadRun, SoakConfig, log
from soak_stack import STORE, member_record

from retailface.client import AdminClient
from retailface.devtools.localstack import START_ORDER
from retailface.devtools.models import testdata_path

FAULTS = ("kill", "term", "pause")
PAUSE_S = 12.0  # longer than the gateway's deadlines (10 s downstream, 1 s for a gallery search)
RECOVERY_TIMEOUT_S = 90.0
PHOTOS = ("face_recognition/obama.jpg", "face_recognition/biden.jpg")


class Chaos:
    """Faults injected into a LoadRun's stack, one at a time, each followed by its recovery."""

    def __init__(self, load: LoadRun) -> None:
        self.load = load
        self.admin = AdminClient(load.shop.connection("admin"))
        self.expected_templates = self.templates()
        self._enrolled = 0

    def templates(self) -> int:
        return self.templates_when_reachable()[0]

    def templates_when_reachable(self) -> tuple[int, float]:
        """The gallery's template count, and the seconds ListGalleries stayed UNAVAILABLE first (the gateway's
        channel to a restarted backend reconnects with backoff)."""
        start = time.monotonic()
        while True:
            try:
                galleries = self.admin.galleries(timeout=10).galleries
                return sum(int(g.templates) for g in galleries), round(time.monotonic() - start, 1)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() - start > RECOVERY_TIMEOUT_S:
                    raise
                time.sleep(0.5)

    def enroll(self, timeout: float, unavailable_retry_s: float = 0.0) -> str:
        """One more member, enrolled with consent; counted as expected only when acknowledged (the status).

        UNAVAILABLE is retried for `unavailable_retry_s` (the gateway's channel reconnecting: the call never
        reached matching)."""
        self._enrolled += 1
        record = member_record(f"m{100 + self._enrolled:05d}", f"Chaos {self._enrolled}")
        photo = testdata_path(PHOTOS[self._enrolled % len(PHOTOS)]).read_bytes()
        deadline = time.monotonic() + unavailable_retry_s
        while True:
            try:
                response = self.admin.enroll(record, [photo], actor="chaos", timeout=timeout)
                break
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    return str(error.code().name)
                time.sleep(0.5)
        self.expected_templates += int(response.templates_added)
        return "OK"

    def _restart(self, service: str) -> None:
        self.load.stack.start(service)
        self.load.stack.wait_serving(service, timeout=RECOVERY_TIMEOUT_S)
        self.load.sampler.pids[service] = self.load.stack.processes[service].process.pid

    def _inject(self, service: str, fault: str) -> str:
        """The fault; returns the enrollment attempted while the service was down or paused."""
        stack = self.load.stack
        process = stack.processes[service].process
        if fault == "kill":
            process.kill()
            process.wait()
            during = self.enroll(timeout=3.0)
            self._restart(service)
        elif fault == "term":
            stack.stop(service)  # SIGTERM, then wait for the drain (SIGKILL after 30 s)
            during = self.enroll(timeout=3.0)
            self._restart(service)
        else:
            os.kill(process.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                during = self.enroll(timeout=3.0)
                time.sleep(max(0.0, PAUSE_S - (time.monotonic() - started)))
            finally:
                os.kill(process.pid, signal.SIGCONT)
        return during

    def _recovered_at(self, after: float) -> float | None:
        """When the member's camera got an identified, OK answer to a frame sent after `after`."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            answers, _ = self.load.recorder.snapshot()
            hits = [a.sent + a.latency_ms / 1000 for a in answers if a.identified and a.code == 0 and a.sent >= after]
            if hits:
                return min(hits)
            time.sleep(0.25)
        return None

    def fault(self, service: str, fault: str) -> dict[str, Any]:
        recorder = self.load.recorder
        before_status = self.enroll(timeout=15.0, unavailable_retry_s=RECOVERY_TIMEOUT_S)
        gaps_before = len(recorder.gaps)
        start = recorder.now()
        during_status = self._inject(service, fault)
        back = recorder.now()
        recovered = self._recovered_at(back)
        end = recovered if recovered is not None else recorder.now()
        answers, drops = recorder.snapshot()
        window = [a for a in answers if start <= a.sent <= end]
        templates, admin_unavailable_s = self.templates_when_reachable()
        result = {
            "service": service,
            "fault": fault,
            "fault_s": round(back - start, 1),
            "recover_s": round(recovered - start, 1) if recovered is not None else None,
            "error_frames": sum(1 for a in window if a.code != 0),
            "frames_in_window": len(window),
            "dropped_frames": sum(n for t, n in drops if start <= t <= end),
            "stream_breaks": len(recorder.gaps) - gaps_before,
            "wrong_identities": sum(1 for a in window if a.wrong_identity),
            "enroll_before": before_status,
            "enroll_during": during_status,
            "templates_expected": self.expected_templates,
            "templates_found": templates,
            "list_galleries_unavailable_s": admin_unavailable_s,
        }
        result["templates_lost"] = max(0, self.expected_templates - templates)
        # An enrollment whose caller timed out may still be applied once the service resumes: not an
        # acknowledged write, so not a loss, but counted; the next fault expects it to stay.
        result["templates_applied_unacknowledged"] = max(0, templates - self.expected_templates)
        self.expected_templates = max(self.expected_templates, templates)
        log(f"{service} {fault}: {json.dumps(result)}")
        return result


def run(config: SoakConfig, services: list[str], faults: list[str], settle_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="retailface-chaos-") as scratch:
        root = config.runtime_dir or Path(scratch)
        log(
            f"starting the stack (mTLS) with {config.cameras} cameras at {config.fps} fps; faults {faults} x {services}"
        )
        load = LoadRun(config, root)
        since = time.time()
        screen = StaffScreen(lambda: load.shop.connection("staff"), STORE)
        results: list[dict[str, Any]] = []
        try:
            screen.start()
            load.start_cameras()
            chaos = Chaos(load)
            time.sleep(settle_s)
            for service in services:
                for fault in faults:
                    results.append(chaos.fault(service, fault))
                    time.sleep(settle_s)
            wait_for_relay(settle_s)
            load.stop_cameras()
            wait_for_relay(2.0)
            screen.stop()
            health = load.health()
            recorder = load.recorder
            invariants = check(
                recorder.events,
                recorder.offers,
                recorder.alerts,
                screen.received,
                stored(load.stack.runtime.data_dir("personalization"), since),
            )
        finally:
            screen.stop()
            load.shop.stop()
        answers, _ = load.recorder.snapshot()
        return {
            "benchmark": "chaos",
            "cameras": config.cameras,
            "fps_per_camera": config.fps,
            "faults": results,
            "frames": len(answers),
            "wrong_identities": sum(1 for a in answers if a.wrong_identity),
            "identified_frames": sum(1 for a in answers if a.identified),
            "templates_lost": sum(r["templates_lost"] for r in results),
            "staff_stream_breaks": screen.breaks,
            **invariants,
            "health_at_end": health,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", default=",".join(START_ORDER))
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of plain load between faults")
    parser.add_argument("--runtime-dir", type=Path, default=None, help="keep the stack's files (logs) here")
    args = parser.parse_args(argv)
    faults = args.faults.split(",")
    if unknown := set(faults) - set(FAULTS):
        parser.error(f"unknown faults {sorted(unknown)}; expected {', '.join(FAULTS)}")
    config = SoakConfig(
        minutes=600.0,  # bounded by the faults, not by a duration
        cameras=args.cameras,
        fps=args.fps,
        overload_minutes=0.0,
        runtime_dir=args.runtime_dir.resolve() if args.runtime_dir else None,
    )
    print(json.dumps(run(config, args.services.split(","), faults, args.settle)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
