import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from retailface.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VisitEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VISIT_EVENT_TYPE_UNSPECIFIED: _ClassVar[VisitEventType]
    VISIT_EVENT_TYPE_ENTERED: _ClassVar[VisitEventType]
    VISIT_EVENT_TYPE_ZONE_DWELL: _ClassVar[VisitEventType]
    VISIT_EVENT_TYPE_CHECKOUT: _ClassVar[VisitEventType]
    VISIT_EVENT_TYPE_EXITED: _ClassVar[VisitEventType]

class OnlineEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ONLINE_EVENT_TYPE_UNSPECIFIED: _ClassVar[OnlineEventType]
    ONLINE_EVENT_TYPE_VIEWED: _ClassVar[OnlineEventType]
    ONLINE_EVENT_TYPE_SEARCHED: _ClassVar[OnlineEventType]
    ONLINE_EVENT_TYPE_ADDED_TO_CART: _ClassVar[OnlineEventType]
    ONLINE_EVENT_TYPE_ABANDONED_CART: _ClassVar[OnlineEventType]
    ONLINE_EVENT_TYPE_PURCHASED_ONLINE: _ClassVar[OnlineEventType]

class FeedbackType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_TYPE_UNSPECIFIED: _ClassVar[FeedbackType]
    FEEDBACK_TYPE_UNLIKED: _ClassVar[FeedbackType]
    FEEDBACK_TYPE_UNLIKED_CATEGORY: _ClassVar[FeedbackType]
    FEEDBACK_TYPE_REDEEMED: _ClassVar[FeedbackType]
    FEEDBACK_TYPE_DISMISSED: _ClassVar[FeedbackType]

class CameraRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMERA_ROLE_UNSPECIFIED: _ClassVar[CameraRole]
    CAMERA_ROLE_ENTRANCE: _ClassVar[CameraRole]
    CAMERA_ROLE_AISLE: _ClassVar[CameraRole]
    CAMERA_ROLE_LANE: _ClassVar[CameraRole]

class ErasureStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERASURE_STATUS_UNSPECIFIED: _ClassVar[ErasureStatus]
    ERASURE_STATUS_PENDING: _ClassVar[ErasureStatus]
    ERASURE_STATUS_COMPLETED: _ClassVar[ErasureStatus]
VISIT_EVENT_TYPE_UNSPECIFIED: VisitEventType
VISIT_EVENT_TYPE_ENTERED: VisitEventType
VISIT_EVENT_TYPE_ZONE_DWELL: VisitEventType
VISIT_EVENT_TYPE_CHECKOUT: VisitEventType
VISIT_EVENT_TYPE_EXITED: VisitEventType
ONLINE_EVENT_TYPE_UNSPECIFIED: OnlineEventType
ONLINE_EVENT_TYPE_VIEWED: OnlineEventType
ONLINE_EVENT_TYPE_SEARCHED: OnlineEventType
ONLINE_EVENT_TYPE_ADDED_TO_CART: OnlineEventType
ONLINE_EVENT_TYPE_ABANDONED_CART: OnlineEventType
ONLINE_EVENT_TYPE_PURCHASED_ONLINE: OnlineEventType
FEEDBACK_TYPE_UNSPECIFIED: FeedbackType
FEEDBACK_TYPE_UNLIKED: FeedbackType
FEEDBACK_TYPE_UNLIKED_CATEGORY: FeedbackType
FEEDBACK_TYPE_REDEEMED: FeedbackType
FEEDBACK_TYPE_DISMISSED: FeedbackType
CAMERA_ROLE_UNSPECIFIED: CameraRole
CAMERA_ROLE_ENTRANCE: CameraRole
CAMERA_ROLE_AISLE: CameraRole
CAMERA_ROLE_LANE: CameraRole
ERASURE_STATUS_UNSPECIFIED: ErasureStatus
ERASURE_STATUS_PENDING: ErasureStatus
ERASURE_STATUS_COMPLETED: ErasureStatus

class EmotionSummary(_message.Message):
    __slots__ = ("dominant", "negative_fraction", "seconds")
    DOMINANT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    dominant: _common_pb2.Emotion
    negative_fraction: float
    seconds: float
    def __init__(self, dominant: _Optional[_Union[_common_pb2.Emotion, str]] = ..., negative_fraction: _Optional[float] = ..., seconds: _Optional[float] = ...) -> None: ...

