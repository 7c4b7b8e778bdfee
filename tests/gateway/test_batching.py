"""Opportunistic batching: concurrent requests share a call; a lone request goes out at once."""

from __future__ import annotations

import threading
import time

import pytest

from retailface.services.gateway.batching import Batcher


def test_concurrent_requests_are_merged_and_get_their_own_results() -> None:
    calls: list[list[int]] = []
    release = threading.Event()

    def call(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(5)  # hold the first call so the others queue up behind it
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher("test", call, max_items=100, workers=1)
    results: dict[int, list[int]] = {}

    def submit(start: int) -> None:
        results[start] = batcher.submit([start, start + 1])

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    time.sleep(0.1)
    others = [threading.Thread(target=submit, args=(start,)) for start in (10, 20, 30)]
    for thread in others:
        thread.start()
    time.sleep(0.1)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    batcher.close()
    assert calls[0] == [0, 1] and len(calls) == 2 and sorted(calls[1]) == [10, 11, 20, 21, 30, 31]
    assert results == {0: [0, 10], 10: [100, 110], 20: [200, 210], 30: [300, 310]}


def test_a_lone_request_is_not_delayed_and_limits_split_calls() -> None:
    calls: list[int] = []
    batcher: Batcher[int, int] = Batcher("test", lambda items: calls.append(len(items)) or items, max_items=3)
    start = time.perf_counter()
    assert batcher.submit([1, 2]) == [1, 2]
    assert time.perf_counter() - start < 0.5
    assert batcher.submit([1, 2, 3, 4, 5]) == [1, 2, 3, 4, 5]  # larger than the limit: goes alone, unsplit
    batcher.close()
    assert calls == [2, 5]


def test_a_failed_call_fails_its_requests_and_the_batcher_goes_on() -> None:
    def call(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        return items

    batcher: Batcher[int, int] = Batcher("test", call, max_items=10)
    with pytest.raises(ValueError, match="bad item"):
        batcher.submit([-1])
    assert batcher.submit([7]) == [7]
    batcher.close()
