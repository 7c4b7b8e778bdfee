"""Store-camera degradations: exact sizes, kernels and tone values, and the same pixels for the same seed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retailface.devtools import degrade
from retailface.devtools.degrade import EYE_DISTANCES_PX, PRESETS

LANDMARKS = np.array([[250.0, 200.0], [391.0, 205.0], [320.0, 260.0], [270.0, 320.0], [370.0, 322.0]])


def dots_image() -> np.ndarray:
    """A black 640x480 frame with a white 9x9 square centred on each landmark."""
    image = np.zeros((480, 640, 3), np.uint8)
    for x, y in LANDMARKS.astype(int):
        image[y - 4 : y + 5, x - 4 : x + 5] = 255
    return image


def textured_image(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


@pytest.mark.parametrize("eye_px", EYE_DISTANCES_PX)
def test_downscaling_gives_the_requested_eye_distance_and_moves_the_landmarks_with_the_face(eye_px: int) -> None:
    image = dots_image()
    small, marks = degrade.downscale_to_eye_distance(image, LANDMARKS, eye_px)
    scale = eye_px / degrade.inter_eye_distance(LANDMARKS)
    assert small.shape == (round(480 * scale), round(640 * scale), 3)
    assert abs(degrade.inter_eye_distance(marks) - eye_px) <= 0.5
    # Each dot's centre of light lies where its landmark went.
    light = degrade.to_linear(small)[:, :, 0]
    ys, xs = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    for x, y in marks:
        near = (np.abs(xs - x) <= 3) & (np.abs(ys - y) <= 3)
        weights = light * near
        assert abs((weights * xs).sum() / weights.sum() - x) < 0.25
        assert abs((weights * ys).sum() / weights.sum() - y) < 0.25
    again = degrade.downscale_to_eye_distance(image, LANDMARKS, eye_px)
    np.testing.assert_array_equal(again[0], small)
    np.testing.assert_array_equal(again[1], marks)


def test_a_face_is_never_enlarged() -> None:
    with pytest.raises(ValueError, match=r"cannot enlarge a face from 141.09 to 160 px"):
        degrade.downscale_to_eye_distance(dots_image(), LANDMARKS, 160)


def test_the_motion_kernel_is_a_line_of_equal_weights() -> None:
    kernel = degrade.motion_kernel(5, 0)
    expected = np.zeros((7, 7))
    expected[3, 1:6] = 0.2
    np.testing.assert_allclose(kernel, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(degrade.motion_kernel(5, 90), expected.T, rtol=0, atol=1e-15)
    np.testing.assert_allclose(degrade.motion_kernel(4, 0)[2], [0.125, 0.25, 0.25, 0.25, 0.125], rtol=0, atol=1e-15)
    diagonal = degrade.motion_kernel(7, 30)
    assert diagonal.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(diagonal, diagonal[::-1, ::-1], rtol=0, atol=1e-15)  # symmetric about its centre


def test_the_defocus_kernel_is_a_disk() -> None:
    kernel = degrade.disk_kernel(1.0)
    np.testing.assert_array_equal(
        np.round(kernel, 4), [[0.0259, 0.1453, 0.0259], [0.1453, 0.3153, 0.1453], [0.0259, 0.1453, 0.0259]]
    )
    wide = degrade.disk_kernel(2.5)
    assert wide.shape == (7, 7)
    assert wide[3, 0] == 0.0  # (3, 0) is 3 px from the centre: its whole pixel lies outside r = 2.5
    np.testing.assert_allclose(wide, wide.T, rtol=0, atol=1e-15)


def test_blur_spreads_light_in_linear_light() -> None:
    impulse = np.zeros((9, 9, 3), np.uint8)
    impulse[4, 4] = 255
    blurred = degrade.motion_blur(impulse, 5, 0)
    # one fifth of the light in each of five pixels: sRGB encodes linear 0.2 as 124
    assert blurred[:, :, 0].tolist()[4] == [0, 0, 124, 124, 124, 124, 124, 0, 0]
    assert int(blurred[:, :, 0].sum()) == 620
    flat = np.full((5, 5, 3), 77, np.uint8)
    np.testing.assert_array_equal(degrade.defocus_blur(flat, 2.5), flat)


def test_exposure_scales_linear_light_and_clips() -> None:
    ramp = np.array([[[v, v, v] for v in (0, 64, 128, 200, 255)]], np.uint8)
    np.testing.assert_array_equal(degrade.exposure(ramp, 1.0), ramp)
    assert degrade.exposure(ramp, 0.25)[0, :, 0].tolist() == [0, 30, 66, 106, 137]
    assert degrade.exposure(ramp, 2**1.5)[0, :, 0].tolist() == [0, 106, 205, 255, 255]
    assert degrade.exposure(ramp, 1.0, gamma=2.0)[0, :, 0].tolist() == [0, 9, 61, 156, 255]
    every_code = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(degrade.from_linear(degrade.to_linear(every_code)), every_code)


def test_sensor_noise_depends_only_on_the_seed() -> None:
    image = textured_image()
    first = degrade.exposure(image, 0.25, shot_noise=0.02, read_noise=0.004, seed=11)
    np.testing.assert_array_equal(first, degrade.exposure(image, 0.25, shot_noise=0.02, read_noise=0.004, seed=11))
    other = degrade.exposure(image, 0.25, shot_noise=0.02, read_noise=0.004, seed=12)
    assert (first != other).any()
    assert (first != degrade.exposure(image, 0.25)).any()


def test_jpeg_quality_30_is_deterministic_and_lossier_than_95() -> None:
    image = textured_image()
    q30 = degrade.jpeg(image)
    np.testing.assert_array_equal(q30, degrade.jpeg(image, 30))
    assert q30.shape == image.shape
    error_30 = np.abs(q30.astype(int) - image).mean()
    error_95 = np.abs(degrade.jpeg(image, 95).astype(int) - image).mean()
    assert error_30 > 2 * error_95 > 0


def test_walking_motion_converts_metres_to_pixels() -> None:
    assert degrade.walking_motion_px(18) == pytest.approx(4.0)  # 14 mm is 2/9 of 63 mm
    assert degrade.walking_motion_px(18, lateral_share=0.25) == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_keeps_the_frame_and_repeats_itself(name: str) -> None:
    image = textured_image()
    out = PRESETS[name].apply(image, 5)
    assert (out.shape, out.dtype) == (image.shape, np.uint8)
    np.testing.assert_array_equal(out, PRESETS[name].apply(image, 5))
    if name != "none":
        assert (out != image).any()


def test_a_non_bgr_image_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a BGR uint8 image"):
        degrade.jpeg(np.zeros((4, 4), np.uint8))
