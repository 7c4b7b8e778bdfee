"""gRPC DetectionService: its settings, and protos to and from the detection engine's types.

A batch that is itself invalid (empty, over RETAILFACE_DETECTION_MAX_BATCH_FRAMES, a bad per-call
override) makes the engine raise InvalidArgument, which the bootstrap turns into the call's
status; a bad frame gets INVALID_ARGUMENT in its own FrameFaces.status while the other frames are
processed.
"""

from __future__ import annotations

import grpc
import structlog

from retailface.services.detection.decoding import EncodedFrame, Frame, FrameError, RawFrame
from retailface.services.detection.engine import (
    DetectedFace,
    DetectionEngine,
    DetectionSettings,
    EngineStats,
    FrameResult,
)
from retailface.services.detection.quality import FaceQuality, QualityGates
from retailface.services.detection.yunet import check_input_side
from retailface.services.shared.config import (
    ServiceConfig,
    Setting,
    number_in,
    parse_positive_float,
    parse_positive_int,
    parse_thread_count,
    parse_unit_float,
)
from retailface.services.shared.model_files import model_path
from retailface.services.shared.onnx_providers import PROVIDER_CHOICES
from retailface.services.shared.server import Registration
from retailface.v1 import common_pb2, detection_pb2, detection_pb2_grpc

log = structlog.get_logger(__name__)
OK = grpc.StatusCode.OK.value[0]
FRAME_ERROR = FrameError.code.value[0]


def parse_input_side(raw: str) -> int:
    return check_input_side(int(raw))


parse_angle = number_in(0.0, 90.0, "degrees in (0, 90]", "angle", low_open=True)
parse_luma = number_in(0.0, 255.0, "a mean luma in [0, 255]", "luma")


_GATES = QualityGates()
_DEFAULTS = DetectionSettings()
SETTINGS: list[Setting] = [
    Setting("RETAILFACE_DETECTION_INPUT_WIDTH", parse_input_side, _DEFAULTS.input_width,
            "largest detector input width: wider frames are scaled down (aspect kept), then padded to a multiple of "
            "32; at 1280 frames up to 1280 wide run at full resolution"),
    Setting("RETAILFACE_DETECTION_INPUT_HEIGHT", parse_input_side, _DEFAULTS.input_height,
            "largest detector input height (multiple of 32)"),
    Setting("RETAILFACE_DETECTION_SCORE_THRESHOLD", parse_unit_float, _DEFAULTS.score_threshold,
            "YuNet score (sqrt(cls x obj)) at or above which a face is returned"),
    Setting("RETAILFACE_DETECTION_NMS_THRESHOLD", parse_unit_float, _DEFAULTS.nms_threshold,
            "IoU above which overlapping boxes are merged by non-maximum suppression"),
    Setting("RETAILFACE_DETECTION_MAX_FACES_PER_FRAME", parse_positive_int, _DEFAULTS.max_faces_per_frame,
            "most faces returned per frame (best scores first)"),
    Setting("RETAILFACE_DETECTION_MAX_BATCH_FRAMES", parse_positive_int, _DEFAULTS.max_batch_frames,
            "most frames in one Detect call; more is INVALID_ARGUMENT"),
    Setting("RETAILFACE_DETECTION_MAX_FRAME_PIXELS", parse_positive_int, _DEFAULTS.max_frame_pixels,
            "largest frame (width x height) accepted; checked from the header before decoding"),
    Setting("RETAILFACE_DETECTION_THREADS", parse_thread_count, _DEFAULTS.intra_op_threads,
            "onnxruntime intra-op threads (0: one per core)"),
    Setting("RETAILFACE_DETECTION_PROVIDER", str, _DEFAULTS.provider,
            "onnxruntime execution provider: auto (CUDA when present, else CPU), cpu, or cuda (fail if absent)",
            choices=PROVIDER_CHOICES),
    Setting("RETAILFACE_DETECTION_MAX_FRAMES_PER_RUN", parse_thread_count, _DEFAULTS.max_frames_per_run,
            "frames of one size per onnxruntime run (0: 1 on CPU, where batching is slower per frame; all on CUDA)"),
    Setting("RETAILFACE_DETECTION_MIN_INTER_EYE_PX", parse_positive_float, _GATES.min_inter_eye_px,
            "quality gate: smallest inter-eye distance in frame pixels (TOO_SMALL)"),
    Setting("RETAILFACE_DETECTION_MIN_SHARPNESS", parse_positive_float, _GATES.min_sharpness,
            "quality gate: smallest variance of the Laplacian on the face resized to 112x112 (BLURRY)"),
    Setting("RETAILFACE_DETECTION_MIN_BRIGHTNESS", parse_luma, _GATES.min_brightness,
            "quality gate: darkest mean luma of the face, 0..255 (TOO_DARK)"),
    Setting("RETAILFACE_DETECTION_MAX_BRIGHTNESS", parse_luma, _GATES.max_brightness,
            "quality gate: brightest mean luma of the face, 0..255 (TOO_BRIGHT)"),
    Setting("RETAILFACE_DETECTION_MAX_ABS_YAW_DEG", parse_angle, _GATES.max_abs_yaw_deg,
            "quality gate: largest |yaw| estimated from the landmarks, degrees (POSE)"),
    Setting("RETAILFACE_DETECTION_MAX_ABS_PITCH_DEG", parse_angle, _GATES.max_abs_pitch_deg,
            "quality gate: largest |pitch| estimated from the landmarks, degrees (POSE)"),
    Setting("RETAILFACE_DETECTION_MIN_IDENTIFICATION_SCORE", parse_unit_float, _GATES.min_identification_score,
            "quality gate: smallest detection score for identification (LOW_SCORE)"),
    Setting("RETAILFACE_DETECTION_TRUNCATION_TOLERANCE", parse_unit_float, _GATES.truncation_tolerance,
            "quality gate: fraction of its width/height a face box may leave the frame by (TRUNCATED)"),
]  # fmt: skip


