"""A camera's frame stream that outlives its connections.

`StreamFrames` is one long call. The gateway lets it run past the connection-age limit for a grace
period (RETAILFACE_MAX_CONNECTION_AGE_GRACE_SECONDS), but a call still ends when the gateway pod
restarts, drains, or the network drops. `ResumingStream` then opens a new call with backoff and
goes on with the camera's next batches; the frames keep their sequence numbers (they come from
the caller's batches), and the gateway keeps the camera's tracks, which are the camera's, not the
call's. Batches that were sent but not answered when the call broke are not sent again (the
gateway may have processed them); each break is reported as a `StreamGap`. A break after the last
batch was sent ends the iteration without the gateway's final result: the gateway ends the
camera's tracks, and sends their events, once the camera stays idle.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import grpc

from retailface.v1 import gateway_pb2

# A call that ends with one of these is resumed; any other status is the caller's problem.
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL})
END_OF_STREAM = "end-of-stream"  # request id of the gateway's final result of a stream


@dataclass(frozen=True)
class StreamGap:
    """One break of the stream: when, why, and which batches went unanswered."""

    at: float  # time.time() of the break
    code: str  # the status that ended the call
    details: str
    unanswered: tuple[str, ...]  # request ids of the batches sent but not answered


@dataclass(frozen=True)
class Backoff:
    first: float = 0.2
    factor: float = 2.0
    most: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.most)


Call = Callable[[Iterator[gateway_pb2.FrameBatch]], Iterator[gateway_pb2.FrameBatchResult]]


class ResumingStream:
    """Iterates the results of `batches` sent over as many `StreamFrames` calls as it takes."""

    def __init__(
        self,
        call: Call,
        batches: Iterable[gateway_pb2.FrameBatch],
        backoff: Backoff | None = None,
        max_breaks: int | None = None,
        on_gap: Callable[[StreamGap], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._call = call
        self._source = iter(batches)
        self._backoff = backoff or Backoff()
        self._max_breaks = max_breaks
        self._on_gap = on_gap
        self._sleep = sleep
        self._lock = threading.Lock()  # the in-flight bookkeeping
        self._source_lock = threading.Lock()  # one call at a time reads the caller's batches
        self._exhausted = False
        self._in_flight: deque[str] = deque()
        self.gaps: list[StreamGap] = []

    def _requests(self) -> Iterator[gateway_pb2.FrameBatch]:
        """The caller's batches, shared by the successive calls (each batch is sent once)."""
        while True:
            # The source may block (a paced reader waits for answers): never while holding `_lock`,
            # which the answers need.
            with self._source_lock:
                batch = next(self._source, None)
            with self._lock:
                if batch is None:
                    self._exhausted = True
                    return
                self._in_flight.append(batch.request_id)
            yield batch

    def __iter__(self) -> Iterator[gateway_pb2.FrameBatchResult]:
        delays = self._backoff.delays()
        while True:
            try:
                for result in self._call(self._requests()):
                    delays = self._backoff.delays()  # answered: the next break starts over
                    with self._lock:
                        if result.request_id in self._in_flight:
                            self._in_flight.remove(result.request_id)
                    yield result
                return
            except grpc.RpcError as error:
                code = error.code()
                if code not in RESUMABLE:
                    raise
                with self._lock:
                    unanswered = tuple(self._in_flight)
                    self._in_flight.clear()
                    finished = self._exhausted
                gap = StreamGap(time.time(), code.name, error.details() or "", unanswered)
                self.gaps.append(gap)
                if self._on_gap is not None:
                    self._on_gap(gap)
                if self._max_breaks is not None and len(self.gaps) > self._max_breaks:
                    raise
                if finished:  # every batch was sent: the gateway ends the camera's tracks when it stays idle
                    return
                self._sleep(next(delays))
