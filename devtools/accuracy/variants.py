"""The degraded versions of one photo that the harness searches with (built on `retailface.devtools.degrade`).

Every variant is made from the photo at its own size and the five landmarks found there:

- ``native``: the photo as it is;
- ``eye<d>``: shrunk so the eyes are d px apart, for d in `degrade.EYE_DISTANCES_PX` below the photo's own
  distance (a face is never enlarged);
- the presets of `degrade.PRESETS` at the photo's own size (motion and defocus blur, JPEG 30, under- and
  over-exposure);
- ``walk<d>``: shrunk to d px, then the motion blur of a shopper walking at 1.4 m/s through a 1/100 s
  exposure, half of the motion across the image (a camera above an entrance sees people walk towards it);
- ``camera<d>-s<k>``: ``walk<d>`` at the seed's blur angle, one stop under-exposed with shot and read noise,
  then JPEG 30: a ceiling camera's small, soft, noisy face. Seeds differ in blur angle and noise.

Randomness (noise) is seeded by the variant's seed and the photo's key, so a photo's variant is always
the same pixels.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from retailface.devtools import degrade

VERSION = 1  # bump when a variant's pixels change: it is part of the probe cache key
NATIVE = "native"
NATIVE_PRESETS = ("motion-3px", "motion-7px-30deg", "defocus-r1", "defocus-r2.5", "jpeg-q30", "under-2ev", "over-1.5ev")
CAMERA_ANGLES_DEG = (0.0, 25.0, -25.0)  # blur direction of camera seeds 0, 1, 2
WALK_LATERAL_SHARE = 0.5
CAMERA_GAIN = 0.5  # one stop under
CAMERA_SHOT_NOISE, CAMERA_READ_NOISE = 0.02, 0.004


@dataclass(frozen=True)
class Variant:
    name: str  # "native", "eye18", "motion-3px", "walk18", "camera18-s1"
    family: str  # "native", "eye", "preset", "walk", "camera"
    eye_px: float | None  # the inter-eye distance it shrinks the face to; None: the photo's own size
    seed: int = 0
    description: str = ""

    def applies_to(self, native_eye_px: float) -> bool:
        """Whether the photo's face is large enough for this variant (shrinking only)."""
        return self.eye_px is None or self.eye_px < native_eye_px

    def render(self, image: np.ndarray, landmarks: np.ndarray, photo_key: str) -> np.ndarray:
        """The variant of a BGR photo whose face has these landmarks (YuNet's order)."""
        noise_seed = zlib.crc32(f"{self.seed}:{photo_key}".encode())
        if self.family == "native":
            return image.copy()
        if self.family == "preset":
            return degrade.PRESETS[self.name].apply(image, noise_seed)
        assert self.eye_px is not None
        small, _ = degrade.downscale_to_eye_distance(image, landmarks, self.eye_px)
        if self.family == "eye":
            return small
        angle = CAMERA_ANGLES_DEG[self.seed % len(CAMERA_ANGLES_DEG)]
        length = degrade.walking_motion_px(self.eye_px, lateral_share=WALK_LATERAL_SHARE)
        walked = degrade.motion_blur(small, length, angle)
        if self.family == "walk":
            return walked
        dark = degrade.exposure(
            walked, CAMERA_GAIN, shot_noise=CAMERA_SHOT_NOISE, read_noise=CAMERA_READ_NOISE, seed=noise_seed
        )
        return degrade.jpeg(dark, degrade.JPEG_QUALITY)


def catalogue(camera_seeds: int = 1) -> tuple[Variant, ...]:
    """Every variant, native first (the others need its landmarks); `camera_seeds` camera variants per size."""
    found: list[Variant] = [Variant(NATIVE, "native", None, 0, "the photo as it is")]
    found += [
        Variant(f"eye{d}", "eye", float(d), 0, f"shrunk to {d} px between the eyes") for d in degrade.EYE_DISTANCES_PX
    ]
    found += [Variant(name, "preset", None, 0, degrade.PRESETS[name].description) for name in NATIVE_PRESETS]
    found += [
        Variant(f"walk{d}", "walk", float(d), 0, f"{d} px, walking motion blur") for d in degrade.EYE_DISTANCES_PX
    ]
    found += [
        Variant(f"camera{d}-s{k}", "camera", float(d), k, f"{d} px, walking blur, 1 stop under with noise, JPEG 30")
        for d in degrade.EYE_DISTANCES_PX
        for k in range(camera_seeds)
    ]
    return tuple(found)


def by_name(camera_seeds: int = 3) -> dict[str, Variant]:
    return {v.name: v for v in catalogue(camera_seeds)}
