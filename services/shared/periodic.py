"""`PeriodicWorker`: one background thread that runs a task every interval, or sooner when woken.

It is the one start/loop/stop used by every service's background work (the SQLite checkpoint,
catalog and model refreshes, the outbox, matching's snapshots). A failing pass is logged and
the loop goes on: background work never dies of one bad pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from retailface.services.shared.errors import Unavailable

log = structlog.get_logger(__name__)


class PeriodicWorker:
    """Runs `task()` every `interval` seconds on a daemon thread; `wake()` runs it at once."""

    def __init__(self, name: str, interval: float, task: Callable[[], object], *, run_first: bool = False) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        self.name = name
        self.interval = interval
        self._task = task
        self._run_first = run_first  # one pass at start, before the first wait
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def stopping(self) -> bool:
        """True once stop() was called: a long pass can check it and return early."""
        return self._stop.is_set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        if self._run_first:
            self._run_once()
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._run_once()

    def _run_once(self) -> None:
        try:
            self._task()
        except Unavailable as outage:  # a dependency is down: expected, said once per pass without a traceback
            log.warning("periodic_task_unavailable", worker=self.name, error=str(outage))
        except Exception:
            log.exception("periodic_task_failed", worker=self.name)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
