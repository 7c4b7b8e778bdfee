"""Degradations of face photos that imitate store cameras, for the accuracy harness (development tooling).

Every function is pure: a BGR uint8 image in (plus, for the size change, the face's five
landmarks), a new BGR uint8 image out. The only randomness, sensor noise, comes from an explicit
seed, so the same call gives the same pixels.

Order, as light reaches a camera: the scene is blurred by motion and focus, the sensor samples it
at the camera's resolution (a face far away is a face few pixels wide), the exposure and gain set
its brightness, the sensor adds noise, the encoder compresses:

    small, marks = downscale_to_eye_distance(image, landmarks, 18)
    small = defocus_blur(motion_blur(small, walking_motion_px(18), 0.0), 1.0)
    small = jpeg(exposure(small, 0.25, shot_noise=0.02, read_noise=0.004, seed=7), 30)

Blur lengths and radii are in pixels of the image they are applied to. Blur and exposure work in
linear light (sRGB decoded), where light adds up, and the result is encoded back to sRGB.

What a still photo cannot be made to show faithfully:

- pose: a head turned or tilted in depth, or seen from above by a camera over the door, shows
  parts of the face the photo does not have; a 2D warp is not a pose change;
- real low-light noise: a sensor's noise is shaped by the Bayer mosaic, demosaicing, the camera's
  denoiser and sharpening and then the video codec; here it is white Gaussian noise whose variance
  grows with the signal (shot) plus a floor (read), added per channel;
- the camera's own optics and sampling: downscaling a sharp photo with area averaging gives a
  cleaner small face than a real lens, Bayer sensor and H.264 stream would; combine it with a mild
  defocus and JPEG to come closer, and treat the small-face bins as optimistic;
- rolling shutter skew, interlacing, lens distortion and vignetting at the frame's edges,
  infrared night mode, backlight and tone mapping of HDR cameras, video-codec artefacts (blocking
  in motion, keyframe pumping) rather than JPEG's;
- occlusion (caps, masks, hands, other shoppers), ageing, make-up: not degradations of a photo;
- upscaling: a face cannot be made larger than in its photo with new detail, so a size bin above a
  photo's native inter-eye distance is refused, never faked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

EYE_DISTANCES_PX = (10, 14, 18, 24, 32, 48)
JPEG_QUALITY = 30
MEAN_INTERPUPILLARY_M = 0.063  # adult mean, for converting motion in metres to pixels

_CODES = np.arange(256, dtype=np.float64) / 255.0
_DECODE = np.where(_CODES <= 0.04045, _CODES / 12.92, ((_CODES + 0.055) / 1.055) ** 2.4)


def to_linear(image: np.ndarray) -> np.ndarray:
    """sRGB-encoded uint8 to linear light in [0, 1] (float64)."""
    return _DECODE[image]


def from_linear(linear: np.ndarray) -> np.ndarray:
    """Linear light to sRGB-encoded uint8, clipping what falls outside [0, 1]."""
    clipped = np.clip(linear, 0.0, 1.0)
    encoded = np.where(clipped <= 0.0031308, clipped * 12.92, 1.055 * clipped ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(encoded * 255.0), 0, 255).astype(np.uint8)


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 image (h, w, 3), got {image.dtype} {image.shape}")


# ---------------------------------------------------------------------------------------------
# Size


def inter_eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the eye centres: YuNet's landmark order is right eye, left eye, nose, mouth corners."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    return float(np.hypot(*(points[0] - points[1])))


def downscale_to_eye_distance(image: np.ndarray, landmarks: np.ndarray, eye_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The whole image shrunk so the eyes are `eye_px` apart (area averaging in linear light); landmarks follow.

    The face simply is small in the frame: nothing is upsampled back. The output size is rounded to
    whole pixels, so the eye distance is within half a pixel of the request. Raises ValueError when
    the photo's face is smaller than asked (enlarging adds no detail).
    """
    _check_image(image)
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    native = inter_eye_distance(points)
    if eye_px <= 0 or native <= 0:
        raise ValueError(f"eye distances must be positive (asked {eye_px}, face has {native:.2f})")
    if eye_px > native:
        raise ValueError(f"cannot enlarge a face from {native:.2f} to {eye_px} px between the eyes")
    height, width = image.shape[:2]
    scale = eye_px / native
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_w, new_h) == (width, height):
        return image.copy(), points.copy()
    # a sensor pixel adds up light: average in linear light
    linear = cv2.resize(to_linear(image).astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_AREA)
    small = from_linear(linear.astype(np.float64))
    factors = np.array([new_w / width, new_h / height])
    # pixel centres: x_dst + 0.5 = (x_src + 0.5) * factor, as the area resampling maps them
    return small, (points + 0.5) * factors - 0.5


# ---------------------------------------------------------------------------------------------
# Blur


