"""Detection benchmark: our YuNet path against OpenCV's cv2.FaceDetectorYN, same model file, same
thread count, measured in one process; and the gRPC overhead of a Detect call on loopback.

    flock /tmp/retailface-bench.lock .venv/bin/python benchmarks/vision/bench_detect.py [--threads 1 2]

The last output line is one JSON object ({"threads_1": {...}, "threads_2": {...}}).

Frames: insightface's t1.jpg (six faces) cropped to 4:3 / 16:9 and resized to 640x480 and
1280x720, as BGR arrays already in memory. Figures are medians over the repetitions. The paths
being compared take turns in short blocks (ours x5, OpenCV x5, ours x5, ...), so that a noisy
neighbour on a shared machine slows them alike (a pause between calls would make every call start
cold); ratio_* is the median over turns of (our block median / OpenCV's block median).

- detect_ms_p50_<640|1280>: our detector on one frame (pre-processing, onnxruntime, decoding of the
  heads, NMS, mapping back), at the shipped input size (1280: both frames run at full resolution).
- opencv_detect_ms_p50_<640|1280>: cv2.FaceDetectorYN.detect on the same frame at its own size
  (setInputSize(frame size)), with cv2.setNumThreads(threads).
- ratio_<640|1280>: ours / OpenCV's (target <= 0.6).
- detect_ms_p50_1280_input640: the 1280x720 frame with RETAILFACE_DETECTION_INPUT_WIDTH/HEIGHT=640
  (scaled to 640x360, padded to 640x384), the speed option for cameras whose faces are large.
- engine_ms_p50_<640|1280>: the whole in-process engine per frame (raw frame in; detection, quality
  measures and 112x112 chips out); engine_jpeg_ms_p50_640 adds decoding a JPEG (quality 90).
- batch8_ms_per_frame_640: eight 640x480 frames in one engine call (one onnxruntime run), per frame.
- grpc_overhead_ms_p50: p50 of a Detect RPC on loopback (a 160x120 raw frame without faces, with
  the service's auth interceptor) minus p50 of the same engine.detect call in-process: the cost of
  serialisation, HTTP/2 and the server's thread hand-off. grpc_getstats_rtt_ms_p50 is the round trip
  of the cheapest RPC (GetStats) for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np

from retailface.devtools.localstack import LocalStack, Runtime, free_port
from retailface.devtools.models import model_path, testdata_path
from retailface.services.detection.decoding import EncodedFrame, PixelFormat, RawFrame
from retailface.services.detection.engine import DetectionEngine, DetectionSettings
from retailface.services.detection.yunet import YuNetDetector
from retailface.services.shared.config import SERVICES
from retailface.v1 import common_pb2, detection_pb2, detection_pb2_grpc

REPEATS = int(os.environ.get("BENCH_REPEATS", "60"))
BLOCK = 5


def p50_ms(call: Callable[[], object], repeats: int = REPEATS, warmup: int = 5) -> float:
    return round(statistics.median(timings({"only": call}, repeats, warmup)["only"]), 3)


def timings(calls: dict[str, Callable[[], object]], repeats: int = REPEATS, warmup: int = 5) -> dict[str, list[float]]:
    """Milliseconds of each call, the calls taking turns in blocks of BLOCK calls."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(-(-repeats // BLOCK)):
        for name, call in calls.items():
            for _ in range(BLOCK):
                start = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - start) * 1000)
    return times


def compare(calls: dict[str, Callable[[], object]], repeats: int = REPEATS) -> dict[str, float]:
    """p50 milliseconds of each call (see `timings`)."""
    return {name: round(statistics.median(t), 3) for name, t in timings(calls, repeats).items()}


