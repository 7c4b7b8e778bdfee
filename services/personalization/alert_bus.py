"""In-process publish/subscribe of staff alerts, per store (what StreamStaffAlerts reads)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable

import structlog

from retailface.services.personalization.domain import StaffAlert

log = structlog.get_logger(__name__)


class Subscription:
    def __init__(self, bus: AlertBus, store_id: str, kinds: frozenset[str], capacity: int) -> None:
        self.store_id = store_id
        self.kinds = kinds
        self._bus = bus
        self._queue: queue.Queue[StaffAlert | None] = queue.Queue(maxsize=capacity)
        self.closed = False

    def wants(self, alert: StaffAlert) -> bool:
        return alert.store_id == self.store_id and (not self.kinds or alert.kind in self.kinds)

    def offer(self, alert: StaffAlert | None) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            # A stuck screen must not hold up the others: drop its oldest alert, keep the newest.
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            self._queue.put_nowait(alert)
            log.warning("staff_alert_dropped", store_id=self.store_id)

    def get(self, timeout: float) -> StaffAlert | None:
        """The next alert, or None after `timeout` seconds or when the bus closed."""
        try:
            alert = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if alert is None:
            self.closed = True
        return alert

    def close(self) -> None:
        self._bus.unsubscribe(self)


class AlertBus:
    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()
        self._closed = False

    def subscribe(self, store_id: str, kinds: Iterable[str] = ()) -> Subscription:
        subscription = Subscription(self, store_id, frozenset(kinds), self._capacity)
        with self._lock:
            if self._closed:
                subscription.offer(None)
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)

    def publish(self, alerts: Iterable[StaffAlert]) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for alert in alerts:
            for subscription in subscriptions:
                if subscription.wants(alert):
                    subscription.offer(alert)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def close(self) -> None:
        """Ends every stream (server shutdown)."""
        with self._lock:
            self._closed = True
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.offer(None)
