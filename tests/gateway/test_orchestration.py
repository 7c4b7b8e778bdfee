"""Identify once, enroll and erase across the backends, on in-process stand-ins."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest
from gateway_fakes import (
    MODEL,
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

from retailface.services.gateway.members import MemberCache
from retailface.services.gateway.orchestration import MemberOperations
from retailface.services.shared.errors import FailedPrecondition, InvalidArgument, ServiceError, Unavailable
from retailface.v1 import common_pb2, gateway_pb2, matching_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


@dataclass
class Desk:
    operations: MemberOperations
    detection: FakeDetection
    matching: FakeMatching
    personalization: FakePersonalization


def _measured(detected: common_pb2.Face, sharpness: float = 300.0) -> common_pb2.Face:
    """`detected` with the measures of a frontal, well-lit face 30 px between the eyes, at `sharpness`."""
    quality = detected.quality
    quality.inter_eye_px, quality.sharpness, quality.brightness = 30.0, sharpness, 120.0
    quality.yaw_deg, quality.pitch_deg = 2.0, -10.0
    return detected


@pytest.fixture
def desk() -> Desk:
    detection = FakeDetection(
        {
            b"lena": [face(10, chip=b"lena-small"), face(200, chip=b"lena", width=200)],  # and someone far behind
            b"kim": [_measured(face(10, chip=b"kim"))],
            b"blurry": [_measured(face(10, chip=b"blurry", passes=False), sharpness=12.0)],
            b"group": [face(10, chip=b"kim"), face(200, chip=b"lena")],
            b"nobody": [],
        }
    )
    embedding = FakeEmbedding({b"lena": unit(1), b"lena-small": unit(9), b"kim": unit(3)})
    matching = FakeMatching({"m-lena": unit(1), "m-kim": unit(3)})
    personalization = FakePersonalization(
        {
            "m-lena": member("m-lena", may_identify=True, may_greet=True, greeting_name="Lena"),
            "m-kim": member("m-kim", may_identify=False),
        }
    )
    stubs = backends(detection, embedding, matching, personalization)
    members = MemberCache(stubs.personalization, ttl=60.0, deadline=1.0)
    return Desk(MemberOperations(stubs, members, deadline=1.0), detection, matching, personalization)


def _identify(desk: Desk, photo: bytes) -> gateway_pb2.IdentifyOnceResponse:
    frame = common_pb2.Frame(encoded=photo, camera_id="kiosk-1")
    return desk.operations.identify_once(gateway_pb2.IdentifyOnceRequest(frame=frame, store_id="s1"))


def test_identify_once_names_the_largest_face_and_brings_its_offers(desk: Desk) -> None:
    response = _identify(desk, b"lena")
    assert response.decision == matching_pb2.DECISION_MATCH
    assert response.identity.member_id == "m-lena" and response.identity.display_name == "Lena"
    assert response.identity.agreeing_frames == 1 and response.identity.window_frames == 1
    assert [offer.sku for offer in response.offers] == ["offer-for-m-lena"]
    assert list(response.notes) == ["context kiosk"]


def test_identify_once_leaves_a_member_who_may_not_be_identified_anonymous(desk: Desk) -> None:
    response = _identify(desk, b"kim")
    assert response.decision == matching_pb2.DECISION_NO_MATCH and not response.identity.member_id
    assert list(response.notes) == ["no active consent for face identification"]


def test_identify_once_explains_faces_it_cannot_use(desk: Desk) -> None:
    blurry = _identify(desk, b"blurry")
    assert blurry.decision == matching_pb2.DECISION_NO_MATCH
    assert list(blurry.notes) == ["the face does not pass the quality gates: blurry"]
    with pytest.raises(InvalidArgument, match="no face found in the frame"):
        _identify(desk, b"nobody")
    with pytest.raises(InvalidArgument, match="cannot decode"):
        _identify(desk, b"not-an-image")


def test_identify_once_says_which_backend_is_out_and_degrades_without_offers(desk: Desk) -> None:
    desk.matching.error = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
    with pytest.raises(Unavailable) as out:
        _identify(desk, b"lena")
    assert out.value.message == "matching is unavailable: connection refused"
    desk.matching.error = None
    _identify(desk, b"lena")  # the member is cached now
    desk.personalization.error = FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    response = _identify(desk, b"lena")
    assert response.identity.member_id == "m-lena" and list(response.notes) == ["offers unavailable: UNAVAILABLE"]


def _enroll_request(
    *photos: bytes, scopes: tuple[int, ...] = (common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION,)
) -> gateway_pb2.EnrollMemberRequest:
    record = member("m-new", may_identify=True)
    del record.consent.scopes[:]
    record.consent.scopes.extend(scopes)
    return gateway_pb2.EnrollMemberRequest(member=record, photos=list(photos), actor="desk")


def test_enroll_makes_one_template_per_usable_photo_and_says_why_the_others_failed(desk: Desk) -> None:
    response = desk.operations.enroll(_enroll_request(b"group", b"kim", b"blurry", b"nobody"))
    assert response.member_id == "m-new" and response.templates_added == 1
    statuses = [(photo.index, photo.status.code, photo.status.message) for photo in response.photos]
    assert statuses == [
        (0, INVALID, "photo 0: 2 faces found and none clearly in front: photograph the member alone"),
        (1, 0, ""),
        (2, INVALID, "photo 2: hold still (the photo is blurred)"),
        (3, INVALID, "photo 3: no face found: photograph the member from the front, the whole face in view"),
    ]
    assert response.photos[1].template_id.startswith("m-new:") and not response.photos[0].template_id
    (enrolled,) = desk.matching.enrolled
    assert enrolled.gallery == "members" and enrolled.subject_id == "m-new"
    assert list(enrolled.tags) == ["consent:face_identification"]
    assert [t.template_id for t in enrolled.templates] == [response.photos[1].template_id]
    assert enrolled.templates[0].embedding.model_id == MODEL.model_id
    assert [record.member_id for record in desk.personalization.upserted] == ["m-new"]


def test_enroll_refuses_requests_it_cannot_act_on(desk: Desk) -> None:
    with pytest.raises(FailedPrecondition, match="face_identification scope"):
        desk.operations.enroll(_enroll_request(b"kim", scopes=(common_pb2.CONSENT_SCOPE_STAFF_GREETING,)))
    with pytest.raises(InvalidArgument, match="no photos"):
        desk.operations.enroll(_enroll_request())
    with pytest.raises(InvalidArgument) as unusable:
        desk.operations.enroll(_enroll_request(b"group"))
    assert unusable.value.message == (
        "no usable photo: photo 0: 2 faces found and none clearly in front: photograph the member alone"
    )
    assert not desk.matching.enrolled and not desk.personalization.upserted


def test_erase_removes_templates_first_and_names_the_step_that_failed(desk: Desk) -> None:
    erased = desk.operations.erase(gateway_pb2.EraseMemberRequest(member_id="m-lena", actor="desk", reason="asked"))
    assert erased.templates_removed == 2 and dict(erased.rows_removed) == {"members": 1}
    assert desk.matching.erased[0].gallery == "" and desk.matching.erased[0].subject_id == "m-lena"
    desk.matching.error = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline")
    with pytest.raises(Unavailable) as out:
        desk.operations.erase(gateway_pb2.EraseMemberRequest(member_id="m-lena"))
    assert out.value.message == "erasure is unavailable: deadline"
    desk.matching.error = FakeRpcError(grpc.StatusCode.NOT_FOUND, "no subject m-x")
    with pytest.raises(ServiceError) as passed_on:
        desk.operations.erase(gateway_pb2.EraseMemberRequest(member_id="m-x"))
    assert (passed_on.value.code, passed_on.value.message) == (grpc.StatusCode.NOT_FOUND, "no subject m-x")


def test_a_search_after_an_erase_asks_for_a_replica_that_holds_the_erasure(desk: Desk) -> None:
    _identify(desk, b"lena")
    assert desk.matching.searches[-1].min_sequence == 0  # nothing changed through this gateway yet
    desk.operations.erase(gateway_pb2.EraseMemberRequest(member_id="m-lena", actor="desk", reason="asked"))
    _identify(desk, b"kim")
    assert desk.matching.searches[-1].min_sequence == 41


def test_a_search_after_an_enroll_asks_for_a_replica_that_holds_the_templates(desk: Desk) -> None:
    desk.operations.enroll(_enroll_request(b"kim"))
    _identify(desk, b"lena")
    assert desk.matching.searches[-1].min_sequence == 41
