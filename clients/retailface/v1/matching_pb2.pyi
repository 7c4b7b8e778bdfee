from retailface.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_MATCH: _ClassVar[Decision]
    DECISION_NO_MATCH: _ClassVar[Decision]
    DECISION_AMBIGUOUS: _ClassVar[Decision]
DECISION_UNSPECIFIED: Decision
DECISION_MATCH: Decision
DECISION_NO_MATCH: Decision
DECISION_AMBIGUOUS: Decision

class SubjectFilter(_message.Message):
    __slots__ = ("subject_ids", "required_tags")
    SUBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_TAGS_FIELD_NUMBER: _ClassVar[int]
    subject_ids: _containers.RepeatedScalarFieldContainer[str]
    required_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject_ids: _Optional[_Iterable[str]] = ..., required_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("gallery", "queries", "top_k", "filter", "threshold", "margin", "probe_qualities", "min_sequence")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    PROBE_QUALITIES_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    queries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    top_k: int
    filter: SubjectFilter
    threshold: float
    margin: float
    probe_qualities: _containers.RepeatedCompositeFieldContainer[ProbeQuality]
    min_sequence: int
    def __init__(self, gallery: _Optional[str] = ..., queries: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[SubjectFilter, _Mapping]] = ..., threshold: _Optional[float] = ..., margin: _Optional[float] = ..., probe_qualities: _Optional[_Iterable[_Union[ProbeQuality, _Mapping]]] = ..., min_sequence: _Optional[int] = ...) -> None: ...

class ProbeQuality(_message.Message):
    __slots__ = ("inter_eye_px", "frames")
    INTER_EYE_PX_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    inter_eye_px: float
    frames: int
    def __init__(self, inter_eye_px: _Optional[float] = ..., frames: _Optional[int] = ...) -> None: ...

class SubjectScore(_message.Message):
    __slots__ = ("subject_id", "score", "template_id")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    score: float
    template_id: str
    def __init__(self, subject_id: _Optional[str] = ..., score: _Optional[float] = ..., template_id: _Optional[str] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("status", "decision", "candidates", "calibration")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.ItemStatus
    decision: Decision
    candidates: _containers.RepeatedCompositeFieldContainer[SubjectScore]
    calibration: _common_pb2.Calibration
    def __init__(self, status: _Optional[_Union[_common_pb2.ItemStatus, _Mapping]] = ..., decision: _Optional[_Union[Decision, str]] = ..., candidates: _Optional[_Iterable[_Union[SubjectScore, _Mapping]]] = ..., calibration: _Optional[_Union[_common_pb2.Calibration, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "threshold", "margin", "plan")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    threshold: float
    margin: float
    plan: str
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ..., threshold: _Optional[float] = ..., margin: _Optional[float] = ..., plan: _Optional[str] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("template_id", "embedding")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    embedding: _common_pb2.Embedding
    def __init__(self, template_id: _Optional[str] = ..., embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("gallery", "subject_id", "templates", "tags")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    subject_id: str
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gallery: _Optional[str] = ..., subject_id: _Optional[str] = ..., templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("added", "subject_template_count", "sequence")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TEMPLATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    added: int
    subject_template_count: int
    sequence: int
    def __init__(self, added: _Optional[int] = ..., subject_template_count: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class EraseSubjectRequest(_message.Message):
    __slots__ = ("gallery", "subject_id")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    subject_id: str
    def __init__(self, gallery: _Optional[str] = ..., subject_id: _Optional[str] = ...) -> None: ...

class EraseSubjectResponse(_message.Message):
    __slots__ = ("templates_removed", "sequences")
    class SequencesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TEMPLATES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    templates_removed: int
    sequences: _containers.ScalarMap[str, int]
    def __init__(self, templates_removed: _Optional[int] = ..., sequences: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SetSubjectEligibilityRequest(_message.Message):
    __slots__ = ("gallery", "subject_id", "tags")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    subject_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gallery: _Optional[str] = ..., subject_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class SetSubjectEligibilityResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class ListGalleriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GalleryInfo(_message.Message):
    __slots__ = ("name", "templates", "subjects", "threshold", "margin", "model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    templates: int
    subjects: int
    threshold: float
    margin: float
    model: _common_pb2.ModelInfo
    def __init__(self, name: _Optional[str] = ..., templates: _Optional[int] = ..., subjects: _Optional[int] = ..., threshold: _Optional[float] = ..., margin: _Optional[float] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class ListGalleriesResponse(_message.Message):
    __slots__ = ("galleries",)
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    galleries: _containers.RepeatedCompositeFieldContainer[GalleryInfo]
    def __init__(self, galleries: _Optional[_Iterable[_Union[GalleryInfo, _Mapping]]] = ...) -> None: ...

class GalleryStatsRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...

class GalleryStats(_message.Message):
    __slots__ = ("info", "memory_bytes", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "search_threads", "log_records_since_snapshot", "last_snapshot_at", "search_kernel", "memory_parts", "applied_sequence")
    class MemoryPartsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    INFO_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    HNSW_M_FIELD_NUMBER: _ClassVar[int]
    HNSW_EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    HNSW_EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    SEARCH_THREADS_FIELD_NUMBER: _ClassVar[int]
    LOG_RECORDS_SINCE_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_AT_FIELD_NUMBER: _ClassVar[int]
    SEARCH_KERNEL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PARTS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    info: GalleryInfo
    memory_bytes: int
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_ef_search: int
    search_threads: int
    log_records_since_snapshot: int
    last_snapshot_at: str
    search_kernel: str
    memory_parts: _containers.ScalarMap[str, int]
    applied_sequence: int
    def __init__(self, info: _Optional[_Union[GalleryInfo, _Mapping]] = ..., memory_bytes: _Optional[int] = ..., hnsw_m: _Optional[int] = ..., hnsw_ef_construction: _Optional[int] = ..., hnsw_ef_search: _Optional[int] = ..., search_threads: _Optional[int] = ..., log_records_since_snapshot: _Optional[int] = ..., last_snapshot_at: _Optional[str] = ..., search_kernel: _Optional[str] = ..., memory_parts: _Optional[_Mapping[str, int]] = ..., applied_sequence: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("galleries",)
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    galleries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, galleries: _Optional[_Iterable[str]] = ...) -> None: ...