def settings_from_config(config: ServiceConfig) -> DetectionSettings:
    get = config.get
    if get("RETAILFACE_DETECTION_MIN_BRIGHTNESS") >= get("RETAILFACE_DETECTION_MAX_BRIGHTNESS"):
        raise ValueError("RETAILFACE_DETECTION_MIN_BRIGHTNESS must be below RETAILFACE_DETECTION_MAX_BRIGHTNESS")
    gates = QualityGates(
        min_inter_eye_px=get("RETAILFACE_DETECTION_MIN_INTER_EYE_PX"),
        min_sharpness=get("RETAILFACE_DETECTION_MIN_SHARPNESS"),
        min_brightness=get("RETAILFACE_DETECTION_MIN_BRIGHTNESS"),
        max_brightness=get("RETAILFACE_DETECTION_MAX_BRIGHTNESS"),
        max_abs_yaw_deg=get("RETAILFACE_DETECTION_MAX_ABS_YAW_DEG"),
        max_abs_pitch_deg=get("RETAILFACE_DETECTION_MAX_ABS_PITCH_DEG"),
        min_identification_score=get("RETAILFACE_DETECTION_MIN_IDENTIFICATION_SCORE"),
        truncation_tolerance=get("RETAILFACE_DETECTION_TRUNCATION_TOLERANCE"),
    )
    return DetectionSettings(
        input_width=get("RETAILFACE_DETECTION_INPUT_WIDTH"),
        input_height=get("RETAILFACE_DETECTION_INPUT_HEIGHT"),
        score_threshold=get("RETAILFACE_DETECTION_SCORE_THRESHOLD"),
        nms_threshold=get("RETAILFACE_DETECTION_NMS_THRESHOLD"),
        max_faces_per_frame=get("RETAILFACE_DETECTION_MAX_FACES_PER_FRAME"),
        max_batch_frames=get("RETAILFACE_DETECTION_MAX_BATCH_FRAMES"),
        max_frame_pixels=get("RETAILFACE_DETECTION_MAX_FRAME_PIXELS"),
        intra_op_threads=get("RETAILFACE_DETECTION_THREADS"),
        provider=get("RETAILFACE_DETECTION_PROVIDER"),
        max_frames_per_run=get("RETAILFACE_DETECTION_MAX_FRAMES_PER_RUN"),
        gates=gates,
    )


