"""Soak: the whole local stack (mutual TLS) under N cameras streaming the test videos, looped, for
a long time, with an overload phase at twice the offered rate near the end.

    python benchmarks/soak/soak.py [--minutes 20] [--cameras 8] [--fps 5] [--overload-minutes 2]

Every 10 s each service's RSS, open fds and threads (psutil) and its p50/p99 by stage and RPC (its
Prometheus histograms) are sampled; progress goes to stderr. Written to --out: samples.jsonl,
rss.png and p99.png. The last stdout line is one JSON object (docs/RELIABILITY.md, ## Soak).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from soak_load import CameraLoad, Recorder
from soak_report import Phases, plot, run_figures, service_figures
from soak_sampling import Sample, StackSampler
from soak_stack import ALLOWED, STORE, SoakStack, camera_ids, video_jpegs, video_of

from retailface.client import CameraClient
from retailface.devtools.localstack import Runtime, health_status

SAMPLE_EVERY_S = 10.0


@dataclasses.dataclass(frozen=True)
class SoakConfig:
    minutes: float = 20.0
    cameras: int = 8
    fps: float = 5.0
    overload_minutes: float = 2.0
    warmup_minutes: float = 3.0
    sample_every_s: float = SAMPLE_EVERY_S
    out: Path = Path("out/soak")
    runtime_dir: Path | None = None

    def phases(self) -> Phases:
        total = self.minutes * 60.0
        warmup = min(self.warmup_minutes * 60.0, total / 3.0)
        if self.overload_minutes <= 0:
            return Phases(warmup, total)
        overload = self.overload_minutes * 60.0
        tail = max(20.0, overload)  # normal load again after the overload: the recovery is measured there
        start = round(total - tail - overload, 1)
        if start < warmup + 10.0:
            raise SystemExit(f"--minutes {self.minutes} leaves no steady state before a {overload:.0f} s overload")
        return Phases(warmup, total, start, start + overload)


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class LoadRun:
    """A started stack, its cameras and the sampler thread: what soak and chaos runs share."""

    def __init__(
        self,
        config: SoakConfig,
        root: Path,
        extra_env: dict[str, str] | None = None,
        before_start: Callable[[Runtime], None] | None = None,
    ) -> None:
        self.config = config
        self.phases = config.phases()
        self.shop = SoakStack(root, camera_ids(config.cameras))
        self.stack = self.shop.start(extra_env, before_start)
        try:
            self.templates = self.shop.enroll_members()
        except BaseException:
            self.shop.stop()  # never leave the services running behind a failed start
            raise
        self.recorder = Recorder()
        self.stop_event = threading.Event()
        self.samples: list[Sample] = []
        self.sampler = StackSampler(self.shop.pids(), self.shop.metrics_ports())
        self._frames: dict[str, list[bytes]] = {}
        self.cameras: list[CameraLoad] = []

    def rate_at(self, t: float) -> float:
        return self.config.fps * (2.0 if self.phases.overloaded(t) else 1.0)

    def start_cameras(self) -> None:
        self.samples.append(self.sampler.sample(0.0))  # the stack before any load
        for index, camera_id in enumerate(self.shop.cameras):
            video = video_of(index)
            if video not in self._frames:
                self._frames[video] = video_jpegs(video, self.config.fps)
            client = CameraClient(self.shop.connection("camera"), camera_id, STORE)
            load = CameraLoad(client, self._frames[video], ALLOWED[video], self.rate_at, self.recorder, self.stop_event)
            self.cameras.append(load)
        self.recorder.start = time.monotonic()
        for load in self.cameras:
            load.start()

    def sample(self) -> Sample:
        sample = self.sampler.sample(self.recorder.now())
        self.samples.append(sample)
        return sample

    def progress(self, sample: Sample) -> None:
        answers, drops = self.recorder.snapshot()
        recent = [a.latency_ms for a in answers if a.sent >= sample.t - self.config.sample_every_s]
        p99 = f"{np.percentile(recent, 99):.0f}" if recent else "-"
        rss = " ".join(f"{name}={p.rss_mb:.0f}" for name, p in sample.processes.items() if p is not None)
        log(
            f"t={sample.t:5.0f}s frames={len(answers)} dropped={sum(n for _, n in drops)} "
            f"errors={sum(1 for a in answers if a.code)} p99={p99}ms rss_mb: {rss}"
        )

    def run_for(self, seconds: float) -> None:
        """Samples every sample_every_s until `seconds` since the start, printing progress."""
        while (left := seconds - self.recorder.now()) > 0:
            time.sleep(min(self.config.sample_every_s - self.recorder.now() % self.config.sample_every_s, left))
            self.progress(self.sample())

    def stop_cameras(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for load in self.cameras:
            load.join(max(0.1, deadline - time.monotonic()))

    def health(self) -> dict[str, str]:
        return {name: health_status(proc.target, self.stack.runtime) for name, proc in self.stack.processes.items()}

    def figures(self) -> dict[str, Any]:
        answers, drops = self.recorder.snapshot()
        phases = dataclasses.replace(self.phases, end_s=min(self.phases.end_s, self.recorder.now()))
        result = {
            "services": service_figures(self.samples, phases),
            **run_figures(answers, drops, phases, self.config.cameras, self.config.fps),
            "frames_sent": self.recorder.sent,
            "stream_breaks": len(self.recorder.gaps),
            "stream_errors": len(self.recorder.stream_errors),
            "cameras_still_streaming": sum(1 for load in self.cameras if load.is_alive()),
        }
        result["errors"] += result["stream_breaks"] + result["stream_errors"]
        return result

    def write(self, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        with (out / "samples.jsonl").open("w") as file:
            for sample in self.samples:
                file.write(json.dumps(dataclasses.asdict(sample)) + "\n")
        answers, _ = self.recorder.snapshot()
        return plot(self.samples, answers, self.phases, out)


def run(config: SoakConfig) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="retailface-soak-") as scratch:
        root = config.runtime_dir or Path(scratch)
        log(f"starting the stack (mTLS) with {config.cameras} cameras at {config.fps} fps each under {root}")
        load = LoadRun(config, root)
        try:
            log(f"enrolled {load.templates} template(s); streaming for {config.minutes} min; phases {load.phases}")
            load.start_cameras()
            load.run_for(load.phases.end_s)
            load.stop_cameras()
            load.progress(load.sample())
            health = load.health()
        finally:
            load.shop.stop()
        plots = load.write(config.out)
        figures = load.figures()
        return {
            "benchmark": "soak",
            "minutes": config.minutes,
            "cameras": config.cameras,
            "fps_per_camera": config.fps,
            "warmup_s": load.phases.warmup_s,
            "overload_s": [load.phases.overload_start_s, load.phases.overload_end_s],
            "templates_enrolled": load.templates,
            **figures,
            "health_at_end": health,
            "plots": [str(path) for path in plots],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=float, default=5.0, help="frames per second per camera (the offered rate)")
    parser.add_argument("--overload-minutes", type=float, default=2.0, help="twice the rate for this long; 0: none")
    parser.add_argument("--warmup-minutes", type=float, default=3.0, help="not in slopes or p99 (at most 1/3)")
    parser.add_argument("--out", type=Path, default=Path("out/soak"))
    parser.add_argument("--runtime-dir", type=Path, default=None, help="keep the stack's files (logs) here")
    args = parser.parse_args(argv)
    config = SoakConfig(
        minutes=args.minutes,
        cameras=args.cameras,
        fps=args.fps,
        overload_minutes=args.overload_minutes,
        warmup_minutes=args.warmup_minutes,
        out=args.out,
        runtime_dir=args.runtime_dir.resolve() if args.runtime_dir else None,
    )
    print(json.dumps(run(config)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
