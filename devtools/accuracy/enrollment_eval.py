"""The enrollment refusal rate of the real photos: each dataset photo as a clerk would submit it.

Every photo is detected again with the detection engine (all faces, not only the largest) and judged
by the gateway's own enrollment rule (`retailface.services.gateway.enrollment.decide`, on the same
`Face` messages the detection service returns), so the rate is that of exactly the rule in the tree.
For comparison, the rule before issue #14 (exactly one face, passing the hand-set identification
gates) is applied to the same detections.

Every photo of these sets shows one person, clearly; ORL's tight crops get the harness's border
first (without it YuNet finds no face, which says nothing about enrollment).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from retailface.devtools.accuracy.gates import HAND_SET_GATES
from retailface.devtools.accuracy.pipeline import FacePipeline, frame_of
from retailface.devtools.accuracy.probes import DATASETS, photos_of, source_image
from retailface.services.detection.engine import DetectedFace
from retailface.services.detection.quality import QualityGate, failed_gates
from retailface.services.detection.servicer import face_to_proto
from retailface.services.gateway import enrollment

BATCH = 16


def refusals(pipeline: FacePipeline, names: Sequence[str] = DATASETS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    totals = Counter[str]()
    for name in names:
        photos = photos_of(name)
        causes = Counter[str]()
        old_causes = Counter[str]()
        refused = old_refused = 0
        for start in range(0, len(photos), BATCH):
            images = [source_image(p.dataset, p.item) for p in photos[start : start + BATCH]]
            for result in pipeline.detector.detect([frame_of(image) for image in images]):
                faces = [face_to_proto(face) for face in result.faces]
                decision = enrollment.decide(faces, result.width, result.height)
                if not decision.accepted:
                    refused += 1
                    causes.update(decision.causes)
                old = _hand_set_causes(result.faces)
                if old:
                    old_refused += 1
                    old_causes.update(old)
        out[name] = {
            "photos": len(photos),
            "refused": refused,
            "rate": refused / len(photos) if photos else None,
            "causes": dict(causes.most_common()),
            "before_issue_14": {"refused": old_refused, "causes": dict(old_causes.most_common())},
        }
        totals.update({"photos": len(photos), "refused": refused, "old": old_refused})
    out["overall"] = {
        "photos": totals["photos"],
        "refused": totals["refused"],
        "rate": totals["refused"] / totals["photos"] if totals["photos"] else None,
        "before_issue_14_rate": totals["old"] / totals["photos"] if totals["photos"] else None,
        "rule": "gateway/enrollment.py decide() with DEFAULT_POLICY",
    }
    return out


def _hand_set_causes(faces: Sequence[DetectedFace]) -> list[str]:
    """The rule before issue #14: exactly one face, passing the hand-set gates."""
    if len(faces) != 1:
        return ["no_face" if not faces else "several_faces"]
    q = faces[0].quality
    # truncation: the detection service's own gate on the face (its tolerance is unchanged since)
    truncated = QualityGate.TRUNCATED in q.failed_gates
    failed = failed_gates(
        q.inter_eye_px, q.sharpness, q.brightness, q.yaw_deg, q.pitch_deg, faces[0].score, 0.0, HAND_SET_GATES
    )
    return [gate.name.lower() for gate in failed] + (["truncated"] if truncated else [])