class VisitEvent(_message.Message):
    __slots__ = ("event_id", "type", "store_id", "camera_id", "zone_id", "lane_id", "member_id", "match_score", "track_id", "at", "dwell_seconds", "attributes", "emotion", "identification")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    LANE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MATCH_SCORE_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    DWELL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    IDENTIFICATION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    type: VisitEventType
    store_id: str
    camera_id: str
    zone_id: str
    lane_id: str
    member_id: str
    match_score: float
    track_id: str
    at: _timestamp_pb2.Timestamp
    dwell_seconds: float
    attributes: _common_pb2.Attributes
    emotion: EmotionSummary
    identification: _common_pb2.Calibration
    def __init__(self, event_id: _Optional[str] = ..., type: _Optional[_Union[VisitEventType, str]] = ..., store_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., zone_id: _Optional[str] = ..., lane_id: _Optional[str] = ..., member_id: _Optional[str] = ..., match_score: _Optional[float] = ..., track_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dwell_seconds: _Optional[float] = ..., attributes: _Optional[_Union[_common_pb2.Attributes, _Mapping]] = ..., emotion: _Optional[_Union[EmotionSummary, _Mapping]] = ..., identification: _Optional[_Union[_common_pb2.Calibration, _Mapping]] = ...) -> None: ...

