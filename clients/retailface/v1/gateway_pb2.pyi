import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from retailface.v1 import common_pb2 as _common_pb2
from retailface.v1 import matching_pb2 as _matching_pb2
from retailface.v1 import personalization_pb2 as _personalization_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrackState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_STATE_UNSPECIFIED: _ClassVar[TrackState]
    TRACK_STATE_TENTATIVE: _ClassVar[TrackState]
    TRACK_STATE_CONFIRMED: _ClassVar[TrackState]
    TRACK_STATE_LOST: _ClassVar[TrackState]
TRACK_STATE_UNSPECIFIED: TrackState
TRACK_STATE_TENTATIVE: TrackState
TRACK_STATE_CONFIRMED: TrackState
TRACK_STATE_LOST: TrackState

class FrameBatch(_message.Message):
    __slots__ = ("request_id", "frames")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.Frame]
    def __init__(self, request_id: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[_common_pb2.Frame, _Mapping]]] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("member_id", "display_name", "score", "agreeing_frames", "window_frames", "calibration", "fused_frames")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    AGREEING_FRAMES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FRAMES_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    FUSED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    display_name: str
    score: float
    agreeing_frames: int
    window_frames: int
    calibration: _common_pb2.Calibration
    fused_frames: int
    def __init__(self, member_id: _Optional[str] = ..., display_name: _Optional[str] = ..., score: _Optional[float] = ..., agreeing_frames: _Optional[int] = ..., window_frames: _Optional[int] = ..., calibration: _Optional[_Union[_common_pb2.Calibration, _Mapping]] = ..., fused_frames: _Optional[int] = ...) -> None: ...

class TrackedFace(_message.Message):
    __slots__ = ("face", "track_id", "track_state", "identity", "attributes")
    FACE_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_STATE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    face: _common_pb2.Face
    track_id: str
    track_state: TrackState
    identity: Identity
    attributes: _common_pb2.Attributes
    def __init__(self, face: _Optional[_Union[_common_pb2.Face, _Mapping]] = ..., track_id: _Optional[str] = ..., track_state: _Optional[_Union[TrackState, str]] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ..., attributes: _Optional[_Union[_common_pb2.Attributes, _Mapping]] = ...) -> None: ...

class StoreEvent(_message.Message):
    __slots__ = ("type", "track_id", "member_id", "zone_id", "lane_id", "dwell_seconds", "emotion", "at")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    LANE_ID_FIELD_NUMBER: _ClassVar[int]
    DWELL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    type: _personalization_pb2.VisitEventType
    track_id: str
    member_id: str
    zone_id: str
    lane_id: str
    dwell_seconds: float
    emotion: _personalization_pb2.EmotionSummary
    at: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[_Union[_personalization_pb2.VisitEventType, str]] = ..., track_id: _Optional[str] = ..., member_id: _Optional[str] = ..., zone_id: _Optional[str] = ..., lane_id: _Optional[str] = ..., dwell_seconds: _Optional[float] = ..., emotion: _Optional[_Union[_personalization_pb2.EmotionSummary, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("status", "camera_id", "sequence", "faces", "events", "offers_pushed", "alerts_raised", "identification_available")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    OFFERS_PUSHED_FIELD_NUMBER: _ClassVar[int]
    ALERTS_RAISED_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.ItemStatus
    camera_id: str
    sequence: int
    faces: _containers.RepeatedCompositeFieldContainer[TrackedFace]
    events: _containers.RepeatedCompositeFieldContainer[StoreEvent]
    offers_pushed: _containers.RepeatedCompositeFieldContainer[_common_pb2.Offer]
    alerts_raised: _containers.RepeatedCompositeFieldContainer[_common_pb2.StaffAlert]
    identification_available: bool
    def __init__(self, status: _Optional[_Union[_common_pb2.ItemStatus, _Mapping]] = ..., camera_id: _Optional[str] = ..., sequence: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[TrackedFace, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[StoreEvent, _Mapping]]] = ..., offers_pushed: _Optional[_Iterable[_Union[_common_pb2.Offer, _Mapping]]] = ..., alerts_raised: _Optional[_Iterable[_Union[_common_pb2.StaffAlert, _Mapping]]] = ..., identification_available: _Optional[bool] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("decode_detect_ms", "embed_ms", "match_ms", "track_ms", "personalize_ms", "total_ms", "decode_ms", "detect_model_ms", "embed_model_ms")
    DECODE_DETECT_MS_FIELD_NUMBER: _ClassVar[int]
    EMBED_MS_FIELD_NUMBER: _ClassVar[int]
    MATCH_MS_FIELD_NUMBER: _ClassVar[int]
    TRACK_MS_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    DETECT_MODEL_MS_FIELD_NUMBER: _ClassVar[int]
    EMBED_MODEL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_detect_ms: float
    embed_ms: float
    match_ms: float
    track_ms: float
    personalize_ms: float
    total_ms: float
    decode_ms: float
    detect_model_ms: float
    embed_model_ms: float
    def __init__(self, decode_detect_ms: _Optional[float] = ..., embed_ms: _Optional[float] = ..., match_ms: _Optional[float] = ..., track_ms: _Optional[float] = ..., personalize_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., decode_ms: _Optional[float] = ..., detect_model_ms: _Optional[float] = ..., embed_model_ms: _Optional[float] = ...) -> None: ...

class FrameBatchResult(_message.Message):
    __slots__ = ("request_id", "results", "dropped_frames", "timings")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    results: _containers.RepeatedCompositeFieldContainer[FrameResult]
    dropped_frames: int
    timings: StageTimings
    def __init__(self, request_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[FrameResult, _Mapping]]] = ..., dropped_frames: _Optional[int] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ...) -> None: ...

