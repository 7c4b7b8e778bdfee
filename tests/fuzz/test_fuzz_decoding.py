"""Frame decoding against hostile bytes: each frame is a clear FrameError (INVALID_ARGUMENT) or a BGR image.

Every case must also finish within TIME_BOUND and never decode more than MAX_PIXELS pixels (memory
is bounded by the pixel limit checked from the header). Valid images are made with OpenCV and Pillow
first, then truncated, bit-flipped or given lying headers.
"""

from __future__ import annotations

import io
import resource
import struct
import time
import zlib
from functools import cache

import cv2
import grpc
import numpy as np
import pytest
from fuzz_support import FuzzCases, fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from retailface.services.detection.decoding import EncodedFrame, FrameError, PixelFormat, RawFrame, decode_frame

MAX_PIXELS = 1_000_000
TIME_BOUND = 1.0  # CPU seconds per frame; the largest accepted frame decodes in ~20 ms here
MEMORY_BOUND_MB = 256  # a frame of MAX_PIXELS needs 3 MB as BGR
TARGET = "frame decoding"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decoded(frame: EncodedFrame | RawFrame) -> np.ndarray | FrameError:
    """The image, or the FrameError that refused the frame; anything else escapes and fails the test.

    The decoding must take less than TIME_BOUND of this thread's CPU time (wall time would count the moments
    other processes of this shared machine take the CPU) and raise the process's peak memory by less than
    MEMORY_BOUND_MB (the peak only grows, so a growth this large means an allocation at least as large).
    """
    peak, start = peak_rss_mb(), time.thread_time()
    try:
        result: np.ndarray | FrameError = decode_frame(frame, MAX_PIXELS)
    except FrameError as error:
        result = error
    assert time.thread_time() - start < TIME_BOUND
    assert peak_rss_mb() - peak < MEMORY_BOUND_MB
    return result


def check_outcome(result: np.ndarray | FrameError) -> None:
    """A refusal says INVALID_ARGUMENT; an image is BGR uint8 within the pixel limit."""
    if isinstance(result, FrameError):
        assert result.code == grpc.StatusCode.INVALID_ARGUMENT
        assert result.message != ""
        return
    assert (result.ndim, result.shape[2], result.dtype) == (3, 3, np.uint8)
    assert result.shape[0] * result.shape[1] <= MAX_PIXELS


