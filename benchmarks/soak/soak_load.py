"""Simulated cameras: each loops a test video's JPEG frames at a paced rate through
`CameraClient.stream` (one frame per batch, open loop: a camera does not wait for answers, so a
pipeline that falls behind shows as the gateway's dropped frames, as in a store)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc

from retailface.client import CameraClient
from retailface.client.stream import END_OF_STREAM, Backoff, StreamGap
from retailface.v1 import gateway_pb2

OK = 0


@dataclass(frozen=True)
class Answer:
    """One answered frame: when it was sent (seconds since the run's start) and how it came back."""

    camera: str
    sent: float
    latency_ms: float
    code: int  # the frame's status code (0: OK)
    identified: bool  # a member was named on the frame
    wrong_identity: bool  # a member the camera's video cannot show was named


@dataclass
class Recorder:
    """Everything the cameras saw, shared by their threads."""

    start: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    drops: list[tuple[float, int]] = field(default_factory=list)  # (when, frames newly dropped)
    gaps: list[tuple[float, str, StreamGap]] = field(default_factory=list)  # (when, camera, gap)
    stream_errors: list[tuple[float, str, str]] = field(default_factory=list)  # (when, camera, status)
    events: list[tuple[str, int, str, str, int]] = field(default_factory=list)  # camera, type, member, track, at ns
    offers: list[tuple[str, str, str]] = field(default_factory=list)  # offer id, member, sku
    alerts: list[str] = field(default_factory=list)  # alert ids raised on frames
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.start

    def answer(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def dropped(self, frames: int) -> None:
        with self.lock:
            self.drops.append((self.now(), frames))

    def count_sent(self) -> None:
        with self.lock:
            self.sent += 1

    def snapshot(self) -> tuple[list[Answer], list[tuple[float, int]]]:
        with self.lock:
            return list(self.answers), list(self.drops)


RateAt = Callable[[float], float]  # frames per second per camera at a time of the run


class CameraLoad(threading.Thread):
    """One camera's stream for the run: paced batches out, answers recorded."""

    def __init__(
        self,
        client: CameraClient,
        jpegs: list[bytes],
        allowed: frozenset[str],
        rate_at: RateAt,
        recorder: Recorder,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"camera-{client.camera_id}", daemon=True)
        self.client = client
        self.jpegs = jpegs
        self.allowed = allowed
        self.rate_at = rate_at
        self.recorder = recorder
        self.stop_event = stop
        self._sent_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._dropped_so_far = 0
        self.finished = False

    def _batches(self) -> Iterator[gateway_pb2.FrameBatch]:
        index = 0
        due = self.recorder.now()
        while not self.stop_event.is_set():
            wait = due - self.recorder.now()
            if wait > 0 and self.stop_event.wait(wait):
                return
            batch = self.client.frames([self.jpegs[index % len(self.jpegs)]], captured_at=time.time())
            with self._lock:
                self._sent_at[batch.request_id] = self.recorder.now()
            self.recorder.count_sent()
            index += 1
            due = max(due + 1.0 / self.rate_at(due), self.recorder.now() - 1.0)  # never a burst to catch up
            yield batch

    def _gap(self, gap: StreamGap) -> None:
        with self.recorder.lock:
            self.recorder.gaps.append((self.recorder.now(), self.client.camera_id, gap))

    def run(self) -> None:
        stream = self.client.stream(self._batches(), backoff=Backoff(first=0.2, most=2.0), on_gap=self._gap)
        while not self.finished:
            try:
                for result in stream:
                    self._take(result)
                self.finished = True
            except grpc.RpcError as error:  # not resumable: recorded, and the camera starts a new stream
                with self.recorder.lock:
                    self.recorder.stream_errors.append((self.recorder.now(), self.client.camera_id, error.code().name))
                if self.stop_event.wait(0.5):
                    self.finished = True
                else:
                    stream = self.client.stream(self._batches(), backoff=Backoff(first=0.2, most=2.0), on_gap=self._gap)

    def _actions(self, result: gateway_pb2.FrameBatchResult) -> None:
        """The visit events, offers and alerts the gateway reported on the frames (what chaos checks against)."""
        with self.recorder.lock:
            for frame in result.results:
                camera = frame.camera_id or self.client.camera_id
                for event in frame.events:
                    self.recorder.events.append(
                        (camera, int(event.type), event.member_id, event.track_id, event.at.ToNanoseconds())
                    )
                members = {face.identity.member_id for face in frame.faces if face.identity.member_id}
                member = next(iter(members), "")
                self.recorder.offers.extend((offer.offer_id, member, offer.sku) for offer in frame.offers_pushed)
                self.recorder.alerts.extend(alert.alert_id for alert in frame.alerts_raised)

    def _take(self, result: gateway_pb2.FrameBatchResult) -> None:
        now = self.recorder.now()
        if result.dropped_frames > self._dropped_so_far:
            self.recorder.dropped(int(result.dropped_frames) - self._dropped_so_far)
            self._dropped_so_far = int(result.dropped_frames)
        self._actions(result)
        if result.request_id == END_OF_STREAM:
            return
        with self._lock:
            sent = self._sent_at.pop(result.request_id, None)
        if sent is None:
            return
        for frame in result.results:
            named = {face.identity.member_id for face in frame.faces if face.identity.member_id}
            self.recorder.answer(
                Answer(
                    camera=self.client.camera_id,
                    sent=sent,
                    latency_ms=(now - sent) * 1000.0,
                    code=int(frame.status.code),
                    identified=bool(named),
                    wrong_identity=bool(named - self.allowed),
                )
            )
