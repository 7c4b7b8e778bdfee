"""Which face of an enrollment photo becomes a template, and what to tell the clerk when none does.

Enrollment holds its photos to its own standard, from the measures detection returns with each face
(`FaceQuality`: inter-eye distance, sharpness, brightness, yaw, pitch), the detection score and the
TRUNCATED gate. It does not read `quality.passes`: those are identification's gates, which judge
faces seen by store cameras and may let small or blurred faces through to a quality-dependent
threshold. A template is compared with every later probe of the member, so it must be good; but a
photo refused at the desk costs the clerk another try, so the standard refuses what measurably
hurts a template, not everything short of a studio portrait.

`decide(faces, width, height)` is pure: the gateway calls it on each photo's `FrameFaces`, and the
accuracy harness calls it on the same detection results to measure the refusal rate of exactly
this rule.

How the defaults were set (see `EnrollmentPolicy`): 61 official portraits (every 10th photo of the
`radar` set of `retailface.devtools.datasets`) were degraded with `retailface.devtools.degrade`
(area-averaged downscaling, disk defocus, exposure in linear light with mild sensor noise),
detected, measured and embedded with the shipped YuNet and SFace; each degraded template was
compared with the same photo's clean template. The limit for each measure sits where that cosine
starts to fall from its plateau (for size, where the fall begins; for the rest, where the median
falls under about 0.9). Pose cannot be simulated from a still photo; its limits come from the ORL
set's real head turns (templates turned up to 25 degrees lose about 0.05 of genuine score against
frontal probes) and from the pose estimate's documented bias (services/detection/quality.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from retailface.v1 import common_pb2

Gate: TypeAlias = common_pb2.QualityGate.ValueType

# What to tell the clerk for each reason a face makes a poor template: what to do, then what is wrong.
# One photo's reasons are joined with ", "; the gateway joins the photos of a request with "; ".
ADVICE: dict[Gate, str] = {
    common_pb2.QUALITY_GATE_TOO_SMALL: "move closer (the face is too small)",
    common_pb2.QUALITY_GATE_BLURRY: "hold still (the photo is blurred)",
    common_pb2.QUALITY_GATE_TOO_DARK: "more light (the face is too dark)",
    common_pb2.QUALITY_GATE_TOO_BRIGHT: "too much light (the face is washed out: avoid flash and direct sun)",
    common_pb2.QUALITY_GATE_POSE: "face the camera (the head is turned)",
    common_pb2.QUALITY_GATE_LOW_SCORE: "face the camera, nothing covering the face (the face is not clearly visible)",
    common_pb2.QUALITY_GATE_TRUNCATED: "the whole face must be in the picture (the face is cut off at the edge)",
}
NO_FACE_ADVICE = "no face found: photograph the member from the front, the whole face in view"
CROWDED_ADVICE = "none clearly in front: photograph the member alone"


@dataclass(frozen=True)
class EnrollmentPolicy:
    """The enrollment standard: what a face must measure to become a template.

    Cosines below are a degraded template against the same photo's clean template, median over the
    61 portraits described in the module docstring.
    """

    # Downscaled faces keep 0.95 at 22-26 px between the eyes and fall below (0.94 at 18-22, 0.91 at
    # 14-18, 0.82 under 14). The simulation is optimistic (a real lens and sensor make a small face
    # softer than area averaging does), so the limit is where the fall begins. The aligned chip
    # itself has 35 px between the eyes.
    min_inter_eye_px: float = 24.0
    # Variance of the Laplacian on the face resized to 112x112 (detection's measure). Defocused
    # faces keep 0.91 down to 25-30 and fall fast below (0.79 at 20-25, 0.60 at 10-15). The measure
    # misses motion blur along one direction (edges across the motion stay sharp), which this limit
    # cannot catch.
    min_sharpness: float = 25.0
    # Mean luma of the face box. Under-exposed faces keep 0.92 at 25-35 and fall below (0.87 at
    # 20-25); the simulated noise is milder than a real dark photo's, so the limit is 30.
    min_brightness: float = 30.0
    # Over-exposure clips the skin: 0.92 at 200-205, 0.89 at 205-210, 0.84 at 215-220.
    max_brightness: float = 205.0
    # Yaw estimate from the landmarks (reads about 13 for a 15 degree turn and 43 for 45). ORL's
    # templates turned up to 25 degrees lose about 0.05 of genuine score against frontal probes; a
    # template turned further hides the far half of the face that entrance cameras see.
    max_abs_yaw_deg: float = 30.0
    # Pitch estimate: frontal faces read -5 to -15 (YuNet puts the nose tip lower than the ArcFace
    # template); the range allows 30 degrees either way of that -10.
    min_pitch_deg: float = -40.0
    max_pitch_deg: float = 20.0
    # YuNet's score: clean frontal faces score about 0.9-0.95. In the simulation the faces that
    # scored under 0.9 were all ruined by heavy blur (median cosine 0.3 or less). Identification's
    # 0.8 refuses the faces the detector itself doubts (covered, odd, smeared) and leaves milder
    # blur to the sharpness limit.
    min_detection_score: float = 0.8
    # Several faces: the largest is enrolled only when its box has at least this many times the
    # area of the next largest (a bystander is then clearly further away or in the background) ...
    min_area_ratio: float = 2.0
    # ... and its centre lies near the middle of the photo: at least this fraction of the width away
    # from the left and right edges (the middle 60%), where a clerk frames the member and people
    # beside them are not ...
    centre_margin_x: float = 0.2
    # ... and this fraction of the height away from the top and bottom (the middle 80%): portraits
    # frame head and shoulders, with the face's centre a fifth to a third of the way down (the
    # face_recognition photos: 0.17-0.35), so only a face at the very top or bottom is off-centre.
    centre_margin_y: float = 0.1

    def __post_init__(self) -> None:
        if not self.min_brightness < self.max_brightness or not self.min_pitch_deg < self.max_pitch_deg:
            raise ValueError("each minimum of the enrollment policy must be below its maximum")
        if self.min_area_ratio < 1.0:
            raise ValueError(
                f"min_area_ratio {self.min_area_ratio} must be at least 1: the face in front is the largest"
            )
        if not (0.0 <= self.centre_margin_x < 0.5 and 0.0 <= self.centre_margin_y < 0.5):
            raise ValueError("the centre margins are fractions of the frame under 0.5 (0.5 leaves no middle)")

    def failed_gates(self, face: common_pb2.Face) -> tuple[Gate, ...]:
        """The reasons this face would make a poor template, in ADVICE's order; empty when it is good."""
        quality = face.quality
        failed: list[Gate] = []
        if quality.inter_eye_px < self.min_inter_eye_px:
            failed.append(common_pb2.QUALITY_GATE_TOO_SMALL)
        if quality.sharpness < self.min_sharpness:
            failed.append(common_pb2.QUALITY_GATE_BLURRY)
        if quality.brightness < self.min_brightness:
            failed.append(common_pb2.QUALITY_GATE_TOO_DARK)
        if quality.brightness > self.max_brightness:
            failed.append(common_pb2.QUALITY_GATE_TOO_BRIGHT)
        pitch = quality.pitch_deg
        if abs(quality.yaw_deg) > self.max_abs_yaw_deg or not self.min_pitch_deg <= pitch <= self.max_pitch_deg:
            failed.append(common_pb2.QUALITY_GATE_POSE)
        if face.detection_score < self.min_detection_score:
            failed.append(common_pb2.QUALITY_GATE_LOW_SCORE)
        if common_pb2.QUALITY_GATE_TRUNCATED in quality.failed_gates:
            failed.append(common_pb2.QUALITY_GATE_TRUNCATED)
        return tuple(failed)

    def is_central(self, box: common_pb2.Box, width: int, height: int) -> bool:
        """Whether the box's centre lies in the middle of a width x height frame (False when the size is unknown)."""
        if width <= 0 or height <= 0:
            return False
        centre_x, centre_y = box.x + box.width / 2, box.y + box.height / 2
        margin_x, margin_y = self.centre_margin_x * width, self.centre_margin_y * height
        return margin_x <= centre_x <= width - margin_x and margin_y <= centre_y <= height - margin_y


