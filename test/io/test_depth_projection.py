"""depth_projection: colour pixel + registered depth -> 3D point, with hand-computed expectations."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videomolmo_ros.io.depth_projection import (
    CameraIntrinsics,
    DepthImage,
    DepthRegistrationError,
    Localizer,
    LocalizerConfig,
    Position,
    mask_to_depth_resolution,
    point_depth,
    project,
    robust_depth,
    to_pixel,
)
from videomolmo_ros.io.image_codec import ImageDecodeError

# An 80 x 60 colour camera: fx = fy = 100 px, principal point at the image centre.
COLOUR = CameraIntrinsics(fx=100.0, fy=100.0, cx=40.0, cy=30.0, width=80, height=60)


def _depth(array: np.ndarray, encoding: str = "32FC1", **kwargs) -> DepthImage:
    """A depth image registered to COLOUR, at the array's resolution."""
    height, width = array.shape
    return DepthImage.from_raw(array, encoding, COLOUR.scaled_to(width, height), stamp_ns=7, **kwargs)


def _box_mask(x0: int, y0: int, x1: int, y1: int, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


# ----------------------------------------------------------------- intrinsics and projection


def test_from_camera_info_reads_row_major_k() -> None:
    k = [600.0, 0.0, 320.5, 0.0, 500.0, 240.5, 0.0, 0.0, 1.0]
    assert CameraIntrinsics.from_camera_info(k, 640, 480) == CameraIntrinsics(600.0, 500.0, 320.5, 240.5, 640, 480)


def test_uncalibrated_camera_info_is_refused() -> None:
    with pytest.raises(ValueError, match="no calibration"):
        CameraIntrinsics.from_camera_info([0.0] * 9, 640, 480)


def test_intrinsics_scale_with_each_axis() -> None:
    full = CameraIntrinsics(fx=600.0, fy=500.0, cx=320.0, cy=240.0, width=640, height=480)
    assert full.scaled_to(320, 240) == CameraIntrinsics(300.0, 250.0, 160.0, 120.0, 320, 240)
    # 2 x 1 binning: only the horizontal quantities halve.
    assert full.scaled_to(320, 480) == CameraIntrinsics(300.0, 500.0, 160.0, 240.0, 320, 480)


def test_principal_point_projects_onto_the_optical_axis() -> None:
    assert project(40.0, 30.0, 2.0, COLOUR) == (0.0, 0.0, 2.0)


def test_off_centre_pixel_projects_by_similar_triangles() -> None:
    camera = CameraIntrinsics(fx=500.0, fy=400.0, cx=320.0, cy=240.0, width=640, height=480)
    # 100 px right of and 100 px above the centre, 2 m away: x = 100 * 2 / 500, y = -100 * 2 / 400.
    assert project(420.0, 140.0, 2.0, camera) == pytest.approx((0.4, -0.5, 2.0))


@settings(max_examples=200, deadline=None)
@given(
    fx=st.floats(50, 2000),
    fy=st.floats(50, 2000),
    cx=st.floats(0, 1280),
    cy=st.floats(0, 720),
    u=st.floats(0, 1),
    v=st.floats(0, 1),
    z=st.floats(0.05, 50),
    scale=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
)
def test_project_and_to_pixel_round_trip_at_any_resolution(
    fx: float, fy: float, cx: float, cy: float, u: float, v: float, z: float, scale: float
) -> None:
    camera = CameraIntrinsics(fx, fy, cx, cy, 1280, 720)
    x, y = u * 1280, v * 720
    point = project(x, y, z, camera)
    assert point[2] == z
    assert to_pixel(point, camera) == pytest.approx((x, y), abs=1e-6)
    # The same pixel at another resolution, with the intrinsics scaled alike, is the same ray.
    scaled = camera.scaled_to(round(1280 * scale), round(720 * scale))
    assert project(x * scale, y * scale, z, scaled) == pytest.approx(point, rel=1e-9, abs=1e-9)


# ----------------------------------------------------------------- depth images


def test_millimetres_and_metres_give_the_same_point() -> None:
    millimetres = np.full((60, 80), 1234, np.uint16)
    metres = np.full((60, 80), 1.234, np.float32)
    mask = _box_mask(50, 35, 60, 45)
    from_mm = Localizer((80, 60), COLOUR, _depth(millimetres, "16UC1", unit_divisor=1000)).locate(55, 40, mask)
    from_m = Localizer((80, 60), COLOUR, _depth(metres, "32FC1")).locate(55, 40, mask)
    # 15 px right and 10 px below the centre at 1.234 m.
    assert from_mm.xyz == pytest.approx((0.1851, 0.1234, 1.234), abs=1e-6)
    assert from_m.xyz == pytest.approx(from_mm.xyz, abs=1e-6)


def test_unit_divisor_defaults_to_rep_118_units() -> None:
    assert _depth(np.full((60, 80), 1500, np.uint16), "16UC1").depth_m[0, 0] == pytest.approx(1.5)
    assert _depth(np.full((60, 80), 1.5, np.float32), "32FC1").depth_m[0, 0] == pytest.approx(1.5)
    tenths_of_mm = _depth(np.full((60, 80), 15000, np.uint16), "16UC1", unit_divisor=10000)
    assert tenths_of_mm.depth_m[0, 0] == pytest.approx(1.5)


def test_invalid_depths_become_nan_and_are_ignored() -> None:
    raw = np.full((60, 80), 2.0, np.float32)
    raw[30:40, 50:60] = 0.5  # the object: 100 pixels
    raw[30, 50:60] = 0.0  # no return
    raw[31, 50:60] = np.nan
    raw[32, 50:60] = np.inf
    raw[33, 50:60] = -1.0
    depth = _depth(raw)
    assert np.isnan(depth.depth_m[30:34, 50:60]).all()
    assert depth.depth_m.dtype == np.float32 and not depth.depth_m.flags.writeable
    # 60 valid pixels left, all at 0.5 m: any invalid value counted would move the answer.
    assert robust_depth(depth.depth_m, _box_mask(50, 30, 60, 40)) == pytest.approx(0.5)
    # The window around (55, 32) covers one row of each invalid value and one row of object.
    assert point_depth(depth.depth_m, 55, 32, radius=2) == pytest.approx(0.5)


def test_robust_depth_ignores_invalid_values_in_an_unconverted_array() -> None:
    # Metres straight from a driver, zeros and inf not yet turned into NaN: 6 of 10 are invalid.
    # Counted, the zeros would be the majority and the answer 0 m.
    depth = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, np.inf, 1.5, 1.5, 1.5, 1.5]], np.float32)
    assert robust_depth(depth, np.ones_like(depth, bool), min_valid_pixels=4) == pytest.approx(1.5)


