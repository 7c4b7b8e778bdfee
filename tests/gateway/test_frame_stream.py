"""FrameStream: a bounded queue filled by a reader thread; the oldest items give way and are counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from retailface.services.gateway.frame_stream import FrameStream


def _fast_source(count: int, done: threading.Event) -> Iterator[list[int]]:
    """`count` batches of 3 frames each, as fast as the reader takes them; `done` is set at the end."""
    for index in range(count):
        yield [index] * 3
    done.set()


def test_a_full_queue_drops_its_oldest_items_and_counts_what_they_held() -> None:
    done = threading.Event()
    stream = FrameStream(_fast_source(10, done), capacity=3, size=len).start()
    assert done.wait(5), "the reader never finished the source"
    assert len(stream) == 3  # never more than the capacity, however far the consumer is behind
    assert stream.dropped == 7 * 3  # seven batches of three frames gave way
    taken = list(stream.items())
    assert [item for item, _ in taken] == [[7] * 3, [8] * 3, [9] * 3]  # the newest survive, in order
    assert [dropped for _, dropped in taken] == [21, 21, 21]


def test_items_are_counted_one_each_without_a_size() -> None:
    done = threading.Event()
    stream = FrameStream(_fast_source(5, done), capacity=2).start()
    assert done.wait(5), "the reader never finished the source"
    assert stream.dropped == 3 and len(list(stream.items())) == 2


def test_a_consumer_that_keeps_up_loses_nothing() -> None:
    def paced() -> Iterator[int]:
        for index in range(20):
            time.sleep(0.005)
            yield index

    stream = FrameStream(paced(), capacity=1).start()
    received = []
    for item, dropped in stream.items():
        received.append(item)
        assert dropped == 0
    assert received == list(range(20)) and stream.dropped == 0


def test_the_end_of_the_source_ends_the_items() -> None:
    stream = FrameStream(iter([]), capacity=4).start()
    started = time.perf_counter()
    assert list(stream.items(poll_seconds=5)) == []
    assert time.perf_counter() - started < 1  # woken by the end, not by the poll


def test_an_error_of_the_source_is_raised_after_the_items_read_before_it() -> None:
    def failing() -> Iterator[str]:
        yield "a"
        yield "b"
        raise ConnectionError("camera went away")

    stream = FrameStream(failing(), capacity=4).start()
    received = []
    with pytest.raises(ConnectionError, match="camera went away"):
        for item, _ in stream.items():
            received.append(item)
    assert received == ["a", "b"]


def test_items_stop_when_the_consumer_is_no_longer_alive() -> None:
    blocked = threading.Event()

    def endless() -> Iterator[int]:
        yield 1
        blocked.wait(10)  # a camera that sends nothing more and never closes its stream
        yield 2

    alive = threading.Event()
    alive.set()
    stream = FrameStream(endless(), capacity=4).start()
    items = stream.items(alive=alive.is_set, poll_seconds=0.05)
    assert next(items) == (1, 0)
    alive.clear()
    started = time.perf_counter()
    assert list(items) == []
    assert time.perf_counter() - started < 1
    blocked.set()


def test_capacity_must_hold_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="capacity"):
        FrameStream(iter([1]), capacity=0)