def median_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over turns of the ratio of the two block medians."""
    ratios = [
        statistics.median(ours[i : i + BLOCK]) / statistics.median(theirs[i : i + BLOCK])
        for i in range(0, len(ours), BLOCK)
    ]
    return round(statistics.median(ratios), 3)


def test_frame(width: int, height: int) -> np.ndarray:
    image = cv2.imread(str(testdata_path("insightface/t1.jpg")))
    rows, cols = image.shape[:2]
    crop_w = min(cols, round(rows * width / height))
    left = (cols - crop_w) // 2
    return cv2.resize(image[:, left : left + crop_w], (width, height), interpolation=cv2.INTER_AREA)


def raw(image: np.ndarray) -> RawFrame:
    return RawFrame(image.shape[1], image.shape[0], PixelFormat.BGR8, np.ascontiguousarray(image).tobytes())


def opencv_detector(width: int, height: int) -> Any:
    settings = DetectionSettings()
    return cv2.FaceDetectorYN.create(
        str(model_path("yunet")), "", (width, height), settings.score_threshold, settings.nms_threshold, 5000
    )


def grpc_overhead(threads: int, engine: DetectionEngine) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime(Path(tmp) / "runtime")
        runtime.prepare()
        ports = {}
        for name in SERVICES:
            ports[name], ports[f"{name}-metrics"] = free_port(), free_port()
        extra = {"detection": {"RETAILFACE_DETECTION_THREADS": str(threads), "RETAILFACE_LOG_LEVEL": "warning"}}
        stack = LocalStack(runtime, ports=ports, extra_env=extra)
        process = stack.start("detection")
        try:
            stack.wait_serving("detection")
            channel = grpc.insecure_channel(process.target)
            stub = detection_pb2_grpc.DetectionServiceStub(channel)
            metadata = (("authorization", f"Bearer {runtime.tokens['service']}"),)
            empty = np.full((120, 160, 3), 128, np.uint8)
            request = detection_pb2.DetectRequest(
                frames=[
                    common_pb2.Frame(
                        raw=common_pb2.RawImage(
                            width=160, height=120, format=common_pb2.PIXEL_FORMAT_BGR8, pixels=empty.tobytes()
                        )
                    )
                ]
            )
            packed = raw(empty)
            assert not stub.Detect(request, metadata=metadata).results[0].faces
            timed = compare(
                {
                    "remote": lambda: stub.Detect(request, metadata=metadata),
                    "local": lambda: engine.detect([packed]),
                    "stats": lambda: stub.GetStats(detection_pb2.StatsRequest(), metadata=metadata),
                },
                repeats=4 * REPEATS,
            )
            remote, local, stats_rtt = timed["remote"], timed["local"], timed["stats"]
            channel.close()
        finally:
            stack.stop_all()
    return {
        "grpc_detect_small_ms_p50": remote,
        "inprocess_detect_small_ms_p50": local,
        "grpc_overhead_ms_p50": round(remote - local, 3),
        "grpc_getstats_rtt_ms_p50": stats_rtt,
    }


def run(threads: int) -> dict[str, Any]:
    """Every figure for one thread count (onnxruntime intra-op threads = cv2.setNumThreads)."""
    cv2.setNumThreads(threads)
    yunet = model_path("yunet")
    settings = DetectionSettings(intra_op_threads=threads, provider="cpu")
    engine = DetectionEngine.from_model(yunet, settings)
    detector = engine.detector
    small_input = YuNetDetector(yunet).prepare(
        input_width=640, input_height=640, intra_op_threads=threads, provider="cpu"
    )
    out: dict[str, Any] = {"threads": threads, "provider": detector.provider, "repeats": REPEATS}
    for label, (width, height) in (("640", (640, 480)), ("1280", (1280, 720))):
        frame = test_frame(width, height)
        reference = opencv_detector(width, height)
        ours_faces = len(detector.detect([frame])[0])
        _, theirs = reference.detect(frame)
        out[f"faces_{label}"] = {"ours": ours_faces, "opencv": 0 if theirs is None else len(theirs)}
        packed = raw(frame)
        calls: dict[str, Callable[[], object]] = {
            f"detect_ms_p50_{label}": lambda frame=frame: detector.detect([frame]),
            f"opencv_detect_ms_p50_{label}": lambda frame=frame, ref=reference: ref.detect(frame),
            f"engine_ms_p50_{label}": lambda packed=packed: engine.detect([packed]),
        }
        if label == "1280":
            calls["detect_ms_p50_1280_input640"] = lambda frame=frame: small_input.detect([frame])
            out["faces_1280_input640"] = len(small_input.detect([frame])[0])
        measured = timings(calls)
        out |= {name: round(statistics.median(t), 3) for name, t in measured.items()}
        ours, theirs = measured[f"detect_ms_p50_{label}"], measured[f"opencv_detect_ms_p50_{label}"]
        out[f"ratio_{label}"] = median_ratio(ours, theirs)
        if label == "640":
            jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            out["engine_jpeg_ms_p50_640"] = p50_ms(lambda jpeg=jpeg: engine.detect([EncodedFrame(jpeg)]))
            batch = [raw(cv2.flip(frame, 1) if i % 2 else frame) for i in range(8)]
            per_call = p50_ms(lambda batch=batch: engine.detect(batch), repeats=max(5, REPEATS // 4))
            out["batch8_ms_per_frame_640"] = round(per_call / 8, 3)
    out |= grpc_overhead(threads, engine)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    results = {}
    for threads in args.threads:
        results[f"threads_{threads}"] = run(threads)
        print(json.dumps(results[f"threads_{threads}"]), file=sys.stderr, flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