def test_zero_millimetres_is_no_reading() -> None:
    raw = np.zeros((60, 80), np.uint16)
    raw[0, :6] = 800
    depth = _depth(raw, "16UC1")
    assert int(np.isfinite(depth.depth_m).sum()) == 6
    assert robust_depth(depth.depth_m, np.ones((60, 80), bool), min_valid_pixels=6) == pytest.approx(0.8)


def test_depths_outside_the_trusted_range_are_invalid() -> None:
    raw = np.array([[0.1, 0.5, 3.0, 12.0]], np.float32)
    camera = CameraIntrinsics(1.0, 1.0, 2.0, 0.5, 4, 1)
    depth = DepthImage.from_raw(raw, "32FC1", camera, 0, min_depth_m=0.3, max_depth_m=10.0)
    np.testing.assert_array_equal(depth.depth_m, np.array([[np.nan, 0.5, 3.0, np.nan]], np.float32))


def test_a_non_depth_encoding_or_wrong_dtype_is_refused() -> None:
    with pytest.raises(ImageDecodeError) as error:
        DepthImage.from_raw(np.zeros((60, 80), np.uint8), "mono8", COLOUR, 0)
    assert error.value.reason == "unsupported_encoding"
    with pytest.raises(ImageDecodeError, match="float32"):
        DepthImage.from_raw(np.zeros((60, 80), np.uint16), "32FC1", COLOUR, 0)


def test_intrinsics_of_another_size_than_the_depth_image_are_refused() -> None:
    with pytest.raises(ValueError, match="intrinsics are for 80x60"):
        DepthImage.from_raw(np.zeros((30, 40), np.float32), "32FC1", COLOUR, 0)


# ----------------------------------------------------------------- robust depth


