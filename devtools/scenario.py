"""What the demo store's tooling and the tests that play it share: frames of the test videos, JPEG photos, and a
member record with consent (scripts/demo.py, devtools/console.py, benchmarks/soak, tests/store_scenario.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from retailface.v1 import common_pb2, personalization_pb2

# Identification, offers and greetings: what a member who enrolls at the desk for the in-store experience grants.
IN_STORE_SCOPES = (
    common_pb2.CONSENT_SCOPE_FACE_IDENTIFICATION,
    common_pb2.CONSENT_SCOPE_PERSONALIZED_OFFERS,
    common_pb2.CONSENT_SCOPE_STAFF_GREETING,
)


def video_frames(
    path: Path, every: int, limit: int | None = None, start_seconds: float = 0.0
) -> list[tuple[np.ndarray, float]]:
    """Up to `limit` frames of a video, one in `every`, from `start_seconds` on, with their time in the clip (s)."""
    capture = cv2.VideoCapture(str(path))
    if start_seconds:
        capture.set(cv2.CAP_PROP_POS_MSEC, start_seconds * 1000)
    frames: list[tuple[np.ndarray, float]] = []
    index = 0
    while limit is None or len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append((image, capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0))
        index += 1
    capture.release()
    return frames


def jpeg(image: np.ndarray) -> bytes:
    return bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())


def consenting_member(
    member_id: str,
    name: str,
    store_id: str,
    *,
    greeting: bool = True,
    preferred_name: str | None = None,
    source: str = "",
    scopes: Iterable[int] = IN_STORE_SCOPES,
) -> personalization_pb2.Member:
    """A member who consented to `scopes` (policy 2026-01, now), greeted as `preferred_name` (default: `name`)."""
    record = personalization_pb2.Member(member_id=member_id, display_name=name, home_store_id=store_id)
    record.consent.policy_version = "2026-01"
    record.consent.scopes.extend(scopes)
    record.consent.granted_at.GetCurrentTime()
    if source:
        record.consent.source = source
    record.preferences.allow_greeting = greeting
    record.preferences.preferred_name = name if preferred_name is None else preferred_name
    return record
