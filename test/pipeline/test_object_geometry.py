"""The 3D stage on synthetic RGB-D of known geometry: a box on a table, a camera tilted 45 degrees, noisy depth.

Figures from the issue: box centre and sizes within 5 mm, yaw within 3 degrees, under 1% of the
object's points on the table, depth at half the colour resolution, 16UC1 and 32FC1.
"""

import math

import numpy as np
import pytest
from rgbd_scene import COLOUR, Box, Cylinder, render

from videomolmo_ros.io.depth_projection import DepthImage, Localizer, transform_point
from videomolmo_ros.pipeline.object_geometry import GeometryConfig, ObjectGeometry, object_geometry
from videomolmo_ros.pipeline.object_points import PointsConfig
from videomolmo_ros.pipeline.oriented_box import gravity_box, matrix_from_quaternion

TABLE_Z_M = 0.003  # a point this close to the table (z = 0) is the table's


def _geometry(frame, config: GeometryConfig | None = None, in_world: bool = True) -> ObjectGeometry:
    rows, cols = np.nonzero(frame.mask)
    target = (float(np.median(cols)), float(np.median(rows)), frame.mask)
    transform = frame.camera_to_world if in_world else None
    return object_geometry([target], (COLOUR.width, COLOUR.height), COLOUR, frame.depth(), config, transform)[0]


def _yaw_error_deg(rotation_xyzw, expected_rad: float) -> float:
    yaw = 2 * math.atan2(rotation_xyzw[2], rotation_xyzw[3])
    return abs((math.degrees(yaw - expected_rad) + 90) % 180 - 90)  # a box turned half a turn is the same box


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
@pytest.mark.parametrize(("x", "seed"), [(0.35, 0), (0.6, 1), (0.85, 2)])  # the box 0.7 to 1.0 m from the camera
def test_an_upright_box_comes_out_within_5_mm_and_3_degrees(encoding, x, seed):
    box = Box((x, 0.04 * (seed - 1)))
    frame = render(box, encoding=encoding, seed=seed)
    found = _geometry(frame).box
    assert found is not None
    assert found.rotation_xyzw[:2] == pytest.approx((0.0, 0.0)), "the box stands upright in a z-up frame"
    assert np.abs(np.subtract(found.centre, box.centre)).max() < 0.005
    assert np.abs(np.subtract(found.size, box.size)).max() < 0.005
    assert _yaw_error_deg(found.rotation_xyzw, box.yaw) < 3.0


@pytest.mark.parametrize("depth_scale", [1, 2])
@pytest.mark.parametrize("x", [0.35, 0.6, 0.85])
def test_an_upright_cylinder_comes_out_within_5_mm(x, depth_scale):
    """Round objects: the camera sees a can's wall from the front only, grazing pixels at its silhouette fail the
    edge rule and trimmed extents cut its top's sparse back rim (about 6 mm under and 6 mm towards the camera at
    1 m with a box's extents); the circle fitted to its wall puts the centre behind the visible surface."""
    can = Cylinder((x, 0.02))
    found = _geometry(render(can, seed=4, depth_scale=depth_scale)).box
    assert found.rotation_xyzw[:2] == pytest.approx((0.0, 0.0))
    assert np.abs(np.subtract(found.centre, can.centre)).max() < 0.005
    assert np.abs(np.subtract(found.size, can.size)).max() < 0.005


@pytest.mark.parametrize(("x", "yaw_deg"), [(0.6, 20), (0.85, 45)])
def test_a_square_box_is_not_taken_for_a_round_object(x, yaw_deg):
    box = Box((x, 0.0), size=(0.06, 0.06, 0.12), yaw=math.radians(yaw_deg))
    found = _geometry(render(box, seed=3)).box
    assert np.abs(np.subtract(found.centre, box.centre)).max() < 0.005
    assert np.abs(np.subtract(found.size, box.size)).max() < 0.005
    yaw = 2 * math.atan2(found.rotation_xyzw[2], found.rotation_xyzw[3])
    assert abs((math.degrees(yaw - box.yaw) + 45) % 90 - 45) < 3.0, "a square's sides, a quarter turn apart"


def test_one_stray_point_does_not_turn_a_gravity_box():
    """The yaw is exact on the points seen from above, their outer hull peeled off: the smallest rectangle
    around every point would turn about 3 degrees towards a point 3 cm past the box's end."""
    rng = np.random.default_rng(0)
    local = np.vstack((rng.uniform((-0.04, -0.025, 0), (0.04, 0.025, 0.12), (2000, 3)), [(0.07, 0.03, 0.05)]))
    yaw = math.radians(30)
    turn = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    found = gravity_box(local @ turn.T + (0.6, 0.1, 0))
    assert _yaw_error_deg(found.rotation_xyzw, yaw) < 0.5
    assert found.size == pytest.approx((0.08, 0.05, 0.12), abs=0.002)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_the_objects_cloud_holds_under_1_percent_table_points_though_its_mask_spills_onto_the_table(encoding):
    frame = render(encoding=encoding, mask_dilation_px=3)
    spilled = frame.camera_to_world.apply(_cloud_under_mask(frame))
    assert (spilled[:, 2] < TABLE_Z_M).mean() > 0.05, "the mask covers table pixels, or this test cannot fail"
    points = _geometry(frame).points.xyz
    assert len(points) > 500
    assert (points[:, 2] < TABLE_Z_M).mean() < 0.01


