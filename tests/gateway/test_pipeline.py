"""The frame pipeline on in-process backends: each face keeps its own chip, match and identity."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from gateway_fakes import (
    MODEL,
    REJECTED_BATCH,
    FakeDetection,
    FakeEmbedding,
    FakeMatching,
    FakePersonalization,
    FakeRpcError,
    backends,
    face,
    member,
    unit,
)

from retailface.services.gateway.cameras import CameraRegistry, list_cameras
from retailface.services.gateway.frame_stream import END_OF_STREAM, serve_stream
from retailface.services.gateway.members import MemberCache
from retailface.services.gateway.pipeline import FramePipeline, PipelineConfig
from retailface.services.gateway.relay import EventRelay
from retailface.services.gateway.tracker import TrackerConfig
from retailface.services.shared.errors import ServiceError
from retailface.v1 import common_pb2, gateway_pb2, personalization_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
CAMERAS = [
    personalization_pb2.Camera(
        camera_id="door", store_id="s1", role=personalization_pb2.CAMERA_ROLE_ENTRANCE, zone_id="entrance"
    ),
    personalization_pb2.Camera(
        camera_id="lane", store_id="s1", role=personalization_pb2.CAMERA_ROLE_LANE, zone_id="checkout", lane_id="4"
    ),
]


@dataclass
class Shop:
    pipeline: FramePipeline
    detection: FakeDetection
    embedding: FakeEmbedding
    matching: FakeMatching
    personalization: FakePersonalization


@pytest.fixture
def shop() -> Iterator[Shop]:
    # Frames, by their bytes: two faces (Lena, identifiable, and a blurry one), Sam alone, Kim alone.
    detection = FakeDetection(
        {
            b"lena-and-blur": [face(10, chip=b"lena"), face(300, passes=False)],
            b"sam": [face(500, chip=b"sam")],
            b"kim": [face(100, chip=b"kim")],
            b"empty-room": [],
        }
    )
    embedding = FakeEmbedding({b"lena": unit(1), b"sam": unit(2), b"kim": unit(3)})
    matching = FakeMatching({"m-lena": unit(1), "m-kim": unit(3), "m-revoked": unit(2)})
    personalization = FakePersonalization(
        {
            "m-lena": member("m-lena", may_identify=True, may_greet=True, greeting_name="Lena"),
            "m-kim": member("m-kim", may_identify=True, may_greet=False),
            "m-revoked": member("m-revoked", may_identify=False),
        },
        cameras=CAMERAS,
    )
    stubs = backends(detection, embedding, matching, personalization)
    relay = EventRelay(stubs.personalization, deadline=1.0)
    config = PipelineConfig(tracker=TrackerConfig(min_hits=1, identity_k=1, identity_n=1))
    cameras = CameraRegistry(list_cameras(stubs.personalization, deadline=1.0))
    cameras.refresh()
    members = MemberCache(stubs.personalization, ttl=60.0, deadline=1.0)
    pipeline = FramePipeline(stubs, members, relay, config, cameras)
    yield Shop(pipeline, detection, embedding, matching, personalization)
    pipeline.close()
    relay.close()


def _batch(camera_id: str, *frames: bytes) -> gateway_pb2.FrameBatch:
    return gateway_pb2.FrameBatch(
        frames=[common_pb2.Frame(encoded=data, camera_id=camera_id, sequence=i) for i, data in enumerate(frames)]
    )


def test_each_face_keeps_its_own_chip_match_and_identity_across_the_batch(shop: Shop) -> None:
    result = shop.pipeline.process(_batch("door", b"lena-and-blur", b"cannot-decode", b"sam"))
    assert result.request_id  # given one, since the batch had none
    frames = result.results
    assert [frame.status.code for frame in frames] == [0, INVALID, 0]
    assert [frame.sequence for frame in frames] == [0, 1, 2]
    assert all(frame.identification_available for frame in frames)
    # Only faces good enough to identify from are embedded: Lena's and Sam's chips, in one call.
    assert [[chip.bgr for chip in call.chips] for call in shop.embedding.calls] == [[b"lena", b"sam"]]
    # Matching is asked with the model that made the embeddings.
    (search,) = shop.matching.searches
    assert search.gallery == "members"
    assert [(q.model_id, q.model_version) for q in search.queries] == [(MODEL.model_id, MODEL.version)] * 2
    lena, blurry = frames[0].faces
    assert lena.identity.member_id == "m-lena" and lena.identity.display_name == "Lena"
    assert lena.identity.agreeing_frames == 1 and lena.identity.window_frames == 1
    assert not lena.face.chip.bgr, "chips must never leave the pipeline"
    assert not blurry.identity.member_id and blurry.face.box.x == 300
    assert not frames[1].faces
    (sam,) = frames[2].faces
    assert not sam.identity.member_id  # matched a member who may not be identified
    entered = [e for e in frames[0].events if e.type == personalization_pb2.VISIT_EVENT_TYPE_ENTERED]
    assert [e.member_id for e in entered] == ["m-lena"]
    assert [e.member_id for e in shop.personalization.events] == ["m-lena"]


def test_only_personalizations_recognition_decides_who_is_named(shop: Shop) -> None:
    # m-kim may be identified but not greeted; m-revoked's record says yes everywhere but in
    # `recognition`, which says no: they stay anonymous.
    result = shop.pipeline.process(_batch("lane", b"kim", b"sam"))
    kim, sam = (frame.faces[0] for frame in result.results)
    assert kim.identity.member_id == "m-kim" and kim.identity.display_name == ""
    assert not sam.identity.member_id
    ended = shop.pipeline.end_camera("lane")
    checkouts = [e for e in ended.events if e.type == personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT]
    assert sorted(e.member_id for e in checkouts) == ["", "m-kim"]


def test_without_matching_faces_are_still_tracked_and_say_identification_is_unavailable(shop: Shop) -> None:
    shop.matching.error = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
    result = shop.pipeline.process(_batch("door", b"lena-and-blur", b"sam"))
    assert [len(frame.faces) for frame in result.results] == [2, 1]
    assert not any(frame.identification_available for frame in result.results)
    assert not any(f.identity.member_id for frame in result.results for f in frame.faces)


def test_without_embedding_matching_is_not_asked(shop: Shop) -> None:
    shop.embedding.error = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED)
    result = shop.pipeline.process(_batch("door", b"lena-and-blur"))
    assert len(result.results[0].faces) == 2 and not result.results[0].identification_available
    assert not shop.matching.searches


def test_a_frame_without_faces_asks_neither_embedding_nor_matching(shop: Shop) -> None:
    result = shop.pipeline.process(_batch("door", b"empty-room"))
    assert result.results[0].status.code == 0 and result.results[0].identification_available
    assert not shop.embedding.calls and not shop.matching.searches


def test_detection_refusing_the_batch_fails_it_and_an_outage_marks_every_frame(shop: Shop) -> None:
    with pytest.raises(ServiceError, match="larger than the limit") as refused:
        shop.pipeline.process(_batch("door", REJECTED_BATCH))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    shop.detection.error = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "no route")
    result = shop.pipeline.process(_batch("door", b"sam", b"sam"))
    assert [frame.status.code for frame in result.results] == [grpc.StatusCode.UNAVAILABLE.value[0]] * 2
    assert all(frame.status.message == "detection unavailable: no route" for frame in result.results)


def test_a_stream_answers_each_batch_then_ends_its_cameras_tracks(shop: Shop) -> None:
    batches = [
        _batch("door", b"lena-and-blur"),
        _batch("door", REJECTED_BATCH, b"sam"),  # answers for itself; the stream goes on
        gateway_pb2.FrameBatch(request_id="nothing-this-time"),
        _batch("lane", b"kim"),
    ]
    *answers, final = list(serve_stream(shop.pipeline, iter(batches), capacity=8, alive=lambda: True))
    assert len(answers) == 4 and all(answer.dropped_frames == 0 for answer in answers)
    assert answers[0].results[0].faces[0].identity.member_id == "m-lena"
    rejected = answers[1]
    assert rejected.request_id and [r.status.code for r in rejected.results] == [INVALID, INVALID]
    assert rejected.results[1].sequence == 1 and "larger than the limit" in rejected.results[1].status.message
    assert answers[2].request_id == "nothing-this-time" and not answers[2].results
    assert final.request_id == END_OF_STREAM
    assert [r.camera_id for r in final.results] == ["door", "lane"]
    lane = final.results[1]
    assert [e.type for e in lane.events] == [
        personalization_pb2.VISIT_EVENT_TYPE_ZONE_DWELL,
        personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT,
    ]
    assert all(e.member_id == "m-kim" for e in lane.events)


def test_a_track_is_matched_by_its_fused_probe_with_its_quality(shop: Shop) -> None:
    lena = face(10, chip=b"lena")
    lena.quality.inter_eye_px = 30.0
    shop.detection.faces[b"lena-1"] = [lena]
    shop.detection.faces[b"lena-2"] = [lena]
    result = shop.pipeline.process(_batch("door", b"lena-1", b"lena-2"))
    (search,) = shop.matching.searches
    assert [(q.inter_eye_px, q.frames) for q in search.probe_qualities] == [(30.0, 1), (30.0, 2)]
    identity = result.results[1].faces[0].identity
    assert (identity.member_id, identity.fused_frames) == ("m-lena", 2)
    assert (identity.calibration.quality_bin, identity.calibration.frames) == ("30px", 2)


def test_a_frame_whose_camera_id_is_not_an_id_is_refused_alone(shop: Shop) -> None:
    batch = _batch("door", b"sam", b"sam")
    batch.frames[0].camera_id = "x" * 1_000_000
    result = shop.pipeline.process(batch)
    refused, served = result.results
    assert (refused.status.code, refused.camera_id, len(refused.faces)) == (INVALID, "", 0)
    assert refused.status.message.startswith("frame 0: camera_id 'xxxx")
    assert (served.status.code, served.camera_id, len(served.faces)) == (0, "door", 1)
    assert [len(call.frames) for call in shop.detection.calls] == [1]


def test_a_frame_after_an_erasure_asks_for_a_matching_replica_that_holds_it(shop: Shop) -> None:
    shop.pipeline.process(_batch("door", b"sam"))
    shop.pipeline.backends.seen.saw({"members": 57, "watchlist": 3})
    shop.pipeline.process(_batch("door", b"kim"))
    assert [search.min_sequence for search in shop.matching.searches] == [0, 57]
