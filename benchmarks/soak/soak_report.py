"""What a soak run measured, as figures: per-service memory, fds and threads (start, end, slope
after the warm-up), end-to-end latency, errors and drops, the overload phase and the recovery from it;
and the RSS and p99 plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from soak_load import OK, Answer
from soak_sampling import Sample

# The recovery rule: p99 of the frames sent in a window back under max(RECOVERY_FACTOR x the
# pre-overload p99, that p99 + RECOVERY_MARGIN_MS), and no frame dropped in it.
RECOVERY_WINDOW_S = 5.0
RECOVERY_STEP_S = 0.5
RECOVERY_FACTOR = 1.5
RECOVERY_MARGIN_MS = 100.0


@dataclass(frozen=True)
class Phases:
    """The run's timeline in seconds since its start."""

    warmup_s: float
    end_s: float
    overload_start_s: float | None = None
    overload_end_s: float | None = None

    def overloaded(self, t: float) -> bool:
        return self.overload_start_s is not None and self.overload_start_s <= t < (self.overload_end_s or 0.0)

    def normal(self, t: float) -> bool:
        """After the warm-up and before the overload (the steady state the figures describe)."""
        before_overload = self.overload_start_s is None or t < self.overload_start_s
        return self.warmup_s <= t and before_overload


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)), 1) if values else None


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    t = np.asarray([p[0] for p in points]) / 60.0
    v = np.asarray([p[1] for p in points])
    return round(float(np.polyfit(t, v, 1)[0]), 3)


