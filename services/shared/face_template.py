"""The aligned face chip every model in RetailFace is fed: 112x112, landmarks on the ArcFace template.

One home for the template: detection aligns chips onto it, embedding maps it to other crops
(dlib's chip for the age and gender models), and the quality gates read its proportions.
"""

from __future__ import annotations

import numpy as np

CHIP_SIZE = 112

# The 5 landmarks in a 112x112 chip, in image coordinates, in the order YuNet reports them:
# the eye on the image's left (the subject's right eye), the eye on the image's right, the nose
# tip, the mouth corner on the image's left, the mouth corner on the image's right.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_TEMPLATE.setflags(write=False)
