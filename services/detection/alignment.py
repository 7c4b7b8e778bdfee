"""Aligned 112x112 face chips: a 5-point similarity transform onto the ArcFace template.

The transform is the least-squares similarity (rotation, uniform scale, translation) of Umeyama
(1991), the estimate insightface uses through scikit-image and OpenCV's FaceRecognizerSF.alignCrop
computes too; with 5 points it is a closed form, and unlike cv2.estimateAffinePartial2D's RANSAC it
never drops a landmark. The warp is bilinear, as alignCrop's, so chips match OpenCV's.
"""

from __future__ import annotations

import cv2
import numpy as np

from retailface.services.shared.face_template import ARCFACE_TEMPLATE, CHIP_SIZE


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity mapping source points (n, 2) onto target points."""
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centered, dst_centered = src - src_mean, dst - dst_mean
    covariance = dst_centered.T @ src_centered / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection: flip the weakest axis
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (src_centered**2).sum() / len(src)
    scale = float((singular * sign).sum() / variance) if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray:
    """Frame -> chip transform for one face's 5 landmarks."""
    return similarity_transform(landmarks, ARCFACE_TEMPLATE)


def align_face(image: np.ndarray, landmarks: np.ndarray, to_chip: np.ndarray | None = None) -> np.ndarray:
    """The 112x112 BGR chip of the face whose 5 landmarks are given in image pixels.

    `to_chip` is alignment_matrix(landmarks) when the caller has it already.
    """
    matrix = alignment_matrix(landmarks) if to_chip is None else to_chip
    return cv2.warpAffine(image, matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