def test_background_bleeding_into_a_mask_is_rejected() -> None:
    # A slanted object seen by 8 columns x 10 rows at 0.93, 0.95, ..., 1.07 m (median 1.00 m);
    # 2 more mask columns (20 % of the mask) see the wall 3 m away.
    depth = np.full((10, 12), 5.0, np.float32)
    depth[:, :8] = np.linspace(0.93, 1.07, 8, dtype=np.float32)
    depth[:, 8:10] = 3.0
    mask = np.zeros((10, 12), bool)
    mask[:, :10] = True
    # Without rejection the wall shifts the median up by one step and a half: (1.01 + 1.03) / 2.
    assert float(np.median(depth[mask])) == pytest.approx(1.02, abs=1e-6)
    # Median 1.02, MAD 0.05 -> band 3 * 1.4826 * 0.05 = 0.22 m: the wall (1.98 m off) goes,
    # every object pixel (at most 0.09 m off) stays, and their median is 1.00.
    assert robust_depth(depth, mask) == pytest.approx(1.00, abs=1e-6)


def test_flat_surface_keeps_its_pixels_when_mad_is_zero() -> None:
    depth = np.full((10, 10), 0.75, np.float32)
    depth[0, :3] = 0.76  # millimetre quantisation: the minimum band (2 cm) keeps these
    depth[9, 9] = 2.0
    assert robust_depth(depth, np.ones((10, 10), bool)) == pytest.approx(0.75)


def test_too_few_valid_pixels_give_no_depth_and_a_reason() -> None:
    raw = np.zeros((60, 80), np.uint16)
    raw[30, 50:55] = 1000  # 5 valid depths in a 100-pixel mask
    depth = _depth(raw, "16UC1")
    mask = _box_mask(50, 30, 60, 40)
    assert robust_depth(depth.depth_m, mask, min_valid_pixels=10) is None
    assert robust_depth(depth.depth_m, mask, min_valid_pixels=5) == pytest.approx(1.0)
    localizer = Localizer((80, 60), COLOUR, depth, LocalizerConfig(min_valid_pixels=10))
    assert localizer.locate(55, 35, mask) == Position(None, "no_valid_depth")
    assert localizer.locate(10, 10) == Position(None, "no_valid_depth")  # a hole, no mask


def test_point_window_is_clipped_at_the_image_border() -> None:
    depth = np.full((6, 8), 1.25, np.float32)
    assert point_depth(depth, 0, 0, radius=2) == pytest.approx(1.25)  # a 3 x 3 window: 9 pixels
    assert point_depth(depth, 0, 0, radius=2, min_valid_pixels=10) is None


# ----------------------------------------------------------------- depth at another resolution


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_depth_at_another_resolution_gives_the_same_point(factor: float) -> None:
    # At colour resolution: a 1.5 m box over x in [40, 60), y in [30, 50) before a 4 m wall.
    scene = np.full((60, 80), 4.0, np.float32)
    scene[30:50, 40:60] = 1.5
    resized = scene[::2, ::2] if factor == 0.5 else np.repeat(np.repeat(scene, 2, axis=0), 2, axis=1)
    mask = _box_mask(39, 29, 61, 51)  # one pixel too wide all round: its border sees the wall
    expected = (0.15, 0.15, 1.5)  # pixel (50, 40): 10 px right and below the centre, at 1.5 m
    for depth in (_depth(scene), _depth(resized)):
        localizer = Localizer((80, 60), COLOUR, depth)
        assert localizer.locate(50, 40, mask).xyz == pytest.approx(expected)
        assert localizer.locate(50, 40).xyz == pytest.approx(expected)
    # Unscaled, pixel (50, 40) would be off a 40 x 30 image, or on the wall in a 160 x 120 one.
    assert resized.shape == (round(60 * factor), round(80 * factor))


def test_mask_resampling_keeps_the_object_in_place() -> None:
    mask = _box_mask(2, 2, 6, 4, shape=(8, 8))
    np.testing.assert_array_equal(mask_to_depth_resolution(mask, (4, 4)), _box_mask(1, 1, 3, 2, shape=(4, 4)))
    np.testing.assert_array_equal(mask_to_depth_resolution(mask, (16, 16)), _box_mask(4, 4, 12, 8, shape=(16, 16)))


def test_colour_intrinsics_of_another_resolution_are_scaled_to_the_colour_image() -> None:
    full_resolution = COLOUR.scaled_to(160, 120)  # a CameraInfo for the sensor's full size
    depth = _depth(np.full((60, 80), 2.0, np.float32))
    assert Localizer((80, 60), full_resolution, depth).locate(60, 30).xyz == pytest.approx((0.4, 0.0, 2.0))


# ----------------------------------------------------------------- localizer