def frame_from_proto(frame: common_pb2.Frame) -> Frame:
    kind = frame.WhichOneof("image")
    if kind == "encoded":
        return EncodedFrame(frame.encoded)
    if kind == "raw":
        raw = frame.raw
        return RawFrame(raw.width, raw.height, int(raw.format), raw.pixels, raw.stride)
    return None


def quality_to_proto(quality: FaceQuality) -> common_pb2.FaceQuality:
    return common_pb2.FaceQuality(
        inter_eye_px=quality.inter_eye_px,
        sharpness=quality.sharpness,
        brightness=quality.brightness,
        yaw_deg=quality.yaw_deg,
        pitch_deg=quality.pitch_deg,
        passes=quality.passes,
        failed_gates=[int(gate) for gate in quality.failed_gates],
    )


def face_to_proto(face: DetectedFace) -> common_pb2.Face:
    message = common_pb2.Face(
        box=common_pb2.Box(x=face.box[0], y=face.box[1], width=face.box[2], height=face.box[3]),
        landmarks=[common_pb2.Point(x=float(x), y=float(y)) for x, y in face.landmarks],
        detection_score=face.score,
        quality=quality_to_proto(face.quality),
    )
    if face.chip is not None:
        message.chip.size = face.chip.shape[0]
        message.chip.bgr = face.chip.tobytes()
    return message


def frame_result_to_proto(result: FrameResult) -> detection_pb2.FrameFaces:
    if result.error is not None:
        status = common_pb2.ItemStatus(code=FRAME_ERROR, message=result.error)
    else:
        status = common_pb2.ItemStatus(code=OK)
    return detection_pb2.FrameFaces(
        status=status,
        faces=[face_to_proto(face) for face in result.faces],
        width=result.width,
        height=result.height,
        decode_ms=result.decode_ms,
        detect_ms=result.detect_ms,
    )


def stats_to_proto(stats: EngineStats, model: common_pb2.ModelInfo) -> detection_pb2.DetectionStats:
    return detection_pb2.DetectionStats(
        model=model,
        execution_provider=stats.provider,
        intra_op_threads=stats.intra_op_threads,
        input_width=stats.input_width,
        input_height=stats.input_height,
        frames_processed=stats.frames_processed,
        faces_detected=stats.faces_detected,
        max_batch_frames=stats.max_batch_frames,
        max_frame_pixels=stats.max_frame_pixels,
    )


class DetectionServicer(detection_pb2_grpc.DetectionServiceServicer):
    def __init__(self, engine: DetectionEngine) -> None:
        self.engine = engine
        self.model = engine.model.to_proto()

    def Detect(
        self, request: detection_pb2.DetectRequest, context: grpc.ServicerContext
    ) -> detection_pb2.DetectResponse:
        results = self.engine.detect(
            [frame_from_proto(frame) for frame in request.frames],
            include_chips=request.include_chips if request.HasField("include_chips") else True,
            score_threshold=request.score_threshold or None,
            max_faces_per_frame=request.max_faces_per_frame or None,
        )
        bad = [r.error for r in results if r.error is not None]
        if bad:
            log.info("frames_rejected", count=len(bad), first=bad[0])
        return detection_pb2.DetectResponse(results=[frame_result_to_proto(r) for r in results], model=self.model)

    def GetStats(
        self, request: detection_pb2.StatsRequest, context: grpc.ServicerContext
    ) -> detection_pb2.DetectionStats:
        return stats_to_proto(self.engine.stats(), self.model)


def build(config: ServiceConfig) -> Registration:
    engine = DetectionEngine.from_model(model_path("yunet", verify=True), settings_from_config(config))
    return Registration(
        servicer=DetectionServicer(engine),
        add_to_server=detection_pb2_grpc.add_DetectionServiceServicer_to_server,
        service_name="retailface.v1.DetectionService",
    )
