"""What one replica changed that the others must apply: catalog snapshots and staff alerts.

Several personalization replicas share one PostgreSQL database, but each keeps in memory what its
requests read most (the catalog, stock and campaign snapshot, catalog_cache.py) and serves the
staff screens connected to it (alert_bus.py). A write on one replica must reach the others:

- the writing transaction announces the change with `NOTIFY` (`ChangeFeed.catalog_changed`,
  `stock_changed`, `alerts_raised`); PostgreSQL delivers it when, and only if, the transaction commits;
- every replica runs one listener (services/shared/pglisten.py, a thread with a connection of its own),
  which hands each notification from another replica to the handler of its channel: reload the catalog
  or the stock of some items, or load the alerts by id and publish them on the local bus;
- the listener reconnects by itself after a lost connection, and then runs the reconnect handlers
  (the catalog is reloaded whole: notifications sent while it was away are gone). The periodic
  catalog reload (RETAILFACE_PERSONALIZATION_CATALOG_RELOAD_SECONDS) stays as the fallback.

A notification names its origin replica, which ignores its own: it applied the change already. On
SQLite (one process) every method here does nothing, and `start()` starts no thread.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import Connection, Engine

from retailface.services.personalization import dialects
from retailface.services.shared.pglisten import NotificationListener

log = structlog.get_logger(__name__)

CATALOG = "retailface_personalization_catalog"
ALERTS = "retailface_personalization_alerts"
MAX_SKUS_PER_NOTICE = 200  # more changed items than this: the other replicas reload the whole catalog

CHANGES_RECEIVED = Counter(
    "retailface_personalization_changes_received_total", "changes announced by other replicas and applied", ["channel"]
)

Handler = Callable[[Mapping[str, Any]], None]


class ChangeFeed:
    """Announces this replica's changes and applies the other replicas' (PostgreSQL; inert on SQLite)."""

    def __init__(
        self,
        engine: Engine,
        *,
        reconnect_seconds: float = 1.0,
        poll_seconds: float = 0.2,
        origin: str = "",
    ) -> None:
        self.origin = origin or uuid.uuid4().hex
        self.enabled = engine.dialect.name == "postgresql"
        # libpq's URI form of the same URL (sslmode and the other parameters pass as they are).
        url = engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False) if self.enabled else ""
        self._reconnect_seconds = reconnect_seconds
        self._poll_seconds = poll_seconds
        self._handlers: dict[str, Handler] = {}
        self._reconnect_handlers: list[Callable[[], object]] = []
        self._listener: NotificationListener | None = None

    # The writing side: inside the caller's write transaction, delivered at commit.

    def catalog_changed(self, conn: Connection) -> None:
        """Products, stock or campaigns changed: the other replicas reload their catalog."""
        self._announce(conn, CATALOG, {})

    def stock_changed(self, conn: Connection, store_id: str, skus: Iterable[str]) -> None:
        """Some items' stock at one store changed: the other replicas re-read just those."""
        changed = sorted(set(skus))
        if len(changed) > MAX_SKUS_PER_NOTICE:
            self.catalog_changed(conn)
            return
        self._announce(conn, CATALOG, {"store_id": store_id, "skus": changed})

    def alerts_raised(self, conn: Connection, alert_ids: Iterable[str]) -> None:
        """Staff alerts were stored: the other replicas publish them to the screens connected to them."""
        ids = list(alert_ids)
        if ids:
            self._announce(conn, ALERTS, {"alert_ids": ids})

    def _announce(self, conn: Connection, channel: str, payload: Mapping[str, Any]) -> None:
        if self.enabled:
            dialects.notify(conn, channel, {"origin": self.origin, **payload})

    # The listening side.

    def on(self, channel: str, handler: Handler) -> None:
        """Calls `handler(payload)` for each change another replica announces on `channel`."""
        self._handlers[channel] = handler

    def on_reconnect(self, handler: Callable[[], object]) -> None:
        """Calls `handler()` each time the listener (re)connects: what it may have missed, it re-reads."""
        self._reconnect_handlers.append(handler)

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.listening

    @property
    def backend_pid(self) -> int | None:
        """The listening connection's server process (what an operator would kill)."""
        return self._listener.backend_pid if self._listener is not None else None

    def wait_listening(self, timeout: float) -> bool:
        """True once the listener is connected and listening (False after `timeout` seconds)."""
        return self._listener is not None and self._listener.wait_listening(timeout)

    def start(self) -> None:
        if self.enabled and self._listener is None:
            self._listener = NotificationListener(
                "personalization-changes",
                self._conninfo,
                list(self._handlers),
                self._dispatch,
                on_connect=self._reconnected,
                poll_seconds=self._poll_seconds,
                reconnect_seconds=self._reconnect_seconds,
            )
            self._listener.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._listener is not None:
            self._listener.stop(timeout)
            self._listener = None

    def _reconnected(self) -> None:
        for handler in self._reconnect_handlers:  # listening now: nothing after this point is missed
            self._safely(handler)

    def _dispatch(self, channel: str, text: str) -> None:
        handler = self._handlers.get(channel)
        try:
            payload = json.loads(text)
        except ValueError:
            log.warning("change_notice_unreadable", channel=channel)
            return
        if handler is None or payload.get("origin") == self.origin:
            return
        CHANGES_RECEIVED.labels(channel).inc()
        self._safely(lambda: handler(payload))

    @staticmethod
    def _safely(handler: Callable[[], object]) -> None:
        try:
            handler()
        except Exception:  # a failed reload must not end the listener; the periodic reload catches up
            log.exception("change_handler_failed")
