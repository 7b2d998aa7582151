"""Lens distortion: 3D positions from an unrectified image are right to the millimetre, checked against OpenCV."""

import math

import cv2
import numpy as np
import pytest

from videomolmo_ros.io.depth_projection import CameraIntrinsics, DepthImage, Localizer, project, to_pixel
from videomolmo_ros.io.lens_distortion import Distortion

K = [600.0, 0.0, 320.0, 0.0, 600.0, 240.0, 0.0, 0.0, 1.0]
# Calibrations of the strength a wide-angle USB or fisheye camera has.
LENSES = {
    "plumb_bob": [-0.3, 0.12, 0.001, -0.0005, -0.02],
    "rational_polynomial": [0.5, -0.2, 0.001, -0.0005, 0.01, 0.8, -0.1, 0.02],
    "equidistant": [-0.05, 0.01, -0.004, 0.001],
}
# Points 1 m in front of the camera, towards the corners of the 640x480 image, where distortion is largest.
POINTS_1M = np.array([[0.3, 0.25, 1.0], [-0.45, -0.33, 1.0], [0.4, -0.3, 1.0], [-0.2, 0.3, 1.0]])


def _seen_at(model: str, points: np.ndarray) -> np.ndarray:
    """The pixels OpenCV's projection with this lens puts the points at (the independent forward path)."""
    k, d, zero = np.array(K).reshape(3, 3), np.array(LENSES[model]), np.zeros(3)
    if model == "equidistant":
        pixels, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), zero, zero, k, d)
    else:
        pixels, _ = cv2.projectPoints(points, zero, zero, k, d)
    return pixels.reshape(-1, 2)


@pytest.mark.parametrize("model", list(LENSES))
def test_a_distorted_pixel_back_projects_within_a_millimetre_at_one_metre(model):
    camera = CameraIntrinsics.from_camera_info(K, 640, 480, model, LENSES[model])
    pinhole = CameraIntrinsics.from_camera_info(K, 640, 480)
    for (u, v), truth in zip(_seen_at(model, POINTS_1M), POINTS_1M, strict=True):
        error_mm = 1000 * math.dist(project(u, v, 1.0, camera), truth)
        ignored_mm = 1000 * math.dist(project(u, v, 1.0, pinhole), truth)
        assert error_mm < 1.0, f"{model}: {error_mm:.3f} mm at ({u:.0f}, {v:.0f})"
        assert ignored_mm > 10.0, f"{model}: ignoring D would be {ignored_mm:.1f} mm off (the test needs a real lens)"
        assert to_pixel(truth, camera) == pytest.approx((u, v), abs=0.01), "to_pixel goes through the lens too"


def test_the_localizer_places_a_corner_object_where_it_is_on_an_unrectified_image():
    """Depth registered to the colour camera, object near the corner: its position is where OpenCV put it."""
    camera = CameraIntrinsics.from_camera_info(K, 640, 480, "plumb_bob", LENSES["plumb_bob"])
    truth = POINTS_1M[1]
    [(u, v)] = _seen_at("plumb_bob", truth[None])
    depth = DepthImage.from_raw(np.full((240, 320), 1000, np.uint16), "16UC1", camera.scaled_to(320, 240), 0)
    position = Localizer((640, 480), camera, depth).locate(u, v)
    assert 1000 * math.dist(position.xyz, truth) < 1.0


def test_a_rectified_camera_info_has_no_distortion():
    assert CameraIntrinsics.from_camera_info(K, 640, 480, "plumb_bob", [0.0] * 5).distortion is None
    assert CameraIntrinsics.from_camera_info(K, 640, 480, "", []).distortion is None


def test_distortion_is_kept_at_another_resolution():
    camera = CameraIntrinsics.from_camera_info(K, 640, 480, "equidistant", LENSES["equidistant"])
    assert camera.scaled_to(320, 240).distortion == camera.distortion


@pytest.mark.parametrize(
    ("model", "d", "message"),
    [
        ("fov", [0.9], "not supported"),
        ("plumb_bob", [0.1, 0.0, 0.0, 0.0, 0.0, 0.3], "takes 5 coefficients"),
        ("plumb_bob", [float("nan"), 0.0, 0.0, 0.0, 0.0], "finite"),
    ],
)
def test_a_lens_the_node_cannot_model_is_refused_with_the_reason(model, d, message):
    with pytest.raises(ValueError, match=message):
        CameraIntrinsics.from_camera_info(K, 640, 480, model, d)


def test_fewer_coefficients_than_the_model_takes_are_zero():
    assert Distortion("rational_polynomial", (0.1, 0.01)).coefficients == (0.1, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_a_pixel_outside_the_lens_model_gives_no_position():
    """Strong barrel distortion folds back beyond some radius: no ray to find, no made-up position."""
    camera = CameraIntrinsics.from_camera_info(K, 640, 480, "plumb_bob", [-0.9, 0.0, 0.0, 0.0, 0.0])
    depth = DepthImage.from_raw(np.full((480, 640), 1000, np.uint16), "16UC1", camera, 0)
    position = Localizer((640, 480), camera, depth).locate(639.0, 479.0)
    assert (position.xyz, position.reason) == (None, "outside_lens_model")
