"""The camera's stream resumes over new calls when one breaks, and says what the break cost."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from retailface.client.stream import Backoff, ResumingStream, StreamGap
from retailface.v1 import gateway_pb2


class Broken(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def batches(count: int) -> list[gateway_pb2.FrameBatch]:
    return [gateway_pb2.FrameBatch(request_id=f"b{i}") for i in range(count)]


class Gateway:
    """Answers each batch; the call numbered in `breaks` ends after reading `after` batches, answering `answered`."""

    def __init__(self, breaks: dict[int, tuple[int, int, grpc.StatusCode]]) -> None:
        self.breaks = breaks
        self.calls = 0
        self.seen: list[list[str]] = []

    def __call__(self, requests: Iterator[gateway_pb2.FrameBatch]) -> Iterator[gateway_pb2.FrameBatchResult]:
        number, self.calls = self.calls, self.calls + 1
        seen: list[str] = []
        self.seen.append(seen)
        after, answered, code = self.breaks.get(number, (-1, -1, grpc.StatusCode.OK))
        for batch in requests:
            seen.append(batch.request_id)
            if len(seen) == after:
                read = list(seen)
                for request_id in read[:answered]:
                    yield gateway_pb2.FrameBatchResult(request_id=request_id)
                raise Broken(code, "max connection age")
            if after < 0:
                yield gateway_pb2.FrameBatchResult(request_id=batch.request_id)
        yield gateway_pb2.FrameBatchResult(request_id="end-of-stream")


def test_an_unbroken_stream_answers_every_batch_then_ends() -> None:
    stream = ResumingStream(Gateway({}), batches(3), sleep=lambda _: None)
    assert [r.request_id for r in stream] == ["b0", "b1", "b2", "end-of-stream"]
    assert stream.gaps == []


def test_a_broken_call_is_resumed_with_the_next_batches_and_the_gap_is_reported() -> None:
    gateway = Gateway({0: (3, 1, grpc.StatusCode.UNAVAILABLE)})  # reads b0-b2, answers b0, breaks
    delays: list[float] = []
    gaps: list[StreamGap] = []
    stream = ResumingStream(gateway, batches(5), Backoff(first=0.5), on_gap=gaps.append, sleep=delays.append)
    assert [r.request_id for r in stream] == ["b0", "b3", "b4", "end-of-stream"]
    assert gateway.seen == [["b0", "b1", "b2"], ["b3", "b4"]]  # each batch sent once
    assert [(g.code, g.details, g.unanswered) for g in stream.gaps] == [
        ("UNAVAILABLE", "max connection age", ("b1", "b2"))
    ]
    assert gaps == stream.gaps and delays == [0.5]


def test_repeated_breaks_back_off_and_an_answer_resets_the_backoff() -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    gateway = Gateway({0: (1, 0, unavailable), 1: (1, 0, unavailable), 2: (2, 1, unavailable)})
    delays: list[float] = []
    stream = ResumingStream(gateway, batches(6), Backoff(first=0.1, factor=3.0, most=0.5), sleep=delays.append)
    assert [r.request_id for r in stream] == ["b2", "b4", "b5", "end-of-stream"]
    assert delays == [0.1, pytest.approx(0.3), 0.1]


def test_a_status_that_is_not_an_outage_is_raised() -> None:
    stream = ResumingStream(Gateway({0: (1, 0, grpc.StatusCode.PERMISSION_DENIED)}), batches(2), sleep=lambda _: None)
    with pytest.raises(grpc.RpcError) as error:
        list(stream)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_too_many_breaks_are_raised() -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    gateway = Gateway({0: (1, 0, unavailable), 1: (1, 0, unavailable)})
    stream = ResumingStream(gateway, batches(4), max_breaks=1, sleep=lambda _: None)
    with pytest.raises(grpc.RpcError):
        list(stream)
    assert len(stream.gaps) == 2


def test_a_source_that_waits_for_answers_does_not_block_them() -> None:
    # A paced reader (the camera CLI's) sends the next batch only once the previous one is answered.
    import threading
    import time

    answered = threading.Semaphore(1)

    def paced() -> Iterator[gateway_pb2.FrameBatch]:
        for batch in batches(4):
            assert answered.acquire(timeout=5), "deadlock: the answer never came"
            yield batch

    def gateway(requests: Iterator[gateway_pb2.FrameBatch]) -> Iterator[gateway_pb2.FrameBatchResult]:
        results: list[gateway_pb2.FrameBatchResult] = []
        reader = threading.Thread(
            target=lambda: results.extend(gateway_pb2.FrameBatchResult(request_id=b.request_id) for b in requests)
        )
        reader.start()  # grpc reads the requests on its own thread
        sent, deadline = 0, time.monotonic() + 10
        while sent < 4:
            assert time.monotonic() < deadline, "deadlock: the batches stopped coming"
            if len(results) > sent:
                yield results[sent]
                sent += 1
            else:
                time.sleep(0.001)
        reader.join()

    stream = ResumingStream(gateway, paced(), sleep=lambda _: None)
    received = []
    for result in stream:
        received.append(result.request_id)
        answered.release()
    assert received == ["b0", "b1", "b2", "b3"]


def test_a_break_after_the_last_batch_ends_the_stream_without_its_final_result() -> None:
    calls: list[int] = []

    def gateway(requests: Iterator[gateway_pb2.FrameBatch]) -> Iterator[gateway_pb2.FrameBatchResult]:
        calls.append(1)
        for batch in requests:  # reads every batch, to the end of the source
            yield gateway_pb2.FrameBatchResult(request_id=batch.request_id)
        raise Broken(grpc.StatusCode.UNAVAILABLE, "draining")  # ...and breaks before its final result

    stream = ResumingStream(gateway, batches(2), sleep=lambda _: None)
    assert [r.request_id for r in stream] == ["b0", "b1"]
    assert [(g.code, g.unanswered) for g in stream.gaps] == [("UNAVAILABLE", ())] and len(calls) == 1
