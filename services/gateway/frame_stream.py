"""A camera's frame stream: read on its own thread into a bounded queue, answered batch by batch.

When the pipeline falls behind the camera, the oldest queued batches are dropped (and counted)
so that memory and latency stay bounded: a camera wants what it sees now, not a backlog.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

import grpc

from retailface.services.gateway.pipeline import FramePipeline
from retailface.services.shared.errors import ServiceError
from retailface.v1 import common_pb2, gateway_pb2

Item = TypeVar("Item")

END_OF_STREAM = "end-of-stream"  # request id of the last result of a stream, with its tracks' final events


def _one(_: object) -> int:
    return 1


class FrameStream(Generic[Item]):
    """Reads `source` on a reader thread into a queue of at most `capacity` items.

    When the queue is full, the oldest item is dropped for the new one; `size(item)` is what a
    dropped item adds to `dropped` (frames of a batch, say). `items()` hands the queued items
    out oldest first; an error raised by the source is raised by `items()` once the items read
    before it have been handed out.
    """

    def __init__(
        self, source: Iterable[Item], capacity: int, size: Callable[[Item], int] = _one, name: str = "stream-reader"
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._source = source
        self._capacity = capacity
        self._size = size
        self._queue: deque[Item] = deque()
        self._ready = threading.Condition()
        self._dropped = 0
        self._ended = False
        self._error: Exception | None = None
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)

    def start(self) -> FrameStream[Item]:
        self._reader.start()
        return self

    @property
    def dropped(self) -> int:
        with self._ready:
            return self._dropped

    def __len__(self) -> int:
        """Items queued now."""
        with self._ready:
            return len(self._queue)

    def _read(self) -> None:
        try:
            for item in self._source:
                with self._ready:
                    if len(self._queue) >= self._capacity:
                        self._dropped += self._size(self._queue.popleft())
                    self._queue.append(item)
                    self._ready.notify()
        except Exception as error:  # handed to the consumer, after the items read before it
            with self._ready:
                self._error = error
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify()

    def items(self, alive: Callable[[], bool] = lambda: True, poll_seconds: float = 1.0) -> Iterator[tuple[Item, int]]:
        """Each queued item with the count dropped so far, oldest first.

        Ends when the source has ended and every item was handed out, or as soon as `alive()`
        is False (checked at least every `poll_seconds` while waiting).
        """
        while alive():
            with self._ready:
                if not self._queue and not self._ended:
                    self._ready.wait(timeout=poll_seconds)
                if self._queue:
                    item, dropped = self._queue.popleft(), self._dropped
                elif not self._ended:
                    continue
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield item, dropped


def serve_stream(
    pipeline: FramePipeline,
    requests: Iterable[gateway_pb2.FrameBatch],
    capacity: int,
    alive: Callable[[], bool],
) -> Iterator[gateway_pb2.FrameBatchResult]:
    """StreamFrames: one result per batch taken, then one last result with the tracks' final events.

    Each result says how many frames were dropped so far. A batch that fails answers for itself
    (every frame with the error's status) and the stream goes on. When the camera closes its
    stream, its tracks end and their events (zone dwell, checkout, anonymous visits) come back in
    the last result, whose request id is END_OF_STREAM. When the call breaks instead (connection
    lost, gateway draining), the tracks are the camera's, not the call's: they go on when the
    camera resumes on a new call, and end (their events sent) only if it does not come back in
    time (`FramePipeline.end_idle_cameras`).
    """
    stream = FrameStream(requests, capacity, size=lambda batch: len(batch.frames)).start()
    cameras: set[str] = set()
    for batch, dropped in _until_closed(stream, alive):
        cameras.update(frame.camera_id for frame in batch.frames if frame.camera_id)
        result = _answer(pipeline, batch)
        result.dropped_frames = dropped
        yield result
    if alive():
        final = gateway_pb2.FrameBatchResult(request_id=END_OF_STREAM, dropped_frames=stream.dropped)
        final.results.extend(pipeline.end_camera(camera_id) for camera_id in sorted(cameras))
        yield final


def _until_closed(
    stream: FrameStream[gateway_pb2.FrameBatch], alive: Callable[[], bool]
) -> Iterator[tuple[gateway_pb2.FrameBatch, int]]:
    try:
        yield from stream.items(alive)
    except grpc.RpcError:
        return  # the camera went away: its stream is over


def _answer(pipeline: FramePipeline, batch: gateway_pb2.FrameBatch) -> gateway_pb2.FrameBatchResult:
    try:
        return pipeline.process(batch)
    except ServiceError as error:  # a bad batch answers for itself; the stream goes on
        status = common_pb2.ItemStatus(code=error.code.value[0], message=error.message)
        results = [
            gateway_pb2.FrameResult(status=status, camera_id=frame.camera_id, sequence=frame.sequence)
            for frame in batch.frames
        ]
        return gateway_pb2.FrameBatchResult(request_id=batch.request_id, results=results)
