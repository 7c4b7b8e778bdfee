"""The visit events a camera's tracks raise, by the camera's role.

entrance: `entered`, when a member is identified (once per store and member within the
cooldown), or when an anonymous shopper's track ends. A camera with a zone, other than an
entrance: `zone_dwell` when a track ends, with its dwell time. lane: `checkout` when a track
ends, with the emotions seen. A track shorter than `min_hits` frames was a flicker: its end
raises nothing. Members are named only when they may be identified; anonymous shoppers'
events carry their attributes instead.
"""

from __future__ import annotations

import threading
import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from retailface.services.gateway.cameras import CameraInfo
from retailface.services.gateway.members import MemberView
from retailface.services.gateway.tracker import Track
from retailface.v1 import common_pb2, gateway_pb2, personalization_pb2

NEGATIVE_EMOTIONS = frozenset(
    {common_pb2.EMOTION_ANGRY, common_pb2.EMOTION_DISGUST, common_pb2.EMOTION_FEAR, common_pb2.EMOTION_SAD}
)


class VisitEvents:
    def __init__(self, enter_cooldown_seconds: float, min_hits: int) -> None:
        self._cooldown = enter_cooldown_seconds
        self._min_hits = min_hits
        self._lock = threading.Lock()
        self._entered: dict[tuple[str, str], float] = {}  # (store, member) -> time of the last `entered`

    def identified(
        self, camera: CameraInfo, track: Track, member: MemberView, now: float
    ) -> list[personalization_pb2.VisitEvent]:
        """Events of a track whose member was just identified."""
        if camera.role != "entrance":
            return []
        key = (camera.store_id, member.member_id)
        with self._lock:
            last = self._entered.get(key)
            if last is not None and now - last < self._cooldown:
                return []
            self._entered[key] = now
        return [_event(personalization_pb2.VISIT_EVENT_TYPE_ENTERED, camera, track, member, now)]

    def ended(
        self, camera: CameraInfo, track: Track, member: MemberView | None, now: float
    ) -> list[personalization_pb2.VisitEvent]:
        """Events of a track that ended; `member` is None unless the track's member may be identified."""
        if track.hits < self._min_hits:
            return []  # a flicker, not a shopper
        events = []
        if camera.role == "entrance" and member is None:
            events.append(_event(personalization_pb2.VISIT_EVENT_TYPE_ENTERED, camera, track, member, now))
        if camera.zone_id and camera.role != "entrance":
            event = _event(personalization_pb2.VISIT_EVENT_TYPE_ZONE_DWELL, camera, track, member, now)
            event.dwell_seconds = track.dwell_seconds
            events.append(event)
        if camera.role == "lane":
            event = _event(personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT, camera, track, member, now)
            event.emotion.CopyFrom(emotion_summary(track))
            events.append(event)
        return events


def _event(
    kind: int, camera: CameraInfo, track: Track, member: MemberView | None, now: float
) -> personalization_pb2.VisitEvent:
    at = Timestamp()
    at.FromNanoseconds(int(now * 1e9))
    event = personalization_pb2.VisitEvent(
        event_id=uuid.uuid4().hex,
        type=kind,
        store_id=camera.store_id,
        camera_id=camera.camera_id,
        zone_id=camera.zone_id,
        lane_id=camera.lane_id,
        track_id=track.track_id,
        at=at,
    )
    if member is not None:
        event.member_id = member.member_id
        event.match_score = track.identity_score
        if track.identity_calibration is not None:
            event.identification.CopyFrom(track.identity_calibration)
    elif track.last_attributes is not None:
        event.attributes.CopyFrom(track.last_attributes)  # anonymous shoppers: attributes only
    return event


def emotion_summary(track: Track) -> personalization_pb2.EmotionSummary:
    if not track.emotions:
        return personalization_pb2.EmotionSummary()
    labels = [label for _, label in track.emotions]
    dominant = max(set(labels), key=labels.count)
    negative = sum(1 for label in labels if label in NEGATIVE_EMOTIONS) / len(labels)
    seconds = track.emotions[-1][0] - track.emotions[0][0]
    return personalization_pb2.EmotionSummary(dominant=dominant, negative_fraction=negative, seconds=seconds)


def store_event(event: personalization_pb2.VisitEvent) -> gateway_pb2.StoreEvent:
    """The event as the camera's client sees it (no store or camera: it knows those)."""
    return gateway_pb2.StoreEvent(
        type=event.type,
        track_id=event.track_id,
        member_id=event.member_id,
        zone_id=event.zone_id,
        lane_id=event.lane_id,
        dwell_seconds=event.dwell_seconds,
        emotion=event.emotion,
        at=event.at,
    )