class VisitEventResult(_message.Message):
    __slots__ = ("duplicate", "offers_pushed", "alerts_raised", "notes")
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    OFFERS_PUSHED_FIELD_NUMBER: _ClassVar[int]
    ALERTS_RAISED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    offers_pushed: _containers.RepeatedCompositeFieldContainer[_common_pb2.Offer]
    alerts_raised: _containers.RepeatedCompositeFieldContainer[_common_pb2.StaffAlert]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, duplicate: _Optional[bool] = ..., offers_pushed: _Optional[_Iterable[_Union[_common_pb2.Offer, _Mapping]]] = ..., alerts_raised: _Optional[_Iterable[_Union[_common_pb2.StaffAlert, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class GetOffersRequest(_message.Message):
    __slots__ = ("member_id", "store_id", "context", "limit")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    store_id: str
    context: str
    limit: int
    def __init__(self, member_id: _Optional[str] = ..., store_id: _Optional[str] = ..., context: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetOffersResponse(_message.Message):
    __slots__ = ("offers", "notes")
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Offer]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, offers: _Optional[_Iterable[_Union[_common_pb2.Offer, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class BasketLine(_message.Message):
    __slots__ = ("sku", "quantity")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class CheckoutOffersRequest(_message.Message):
    __slots__ = ("store_id", "lane_id", "member_id", "loyalty_number", "basket", "identified_by", "limit")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    LANE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    LOYALTY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BASKET_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    lane_id: str
    member_id: str
    loyalty_number: str
    basket: _containers.RepeatedCompositeFieldContainer[BasketLine]
    identified_by: _common_pb2.IdentificationMethod
    limit: int
    def __init__(self, store_id: _Optional[str] = ..., lane_id: _Optional[str] = ..., member_id: _Optional[str] = ..., loyalty_number: _Optional[str] = ..., basket: _Optional[_Iterable[_Union[BasketLine, _Mapping]]] = ..., identified_by: _Optional[_Union[_common_pb2.IdentificationMethod, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class CheckoutOffersResponse(_message.Message):
    __slots__ = ("basket_completions", "member_offers", "member_id", "identified_by", "confirmation_required", "notes")
    BASKET_COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_OFFERS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_BY_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    basket_completions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Offer]
    member_offers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Offer]
    member_id: str
    identified_by: _common_pb2.IdentificationMethod
    confirmation_required: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, basket_completions: _Optional[_Iterable[_Union[_common_pb2.Offer, _Mapping]]] = ..., member_offers: _Optional[_Iterable[_Union[_common_pb2.Offer, _Mapping]]] = ..., member_id: _Optional[str] = ..., identified_by: _Optional[_Union[_common_pb2.IdentificationMethod, str]] = ..., confirmation_required: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class PurchaseLine(_message.Message):
    __slots__ = ("sku", "quantity", "unit_price")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    unit_price: float
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[float] = ...) -> None: ...

class Purchase(_message.Message):
    __slots__ = ("transaction_id", "store_id", "lane_id", "member_id", "loyalty_number", "at", "lines", "redeemed_offer_ids")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    LANE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    LOYALTY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    store_id: str
    lane_id: str
    member_id: str
    loyalty_number: str
    at: _timestamp_pb2.Timestamp
    lines: _containers.RepeatedCompositeFieldContainer[PurchaseLine]
    redeemed_offer_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, transaction_id: _Optional[str] = ..., store_id: _Optional[str] = ..., lane_id: _Optional[str] = ..., member_id: _Optional[str] = ..., loyalty_number: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[PurchaseLine, _Mapping]]] = ..., redeemed_offer_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RecordPurchaseResponse(_message.Message):
    __slots__ = ("duplicate",)
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    def __init__(self, duplicate: _Optional[bool] = ...) -> None: ...

class OnlineEvent(_message.Message):
    __slots__ = ("event_id", "member_id", "type", "sku", "query", "session_id", "at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    member_id: str
    type: OnlineEventType
    sku: str
    query: str
    session_id: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., member_id: _Optional[str] = ..., type: _Optional[_Union[OnlineEventType, str]] = ..., sku: _Optional[str] = ..., query: _Optional[str] = ..., session_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IngestOnlineEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[OnlineEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[OnlineEvent, _Mapping]]] = ...) -> None: ...

class IngestOnlineEventsResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "statuses")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    statuses: _containers.RepeatedCompositeFieldContainer[_common_pb2.ItemStatus]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., statuses: _Optional[_Iterable[_Union[_common_pb2.ItemStatus, _Mapping]]] = ...) -> None: ...

class OfferFeedback(_message.Message):
    __slots__ = ("feedback_id", "member_id", "offer_id", "type", "at", "sku")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    member_id: str
    offer_id: str
    type: FeedbackType
    at: _timestamp_pb2.Timestamp
    sku: str
    def __init__(self, feedback_id: _Optional[str] = ..., member_id: _Optional[str] = ..., offer_id: _Optional[str] = ..., type: _Optional[_Union[FeedbackType, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sku: _Optional[str] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QuietHours(_message.Message):
    __slots__ = ("start_minute", "end_minute", "timezone")
    START_MINUTE_FIELD_NUMBER: _ClassVar[int]
    END_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    start_minute: int
    end_minute: int
    timezone: str
    def __init__(self, start_minute: _Optional[int] = ..., end_minute: _Optional[int] = ..., timezone: _Optional[str] = ...) -> None: ...

class NotificationChannel(_message.Message):
    __slots__ = ("kind", "address")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    address: str
    def __init__(self, kind: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class MemberPreferences(_message.Message):
    __slots__ = ("member_id", "allow_greeting", "preferred_name", "excluded_categories", "favourite_categories", "quiet_hours", "channels", "max_offers_per_visit")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOW_GREETING_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_NAME_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    FAVOURITE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    MAX_OFFERS_PER_VISIT_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    allow_greeting: bool
    preferred_name: str
    excluded_categories: _containers.RepeatedScalarFieldContainer[str]
    favourite_categories: _containers.RepeatedScalarFieldContainer[str]
    quiet_hours: QuietHours
    channels: _containers.RepeatedCompositeFieldContainer[NotificationChannel]
    max_offers_per_visit: int
    def __init__(self, member_id: _Optional[str] = ..., allow_greeting: _Optional[bool] = ..., preferred_name: _Optional[str] = ..., excluded_categories: _Optional[_Iterable[str]] = ..., favourite_categories: _Optional[_Iterable[str]] = ..., quiet_hours: _Optional[_Union[QuietHours, _Mapping]] = ..., channels: _Optional[_Iterable[_Union[NotificationChannel, _Mapping]]] = ..., max_offers_per_visit: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("member_id", "loyalty_number", "display_name", "home_store_id", "consent", "preferences", "created_at", "recognition")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    LOYALTY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    HOME_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RECOGNITION_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    loyalty_number: str
    display_name: str
    home_store_id: str
    consent: _common_pb2.ConsentRecord
    preferences: MemberPreferences
    created_at: _timestamp_pb2.Timestamp
    recognition: Recognition
    def __init__(self, member_id: _Optional[str] = ..., loyalty_number: _Optional[str] = ..., display_name: _Optional[str] = ..., home_store_id: _Optional[str] = ..., consent: _Optional[_Union[_common_pb2.ConsentRecord, _Mapping]] = ..., preferences: _Optional[_Union[MemberPreferences, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recognition: _Optional[_Union[Recognition, _Mapping]] = ...) -> None: ...

class Recognition(_message.Message):
    __slots__ = ("may_identify", "may_greet", "greeting_name")
    MAY_IDENTIFY_FIELD_NUMBER: _ClassVar[int]
    MAY_GREET_FIELD_NUMBER: _ClassVar[int]
    GREETING_NAME_FIELD_NUMBER: _ClassVar[int]
    may_identify: bool
    may_greet: bool
    greeting_name: str
    def __init__(self, may_identify: _Optional[bool] = ..., may_greet: _Optional[bool] = ..., greeting_name: _Optional[str] = ...) -> None: ...

class GetMemberRequest(_message.Message):
    __slots__ = ("member_id", "loyalty_number")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    LOYALTY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    loyalty_number: str
    def __init__(self, member_id: _Optional[str] = ..., loyalty_number: _Optional[str] = ...) -> None: ...

class GetPreferencesRequest(_message.Message):
    __slots__ = ("member_id",)
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    def __init__(self, member_id: _Optional[str] = ...) -> None: ...

class GrantConsentRequest(_message.Message):
    __slots__ = ("member_id", "consent", "actor")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    consent: _common_pb2.ConsentRecord
    actor: str
    def __init__(self, member_id: _Optional[str] = ..., consent: _Optional[_Union[_common_pb2.ConsentRecord, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...

class RevokeConsentRequest(_message.Message):
    __slots__ = ("member_id", "scopes", "actor", "reason")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    scopes: _containers.RepeatedScalarFieldContainer[_common_pb2.ConsentScope]
    actor: str
    reason: str
    def __init__(self, member_id: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[_common_pb2.ConsentScope, str]]] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EraseMemberDataRequest(_message.Message):
    __slots__ = ("member_id", "actor", "reason")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    actor: str
    reason: str
    def __init__(self, member_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EraseMemberDataResponse(_message.Message):
    __slots__ = ("rows_removed",)
    class RowsRemovedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ROWS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    rows_removed: _containers.ScalarMap[str, int]
    def __init__(self, rows_removed: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("sku", "name", "category", "sensitive", "price")
    SKU_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    name: str
    category: str
    sensitive: bool
    price: float
    def __init__(self, sku: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., sensitive: _Optional[bool] = ..., price: _Optional[float] = ...) -> None: ...

class UpsertProductsRequest(_message.Message):
    __slots__ = ("products",)
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ...) -> None: ...

class UpsertProductsResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class InventoryItem(_message.Message):
    __slots__ = ("store_id", "sku", "on_hand", "aisle", "shelf")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    ON_HAND_FIELD_NUMBER: _ClassVar[int]
    AISLE_FIELD_NUMBER: _ClassVar[int]
    SHELF_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    sku: str
    on_hand: int
    aisle: str
    shelf: str
    def __init__(self, store_id: _Optional[str] = ..., sku: _Optional[str] = ..., on_hand: _Optional[int] = ..., aisle: _Optional[str] = ..., shelf: _Optional[str] = ...) -> None: ...

class SetInventoryRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[InventoryItem]
    def __init__(self, items: _Optional[_Iterable[_Union[InventoryItem, _Mapping]]] = ...) -> None: ...

class SetInventoryResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("campaign_id", "name", "skus", "categories", "discount_percent", "valid_from", "valid_until", "priority", "frequency_cap_per_day", "store_ids")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SKUS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_CAP_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    STORE_IDS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    name: str
    skus: _containers.RepeatedScalarFieldContainer[str]
    categories: _containers.RepeatedScalarFieldContainer[str]
    discount_percent: float
    valid_from: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    priority: int
    frequency_cap_per_day: int
    store_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, campaign_id: _Optional[str] = ..., name: _Optional[str] = ..., skus: _Optional[_Iterable[str]] = ..., categories: _Optional[_Iterable[str]] = ..., discount_percent: _Optional[float] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[int] = ..., frequency_cap_per_day: _Optional[int] = ..., store_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class StaffAlertsRequest(_message.Message):
    __slots__ = ("store_id", "kinds")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    kinds: _containers.RepeatedScalarFieldContainer[_common_pb2.AlertKind]
    def __init__(self, store_id: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[_common_pb2.AlertKind, str]]] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("alert_id", "staff_id", "confirmed")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    staff_id: str
    confirmed: bool
    def __init__(self, alert_id: _Optional[str] = ..., staff_id: _Optional[str] = ..., confirmed: _Optional[bool] = ...) -> None: ...

class AcknowledgeAlertResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditQuery(_message.Message):
    __slots__ = ("member_id", "since", "limit", "actor", "action", "until")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    since: _timestamp_pb2.Timestamp
    limit: int
    actor: str
    action: str
    until: _timestamp_pb2.Timestamp
    def __init__(self, member_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("at", "actor", "action", "subject", "reason", "detail")
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    actor: str
    action: str
    subject: str
    reason: str
    detail: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class AuditQueryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class VerifyAuditChainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditChainResponse(_message.Message):
    __slots__ = ("rows_checked", "intact", "first_broken_id", "reason")
    ROWS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    INTACT_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rows_checked: int
    intact: bool
    first_broken_id: int
    reason: str
    def __init__(self, rows_checked: _Optional[int] = ..., intact: _Optional[bool] = ..., first_broken_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Store(_message.Message):
    __slots__ = ("store_id", "name", "timezone", "watchlist_enabled", "actor")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    WATCHLIST_ENABLED_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    name: str
    timezone: str
    watchlist_enabled: bool
    actor: str
    def __init__(self, store_id: _Optional[str] = ..., name: _Optional[str] = ..., timezone: _Optional[str] = ..., watchlist_enabled: _Optional[bool] = ..., actor: _Optional[str] = ...) -> None: ...

class ListStoresRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListStoresResponse(_message.Message):
    __slots__ = ("stores",)
    STORES_FIELD_NUMBER: _ClassVar[int]
    stores: _containers.RepeatedCompositeFieldContainer[Store]
    def __init__(self, stores: _Optional[_Iterable[_Union[Store, _Mapping]]] = ...) -> None: ...

class Camera(_message.Message):
    __slots__ = ("camera_id", "store_id", "role", "zone_id", "lane_id", "actor")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    LANE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    store_id: str
    role: CameraRole
    zone_id: str
    lane_id: str
    actor: str
    def __init__(self, camera_id: _Optional[str] = ..., store_id: _Optional[str] = ..., role: _Optional[_Union[CameraRole, str]] = ..., zone_id: _Optional[str] = ..., lane_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class RemoveCameraRequest(_message.Message):
    __slots__ = ("camera_id", "actor")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    actor: str
    def __init__(self, camera_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class RemoveCameraResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCamerasRequest(_message.Message):
    __slots__ = ("store_id",)
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    def __init__(self, store_id: _Optional[str] = ...) -> None: ...

class ListCamerasResponse(_message.Message):
    __slots__ = ("cameras", "version")
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    cameras: _containers.RepeatedCompositeFieldContainer[Camera]
    version: int
    def __init__(self, cameras: _Optional[_Iterable[_Union[Camera, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class WatchlistEntry(_message.Message):
    __slots__ = ("subject_id", "reason", "added_by", "added_at", "expires_at", "confirmed_by", "confirmed_at", "actor", "confirm")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ADDED_BY_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_BY_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    reason: str
    added_by: str
    added_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    confirmed_by: str
    confirmed_at: _timestamp_pb2.Timestamp
    actor: str
    confirm: bool
    def __init__(self, subject_id: _Optional[str] = ..., reason: _Optional[str] = ..., added_by: _Optional[str] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confirmed_by: _Optional[str] = ..., confirmed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., confirm: _Optional[bool] = ...) -> None: ...

class RemoveWatchlistEntryRequest(_message.Message):
    __slots__ = ("subject_id", "actor", "reason")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    actor: str
    reason: str
    def __init__(self, subject_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveWatchlistEntryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWatchlistRequest(_message.Message):
    __slots__ = ("include_expired",)
    INCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    include_expired: bool
    def __init__(self, include_expired: _Optional[bool] = ...) -> None: ...

class ListWatchlistResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[WatchlistEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[WatchlistEntry, _Mapping]]] = ...) -> None: ...

class IssueMemberSignInRequest(_message.Message):
    __slots__ = ("member_id", "actor", "ttl_seconds")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    actor: str
    ttl_seconds: int
    def __init__(self, member_id: _Optional[str] = ..., actor: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class IssueMemberSignInResponse(_message.Message):
    __slots__ = ("code", "expires_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    code: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RedeemMemberSignInRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class RedeemMemberSignInResponse(_message.Message):
    __slots__ = ("member_id", "expires_at")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, member_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MemberActivityRequest(_message.Message):
    __slots__ = ("member_id", "limit")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    limit: int
    def __init__(self, member_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class MemberVisit(_message.Message):
    __slots__ = ("visit_id", "store_id", "started_at", "ended_at", "zones")
    VISIT_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    ZONES_FIELD_NUMBER: _ClassVar[int]
    visit_id: str
    store_id: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    zones: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, visit_id: _Optional[str] = ..., store_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., zones: _Optional[_Iterable[str]] = ...) -> None: ...

class PushedOffer(_message.Message):
    __slots__ = ("offer_id", "sku", "product_name", "store_id", "pushed_at", "feedback")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_NAME_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    PUSHED_AT_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    sku: str
    product_name: str
    store_id: str
    pushed_at: _timestamp_pb2.Timestamp
    feedback: str
    def __init__(self, offer_id: _Optional[str] = ..., sku: _Optional[str] = ..., product_name: _Optional[str] = ..., store_id: _Optional[str] = ..., pushed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feedback: _Optional[str] = ...) -> None: ...

class MemberActivity(_message.Message):
    __slots__ = ("visits", "offers", "unliked_skus", "unliked_categories")
    VISITS_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    UNLIKED_SKUS_FIELD_NUMBER: _ClassVar[int]
    UNLIKED_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    visits: _containers.RepeatedCompositeFieldContainer[MemberVisit]
    offers: _containers.RepeatedCompositeFieldContainer[PushedOffer]
    unliked_skus: _containers.RepeatedScalarFieldContainer[str]
    unliked_categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, visits: _Optional[_Iterable[_Union[MemberVisit, _Mapping]]] = ..., offers: _Optional[_Iterable[_Union[PushedOffer, _Mapping]]] = ..., unliked_skus: _Optional[_Iterable[str]] = ..., unliked_categories: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportMemberDataRequest(_message.Message):
    __slots__ = ("member_id", "actor")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    actor: str
    def __init__(self, member_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class ExportMemberDataResponse(_message.Message):
    __slots__ = ("json_document",)
    JSON_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    json_document: bytes
    def __init__(self, json_document: _Optional[bytes] = ...) -> None: ...

class ErasureRequest(_message.Message):
    __slots__ = ("request_id", "member_ref", "member_id", "requested_by", "requested_at", "status", "completed_at", "completed_by", "templates_removed", "rows_removed")
    class RowsRemovedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_REF_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_BY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    ROWS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    member_ref: str
    member_id: str
    requested_by: str
    requested_at: _timestamp_pb2.Timestamp
    status: ErasureStatus
    completed_at: _timestamp_pb2.Timestamp
    completed_by: str
    templates_removed: int
    rows_removed: _containers.ScalarMap[str, int]
    def __init__(self, request_id: _Optional[str] = ..., member_ref: _Optional[str] = ..., member_id: _Optional[str] = ..., requested_by: _Optional[str] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[ErasureStatus, str]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_by: _Optional[str] = ..., templates_removed: _Optional[int] = ..., rows_removed: _Optional[_Mapping[str, int]] = ...) -> None: ...

class RequestErasureRequest(_message.Message):
    __slots__ = ("member_id", "actor", "reason")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    actor: str
    reason: str
    def __init__(self, member_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListErasureRequestsRequest(_message.Message):
    __slots__ = ("status", "limit")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    status: ErasureStatus
    limit: int
    def __init__(self, status: _Optional[_Union[ErasureStatus, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListErasureRequestsResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ErasureRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[ErasureRequest, _Mapping]]] = ...) -> None: ...

class CompleteErasureRequest(_message.Message):
    __slots__ = ("request_id", "member_id", "actor", "templates_removed", "rows_removed")
    class RowsRemovedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    ROWS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    member_id: str
    actor: str
    templates_removed: int
    rows_removed: _containers.ScalarMap[str, int]
    def __init__(self, request_id: _Optional[str] = ..., member_id: _Optional[str] = ..., actor: _Optional[str] = ..., templates_removed: _Optional[int] = ..., rows_removed: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ConsentHistoryRequest(_message.Message):
    __slots__ = ("member_id",)
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    def __init__(self, member_id: _Optional[str] = ...) -> None: ...

class ConsentChange(_message.Message):
    __slots__ = ("at", "action", "scopes", "policy_version", "source", "actor", "reason")
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    action: str
    scopes: _containers.RepeatedScalarFieldContainer[_common_pb2.ConsentScope]
    policy_version: str
    source: str
    actor: str
    reason: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[_common_pb2.ConsentScope, str]]] = ..., policy_version: _Optional[str] = ..., source: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ConsentHistoryResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ConsentChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[ConsentChange, _Mapping]]] = ...) -> None: ...

class StoreAnalyticsRequest(_message.Message):
    __slots__ = ("store_id", "since", "until")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, store_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HourCount(_message.Message):
    __slots__ = ("hour", "visits", "anonymous_shoppers")
    HOUR_FIELD_NUMBER: _ClassVar[int]
    VISITS_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_SHOPPERS_FIELD_NUMBER: _ClassVar[int]
    hour: _timestamp_pb2.Timestamp
    visits: int
    anonymous_shoppers: int
    def __init__(self, hour: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., visits: _Optional[int] = ..., anonymous_shoppers: _Optional[int] = ...) -> None: ...

class ZoneDwell(_message.Message):
    __slots__ = ("zone_id", "events", "mean_dwell_seconds", "p90_dwell_seconds")
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    MEAN_DWELL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P90_DWELL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    zone_id: str
    events: int
    mean_dwell_seconds: float
    p90_dwell_seconds: float
    def __init__(self, zone_id: _Optional[str] = ..., events: _Optional[int] = ..., mean_dwell_seconds: _Optional[float] = ..., p90_dwell_seconds: _Optional[float] = ...) -> None: ...

class DemographicCount(_message.Message):
    __slots__ = ("age_band", "gender", "shoppers")
    AGE_BAND_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    SHOPPERS_FIELD_NUMBER: _ClassVar[int]
    age_band: str
    gender: _common_pb2.Gender
    shoppers: int
    def __init__(self, age_band: _Optional[str] = ..., gender: _Optional[_Union[_common_pb2.Gender, str]] = ..., shoppers: _Optional[int] = ...) -> None: ...

class LaneSentiment(_message.Message):
    __slots__ = ("lane_id", "checkouts", "mean_negative", "dissatisfaction_alerts")
    LANE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKOUTS_FIELD_NUMBER: _ClassVar[int]
    MEAN_NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    DISSATISFACTION_ALERTS_FIELD_NUMBER: _ClassVar[int]
    lane_id: str
    checkouts: int
    mean_negative: float
    dissatisfaction_alerts: int
    def __init__(self, lane_id: _Optional[str] = ..., checkouts: _Optional[int] = ..., mean_negative: _Optional[float] = ..., dissatisfaction_alerts: _Optional[int] = ...) -> None: ...

class OfferCounts(_message.Message):
    __slots__ = ("pushed", "redeemed", "unliked")
    PUSHED_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_FIELD_NUMBER: _ClassVar[int]
    UNLIKED_FIELD_NUMBER: _ClassVar[int]
    pushed: int
    redeemed: int
    unliked: int
    def __init__(self, pushed: _Optional[int] = ..., redeemed: _Optional[int] = ..., unliked: _Optional[int] = ...) -> None: ...

class StoreAnalytics(_message.Message):
    __slots__ = ("store_id", "hours", "zones", "demographics", "lanes", "offers")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    ZONES_FIELD_NUMBER: _ClassVar[int]
    DEMOGRAPHICS_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    hours: _containers.RepeatedCompositeFieldContainer[HourCount]
    zones: _containers.RepeatedCompositeFieldContainer[ZoneDwell]
    demographics: _containers.RepeatedCompositeFieldContainer[DemographicCount]
    lanes: _containers.RepeatedCompositeFieldContainer[LaneSentiment]
    offers: OfferCounts
    def __init__(self, store_id: _Optional[str] = ..., hours: _Optional[_Iterable[_Union[HourCount, _Mapping]]] = ..., zones: _Optional[_Iterable[_Union[ZoneDwell, _Mapping]]] = ..., demographics: _Optional[_Iterable[_Union[DemographicCount, _Mapping]]] = ..., lanes: _Optional[_Iterable[_Union[LaneSentiment, _Mapping]]] = ..., offers: _Optional[_Union[OfferCounts, _Mapping]] = ...) -> None: ...
