"""The YuNet face detector on onnxruntime, with the project's own pre- and post-processing.

    detector = YuNetDetector(model_path("yunet")).prepare(provider="cpu", input_width=1280, input_height=1280)
    detections = detector.detect([bgr_frame, ...])   # one Detections per frame

The graph is the shipped file made batchable by `yunet_graph.dynamic_yunet`. It takes float32
NCHW BGR 0..255 (no mean or scale).

Pre-processing: each frame is scaled down (never up) to fit inside the configured input size,
keeping its aspect ratio, and padded at the bottom/right to the smallest multiple of 32 (the
model's largest stride). Frames of a batch that land on the same padded size run together, up to
`max_frames_per_run` per onnxruntime run. The default (0) is one frame per run on the CPU provider,
where batching measured slower per frame (640x480: 11.0 vs 7.7 ms on 1 thread, 6.0 vs 4.0 ms on 2;
the activations of several frames do not stay in cache), and the whole group on CUDA. The frame's
uint8 HWC pixels are split into planes by cv2.split and cast into the input tensor plane by plane:
0.8 ms for a 1280x736 frame, where a Cast + Transpose inside the graph cost onnxruntime 3.2 ms and
cv2.dnn.blobFromImage 10 ms (measured on the 2-vCPU dev machine, 1 thread).

Post-processing follows OpenCV's FaceDetectorYN so that the two agree: per stride s in (8, 16,
32) and anchor (row r, col c), score = sqrt(sigmoid(cls) * sigmoid(obj)); box centre ((c + dx) s,
(r + dy) s), size (exp(dw) s, exp(dh) s); landmark k at ((c + kx) s, (r + ky) s); then score
threshold and NMS (cv2.dnn.NMSBoxes), and a division by the scale back to frame pixels.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from retailface.services.detection.yunet_graph import DIVISOR, INPUT_NAME, STRIDES, dynamic_yunet
from retailface.services.shared.hashing import sha256_file
from retailface.services.shared.model_identity import ModelIdentity
from retailface.services.shared.onnx_providers import CPU, intra_op_thread_count, open_session

MODEL_ID = "yunet"
MODEL_VERSION = "2023mar"
WARMUP_SIZE = (480, 640)  # height, width of the blank frame run by prepare()
NOT_PREPARED = "YuNetDetector.prepare() must be called before detect()"
# YuNet was trained on faces far smaller than its 1280 px input: a face wider than about 300 px
# there scores lower (0.95 at 240 px, 0.90 at 410, 0.69 at 500 for the same photo) and can come out
# twice. A frame with such a close-up is detected again, shrunk so that the face is CLOSE_UP_TARGET_PX
# wide, and the close-up's detection is taken from that pass (the others from the first).
CLOSE_UP_INPUT_PX = 300.0
CLOSE_UP_TARGET_PX = 240.0


def check_input_side(side: int) -> int:
    """An input width or height the detector accepts: a positive multiple of the largest stride."""
    if side <= 0 or side % DIVISOR:
        raise ValueError(f"expected a positive multiple of {DIVISOR}, got {side}")
    return side


def letterbox_size(width: int, height: int, max_width: int, max_height: int) -> tuple[float, int, int]:
    """(scale, padded width, padded height): scale down to fit, never up; pad to multiples of 32."""
    scale = min(1.0, max_width / width, max_height / height)
    scaled_w, scaled_h = max(1, round(width * scale)), max(1, round(height * scale))
    return scale, -(-scaled_w // DIVISOR) * DIVISOR, -(-scaled_h // DIVISOR) * DIVISOR


@dataclass(frozen=True)
class Detections:
    """Faces of one frame in frame pixels, best score first."""

    boxes: np.ndarray  # (n, 4) float32: x, y, width, height
    landmarks: np.ndarray  # (n, 5, 2) float32, in face_template's order
    scores: np.ndarray  # (n,) float32

    def __len__(self) -> int:
        return len(self.scores)


EMPTY = Detections(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32))


@dataclass(frozen=True)
class Letterboxed:
    """One frame ready for the network: scaled to fit the input size, to be padded to `padded`."""

    index: int  # position in the batch
    scale: float
    image: np.ndarray  # the frame scaled to fit (the frame itself when no scaling is needed)
    padded: tuple[int, int]  # (height, width), multiples of DIVISOR


class YuNetDetector:
    """Batched YuNet. Thread-safe: runs are serialised, each one uses all intra-op threads."""

    def __init__(self, model_file: Path) -> None:
        model = dynamic_yunet(model_file)
        self._model = model.SerializeToString()
        self._head_names = [output.name for output in model.graph.output]  # in OUTPUT_NAMES order
        self.identity = ModelIdentity(MODEL_ID, MODEL_VERSION, sha256=sha256_file(model_file))
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()
        self._grids: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}

    def prepare(
        self,
        *,
        provider: str = "auto",
        intra_op_threads: int = 0,
        input_width: int = 1280,
        input_height: int = 1280,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_faces: int = 200,
        max_frames_per_run: int = 0,
    ) -> YuNetDetector:
        """Opens the session and runs it once (onnxruntime prepares kernels then, not on a camera's frame)."""
        for name, side in (("input_width", input_width), ("input_height", input_height)):
            try:
                check_input_side(side)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        if max_frames_per_run < 0:
            raise ValueError(f"max_frames_per_run={max_frames_per_run} must be 0 (automatic) or more")
        self.input_width, self.input_height = input_width, input_height
        self.score_threshold, self.nms_threshold, self.max_faces = score_threshold, nms_threshold, max_faces
        self._session = open_session(self._model, provider, intra_op_threads)
        self.provider = self._session.get_providers()[0]
        self.max_frames_per_run = max_frames_per_run or (1 if self.provider == CPU else 1 << 16)
        self.intra_op_threads = intra_op_thread_count(intra_op_threads)
        self.detect([np.zeros((min(WARMUP_SIZE[0], input_height), min(WARMUP_SIZE[1], input_width), 3), np.uint8)])
        return self

    def detect(
        self, frames: Sequence[np.ndarray], score_threshold: float | None = None, max_faces: int | None = None
    ) -> list[Detections]:
        """Faces in each BGR uint8 frame (HxWx3; rows may be strided views), in the frames' order."""
        if self._session is None:
            raise RuntimeError(NOT_PREPARED)
        threshold = self.score_threshold if score_threshold is None else score_threshold
        limit = self.max_faces if max_faces is None else max_faces
        results = self._detect_once(frames, threshold, limit)
        close_ups = [(i, factor) for i, found in enumerate(results) if (factor := self._shrink(frames[i], found))]
        if close_ups:
            shrunk = [
                cv2.resize(frames[index], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
                for index, factor in close_ups
            ]
            again = self._detect_once(shrunk, threshold, limit)
            for (index, factor), found in zip(close_ups, again, strict=True):
                scale = self._input_scale(frames[index])
                results[index] = _merge_close_ups(results[index], _scaled(found, 1.0 / factor), scale)
        return results

    def _input_scale(self, frame: np.ndarray) -> float:
        return letterbox_size(frame.shape[1], frame.shape[0], self.input_width, self.input_height)[0]

    def _shrink(self, frame: np.ndarray, found: Detections) -> float:
        """The factor that brings the frame's largest face to CLOSE_UP_TARGET_PX; 0 when no face is a close-up."""
        if not len(found):
            return 0.0
        widest = float(found.boxes[:, 2].max())
        if widest * self._input_scale(frame) <= CLOSE_UP_INPUT_PX:
            return 0.0
        return CLOSE_UP_TARGET_PX / widest

    def _detect_once(self, frames: Sequence[np.ndarray], threshold: float, limit: int) -> list[Detections]:
        groups: dict[tuple[int, int], list[Letterboxed]] = {}
        for index, frame in enumerate(frames):
            scaled = self.letterbox(index, frame)
            groups.setdefault(scaled.padded, []).append(scaled)
        results: list[Detections] = [EMPTY] * len(frames)
        for group in groups.values():
            for first in range(0, len(group), self.max_frames_per_run):
                members = group[first : first + self.max_frames_per_run]
                outputs = self.forward(self.preprocess(members))
                for slot, member in enumerate(members):
                    heads = [out[slot] for out in outputs]
                    results[member.index] = self.postprocess(heads, member, threshold, limit)
        return results

    # ------------------------------------------------------------------ pre-processing

    def letterbox(self, index: int, frame: np.ndarray) -> Letterboxed:
        height, width = frame.shape[:2]
        scale, pad_w, pad_h = letterbox_size(width, height, self.input_width, self.input_height)
        image = frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        return Letterboxed(index, scale, image, (pad_h, pad_w))

    @staticmethod
    def preprocess(members: Sequence[Letterboxed]) -> np.ndarray:
        """The NCHW float32 batch of frames of one padded size, zero-padded at the bottom/right as OpenCV pads."""
        pad_h, pad_w = members[0].padded
        batch = np.empty((len(members), 3, pad_h, pad_w), dtype=np.float32)
        for slot, member in enumerate(members):
            h, w = member.image.shape[:2]
            for channel, plane in enumerate(cv2.split(member.image)):
                batch[slot, channel, :h, :w] = plane
            batch[slot, :, h:, :] = 0
            batch[slot, :, :h, w:] = 0
        return batch

    # ------------------------------------------------------------------ the network

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            raise RuntimeError(NOT_PREPARED)
        return self._session

    def forward(self, batch: np.ndarray) -> list[np.ndarray]:
        """The twelve heads (cls, obj, bbox, kps per stride), NCHW."""
        session = self.session
        with self._lock:
            return session.run(self._head_names, {INPUT_NAME: batch})  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ post-processing

    def postprocess(self, heads: list[np.ndarray], member: Letterboxed, threshold: float, limit: int) -> Detections:
        """Decoded, thresholded, NMS-filtered faces of one frame, mapped back to frame pixels."""
        levels = len(STRIDES)
        # sqrt(sigmoid(cls) * sigmoid(obj)) >= t needs both sigmoids >= t^2: a cheap filter on the logits.
        floor = threshold * threshold
        logit_floor = math.log(floor / (1.0 - floor)) if floor < 1.0 else math.inf
        boxes, landmarks, scores = [], [], []
        for level, (stride, (cols, rows)) in enumerate(zip(STRIDES, self._anchor_grid(*member.padded), strict=True)):
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
        inverse = np.float32(1.0 / member.scale)
        return Detections(
            (all_boxes[order] * inverse).astype(np.float32),
            (np.concatenate(landmarks)[order] * inverse).astype(np.float32),
            all_scores[order].astype(np.float32),
        )

    def _anchor_grid(self, pad_h: int, pad_w: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per stride, the (col, row) of every anchor in row-major order; cached per padded size."""
        grid = self._grids.get((pad_h, pad_w))
        if grid is None:
            grid = []
            for stride in STRIDES:
                rows, cols = np.meshgrid(
                    np.arange(pad_h // stride, dtype=np.float32),
                    np.arange(pad_w // stride, dtype=np.float32),
                    indexing="ij",
                )
                grid.append((cols.reshape(-1), rows.reshape(-1)))
            self._grids[(pad_h, pad_w)] = grid
        return grid


def _scaled(found: Detections, factor: float) -> Detections:
    return Detections(found.boxes * factor, found.landmarks * factor, found.scores)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, float(x1 - x0)) * max(0.0, float(y1 - y0))
    union = float(a[2] * a[3] + b[2] * b[3]) - inter
    return inter / union if union > 0 else 0.0


def _merge_close_ups(first: Detections, shrunk: Detections, input_scale: float) -> Detections:
    """Close-ups from the shrunk pass, every other face from the first; best score first."""
    large = [i for i in range(len(shrunk)) if shrunk.boxes[i, 2] * input_scale > CLOSE_UP_INPUT_PX]
    small = [
        i
        for i in range(len(first))
        if first.boxes[i, 2] * input_scale <= CLOSE_UP_INPUT_PX
        and all(_box_iou(first.boxes[i], shrunk.boxes[j]) < 0.3 for j in large)
    ]
    boxes = np.concatenate([shrunk.boxes[large], first.boxes[small]]).astype(np.float32)
    landmarks = np.concatenate([shrunk.landmarks[large], first.landmarks[small]]).astype(np.float32)
    scores = np.concatenate([shrunk.scores[large], first.scores[small]]).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order], landmarks[order], scores[order])
