"""Samples of the services as processes (RSS, open file descriptors, threads, psutil) and as
servers (p50/p99 by stage and RPC, from the histograms on their Prometheus endpoints)."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil
from prometheus_client.parser import text_string_to_metric_families

HISTOGRAMS = ("retailface_stage_duration_seconds", "retailface_rpc_duration_seconds")


@dataclass(frozen=True)
class ProcessSample:
    rss_mb: float
    fds: int
    threads: int


def process_sample(pid: int) -> ProcessSample | None:
    """The process's RSS, fds and threads now; None when it is gone (killed by a chaos fault)."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            return ProcessSample(process.memory_info().rss / 2**20, process.num_fds(), process.num_threads())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


Buckets = dict[str, list[tuple[float, float]]]  # series name -> [(upper bound, cumulative count)]


def scrape(port: int, timeout: float = 2.0) -> Buckets:
    """The latency histograms of one service, by series: "stage:<stage>" and "rpc:<method>" (OK calls)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    series: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name not in HISTOGRAMS:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            labels = sample.labels
            if "stage" in labels:
                key = f"stage:{labels['stage']}"
            elif labels.get("code", "OK") == "OK":
                key = f"rpc:{labels['method']}"
            else:
                continue
            bound = math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"])
            series.setdefault(key, []).append((bound, float(sample.value)))
    for points in series.values():
        points.sort()
    return series


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile (seconds) of a cumulative histogram, interpolated inside its bucket as Prometheus does."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def delta(now: Buckets, before: Buckets) -> Buckets:
    """The observations between two scrapes (a restarted service starts over: its counts are taken as they are)."""
    out: Buckets = {}
    for key, points in now.items():
        previous = dict(before.get(key, []))
        diffs = [(bound, count - previous.get(bound, 0.0)) for bound, count in points]
        if any(count < 0 for _, count in diffs):
            diffs = points
        out[key] = diffs
    return out


@dataclass
class Sample:
    """One 10 s sample of the whole stack."""

    t: float  # seconds since the run's start
    processes: dict[str, ProcessSample | None]
    latency_ms: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # service -> series -> p50,p99


class StackSampler:
    """Takes a Sample of every service; latencies are over the interval since the previous sample."""

    def __init__(self, pids: Mapping[str, int], metrics_ports: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.metrics_ports = dict(metrics_ports)
        self._previous: dict[str, Buckets] = {}

    def sample(self, t: float) -> Sample:
        result = Sample(t, {name: process_sample(pid) for name, pid in self.pids.items()})
        for name, port in self.metrics_ports.items():
            try:
                current = scrape(port)
            except OSError:
                continue
            interval = delta(current, self._previous.get(name, {}))
            self._previous[name] = current
            latencies = {}
            for key, buckets in interval.items():
                p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
                if p50 is not None and p99 is not None:
                    latencies[key] = (p50 * 1000.0, p99 * 1000.0)
            result.latency_ms[name] = latencies
        return result
