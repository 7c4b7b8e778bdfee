"""Chips in: the aligned 112x112 BGR face chips the embedding service takes, and their validation.

A chip is the detection service's output: 112x112 BGR uint8, aligned to the ArcFace 5-point
template (`shared.face_template`). It comes as a (112, 112, 3) array (in-process callers) or as
`ChipBytes(size, bgr)` (the wire). A chip that cannot be used raises ChipError, whose message
starts with "chip <index>:" and says what to fix; the engine reports it as that chip's status and
still embeds the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retailface.services.shared.errors import InvalidArgument
from retailface.services.shared.face_template import CHIP_SIZE

CHIP_BYTES = CHIP_SIZE * CHIP_SIZE * 3


class ChipError(InvalidArgument):
    """One chip that cannot be embedded; the message starts with "chip <index>:"."""


@dataclass(frozen=True)
class ChipBytes:
    """A chip as it arrives on the wire: side length and tightly packed BGR bytes."""

    size: int
    bgr: bytes


Chip = ChipBytes | np.ndarray


def decode_chip(index: int, chip: Chip) -> np.ndarray:
    """A (112, 112, 3) uint8 view of one chip (no copy), or ChipError saying what to fix."""
    if isinstance(chip, np.ndarray):
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3) or chip.dtype != np.uint8:
            raise ChipError(
                f"chip {index}: expected a ({CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 BGR array, got {chip.shape} {chip.dtype}"
            )
        return chip
    if chip.size != CHIP_SIZE:
        raise ChipError(f"chip {index}: size is {chip.size}, expected {CHIP_SIZE} (ArcFace-aligned 112x112 chips)")
    if len(chip.bgr) != CHIP_BYTES:
        raise ChipError(
            f"chip {index}: has {len(chip.bgr)} bytes, expected {CHIP_BYTES} "
            f"({CHIP_SIZE}x{CHIP_SIZE}x3 BGR, tightly packed)"
        )
    return np.frombuffer(chip.bgr, dtype=np.uint8).reshape(CHIP_SIZE, CHIP_SIZE, 3)