DEFAULT_POLICY = EnrollmentPolicy()


@dataclass(frozen=True)
class PhotoDecision:
    """What one photo gives: the face that is judged, and why it cannot be enrolled (if so).

    `face` is the only face, or the dominant one of several; None when there is no face or none
    dominates. The photo makes a template when `face` is set and `failed_gates` is empty.
    """

    faces_found: int
    face: common_pb2.Face | None
    failed_gates: tuple[Gate, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.face is not None and not self.failed_gates

    @property
    def ignored_faces(self) -> int:
        return self.faces_found - 1 if self.face is not None else 0

    @property
    def causes(self) -> tuple[str, ...]:
        """Short names of why the photo is refused ("no_face", "several_faces", "too_small", ...); empty if not."""
        if self.faces_found == 0:
            return ("no_face",)
        if self.face is None:
            return ("several_faces",)
        return tuple(
            common_pb2.QualityGate.Name(gate).removeprefix("QUALITY_GATE_").lower() for gate in self.failed_gates
        )

    def message(self, photo_index: int) -> str:
        """The clerk's message for this photo: empty for one good face, else what was done or what to fix."""
        prefix = f"photo {photo_index}: "
        if self.faces_found == 0:
            return prefix + NO_FACE_ADVICE
        if self.face is None:
            return prefix + f"{self.faces_found} faces found and {CROWDED_ADVICE}"
        ignored = self.ignored_faces
        note = f"{ignored} other face{'s' if ignored > 1 else ''} ignored"
        if self.failed_gates:
            advice = ", ".join(ADVICE[gate] for gate in self.failed_gates)
            return prefix + (f"the face in front ({note}): {advice}" if ignored else advice)
        if ignored:
            return prefix + f"the face in front was enrolled, {note}"
        return ""


def dominant_face(
    faces: Sequence[common_pb2.Face], width: int, height: int, policy: EnrollmentPolicy = DEFAULT_POLICY
) -> common_pb2.Face | None:
    """The one face to enroll from a photo: the only one, or the largest when it clearly dominates.

    With several faces the largest must have `min_area_ratio` times the box area of the next one and
    its centre in the middle of the frame (`is_central`); otherwise None, as for no face.
    """
    if not faces:
        return None
    by_area = sorted(faces, key=lambda face: face.box.width * face.box.height, reverse=True)
    largest = by_area[0]
    if len(by_area) == 1:
        return largest
    largest_area = largest.box.width * largest.box.height
    runner_up = by_area[1].box.width * by_area[1].box.height
    if largest_area >= policy.min_area_ratio * runner_up and policy.is_central(largest.box, width, height):
        return largest
    return None


def decide(
    faces: Sequence[common_pb2.Face], width: int, height: int, policy: EnrollmentPolicy = DEFAULT_POLICY
) -> PhotoDecision:
    """The enrollment decision for one photo's detected faces in a width x height frame (FrameFaces' fields)."""
    face = dominant_face(faces, width, height, policy)
    if face is None:
        return PhotoDecision(len(faces), None)
    return PhotoDecision(len(faces), face, policy.failed_gates(face))
