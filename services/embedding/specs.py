"""Embedder model specs: what a deployer configures to plug in another ArcFace-style ONNX model.

A spec says which file to load (a key of `retailface-models` or a path), how to turn a 112x112
BGR aligned chip into the model's input (size, channel order, mean/std), the embedding dimension,
and the model id/version that tags every embedding so that galleries never mix models.
Specs beyond the built-in ones come from a JSON file (RETAILFACE_EMBEDDING_SPECS_FILE):

    [{"name": "arcface-r50", "model": "/models/w600k_r50.onnx", "model_id": "arcface-r50",
      "version": "buffalo_l", "input_size": 112, "channel_order": "RGB",
      "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5], "dim": 512}]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from retailface.services.shared.model_files import ModelMissingError, model_path, models_dir

ChannelOrder = Literal["RGB", "BGR"]


@dataclass(frozen=True)
class EmbedderSpec:
    name: str  # registry key, the value of RETAILFACE_EMBEDDING_MODEL
    # a model key known to retailface-models ("sface_prepared"), a file name in the models directory
    # ("face_recognition_sface_2021dec_int8.onnx"), or a path to an .onnx file
    model: str
    model_id: str
    version: str
    dim: int
    input_size: int = 112
    channel_order: ChannelOrder = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    description: str = field(default="", compare=False)
    build_hint: str = field(default="", compare=False)  # how to create the file when it is missing

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(
                f"embedder spec {self.name!r}: channel_order must be RGB or BGR, got {self.channel_order!r}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise ValueError(f"embedder spec {self.name!r}: mean and std need 3 values each, std non-zero")
        if self.dim <= 0 or self.input_size <= 0:
            raise ValueError(f"embedder spec {self.name!r}: dim and input_size must be positive")
        if not self.model_id or not self.version:
            raise ValueError(f"embedder spec {self.name!r}: model_id and version are required")

    def resolve_path(self) -> Path:
        """The ONNX file: a retailface-models key, a file in the models directory, or a path."""
        candidate = Path(self.model).expanduser()
        if candidate.suffix != ".onnx" and not candidate.is_absolute():
            return model_path(self.model, verify=True)  # re-hashes fetched files; derived ones have no hash
        if candidate.is_file():
            return candidate
        in_models_dir = models_dir() / candidate
        if not candidate.is_absolute() and in_models_dir.is_file():
            return in_models_dir
        hint = f": {self.build_hint}" if self.build_hint else ""
        raise ModelMissingError(f"embedder spec {self.name!r}: model file {self.model} does not exist{hint}")


# SFace (OpenCV Zoo, 2021dec): the graph normalises (x - 127.5) / 128 itself and expects RGB
# (cv2.FaceRecognizerSF swaps B and R before its blob), so the spec passes raw RGB values.
SFACE = EmbedderSpec(
    name="sface",
    model="sface_prepared",
    model_id="sface",
    version="2021dec",
    dim=128,
    channel_order="RGB",
    description="SFace MobileFaceNet, batchable prepared ONNX (see model_prep)",
)
SFACE_AS_SHIPPED = EmbedderSpec(
    name="sface-original",
    model="sface",
    model_id="sface",
    version="2021dec",
    dim=128,
    channel_order="RGB",
    description="SFace as shipped (batch 1, weights as inputs): a reference, slower",
)
# The same network, int8 (see model_prep.quantize_sface_int8): embeddings at cosine >= 0.99 to the
# float model's, so templates stay comparable; the ModelInfo sha256 tells the files apart.
SFACE_INT8 = EmbedderSpec(
    name="sface-int8",
    model="face_recognition_sface_2021dec_int8.onnx",
    model_id="sface",
    version="2021dec",
    dim=128,
    channel_order="RGB",
    description="SFace with int8 pointwise convolutions, for CPUs (about 2x faster)",
    build_hint="run `python -m retailface.devtools.model_prep quantize` (after `make testdata`)",
)

BUILTIN_SPECS: dict[str, EmbedderSpec] = {spec.name: spec for spec in (SFACE, SFACE_AS_SHIPPED, SFACE_INT8)}


def load_specs(specs_file: Path | None = None) -> dict[str, EmbedderSpec]:
    """Built-in specs plus those of a JSON file (a list of objects with EmbedderSpec's fields)."""
    specs = dict(BUILTIN_SPECS)
    if specs_file is None:
        return specs
    try:
        entries = json.loads(specs_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"embedder specs file {specs_file}: {error}") from None
    if not isinstance(entries, list):
        raise ValueError(f"embedder specs file {specs_file}: expected a JSON list of specs")
    for index, entry in enumerate(entries):
        try:
            for key in ("mean", "std"):
                if key in entry:
                    entry[key] = tuple(float(v) for v in entry[key])
            spec = EmbedderSpec(**entry)
        except TypeError as error:
            raise ValueError(f"embedder specs file {specs_file}, entry {index}: {error}") from None
        specs[spec.name] = spec
    return specs


def find_spec(name: str, specs_file: Path | None = None) -> EmbedderSpec:
    """The spec called `name` among the built-in ones and those of `specs_file`; ValueError naming the known ones."""
    specs = load_specs(specs_file)
    if name not in specs:
        raise ValueError(f"unknown embedder {name!r}; known: {', '.join(sorted(specs))}")
    return specs[name]
