"""Coverage-guided fuzzing of frame decoding with atheris (libFuzzer for Python), beside the Hypothesis tests.

Each input is either an encoded frame (the bytes as they come) or a raw frame whose width, height,
stride, format and pixels are read from the input. Every input must end as a decoded BGR image within
the pixel limit or as a FrameError (INVALID_ARGUMENT); anything else is a crash that libFuzzer saves.
Only the Python side (decoding.py) is coverage-instrumented: OpenCV's codecs run as shipped in the wheel.

    .venv/bin/python benchmarks/fuzz/atheris_decoding.py out/fuzz/corpus -max_total_time=60 -max_len=65536

The corpus directory is seeded with valid JPEG, PNG, WebP and BMP frames when it is empty. Not part of
`make test` (tests/fuzz runs the Hypothesis targets there); install atheris into the venv first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
import cv2
import numpy as np

from retailface.services.detection import decoding
from retailface.services.detection.decoding import EncodedFrame, FrameError, RawFrame, decode_frame

# The editable install imports through its own loader, which instrument_imports() does not see: instrument
# decoding.py's functions one by one instead.
for _name, _function in list(vars(decoding).items()):
    if (
        callable(_function)
        and getattr(_function, "__module__", "") == decoding.__name__
        and hasattr(_function, "__code__")
    ):
        setattr(decoding, _name, atheris.instrument_func(_function))

MAX_PIXELS = 1_000_000


def one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    if provider.ConsumeBool():
        frame: EncodedFrame | RawFrame = EncodedFrame(provider.ConsumeBytes(provider.remaining_bytes()))
    else:
        frame = RawFrame(
            width=provider.ConsumeIntInRange(0, 2**32 - 1),
            height=provider.ConsumeIntInRange(0, 2**32 - 1),
            pixel_format=provider.ConsumeIntInRange(-1, 5),
            stride=provider.ConsumeIntInRange(0, 2**32 - 1),
            pixels=provider.ConsumeBytes(provider.remaining_bytes()),
        )
    try:
        image = decode_frame(frame, MAX_PIXELS)
    except FrameError:
        return
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise AssertionError(f"decoded to {image.shape} {image.dtype}, not BGR uint8")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise AssertionError(f"decoded {image.shape[1]}x{image.shape[0]}, over the limit of {MAX_PIXELS} pixels")


def seed_corpus(directory: Path) -> None:
    """Valid frames to mutate from, when the corpus is empty (the first byte selects an encoded frame)."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        return
    image = cv2.GaussianBlur(np.random.default_rng(18).integers(0, 255, (30, 40, 3), dtype=np.uint8), (5, 5), 0)
    for extension in (".jpg", ".png", ".webp", ".bmp"):
        encoded = cv2.imencode(extension, image)[1].tobytes()
        (directory / f"seed{extension}").write_bytes(b"\x01" + encoded)


def main() -> None:
    corpus = [Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")]
    for directory in corpus[:1]:
        seed_corpus(directory)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
