import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    PIXEL_FORMAT_BGR8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_RGB8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_GRAY8: _ClassVar[PixelFormat]

class QualityGate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_GATE_UNSPECIFIED: _ClassVar[QualityGate]
    QUALITY_GATE_TOO_SMALL: _ClassVar[QualityGate]
    QUALITY_GATE_BLURRY: _ClassVar[QualityGate]
    QUALITY_GATE_TOO_DARK: _ClassVar[QualityGate]
    QUALITY_GATE_TOO_BRIGHT: _ClassVar[QualityGate]
    QUALITY_GATE_POSE: _ClassVar[QualityGate]
    QUALITY_GATE_LOW_SCORE: _ClassVar[QualityGate]
    QUALITY_GATE_TRUNCATED: _ClassVar[QualityGate]

class Gender(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENDER_UNSPECIFIED: _ClassVar[Gender]
    GENDER_FEMALE: _ClassVar[Gender]
    GENDER_MALE: _ClassVar[Gender]

class Emotion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMOTION_UNSPECIFIED: _ClassVar[Emotion]
    EMOTION_ANGRY: _ClassVar[Emotion]
    EMOTION_DISGUST: _ClassVar[Emotion]
    EMOTION_FEAR: _ClassVar[Emotion]
    EMOTION_HAPPY: _ClassVar[Emotion]
    EMOTION_SAD: _ClassVar[Emotion]
    EMOTION_SURPRISE: _ClassVar[Emotion]
    EMOTION_NEUTRAL: _ClassVar[Emotion]

class ConsentScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENT_SCOPE_UNSPECIFIED: _ClassVar[ConsentScope]
    CONSENT_SCOPE_FACE_IDENTIFICATION: _ClassVar[ConsentScope]
    CONSENT_SCOPE_PERSONALIZED_OFFERS: _ClassVar[ConsentScope]
    CONSENT_SCOPE_STAFF_GREETING: _ClassVar[ConsentScope]
    CONSENT_SCOPE_ANALYTICS: _ClassVar[ConsentScope]

class IdentificationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDENTIFICATION_METHOD_UNSPECIFIED: _ClassVar[IdentificationMethod]
    IDENTIFICATION_METHOD_LOYALTY_CARD: _ClassVar[IdentificationMethod]
    IDENTIFICATION_METHOD_FACE: _ClassVar[IdentificationMethod]
    IDENTIFICATION_METHOD_APP: _ClassVar[IdentificationMethod]
    IDENTIFICATION_METHOD_PHONE_NUMBER: _ClassVar[IdentificationMethod]

class OfferSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFER_SOURCE_UNSPECIFIED: _ClassVar[OfferSource]
    OFFER_SOURCE_ONLINE_INTENT: _ClassVar[OfferSource]
    OFFER_SOURCE_PURCHASE_HISTORY: _ClassVar[OfferSource]
    OFFER_SOURCE_SIMILAR_SHOPPERS: _ClassVar[OfferSource]
    OFFER_SOURCE_CAMPAIGN: _ClassVar[OfferSource]
    OFFER_SOURCE_BASKET_COMPLETION: _ClassVar[OfferSource]

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    ALERT_KIND_GREETING: _ClassVar[AlertKind]
    ALERT_KIND_DISSATISFACTION: _ClassVar[AlertKind]
    ALERT_KIND_WATCHLIST: _ClassVar[AlertKind]
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
PIXEL_FORMAT_BGR8: PixelFormat
PIXEL_FORMAT_RGB8: PixelFormat
PIXEL_FORMAT_GRAY8: PixelFormat
QUALITY_GATE_UNSPECIFIED: QualityGate
QUALITY_GATE_TOO_SMALL: QualityGate
QUALITY_GATE_BLURRY: QualityGate
QUALITY_GATE_TOO_DARK: QualityGate
QUALITY_GATE_TOO_BRIGHT: QualityGate
QUALITY_GATE_POSE: QualityGate
QUALITY_GATE_LOW_SCORE: QualityGate
QUALITY_GATE_TRUNCATED: QualityGate
GENDER_UNSPECIFIED: Gender
GENDER_FEMALE: Gender
GENDER_MALE: Gender
EMOTION_UNSPECIFIED: Emotion
EMOTION_ANGRY: Emotion
EMOTION_DISGUST: Emotion
EMOTION_FEAR: Emotion
EMOTION_HAPPY: Emotion
EMOTION_SAD: Emotion
EMOTION_SURPRISE: Emotion
EMOTION_NEUTRAL: Emotion
CONSENT_SCOPE_UNSPECIFIED: ConsentScope
CONSENT_SCOPE_FACE_IDENTIFICATION: ConsentScope
CONSENT_SCOPE_PERSONALIZED_OFFERS: ConsentScope
CONSENT_SCOPE_STAFF_GREETING: ConsentScope
CONSENT_SCOPE_ANALYTICS: ConsentScope
IDENTIFICATION_METHOD_UNSPECIFIED: IdentificationMethod
IDENTIFICATION_METHOD_LOYALTY_CARD: IdentificationMethod
IDENTIFICATION_METHOD_FACE: IdentificationMethod
IDENTIFICATION_METHOD_APP: IdentificationMethod
IDENTIFICATION_METHOD_PHONE_NUMBER: IdentificationMethod
OFFER_SOURCE_UNSPECIFIED: OfferSource
OFFER_SOURCE_ONLINE_INTENT: OfferSource
OFFER_SOURCE_PURCHASE_HISTORY: OfferSource
OFFER_SOURCE_SIMILAR_SHOPPERS: OfferSource
OFFER_SOURCE_CAMPAIGN: OfferSource
OFFER_SOURCE_BASKET_COMPLETION: OfferSource
ALERT_KIND_UNSPECIFIED: AlertKind
ALERT_KIND_GREETING: AlertKind
ALERT_KIND_DISSATISFACTION: AlertKind
ALERT_KIND_WATCHLIST: AlertKind

class RawImage(_message.Message):
    __slots__ = ("width", "height", "stride", "format", "pixels")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    stride: int
    format: PixelFormat
    pixels: bytes
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., stride: _Optional[int] = ..., format: _Optional[_Union[PixelFormat, str]] = ..., pixels: _Optional[bytes] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("encoded", "raw", "camera_id", "store_id", "captured_at", "sequence")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    camera_id: str
    store_id: str
    captured_at: _timestamp_pb2.Timestamp
    sequence: int
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ..., camera_id: _Optional[str] = ..., store_id: _Optional[str] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class ItemStatus(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    width: float
    height: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ...) -> None: ...

class FaceQuality(_message.Message):
    __slots__ = ("inter_eye_px", "sharpness", "brightness", "yaw_deg", "pitch_deg", "passes", "failed_gates")
    INTER_EYE_PX_FIELD_NUMBER: _ClassVar[int]
    SHARPNESS_FIELD_NUMBER: _ClassVar[int]
    BRIGHTNESS_FIELD_NUMBER: _ClassVar[int]
    YAW_DEG_FIELD_NUMBER: _ClassVar[int]
    PITCH_DEG_FIELD_NUMBER: _ClassVar[int]
    PASSES_FIELD_NUMBER: _ClassVar[int]
    FAILED_GATES_FIELD_NUMBER: _ClassVar[int]
    inter_eye_px: float
    sharpness: float
    brightness: float
    yaw_deg: float
    pitch_deg: float
    passes: bool
    failed_gates: _containers.RepeatedScalarFieldContainer[QualityGate]
    def __init__(self, inter_eye_px: _Optional[float] = ..., sharpness: _Optional[float] = ..., brightness: _Optional[float] = ..., yaw_deg: _Optional[float] = ..., pitch_deg: _Optional[float] = ..., passes: _Optional[bool] = ..., failed_gates: _Optional[_Iterable[_Union[QualityGate, str]]] = ...) -> None: ...

class AlignedChip(_message.Message):
    __slots__ = ("size", "bgr")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BGR_FIELD_NUMBER: _ClassVar[int]
    size: int
    bgr: bytes
    def __init__(self, size: _Optional[int] = ..., bgr: _Optional[bytes] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "landmarks", "detection_score", "quality", "chip", "track_id")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    CHIP_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    box: Box
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    detection_score: float
    quality: FaceQuality
    chip: AlignedChip
    track_id: str
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., detection_score: _Optional[float] = ..., quality: _Optional[_Union[FaceQuality, _Mapping]] = ..., chip: _Optional[_Union[AlignedChip, _Mapping]] = ..., track_id: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "version", "dim", "sha256")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: str
    dim: int
    sha256: str
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[str] = ..., dim: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values", "model_id", "model_version")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    model_id: str
    model_version: str
    def __init__(self, values: _Optional[_Iterable[float]] = ..., model_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class EmotionScore(_message.Message):
    __slots__ = ("emotion", "probability")
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    emotion: Emotion
    probability: float
    def __init__(self, emotion: _Optional[_Union[Emotion, str]] = ..., probability: _Optional[float] = ...) -> None: ...

class Attributes(_message.Message):
    __slots__ = ("age_years", "age_confidence", "gender", "gender_confidence", "emotion", "emotion_confidence", "emotions")
    AGE_YEARS_FIELD_NUMBER: _ClassVar[int]
    AGE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    GENDER_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    EMOTION_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EMOTIONS_FIELD_NUMBER: _ClassVar[int]
    age_years: float
    age_confidence: float
    gender: Gender
    gender_confidence: float
    emotion: Emotion
    emotion_confidence: float
    emotions: _containers.RepeatedCompositeFieldContainer[EmotionScore]
    def __init__(self, age_years: _Optional[float] = ..., age_confidence: _Optional[float] = ..., gender: _Optional[_Union[Gender, str]] = ..., gender_confidence: _Optional[float] = ..., emotion: _Optional[_Union[Emotion, str]] = ..., emotion_confidence: _Optional[float] = ..., emotions: _Optional[_Iterable[_Union[EmotionScore, _Mapping]]] = ...) -> None: ...

class ConsentRecord(_message.Message):
    __slots__ = ("policy_version", "scopes", "granted_at", "revoked_at", "source")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    policy_version: str
    scopes: _containers.RepeatedScalarFieldContainer[ConsentScope]
    granted_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    source: str
    def __init__(self, policy_version: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[ConsentScope, str]]] = ..., granted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class ProductLocation(_message.Message):
    __slots__ = ("store_id", "aisle", "shelf", "on_hand")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    AISLE_FIELD_NUMBER: _ClassVar[int]
    SHELF_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    aisle: str
    shelf: str
    on_hand: int
    def __init__(self, store_id: _Optional[str] = ..., aisle: _Optional[str] = ..., shelf: _Optional[str] = ..., on_hand: _Optional[int] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("offer_id", "campaign_id", "sku", "product_name", "category", "price", "discount_percent", "reason", "source", "location", "valid_until", "score")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    campaign_id: str
    sku: str
    product_name: str
    category: str
    price: float
    discount_percent: float
    reason: str
    source: OfferSource
    location: ProductLocation
    valid_until: _timestamp_pb2.Timestamp
    score: float
    def __init__(self, offer_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., sku: _Optional[str] = ..., product_name: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ..., discount_percent: _Optional[float] = ..., reason: _Optional[str] = ..., source: _Optional[_Union[OfferSource, str]] = ..., location: _Optional[_Union[ProductLocation, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., score: _Optional[float] = ...) -> None: ...

class StaffAlert(_message.Message):
    __slots__ = ("alert_id", "kind", "store_id", "zone_id", "lane_id", "camera_id", "member_id", "display_name", "message", "priority", "requires_confirmation", "raised_at", "track_id")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    LANE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    kind: AlertKind
    store_id: str
    zone_id: str
    lane_id: str
    camera_id: str
    member_id: str
    display_name: str
    message: str
    priority: float
    requires_confirmation: bool
    raised_at: _timestamp_pb2.Timestamp
    track_id: str
    def __init__(self, alert_id: _Optional[str] = ..., kind: _Optional[_Union[AlertKind, str]] = ..., store_id: _Optional[str] = ..., zone_id: _Optional[str] = ..., lane_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., member_id: _Optional[str] = ..., display_name: _Optional[str] = ..., message: _Optional[str] = ..., priority: _Optional[float] = ..., requires_confirmation: _Optional[bool] = ..., raised_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., track_id: _Optional[str] = ...) -> None: ...

class Calibration(_message.Message):
    __slots__ = ("quality_bin", "threshold", "estimated_fpir", "estimated_fnir", "frames", "calibration_id")
    QUALITY_BIN_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FPIR_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FNIR_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_ID_FIELD_NUMBER: _ClassVar[int]
    quality_bin: str
    threshold: float
    estimated_fpir: float
    estimated_fnir: float
    frames: int
    calibration_id: str
    def __init__(self, quality_bin: _Optional[str] = ..., threshold: _Optional[float] = ..., estimated_fpir: _Optional[float] = ..., estimated_fnir: _Optional[float] = ..., frames: _Optional[int] = ..., calibration_id: _Optional[str] = ...) -> None: ...
