"""`NotificationListener`: one thread that LISTENs on PostgreSQL channels and hands each notification on.

Replicas sharing one database learn of each other's writes this way: the writing transaction runs
`NOTIFY` (delivered at commit, and only then), and every replica's listener calls its handler. The
listener has a connection of its own, reconnects by itself after a lost connection, and calls
`on_connect` each time it is listening again (what was sent while it was away is gone: re-read it).
`on_poll` runs every `poll_seconds`, notifications or not: the polling fallback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial

import psycopg
import structlog
from prometheus_client import Counter
from psycopg import sql

from retailface.services.shared.errors import Unavailable, first_line

log = structlog.get_logger(__name__)

STOP_CHECK_SECONDS = 0.2  # how soon the listener notices stop()

LISTENER_RECONNECTS = Counter(
    "retailface_pg_listener_reconnects_total", "times a notification listener lost its connection", ["listener"]
)


class NotificationListener:
    """LISTENs on `channels`; `on_notice(channel, payload)` per notification, from the listener's thread."""

    def __init__(
        self,
        name: str,
        conninfo: str,
        channels: Sequence[str],
        on_notice: Callable[[str, str], object],
        *,
        on_connect: Callable[[], object] | None = None,
        on_poll: Callable[[], object] | None = None,
        poll_seconds: float = 1.0,
        reconnect_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self._conninfo = conninfo
        self._channels = list(channels)
        self._on_notice = on_notice
        self._on_connect = on_connect
        self._on_poll = on_poll
        self._poll_seconds = poll_seconds
        self._reconnect_seconds = reconnect_seconds
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self.backend_pid: int | None = None  # of the listening connection (what an operator would kill)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def wait_listening(self, timeout: float) -> bool:
        """True once connected and listening (False after `timeout` seconds)."""
        return self._listening.wait(timeout)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._listening.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as error:
                LISTENER_RECONNECTS.labels(self.name).inc()
                log.warning("pg_listener_disconnected", listener=self.name, error=first_line(error))
            self._listening.clear()
            self.backend_pid = None
            self._stop.wait(self._reconnect_seconds)

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True, application_name=f"retailface-{self.name}") as conn:
            for channel in self._channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.backend_pid = conn.info.backend_pid
            if self._on_connect is not None:  # listening now: nothing after this point is missed
                self._safely(self._on_connect)
            self._listening.set()
            log.info("pg_listener_listening", listener=self.name, channels=self._channels)
            polled = time.monotonic()
            while not self._stop.is_set():
                for notice in conn.notifies(timeout=min(self._poll_seconds, STOP_CHECK_SECONDS)):
                    self._safely(partial(self._on_notice, notice.channel, notice.payload))
                if self._on_poll is not None and time.monotonic() - polled >= self._poll_seconds:
                    polled = time.monotonic()
                    self._safely(self._on_poll)

    def _safely(self, handler: Callable[[], object]) -> None:
        try:
            handler()
        except Unavailable as outage:  # the database went away under the handler: the next poll retries
            log.warning("pg_listener_handler_unavailable", listener=self.name, error=str(outage))
        except Exception:  # a failed handler must not end the listener; the next poll retries
            log.exception("pg_listener_handler_failed", listener=self.name)