def _pil(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@cache
def sample_images() -> dict[str, bytes]:
    """Valid encodings of one 40x30 picture: JPEG (baseline, progressive, CMYK, EXIF-rotated), PNG (8/16-bit,
    palette, alpha, grey+alpha, 1-bit), WebP, BMP."""
    rng = np.random.default_rng(18)
    bgr = cv2.GaussianBlur(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (5, 5), 0)
    rgb = Image.fromarray(bgr[:, :, ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return {
        "jpeg": cv2.imencode(".jpg", bgr)[1].tobytes(),
        "jpeg-progressive": _pil(rgb, "JPEG", progressive=True),
        "jpeg-cmyk": _pil(rgb.convert("CMYK"), "JPEG"),
        "jpeg-exif-rotated": _pil(rgb, "JPEG", exif=exif.tobytes()),
        "png": cv2.imencode(".png", bgr)[1].tobytes(),
        "png-16bit": cv2.imencode(".png", bgr.astype(np.uint16) * 257)[1].tobytes(),
        "png-16bit-grey": cv2.imencode(".png", bgr[:, :, 0].astype(np.uint16) * 257)[1].tobytes(),
        "png-palette": _pil(rgb.convert("P"), "PNG"),
        "png-alpha": cv2.imencode(".png", np.dstack([bgr, bgr[:, :, 0]]))[1].tobytes(),
        "png-grey-alpha": _pil(rgb.convert("LA"), "PNG"),
        "png-1bit": _pil(rgb.convert("1"), "PNG"),
        "webp": cv2.imencode(".webp", bgr)[1].tobytes(),
        "bmp": cv2.imencode(".bmp", bgr)[1].tobytes(),
    }


def os2_bmp(width: int, height: int, rows: int) -> bytes:
    """An OS/2 BMP (12-byte BITMAPCOREHEADER: 16-bit sizes) of 24-bit pixels holding `rows` zero rows."""
    pixels = bytes(((width * 3 + 3) // 4 * 4) * rows)
    offset = 14 + 12
    return (
        b"BM"
        + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
        + struct.pack("<IHHHH", 12, width, height, 1, 24)
        + pixels
    )


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int, idat_bytes: int) -> bytes:
    """A PNG whose IHDR says width x height and whose IDAT inflates to `idat_bytes` zeros."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(bytes(idat_bytes), 9))
        + png_chunk(b"IEND", b"")
    )


def jpeg_with_size(width: int, height: int) -> bytes:
    """The sample JPEG with its start-of-frame header rewritten to width x height (the scan is unchanged)."""
    data = bytearray(sample_images()["jpeg"])
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


# ---------------------------------------------------------------- valid variants decode


@pytest.mark.parametrize("name", sorted(set(sample_images()) - {"jpeg-exif-rotated"}))
def test_each_valid_variant_decodes_to_bgr_of_its_size(name: str, fuzz_cases: FuzzCases) -> None:
    with fuzz_cases.case(TARGET):
        image = decoded(EncodedFrame(sample_images()[name]))
        assert isinstance(image, np.ndarray)
        assert (image.shape, image.dtype) == ((30, 40, 3), np.uint8)


def test_exif_orientation_is_applied(fuzz_cases: FuzzCases) -> None:
    with fuzz_cases.case(TARGET):
        image = decoded(EncodedFrame(sample_images()["jpeg-exif-rotated"]))
        assert isinstance(image, np.ndarray)
        assert image.shape == (40, 30, 3)


# ---------------------------------------------------------------- random and damaged bytes


@fuzz_settings(400)
@given(data=st.binary(max_size=2048))
@example(data=b"")
@example(data=b"\xff\xd8\xff")
@example(data=b"\x89PNG\r\n\x1a\n")
@example(data=b"RIFF\x00\x00\x00\x00WEBPVP8X")
@example(data=b"BM")
def test_random_bytes_are_refused_or_decoded(data: bytes, fuzz_cases: FuzzCases) -> None:
    with fuzz_cases.case(TARGET):
        check_outcome(decoded(EncodedFrame(data)))


@fuzz_settings(300)
@given(name=st.sampled_from(sorted(sample_images())), cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_images_are_refused_or_decoded(name: str, cut: float, fuzz_cases: FuzzCases) -> None:
    data = sample_images()[name]
    with fuzz_cases.case(TARGET):
        check_outcome(decoded(EncodedFrame(data[: int(len(data) * cut)])))


@fuzz_settings(600)
@given(
    name=st.sampled_from(sorted(sample_images())),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8),
)
@example(name="png-grey-alpha", flips=[(0.03125, 5)])  # regression: an IDAT length of 512 MiB, allocated
def test_bit_flipped_images_are_refused_or_decoded(
    name: str, flips: list[tuple[float, int]], fuzz_cases: FuzzCases
) -> None:
    data = bytearray(sample_images()[name])
    for where, bit in flips:
        data[int(len(data) * where)] ^= 1 << bit
    with fuzz_cases.case(TARGET):
        check_outcome(decoded(EncodedFrame(bytes(data))))


# ---------------------------------------------------------------- decompression bombs and lying headers


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(jpeg_with_size(65535, 65535), id="jpeg-65535x65535-header"),
        pytest.param(png_bomb(60000, 60000, 8 << 20), id="png-60000x60000-huge-idat"),
        pytest.param(os2_bmp(65535, 65535, 1), id="os2-bmp-65535x65535"),
        pytest.param(os2_bmp(40000, 30000, 1), id="os2-bmp-40000x30000"),
    ],
)
def test_a_bomb_is_refused_from_its_header(data: bytes, fuzz_cases: FuzzCases) -> None:
    with fuzz_cases.case(TARGET):
        result = decoded(EncodedFrame(data))
        assert isinstance(result, FrameError)
        assert "over the limit" in result.message


@pytest.mark.parametrize("length", [0x200003F9, 0x7FFFFFFF])
def test_a_png_chunk_claiming_more_bytes_than_follow_is_refused_before_decoding(
    length: int, fuzz_cases: FuzzCases
) -> None:
    # Regression: OpenCV allocated the claimed length first: a 1 KB PNG claiming a 2 GiB IDAT cost 2 GiB and 1.6 s.
    data = bytearray(sample_images()["png"])
    struct.pack_into(">I", data, 33, length)  # the first chunk after IHDR
    with fuzz_cases.case(TARGET):
        result = decoded(EncodedFrame(bytes(data)))
        assert isinstance(result, FrameError)
        assert "a chunk claims more bytes than follow it" in result.message


def test_a_png_whose_idat_inflates_far_beyond_its_size_decodes_only_its_pixels(fuzz_cases: FuzzCases) -> None:
    # 64 MiB of zeros behind a 100x100 header: the decoder stops after the rows the header promises.
    with fuzz_cases.case(TARGET):
        result = decoded(EncodedFrame(png_bomb(100, 100, 64 << 20)))
        assert isinstance(result, np.ndarray)
        assert result.shape == (100, 100, 3)


def test_an_os2_bitmap_is_sized_by_its_16_bit_header(fuzz_cases: FuzzCases) -> None:
    # Regression: the BMP size was read as two int32s at byte 18 whatever the header, so an OS/2 bitmap's
    # size was garbage: a valid small one was refused, and a 65535x65535 one passed the pixel check and
    # made OpenCV raise (the whole Detect call failed with UNKNOWN).
    with fuzz_cases.case(TARGET):
        result = decoded(EncodedFrame(os2_bmp(8, 6, 6)))
        assert isinstance(result, np.ndarray)
        assert result.shape == (6, 8, 3)


@fuzz_settings(100)
@given(width=st.integers(0, 2**16 - 1), height=st.integers(0, 2**16 - 1), rows=st.integers(0, 4))
@example(width=65535, height=65535, rows=1)  # regression: OpenCV raised cv2.error (the call ended UNKNOWN)
@example(width=65534, height=65535, rows=0)
def test_os2_bitmaps_of_any_size_are_refused_or_decoded(
    width: int, height: int, rows: int, fuzz_cases: FuzzCases
) -> None:
    with fuzz_cases.case(TARGET):
        check_outcome(decoded(EncodedFrame(os2_bmp(width, height, rows))))


@fuzz_settings(100)
@given(
    kind=st.sampled_from(["jpeg", "png", "bmp", "webp"]),
    width=st.integers(0, 2**32 - 1),
    height=st.integers(0, 2**32 - 1),
)
def test_any_size_in_a_header_is_refused_or_decoded(kind: str, width: int, height: int, fuzz_cases: FuzzCases) -> None:
    data = bytearray(sample_images()[kind])
    if kind == "jpeg":
        data = bytearray(jpeg_with_size(width & 0xFFFF, height & 0xFFFF))
    elif kind == "png":
        struct.pack_into(">II", data, 16, width, height)
    elif kind == "bmp":
        struct.pack_into("<II", data, 18, width, height)
    else:
        data[24:30] = (width & 0xFFFFFF).to_bytes(3, "little") + (height & 0xFFFFFF).to_bytes(3, "little")
    with fuzz_cases.case(TARGET):
        check_outcome(decoded(EncodedFrame(bytes(data))))


# ---------------------------------------------------------------- raw frames


@fuzz_settings(200)
@given(
    width=st.one_of(st.integers(0, 64), st.sampled_from([2**16, 2**31, 2**32 - 1])),
    height=st.one_of(st.integers(0, 64), st.sampled_from([2**16, 2**31, 2**32 - 1])),
    pixel_format=st.sampled_from([*PixelFormat, -1, 4, 99, 2**31 - 1]),
    stride=st.one_of(st.integers(0, 256), st.sampled_from([2**31, 2**32 - 1])),
    size=st.integers(0, 64 * 64 * 3 + 64),
)
@example(width=4, height=4, pixel_format=PixelFormat.BGR8, stride=11, size=44)  # stride smaller than a row
@example(width=4, height=4, pixel_format=PixelFormat.RGB8, stride=16, size=63)  # one byte short
@example(width=2**32 - 1, height=2**32 - 1, pixel_format=PixelFormat.GRAY8, stride=0, size=1)
def test_raw_frames_whose_sizes_disagree_are_refused(
    width: int, height: int, pixel_format: int, stride: int, size: int, fuzz_cases: FuzzCases
) -> None:
    raw = RawFrame(width, height, int(pixel_format), bytes(size), stride)
    with fuzz_cases.case(TARGET):
        result = decoded(raw)
        check_outcome(result)
        if isinstance(result, np.ndarray):
            assert result.shape == (height, width, 3)


@fuzz_settings(60)
@given(
    width=st.integers(1, 48),
    height=st.integers(1, 48),
    pixel_format=st.sampled_from([PixelFormat.BGR8, PixelFormat.RGB8, PixelFormat.GRAY8]),
    padding=st.integers(0, 16),
)
def test_consistent_raw_frames_decode_with_their_stride(
    width: int, height: int, pixel_format: PixelFormat, padding: int, fuzz_cases: FuzzCases
) -> None:
    channels = 1 if pixel_format is PixelFormat.GRAY8 else 3
    stride = width * channels + padding
    rows = np.arange(stride * height, dtype=np.uint32).astype(np.uint8).reshape(height, stride)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    expected = {
        PixelFormat.BGR8: pixels,
        PixelFormat.RGB8: pixels[:, :, ::-1],
        PixelFormat.GRAY8: np.repeat(pixels, 3, axis=2),
    }[pixel_format]
    with fuzz_cases.case(TARGET):
        result = decoded(RawFrame(width, height, int(pixel_format), rows.tobytes(), stride))
        assert isinstance(result, np.ndarray)
        assert np.array_equal(result, expected)