def test_unregistered_depth_is_refused() -> None:
    # A depth sensor's own intrinsics (another focal length and principal point), not the colour camera's.
    own = CameraIntrinsics(fx=90.0, fy=90.0, cx=38.0, cy=31.0, width=80, height=60)
    depth = DepthImage.from_raw(np.ones((60, 80), np.float32), "32FC1", own, 0)
    with pytest.raises(DepthRegistrationError, match="aligned_depth_to_color"):
        Localizer((80, 60), COLOUR, depth)


def test_cropped_depth_of_another_aspect_ratio_is_refused() -> None:
    cropped = CameraIntrinsics(fx=100.0, fy=100.0, cx=40.0, cy=20.0, width=80, height=40)
    depth = DepthImage.from_raw(np.ones((40, 80), np.float32), "32FC1", cropped, 0)
    with pytest.raises(DepthRegistrationError):
        Localizer((80, 60), COLOUR, depth)


def test_every_target_gets_a_position_or_a_reason() -> None:
    depth = np.full((60, 80), 2.0, np.float32)
    depth[:, :10] = np.nan
    localizer = Localizer((80, 60), COLOUR, _depth(depth))
    positions = localizer.locate_all(
        [
            (40.0, 30.0, None),
            (80.0, 30.0, None),  # x == width: past the last pixel
            (math.nan, 30.0, None),
            (40.0, 30.0, np.ones((30, 40), bool)),
            (40.0, 30.0, np.zeros((60, 80), bool)),
            (5.0, 30.0, _box_mask(0, 20, 10, 40)),
        ]
    )
    assert [p.reason for p in positions] == [
        None,
        "outside_image",
        "outside_image",
        "mask_wrong_size",
        "empty_mask",
        "no_valid_depth",
    ]
    assert positions[0].xyz == (0.0, 0.0, 2.0)


def test_depth_sync_pairs_frames_with_the_nearest_depth_within_tolerance():
    from videomolmo_ros.io.depth_projection import DepthSync

    intrinsics = CameraIntrinsics(100.0, 100.0, 2.0, 2.0, 4, 4)
    sync = DepthSync(tolerance_s=0.02, capacity=3)
    for ms in (0, 33, 66, 100):
        sync.add(DepthImage.from_raw(np.full((4, 4), 1000, np.uint16), "16UC1", intrinsics, ms * 1_000_000))
    assert sync.find(70_000_000).stamp_ns == 66_000_000
    assert sync.find(0) is None, "the oldest fell out of the bounded history"
    assert sync.find(150_000_000) is None, "nothing within 20 ms"
    sync.add(DepthImage.from_raw(np.full((4, 4), 1000, np.uint16), "16UC1", intrinsics, 5_000_000))
    assert sync.find(100_000_000) is None, "a looping bag forgets the depth from before the jump"


def test_depth_sync_waits_for_a_depth_image_that_comes_after_its_colour_frame():
    import threading

    from videomolmo_ros.io.depth_projection import DepthSync

    intrinsics = CameraIntrinsics(100.0, 100.0, 2.0, 2.0, 4, 4)
    sync = DepthSync(tolerance_s=0.02)
    early = DepthImage.from_raw(np.full((4, 4), 1000, np.uint16), "16UC1", intrinsics, 60_000_000)
    late = DepthImage.from_raw(np.full((4, 4), 2000, np.uint16), "16UC1", intrinsics, 101_000_000)
    sync.add(early)
    assert sync.find(100_000_000) is None, "without waiting: the colour frame came first"
    waiting, wait = threading.Event(), sync._arrived.wait
    sync._arrived.wait = lambda timeout=None: waiting.set() or wait(timeout)  # the depth comes once find waits
    threading.Thread(target=lambda: waiting.wait(10) and sync.add(late), daemon=True).start()
    assert sync.find(100_000_000, wait_s=10.0) is late, "the depth taken with the frame, arrived meanwhile"
    assert waiting.is_set()


def test_transform_point_rotates_then_translates():
    from videomolmo_ros.io.depth_projection import transform_point

    quarter_turn_about_z = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))
    x, y, z = transform_point((1.0, 0.0, 2.0), (0.5, 0.0, -1.0), quarter_turn_about_z)
    assert (x, y, z) == pytest.approx((0.5, 1.0, 1.0))
    assert transform_point((1.0, 2.0, 3.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)) == pytest.approx((1.0, 2.0, 3.0))