class IdentifyOnceRequest(_message.Message):
    __slots__ = ("frame", "store_id", "context")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    frame: _common_pb2.Frame
    store_id: str
    context: str
    def __init__(self, frame: _Optional[_Union[_common_pb2.Frame, _Mapping]] = ..., store_id: _Optional[str] = ..., context: _Optional[str] = ...) -> None: ...

class IdentifyOnceResponse(_message.Message):
    __slots__ = ("identity", "decision", "offers", "notes")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    identity: Identity
    decision: _matching_pb2.Decision
    offers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Offer]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, identity: _Optional[_Union[Identity, _Mapping]] = ..., decision: _Optional[_Union[_matching_pb2.Decision, str]] = ..., offers: _Optional[_Iterable[_Union[_common_pb2.Offer, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class EnrollMemberRequest(_message.Message):
    __slots__ = ("member", "photos", "actor")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    PHOTOS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    member: _personalization_pb2.Member
    photos: _containers.RepeatedScalarFieldContainer[bytes]
    actor: str
    def __init__(self, member: _Optional[_Union[_personalization_pb2.Member, _Mapping]] = ..., photos: _Optional[_Iterable[bytes]] = ..., actor: _Optional[str] = ...) -> None: ...

class PhotoResult(_message.Message):
    __slots__ = ("index", "status", "quality", "template_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    status: _common_pb2.ItemStatus
    quality: _common_pb2.FaceQuality
    template_id: str
    def __init__(self, index: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.ItemStatus, _Mapping]] = ..., quality: _Optional[_Union[_common_pb2.FaceQuality, _Mapping]] = ..., template_id: _Optional[str] = ...) -> None: ...

class EnrollMemberResponse(_message.Message):
    __slots__ = ("member_id", "templates_added", "photos")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_ADDED_FIELD_NUMBER: _ClassVar[int]
    PHOTOS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    templates_added: int
    photos: _containers.RepeatedCompositeFieldContainer[PhotoResult]
    def __init__(self, member_id: _Optional[str] = ..., templates_added: _Optional[int] = ..., photos: _Optional[_Iterable[_Union[PhotoResult, _Mapping]]] = ...) -> None: ...

class EraseMemberRequest(_message.Message):
    __slots__ = ("member_id", "actor", "reason", "request_id")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    actor: str
    reason: str
    request_id: str
    def __init__(self, member_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class EraseMemberResponse(_message.Message):
    __slots__ = ("templates_removed", "rows_removed", "receipt")
    class RowsRemovedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TEMPLATES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    ROWS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    templates_removed: int
    rows_removed: _containers.ScalarMap[str, int]
    receipt: _personalization_pb2.ErasureRequest
    def __init__(self, templates_removed: _Optional[int] = ..., rows_removed: _Optional[_Mapping[str, int]] = ..., receipt: _Optional[_Union[_personalization_pb2.ErasureRequest, _Mapping]] = ...) -> None: ...
