"""Frames in, BGR uint8 images out: encoded bytes (JPEG, PNG, WebP, BMP) or raw pixels with a stride.

Every problem raises FrameError (an InvalidArgument) with a message that says what is wrong and what
to send instead; the engine prefixes the frame index and reports it as that frame's status, while
the other frames of the batch are still processed.

Encoded frames are sniffed by their magic bytes and their dimensions read from the header before
anything is decoded, so an oversized image (or a decompression bomb) is refused without allocating
its pixels. Decoding is cv2.imdecode (libjpeg-turbo, libpng, libwebp inside the OpenCV wheel);
OpenCV 5 returns None for truncated or corrupt data, which becomes a FrameError. simplejpeg
(libjpeg-turbo too) measured only 3-10% faster on 640x480 and 1280x720 JPEGs, not worth a
dependency.

Raw BGR frames become numpy views of the request's bytes (no copy, strided rows included); RGB and
GRAY frames need one conversion to BGR, which the detector needs anyway.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from retailface.services.shared.errors import InvalidArgument


class FrameError(InvalidArgument):
    """A frame that cannot be used; the message says what to fix (without the frame index)."""


class PixelFormat(enum.IntEnum):
    """Same numbering as retailface.v1.PixelFormat."""

    UNSPECIFIED = 0
    BGR8 = 1
    RGB8 = 2
    GRAY8 = 3


CHANNELS = {PixelFormat.BGR8: 3, PixelFormat.RGB8: 3, PixelFormat.GRAY8: 1}


@dataclass(frozen=True)
class EncodedFrame:
    data: bytes


@dataclass(frozen=True)
class RawFrame:
    width: int
    height: int
    pixel_format: int  # a PixelFormat value
    pixels: bytes
    stride: int = 0  # bytes per row; 0 means tightly packed


Frame = EncodedFrame | RawFrame | None  # None: the caller sent neither


def decode_frame(frame: Frame, max_pixels: int) -> np.ndarray:
    """The frame as a BGR uint8 array (H, W, 3); rows may be strided views of the input bytes."""
    if frame is None:
        raise FrameError("empty frame: set either `encoded` (JPEG/PNG/WebP/BMP bytes) or `raw` pixels")
    if isinstance(frame, EncodedFrame):
        return decode_encoded(frame.data, max_pixels)
    return decode_raw(frame, max_pixels)


# ---------------------------------------------------------------- encoded


def sniff_encoding(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def _describe_unknown(data: bytes) -> str:
    known = {b"GIF8": "GIF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"\x00\x00\x00\x0cjP": "JPEG 2000"}
    for magic, name in known.items():
        if data.startswith(magic):
            return name
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIF/AVIF"
    return f"unrecognised (first bytes {data[:8].hex()})"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame marker."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if pos + 9 > end:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        pos += 2 + length
    return None


def image_size(data: bytes, encoding: str) -> tuple[int, int] | None:
    """(width, height) read from the header of a JPEG, PNG, WebP or BMP; None if it is cut short."""
    try:
        if encoding == "JPEG":
            return _jpeg_size(data)
        if encoding == "PNG":
            if data[12:16] != b"IHDR":
                return None
            width, height = struct.unpack_from(">II", data, 16)
            return width, height
        if encoding == "BMP":
            (header_size,) = struct.unpack_from("<I", data, 14)
            if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit width and height
                return struct.unpack_from("<HH", data, 18)
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(width), abs(height)
        chunk = data[12:16]  # WebP
        if chunk == b"VP8 ":
            width, height = struct.unpack_from("<HH", data, 26)
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L":
            (bits,) = struct.unpack_from("<I", data, 21)
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8X":
            width = int.from_bytes(data[24:27], "little") + 1
            height = int.from_bytes(data[27:30], "little") + 1
            return (width, height) if len(data) >= 30 else None
    except struct.error:
        return None
    return None


def _png_chunks_fit(data: bytes) -> bool:
    """True when no chunk claims more bytes than the data holds (OpenCV allocates a chunk's claimed length before
    reading it: a 2 KB PNG claiming a 2 GiB chunk would cost 2 GiB and seconds)."""
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        if position + 12 + length > len(data):
            return False
        if data[position + 4 : position + 8] == b"IEND":
            break
        position += 12 + length
    return True


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise FrameError(
            f"frame of {width}x{height} = {width * height} pixels is over the limit of {max_pixels}: "
            "scale it down before sending"
        )


def decode_encoded(data: bytes, max_pixels: int) -> np.ndarray:
    if not data:
        raise FrameError("empty frame: `encoded` has 0 bytes")
    encoding = sniff_encoding(data)
    if encoding is None:
        raise FrameError(f"unsupported encoding {_describe_unknown(data)}: send JPEG, PNG, WebP or BMP, or raw pixels")
    size = image_size(data, encoding)
    if size is None:
        raise FrameError(f"corrupt or truncated {encoding}: its header has no readable image size")
    width, height = size
    if width == 0 or height == 0:
        raise FrameError(f"empty frame: the {encoding} header says {width}x{height}")
    _check_pixels(width, height, max_pixels)
    if encoding == "PNG" and not _png_chunks_fit(data):
        raise FrameError(f"corrupt or truncated PNG ({len(data)} bytes): a chunk claims more bytes than follow it")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:  # OpenCV's own checks of a header (its size limits...): the data is at fault
        message = f"corrupt or unsupported {encoding} data ({len(data)} bytes): the decoder refused it"
        raise FrameError(message) from error
    if image is None:
        raise FrameError(f"corrupt or truncated {encoding} data ({len(data)} bytes): the decoder could not read it")
    return image


# ---------------------------------------------------------------- raw


def decode_raw(raw: RawFrame, max_pixels: int) -> np.ndarray:
    try:
        pixel_format = PixelFormat(raw.pixel_format)
    except ValueError:
        pixel_format = PixelFormat.UNSPECIFIED
    if pixel_format is PixelFormat.UNSPECIFIED:
        raise FrameError(f"unsupported raw pixel format {raw.pixel_format}: use BGR8, RGB8 or GRAY8")
    if raw.width == 0 or raw.height == 0 or not raw.pixels:
        raise FrameError(f"empty frame: raw {raw.width}x{raw.height} with {len(raw.pixels)} bytes")
    _check_pixels(raw.width, raw.height, max_pixels)
    channels = CHANNELS[pixel_format]
    row_bytes = raw.width * channels
    stride = raw.stride or row_bytes
    if stride < row_bytes:
        raise FrameError(
            f"raw stride {stride} is smaller than width x channels = {raw.width} x {channels} = {row_bytes} bytes"
        )
    expected = stride * raw.height
    if len(raw.pixels) != expected:
        raise FrameError(
            f"raw {pixel_format.name} frame has {len(raw.pixels)} bytes; {raw.width}x{raw.height}x{channels} "
            f"with a stride of {stride} needs {expected} (stride x height)"
        )
    buffer = np.frombuffer(raw.pixels, dtype=np.uint8)
    shape = (raw.height, raw.width, channels)
    image = np.ndarray(shape, dtype=np.uint8, buffer=buffer, strides=(stride, channels, 1))
    if pixel_format is PixelFormat.BGR8:
        return image  # a view: no copy
    code = cv2.COLOR_RGB2BGR if pixel_format is PixelFormat.RGB8 else cv2.COLOR_GRAY2BGR
    return cv2.cvtColor(image if channels == 3 else image[:, :, 0], code)
