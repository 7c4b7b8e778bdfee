"""YuNet face detector on onnxruntime, with the project's own pre- and post-processing.

The shipped ONNX file (face_detection_yunet_2023mar) has a fixed 1x3x640x640 input and Reshape
nodes that hard-code batch 1. `prepare_yunet` rewrites it in memory so that batch, height and
width are dynamic: it drops the weights from the graph inputs (so onnxruntime may constant-fold
them), marks the input dimensions symbolic, and makes the twelve heads end at their convolutions
(NCHW), without the Transpose/Reshape(1, -1, C)/Sigmoid that follow them in the file and fix the
batch at 1.

The network takes float32 NCHW BGR 0..255 (no mean or scale). The frame's uint8 HWC pixels are
split into planes by cv2.split and cast into the input tensor plane by plane: 0.8 ms for a
1280x736 frame, where a Cast + Transpose inside the graph cost onnxruntime 3.2 ms and
cv2.dnn.blobFromImage 10 ms (measured on the 2-vCPU dev machine, 1 thread).

Pre-processing: each frame is scaled down (never up) to fit inside the configured input size,
keeping its aspect ratio, and padded at the bottom/right to the smallest multiple of 32 (the
model's largest stride). Frames of a batch that land on the same padded size run together, up to
`max_frames_per_run` per onnxruntime run. The default (0) is one frame per run on the CPU provider,
where batching measured slower per frame (640x480: 11.0 vs 7.7 ms on 1 thread, 6.0 vs 4.0 ms on 2;
the activations of several frames do not stay in cache), and the whole group on CUDA.

Post-processing follows OpenCV's FaceDetectorYN so that the two agree: per stride s in (8, 16,
32) and anchor (row r, col c), score = sqrt(sigmoid(cls) * sigmoid(obj)); box centre ((c + dx) s,
(r + dy) s), size (exp(dw) s, exp(dh) s); landmark k at ((c + kx) s, (r + ky) s); then score
threshold and NMS (cv2.dnn.NMSBoxes), and a division by the scale back to frame pixels.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

STRIDES = (8, 16, 32)
DIVISOR = 32  # the largest stride: padded input sides are multiples of it
INPUT_NAME = "input"  # the shipped model's own input name
OUTPUT_NAMES = tuple(f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps") for stride in STRIDES)
PROVIDER_CHOICES = ("auto", "cpu", "cuda")


def prepare_yunet(model_file: Path) -> onnx.ModelProto:
    """The YuNet graph with dynamic batch, height and width."""
    model = onnx.load(str(model_file))
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializer_names]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ValueError(f"unexpected YuNet inputs {[i.name for i in inputs]}; is this the 2023mar model?")
    del graph.input[:]
    graph.input.extend(inputs)
    dims = graph.input[0].type.tensor_type.shape.dim  # extend() copied the messages: edit the graph's own
    for index, name in ((0, "batch"), (2, "height"), (3, "width")):
        dims[index].dim_param = name

    # Each head ends Conv -> Transpose(NHWC) -> Reshape(1, -1, C) [-> Sigmoid]. Return the Conv outputs
    # (NCHW) instead: the anchor order of a flattened NCHW plane is the same (row * cols + col), the
    # decoder applies the sigmoid only where needed, and onnxruntime skips 23k-anchor transposes.
    producers = {output: node for node in graph.node for output in node.output}
    head_outputs = {}
    for name in OUTPUT_NAMES:
        node = producers.get(name)
        if node is None:
            raise ValueError(f"YuNet has no output {name}; is this the 2023mar model?")
        chain = []
        while node.op_type in ("Sigmoid", "Reshape", "Transpose"):
            chain.append(node.op_type)
            node = producers[node.input[0]]
        expected = ["Reshape", "Transpose"] if name.startswith(("bbox", "kps")) else ["Sigmoid", "Reshape", "Transpose"]
        if node.op_type != "Conv" or chain != expected:
            raise ValueError(f"unexpected YuNet head {name}: {node.op_type} <- {chain}")
        head_outputs[name] = node.output[0]
    del graph.output[:]
    for name in OUTPUT_NAMES:
        graph.output.append(
            helper.make_tensor_value_info(
                head_outputs[name],
                onnx.TensorProto.FLOAT,
                ["batch", f"channels_{name}", f"rows_{name}", f"cols_{name}"],
            )
        )
    needed = {output.name for output in graph.output}
    kept_nodes = []
    for node in reversed(graph.node):  # drop what no output depends on any more
        if any(output in needed for output in node.output):
            kept_nodes.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept_nodes))
    used = {name for node in graph.node for name in node.input}
    kept_initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers)
    del graph.value_info[:]  # static shapes recorded for 640x640 no longer hold
    onnx.checker.check_model(model)
    return model


def choose_providers(provider: str) -> list[str]:
    """onnxruntime providers for 'auto' (CUDA when present), 'cpu' or 'cuda' (which must be present)."""
    available = ort.get_available_providers()
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ValueError(f"CUDAExecutionProvider is not available (onnxruntime has {', '.join(available)})")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if provider == "auto":
        cuda = "CUDAExecutionProvider" in available
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    raise ValueError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDER_CHOICES)}")


def letterbox_size(width: int, height: int, max_width: int, max_height: int) -> tuple[float, int, int]:
    """(scale, padded width, padded height): scale down to fit, never up; pad to multiples of 32."""
    scale = min(1.0, max_width / width, max_height / height)
    scaled_w, scaled_h = max(1, round(width * scale)), max(1, round(height * scale))
    return scale, -(-scaled_w // DIVISOR) * DIVISOR, -(-scaled_h // DIVISOR) * DIVISOR


@dataclass(frozen=True)
class Detections:
    """Faces of one frame in frame pixels, best score first."""

    boxes: np.ndarray  # (n, 4) float32: x, y, width, height
    landmarks: np.ndarray  # (n, 5, 2) float32: right eye, left eye, nose, right mouth corner, left mouth corner
    scores: np.ndarray  # (n,) float32

    def __len__(self) -> int:
        return len(self.scores)


EMPTY = Detections(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))


@dataclass(frozen=True)
class _Scaled:
    index: int
    scale: float
    image: np.ndarray  # the frame scaled to fit the input size (the frame itself when no scaling is needed)


class YuNetDetector:
    """Batched YuNet. Thread-safe: runs are serialised, each one uses all intra-op threads."""

    def __init__(
        self,
        model_file: Path,
        *,
        input_width: int = 1280,
        input_height: int = 1280,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_faces: int = 200,
        intra_op_threads: int = 0,
        provider: str = "auto",
        max_frames_per_run: int = 0,
    ) -> None:
        for name, side in (("input_width", input_width), ("input_height", input_height)):
            if side <= 0 or side % DIVISOR:
                raise ValueError(f"{name}={side} must be a positive multiple of {DIVISOR}")
        self.input_width, self.input_height = input_width, input_height
        self.score_threshold, self.nms_threshold, self.max_faces = score_threshold, nms_threshold, max_faces
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        model = prepare_yunet(model_file)
        self._head_names = [output.name for output in model.graph.output]  # in OUTPUT_NAMES order
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=choose_providers(provider))
        self.provider = self.session.get_providers()[0]
        if max_frames_per_run < 0:
            raise ValueError(f"max_frames_per_run={max_frames_per_run} must be 0 (automatic) or more")
        on_cpu = self.provider == "CPUExecutionProvider"
        self.max_frames_per_run = max_frames_per_run or (1 if on_cpu else 1 << 16)
        # 0 lets onnxruntime use one thread per core; report what that means here.
        self.intra_op_threads = intra_op_threads or len(os.sched_getaffinity(0))
        self._lock = threading.Lock()
        self._grids: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
        # onnxruntime prepares kernels on the first run: do it now, not on the first camera frame.
        self.detect([np.zeros((min(480, input_height), min(640, input_width), 3), dtype=np.uint8)])

    def detect(
        self, frames: Sequence[np.ndarray], score_threshold: float | None = None, max_faces: int | None = None
    ) -> list[Detections]:
        """Faces in each BGR uint8 frame (HxWx3; rows may be strided views), in the frames' order."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        limit = self.max_faces if max_faces is None else max_faces
        groups: dict[tuple[int, int], list[_Scaled]] = {}
        for index, frame in enumerate(frames):
            height, width = frame.shape[:2]
            scale, pad_w, pad_h = letterbox_size(width, height, self.input_width, self.input_height)
            image = frame
            if scale < 1.0:
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                image = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            groups.setdefault((pad_h, pad_w), []).append(_Scaled(index, scale, image))

        results: list[Detections] = [EMPTY] * len(frames)
        for (pad_h, pad_w), group in groups.items():
            for first in range(0, len(group), self.max_frames_per_run):
                members = group[first : first + self.max_frames_per_run]
                outputs = self._run(members, pad_h, pad_w)
                for slot, member in enumerate(members):
                    heads = [out[slot] for out in outputs]
                    results[member.index] = self._decode(heads, pad_w, pad_h, member.scale, threshold, limit)
        return results

    def _run(self, members: list[_Scaled], pad_h: int, pad_w: int) -> list[np.ndarray]:
        batch = np.empty((len(members), 3, pad_h, pad_w), dtype=np.float32)
        for slot, member in enumerate(members):
            h, w = member.image.shape[:2]
            for channel, plane in enumerate(cv2.split(member.image)):
                batch[slot, channel, :h, :w] = plane
            batch[slot, :, h:, :] = 0  # bottom/right padding, as OpenCV pads
            batch[slot, :, :h, w:] = 0
        with self._lock:
            return self.session.run(self._head_names, {INPUT_NAME: batch})  # type: ignore[no-any-return]

    def _anchor_grid(self, pad_w: int, pad_h: int) -> list[tuple[np.ndarray, np.ndarray]]:
        grid = self._grids.get((pad_w, pad_h))
        if grid is None:
            grid = []
            for stride in STRIDES:
                rows, cols = np.meshgrid(
                    np.arange(pad_h // stride, dtype=np.float32),
                    np.arange(pad_w // stride, dtype=np.float32),
                    indexing="ij",
                )
                grid.append((cols.reshape(-1), rows.reshape(-1)))
            self._grids[(pad_w, pad_h)] = grid
        return grid

    def _decode(
        self, heads: list[np.ndarray], pad_w: int, pad_h: int, scale: float, threshold: float, limit: int
    ) -> Detections:
        levels = len(STRIDES)
        # sqrt(sigmoid(cls) * sigmoid(obj)) >= t needs both sigmoids >= t^2: a cheap filter on the logits.
        floor = threshold * threshold
        logit_floor = math.log(floor / (1.0 - floor)) if floor < 1.0 else math.inf
        boxes, landmarks, scores = [], [], []
        for level, (stride, (cols, rows)) in enumerate(zip(STRIDES, self._anchor_grid(pad_w, pad_h), strict=True)):
            cls_logit = heads[level].reshape(-1)  # (1, rows, cols) -> anchors in row-major order
            obj_logit = heads[level + levels].reshape(-1)
            candidates = np.flatnonzero((cls_logit >= logit_floor) & (obj_logit >= logit_floor))
            if candidates.size == 0:
                continue
            cls = 1.0 / (1.0 + np.exp(-cls_logit[candidates]))
            obj = 1.0 / (1.0 + np.exp(-obj_logit[candidates]))
            score = np.sqrt(cls * obj)
            passing = score >= threshold
            keep = candidates[passing]
            if keep.size == 0:
                continue
            bbox = heads[level + 2 * levels].reshape(4, -1)[:, keep].T
            kps = heads[level + 3 * levels].reshape(10, -1)[:, keep].T.reshape(-1, 5, 2)
            c, r = cols[keep], rows[keep]
            w = np.exp(bbox[:, 2]) * stride
            h = np.exp(bbox[:, 3]) * stride
            cx = (c + bbox[:, 0]) * stride
            cy = (r + bbox[:, 1]) * stride
            boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], axis=1))
            marks = np.empty_like(kps)
            marks[:, :, 0] = (kps[:, :, 0] + c[:, None]) * stride
            marks[:, :, 1] = (kps[:, :, 1] + r[:, None]) * stride
            landmarks.append(marks)
            scores.append(score[passing])
        if not scores:
            return EMPTY
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
        kept = cv2.dnn.NMSBoxes(all_boxes.tolist(), all_scores.tolist(), threshold, self.nms_threshold)
        order = np.asarray(kept, dtype=np.int64).reshape(-1)[:limit]
        inverse = np.float32(1.0 / scale)
        return Detections(
            (all_boxes[order] * inverse).astype(np.float32),
            (np.concatenate(landmarks)[order] * inverse).astype(np.float32),
            all_scores[order].astype(np.float32),
        )
