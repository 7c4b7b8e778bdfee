from retailface.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectRequest(_message.Message):
    __slots__ = ("frames", "include_chips", "score_threshold", "max_faces_per_frame")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CHIPS_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_PER_FRAME_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.Frame]
    include_chips: bool
    score_threshold: float
    max_faces_per_frame: int
    def __init__(self, frames: _Optional[_Iterable[_Union[_common_pb2.Frame, _Mapping]]] = ..., include_chips: _Optional[bool] = ..., score_threshold: _Optional[float] = ..., max_faces_per_frame: _Optional[int] = ...) -> None: ...

class FrameFaces(_message.Message):
    __slots__ = ("status", "faces", "width", "height", "decode_ms", "detect_ms")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    DETECT_MS_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.ItemStatus
    faces: _containers.RepeatedCompositeFieldContainer[_common_pb2.Face]
    width: int
    height: int
    decode_ms: float
    detect_ms: float
    def __init__(self, status: _Optional[_Union[_common_pb2.ItemStatus, _Mapping]] = ..., faces: _Optional[_Iterable[_Union[_common_pb2.Face, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., decode_ms: _Optional[float] = ..., detect_ms: _Optional[float] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[FrameFaces]
    model: _common_pb2.ModelInfo
    def __init__(self, results: _Optional[_Iterable[_Union[FrameFaces, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DetectionStats(_message.Message):
    __slots__ = ("model", "execution_provider", "intra_op_threads", "input_width", "input_height", "frames_processed", "faces_detected", "max_batch_frames", "max_frame_pixels")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    INTRA_OP_THREADS_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    FACES_DETECTED_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_PIXELS_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    execution_provider: str
    intra_op_threads: int
    input_width: int
    input_height: int
    frames_processed: int
    faces_detected: int
    max_batch_frames: int
    max_frame_pixels: int
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., execution_provider: _Optional[str] = ..., intra_op_threads: _Optional[int] = ..., input_width: _Optional[int] = ..., input_height: _Optional[int] = ..., frames_processed: _Optional[int] = ..., faces_detected: _Optional[int] = ..., max_batch_frames: _Optional[int] = ..., max_frame_pixels: _Optional[int] = ...) -> None: ...