def service_figures(samples: Sequence[Sample], phases: Phases) -> dict[str, dict[str, Any]]:
    """Per service: at the start (before any load), after the warm-up, at the end; RSS slope in the steady state."""
    services = sorted({name for sample in samples for name in sample.processes})
    out: dict[str, dict[str, Any]] = {}
    for name in services:
        series = [(s.t, p) for s in samples if (p := s.processes.get(name)) is not None]
        if not series:
            continue
        first, last = series[0][1], series[-1][1]
        warm = [p for t, p in series if t >= phases.warmup_s] or [last]
        steady = [(t, p.rss_mb) for t, p in series if phases.normal(t)]
        out[name] = {
            "rss_mb_start": round(first.rss_mb, 1),
            "rss_mb_after_warmup": round(warm[0].rss_mb, 1),
            "rss_mb_end": round(last.rss_mb, 1),
            "rss_mb_max": round(max(p.rss_mb for _, p in series), 1),
            "rss_slope_mb_per_min": slope_per_minute(steady),
            # A step (an allocator's high-water mark) and a leak fit the same slope; a leak keeps it here too.
            "rss_slope_mb_per_min_second_half": slope_per_minute(steady[len(steady) // 2 :]),
            "fds_start": first.fds,
            "fds_after_warmup": warm[0].fds,
            "fds_end": last.fds,
            "fds_max": max(p.fds for _, p in series),
            "threads_start": first.threads,
            "threads_after_warmup": warm[0].threads,
            "threads_end": last.threads,
            "threads_max": max(p.threads for _, p in series),
        }
    return out


def _window_ok(answers: Sequence[Answer], drops: Sequence[tuple[float, int]], start: float, limit_ms: float) -> bool:
    inside = [a.latency_ms for a in answers if start <= a.sent < start + RECOVERY_WINDOW_S]
    dropped = sum(n for t, n in drops if start <= t < start + RECOVERY_WINDOW_S)
    return bool(inside) and dropped == 0 and float(np.percentile(inside, 99)) <= limit_ms


def recovery_seconds(
    answers: Sequence[Answer], drops: Sequence[tuple[float, int]], phases: Phases, baseline_p99_ms: float
) -> float | None:
    """Seconds from the overload's end until a window of frames is back to the normal p99 with no drops."""
    if phases.overload_end_s is None:
        return None
    limit = max(baseline_p99_ms * RECOVERY_FACTOR, baseline_p99_ms + RECOVERY_MARGIN_MS)
    start = phases.overload_end_s
    while start + RECOVERY_WINDOW_S <= phases.end_s:
        if _window_ok(answers, drops, start, limit):
            return round(start - phases.overload_end_s, 1)
        start += RECOVERY_STEP_S
    return None


def run_figures(
    answers: Sequence[Answer],
    drops: Sequence[tuple[float, int]],
    phases: Phases,
    cameras: int,
    fps: float,
) -> dict[str, Any]:
    normal = [a for a in answers if phases.normal(a.sent)]
    normal_ms = [a.latency_ms for a in normal]
    normal_drops = sum(n for t, n in drops if phases.normal(t))
    normal_seconds = (phases.overload_start_s or phases.end_s) - phases.warmup_s
    figures: dict[str, Any] = {
        "frames": len(answers),
        "errors": sum(1 for a in answers if a.code != OK),
        "wrong_identities": sum(1 for a in answers if a.wrong_identity),
        "identified_frames": sum(1 for a in answers if a.identified),
        "dropped_frames": sum(n for _, n in drops),
        "dropped_frames_normal": normal_drops,
        "e2e_p50_ms": percentile(normal_ms, 50),
        "e2e_p99_ms": percentile(normal_ms, 99),
        "e2e_max_ms": round(max(normal_ms), 1) if normal_ms else None,
        "offered_fps_total": round(cameras * fps, 2),
        "served_fps_normal": round(len(normal) / normal_seconds, 2) if normal_seconds > 0 else None,
    }
    # The offered rate is sustainable when the steady state kept up with it: nothing dropped.
    figures["sustainable"] = normal_drops == 0
    if phases.overload_start_s is not None and phases.overload_end_s is not None:
        during = [a.latency_ms for a in answers if phases.overloaded(a.sent)]
        seconds = phases.overload_end_s - phases.overload_start_s
        baseline = figures["e2e_p99_ms"] or 0.0
        figures["overload"] = {
            "offered_fps_total": round(2 * cameras * fps, 2),
            "seconds": round(seconds, 1),
            "dropped_frames": sum(n for t, n in drops if phases.overload_start_s <= t < phases.overload_end_s),
            "served_fps": round(len(during) / seconds, 2) if seconds > 0 else None,
            "e2e_p99_ms": percentile(during, 99),
            "e2e_max_ms": round(max(during), 1) if during else None,
            "recovery_s": recovery_seconds(answers, drops, phases, baseline),
            "recovery_rule": (
                f"first {RECOVERY_WINDOW_S:.0f} s window of frames with p99 <= max({RECOVERY_FACTOR}x, "
                f"+{RECOVERY_MARGIN_MS:.0f} ms) the pre-overload p99 and no drops"
            ),
        }
    return figures


def plot(samples: Sequence[Sample], answers: Sequence[Answer], phases: Phases, out: Path) -> list[Path]:
    """rss.png (each service's RSS) and p99.png (each service's stage p99s and the end-to-end p99), over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    services = sorted({name for sample in samples for name in sample.processes})

    def shade(axis: Any) -> None:
        if phases.overload_start_s is not None and phases.overload_end_s is not None:
            axis.axvspan(phases.overload_start_s / 60, phases.overload_end_s / 60, color="orange", alpha=0.2)
        axis.axvline(phases.warmup_s / 60, color="grey", linestyle=":", linewidth=1)

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=80)
    for name in services:
        points = [(s.t / 60, p.rss_mb) for s in samples if (p := s.processes.get(name)) is not None]
        axis.plot([p[0] for p in points], [p[1] for p in points], label=name)
    shade(axis)
    axis.set(xlabel="minutes", ylabel="RSS (MB)", title="RSS per service (shaded: overload; dotted: warm-up end)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    rss = out / "rss.png"
    figure.savefig(rss)
    plt.close(figure)

    figure, axes = plt.subplots(len(services) + 1, 1, figsize=(8, 2.0 * (len(services) + 1)), dpi=80, sharex=True)
    bins: dict[int, list[float]] = {}
    for answer in answers:
        bins.setdefault(int(answer.sent // 10), []).append(answer.latency_ms)
    keys = sorted(bins)
    axes[0].plot([k * 10 / 60 for k in keys], [np.percentile(bins[k], 99) for k in keys], color="black")
    axes[0].set(ylabel="ms", title="end-to-end p99 (client, per 10 s)")
    shade(axes[0])
    for axis, name in zip(axes[1:], services, strict=True):
        series = sorted({key for s in samples for key in s.latency_ms.get(name, {}) if "Stream" not in key})
        for key in series:
            points = [(s.t / 60, v[1]) for s in samples if (v := s.latency_ms.get(name, {}).get(key))]
            axis.plot([p[0] for p in points], [p[1] for p in points], label=key)
        axis.set(ylabel="ms", title=f"{name}: p99 by stage / RPC (per 10 s)")
        if series:
            axis.legend(fontsize=6, ncol=3)
        shade(axis)
    axes[-1].set_xlabel("minutes")
    figure.tight_layout()
    p99 = out / "p99.png"
    figure.savefig(p99)
    plt.close(figure)
    return [rss, p99]
