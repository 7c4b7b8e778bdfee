from retailface.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRequest(_message.Message):
    __slots__ = ("chips", "include_attributes", "expected_model_id", "expected_model_version")
    CHIPS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    chips: _containers.RepeatedCompositeFieldContainer[_common_pb2.AlignedChip]
    include_attributes: bool
    expected_model_id: str
    expected_model_version: str
    def __init__(self, chips: _Optional[_Iterable[_Union[_common_pb2.AlignedChip, _Mapping]]] = ..., include_attributes: _Optional[bool] = ..., expected_model_id: _Optional[str] = ..., expected_model_version: _Optional[str] = ...) -> None: ...

class ChipResult(_message.Message):
    __slots__ = ("status", "embedding", "attributes")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.ItemStatus
    embedding: _common_pb2.Embedding
    attributes: _common_pb2.Attributes
    def __init__(self, status: _Optional[_Union[_common_pb2.ItemStatus, _Mapping]] = ..., embedding: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., attributes: _Optional[_Union[_common_pb2.Attributes, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("results", "model", "embed_ms", "attributes_ms")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBED_MS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_MS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ChipResult]
    model: _common_pb2.ModelInfo
    embed_ms: float
    attributes_ms: float
    def __init__(self, results: _Optional[_Iterable[_Union[ChipResult, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., embed_ms: _Optional[float] = ..., attributes_ms: _Optional[float] = ...) -> None: ...

class EmbeddingStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EmbeddingStats(_message.Message):
    __slots__ = ("model", "attribute_models", "execution_provider", "intra_op_threads", "max_batch_chips", "chips_embedded")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_MODELS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    INTRA_OP_THREADS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_CHIPS_FIELD_NUMBER: _ClassVar[int]
    CHIPS_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    attribute_models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelInfo]
    execution_provider: str
    intra_op_threads: int
    max_batch_chips: int
    chips_embedded: int
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., attribute_models: _Optional[_Iterable[_Union[_common_pb2.ModelInfo, _Mapping]]] = ..., execution_provider: _Optional[str] = ..., intra_op_threads: _Optional[int] = ..., max_batch_chips: _Optional[int] = ..., chips_embedded: _Optional[int] = ...) -> None: ...