def motion_kernel(length_px: float, angle_deg: float, samples_per_px: int = 64) -> np.ndarray:
    """Point spread of uniform straight motion over `length_px` at `angle_deg` (0 = horizontal).

    The path is sampled at its midpoints and each sample is given to the pixel it falls in, so a
    horizontal motion of n whole pixels is exactly n pixels of weight 1/n.
    """
    if length_px < 1:
        return np.ones((1, 1), dtype=np.float64)
    half = math.ceil(length_px / 2)
    size = 2 * half + 1
    count = samples_per_px * math.ceil(length_px)
    t = (np.arange(count) + 0.5) / count * length_px - length_px / 2
    angle = math.radians(angle_deg)
    xs = np.rint(t * math.cos(angle)).astype(int) + half
    ys = np.rint(-t * math.sin(angle)).astype(int) + half
    kernel = np.zeros((size, size), dtype=np.float64)
    np.add.at(kernel, (ys, xs), 1.0)
    return kernel / kernel.sum()


def disk_kernel(radius_px: float, subsamples: int = 16) -> np.ndarray:
    """Point spread of a defocused lens: a uniform disk, its edge pixels weighted by the area inside."""
    if radius_px <= 0:
        return np.ones((1, 1), dtype=np.float64)
    half = math.ceil(radius_px)
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    coords = np.arange(-half, half + 1, dtype=np.float64)
    fine = (coords[:, None] + offsets[None, :]).ravel()
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius_px**2
    size = 2 * half + 1
    kernel = inside.reshape(size, subsamples, size, subsamples).sum(axis=(1, 3)).astype(np.float64)
    return kernel / kernel.sum()


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolves in linear light (edges reflected), then encodes back to sRGB uint8."""
    _check_image(image)
    linear = to_linear(image).astype(np.float32)
    out = cv2.filter2D(linear, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return from_linear(out.astype(np.float64))


def motion_blur(image: np.ndarray, length_px: float, angle_deg: float) -> np.ndarray:
    return blur(image, motion_kernel(length_px, angle_deg))


def defocus_blur(image: np.ndarray, radius_px: float) -> np.ndarray:
    return blur(image, disk_kernel(radius_px))


def walking_motion_px(
    eye_px: float, speed_m_s: float = 1.4, exposure_s: float = 1 / 100, lateral_share: float = 1.0
) -> float:
    """Blur length of a face moving across the image during one exposure, in pixels at `eye_px`.

    A shopper walking at 1.4 m/s past the camera for 1/100 s moves 14 mm, about 0.22 of the
    distance between the eyes. Walking straight towards a camera over the door moves the face
    mostly along the optical axis: use a `lateral_share` well below 1 for that.
    """
    return speed_m_s * exposure_s * lateral_share / MEAN_INTERPUPILLARY_M * eye_px


# ---------------------------------------------------------------------------------------------
# Exposure, noise, compression


def exposure(
    image: np.ndarray,
    gain: float,
    *,
    gamma: float = 1.0,
    shot_noise: float = 0.0,
    read_noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Under- (gain < 1) or over-exposure (gain > 1) in linear light, with clipping and optional noise.

    linear_out = (gain * linear) ** gamma + noise, clipped to [0, 1]. The noise is Gaussian with
    variance shot_noise**2 * signal + read_noise**2 (in full-scale units), drawn from `seed`.
    """
    _check_image(image)
    if gain <= 0 or gamma <= 0:
        raise ValueError(f"gain and gamma must be positive (got {gain}, {gamma})")
    signal = np.clip(gain * to_linear(image), 0.0, 1.0) ** gamma
    if shot_noise > 0 or read_noise > 0:
        rng = np.random.default_rng(seed)
        sigma = np.sqrt(shot_noise**2 * signal + read_noise**2)
        signal = signal + rng.standard_normal(signal.shape) * sigma
    return from_linear(signal)


def jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Encodes as JPEG at `quality` (OpenCV's libjpeg, 4:2:0 chroma) and decodes again."""
    _check_image(image)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    assert decoded is not None
    return decoded


# ---------------------------------------------------------------------------------------------
# Named presets for the harness (size is applied separately, with the landmarks)


@dataclass(frozen=True)
class Degradation:
    name: str
    apply: Callable[[np.ndarray, int], np.ndarray]  # (image, seed) -> image
    description: str


def _motion(length: float, angle: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda image, _seed: motion_blur(image, length, angle)


def _defocus(radius: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda image, _seed: defocus_blur(image, radius)


def _exposure(gain: float, shot: float, read: float) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda image, seed: exposure(image, gain, shot_noise=shot, read_noise=read, seed=seed)


PRESETS: dict[str, Degradation] = {
    d.name: d
    for d in (
        Degradation("none", lambda image, _seed: image.copy(), "the image as it is"),
        Degradation("motion-3px", _motion(3, 0), "horizontal motion over 3 px (walking past, 1/100 s at ~14 px)"),
        Degradation("motion-7px-30deg", _motion(7, 30), "motion over 7 px at 30 degrees (fast walk or 1/30 s)"),
        Degradation("defocus-r1", _defocus(1), "defocus disk of radius 1 px"),
        Degradation("defocus-r2.5", _defocus(2.5), "defocus disk of radius 2.5 px"),
        Degradation("jpeg-q30", lambda image, _seed: jpeg(image, 30), "JPEG quality 30 re-encode"),
        Degradation("under-2ev", _exposure(0.25, 0.02, 0.004), "2 stops under, with shot and read noise"),
        Degradation("over-1.5ev", _exposure(2**1.5, 0.0, 0.0), "1.5 stops over, highlights clipped"),
    )
}
