"""Opportunistic batching of backend calls across cameras.

Callers (one per camera batch) submit items; a worker sends everything that is waiting as one
call. Nothing ever waits for a batch to fill: when the backend is idle, a lone request goes out at
once, so batching never adds latency; while a call is in flight, the requests of other cameras
queue up and go out together in the next call, which saves a round trip and per-call work each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import Histogram

Item = TypeVar("Item")
Result = TypeVar("Result")

BATCH_SIZE = Histogram(
    "retailface_gateway_backend_batch_items",
    "items per batched backend call (several cameras' work in one call)",
    ["backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


@dataclass
class _Request(Generic[Item, Result]):
    items: list[Item]
    future: Future[list[Result]] = field(default_factory=Future)


class Batcher(Generic[Item, Result]):
    """Merges concurrent submissions into calls of at most `max_items` items, on `workers` threads.

    `call(items) -> results` must return one result per item, in order; an exception fails
    every request of that call.
    """

    def __init__(
        self, name: str, call: Callable[[list[Item]], Sequence[Result]], max_items: int, workers: int = 1
    ) -> None:
        self._name = name
        self._call = call
        self._max_items = max_items
        self._pending: list[_Request[Item, Result]] = []
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, items: list[Item]) -> list[Result]:
        """Blocks until the items' results are back (or raises the call's exception)."""
        if not items:
            return []
        request: _Request[Item, Result] = _Request(list(items))
        with self._ready:
            if self._closed:
                raise RuntimeError(f"the {self._name} batcher is closed")
            self._pending.append(request)
            self._ready.notify()
        return request.future.result()

    def _take(self) -> list[_Request[Item, Result]] | None:
        with self._ready:
            while not self._pending and not self._closed:
                self._ready.wait()
            if not self._pending:
                return None
            taken, count = [], 0
            # A request larger than max_items goes alone; it is never split across calls.
            while self._pending and (not taken or count + len(self._pending[0].items) <= self._max_items):
                request = self._pending.pop(0)
                taken.append(request)
                count += len(request.items)
            return taken

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            items = [item for request in taken for item in request.items]
            BATCH_SIZE.labels(self._name).observe(len(items))
            try:
                results = list(self._call(items))
                if len(results) != len(items):
                    raise RuntimeError(f"{self._name}: {len(results)} results for {len(items)} items")
            except BaseException as error:  # handed to every waiting caller
                for request in taken:
                    request.future.set_exception(error)
                continue
            start = 0
            for request in taken:
                request.future.set_result(results[start : start + len(request.items)])
                start += len(request.items)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