def _cloud_under_mask(frame) -> np.ndarray:
    """Every valid depth pixel under the (half resolution) mask, back-projected: what a naive cloud holds."""
    depth = frame.depth().depth_m
    camera = frame.depth_intrinsics
    rows, cols = np.nonzero(frame.mask[::2, ::2] & np.isfinite(depth))
    z = depth[rows, cols]
    return np.column_stack(((cols + 0.5 - camera.cx) / camera.fx * z, (rows + 0.5 - camera.cy) / camera.fy * z, z))


def test_flying_pixels_and_background_behind_the_mask_edge_stay_out_of_the_cloud():
    frame = render(flying_fraction=1.0, mask_dilation_px=3)
    points = _geometry(frame).points.xyz.astype(np.float64)  # in the world
    assert (_off_the_box(frame.camera_to_world.apply(_cloud_under_mask(frame)), frame.box) > 0.01).mean() > 0.05
    assert (_off_the_box(points, frame.box) > 0.01).mean() < 0.01, "points 1 cm or more off the box's footprint"


def _off_the_box(world: np.ndarray, box: Box) -> np.ndarray:
    """How far each point is outside the box's footprint (negative inside)."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    local = (world - box.centre)[:, :2] @ np.array([[c, -s], [s, c]])
    return (np.abs(local) - np.array(box.size[:2]) / 2).max(axis=1)


def test_in_the_optical_frame_the_box_follows_the_points_principal_axes():
    frame = render()
    geometry = _geometry(frame, in_world=False)
    found = geometry.box
    centre_in_world = frame.camera_to_world.apply(np.array([found.centre]))[0]
    assert np.linalg.norm(centre_in_world - frame.box.centre) < 0.02
    axes = matrix_from_quaternion(found.rotation_xyzw)
    assert np.linalg.det(axes) == pytest.approx(1.0), "a rotation, right-handed"
    local = (geometry.points.xyz - np.array(found.centre)) @ axes
    inside = (np.abs(local) <= np.array(found.size) / 2 + 0.002).all(axis=1)
    assert inside.mean() > 0.95, "the box holds the object's points"
    assert np.prod(found.size) < 2 * np.prod(frame.box.size), "and is not much bigger than the object"


def test_positions_are_the_localizers_moved_into_the_target_frame():
    """The stage keeps today's position rule: the interior pixel at the mask's robust depth."""
    frame = render()
    rows, cols = np.nonzero(frame.mask)
    x, y = float(np.median(cols)), float(np.median(rows))
    optical = Localizer((COLOUR.width, COLOUR.height), COLOUR, frame.depth()).locate(x, y, frame.mask).xyz
    t = frame.camera_to_world
    expected = transform_point(optical, t.translation, t.rotation_xyzw)
    assert _geometry(frame).position == pytest.approx(expected, abs=1e-6)
    assert _geometry(frame, in_world=False).position == pytest.approx(optical, abs=1e-6)


def test_depth_at_the_colour_resolution_gives_the_same_box_as_at_half():
    full, half = render(depth_scale=1, seed=3), render(depth_scale=2, seed=3)
    a, b = _geometry(full).box, _geometry(half).box
    assert np.subtract(a.centre, b.centre) == pytest.approx((0, 0, 0), abs=0.004)
    assert np.subtract(a.size, b.size) == pytest.approx((0, 0, 0), abs=0.004)


def test_voxels_and_the_cap_bound_the_cloud():
    frame = render(depth_scale=1)
    every = _geometry(frame).points.xyz
    voxelled = _geometry(frame, GeometryConfig(points=PointsConfig(voxel_m=0.01)), in_world=False).points.xyz
    capped = _geometry(frame, GeometryConfig(points=PointsConfig(max_points=100))).points.xyz
    assert len(voxelled) < len(every) / 5
    voxels = len(np.unique(np.floor(voxelled / 0.01), axis=0))
    assert voxels > 0.95 * len(voxelled), "one point per voxel (camera frame; float32 rounds at voxel borders)"
    assert len(capped) == 100
    assert np.ptp(capped[:, 1]) > 0.5 * np.ptp(every[:, 1]), "the cap strides over the whole object"


@pytest.mark.parametrize("bad", [0.0, np.nan])
def test_bad_depth_costs_the_3d_only_with_a_reason(bad):
    frame = render(encoding="32FC1")
    rows, cols = np.nonzero(frame.mask)
    depth = DepthImage.from_raw(np.full_like(frame.depth_raw, bad), "32FC1", frame.depth_intrinsics, 0)
    found = object_geometry([(float(cols[0]), float(rows[0]), frame.mask)], (640, 480), COLOUR, depth)[0]
    assert (found.position, found.reason, found.box) == (None, "no_valid_depth", None)


def test_without_a_mask_there_is_a_position_but_no_cloud_or_box():
    frame = render()
    rows, cols = np.nonzero(frame.mask)
    found = object_geometry([(float(np.median(cols)), float(np.median(rows)), None)], (640, 480), COLOUR, frame.depth())
    assert found[0].position is not None
    assert (found[0].points, found[0].box) == (None, None)
