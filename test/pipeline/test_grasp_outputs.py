"""The grasp planners' arrays: one cloud of every object's points with rgb and id, a label image at depth size."""

import numpy as np
from rgbd_scene import COLOUR, render

from videomolmo_ros.pipeline.debug_overlay import track_colour
from videomolmo_ros.pipeline.grasp_outputs import label_image, object_cloud
from videomolmo_ros.pipeline.object_geometry import ObjectGeometry, object_geometry


def _box_geometry():
    frame = render()
    rows, cols = np.nonzero(frame.mask)
    target = (float(np.median(cols)), float(np.median(rows)), frame.mask)
    return frame, object_geometry([target], (640, 480), COLOUR, frame.depth())[0]


def test_the_cloud_holds_each_objects_points_with_its_id_and_colour_packed_as_pcl_reads_it():
    _, geometry = _box_geometry()
    cloud = object_cloud([7, 9], [geometry, ObjectGeometry(None, "no_valid_depth")])
    assert len(cloud) == len(geometry.points.xyz) and set(cloud["id"]) == {7}
    assert np.array_equal(np.column_stack((cloud["x"], cloud["y"], cloud["z"])), geometry.points.xyz)
    packed = cloud["rgb"].view("<u4")
    r, g, b = track_colour(7)
    assert set(packed) == {(r << 16) | (g << 8) | b}
    assert cloud.dtype.itemsize == 20


def test_labels_sit_on_the_depth_pixels_of_the_objects_points_only():
    frame, geometry = _box_geometry()
    labels = label_image(frame.depth_raw.shape, [3], [geometry])
    assert labels.shape == (240, 320) and labels.dtype == np.uint16
    assert (labels == 3).sum() == len(geometry.points.pixels)
    under_mask = frame.mask[::2, ::2]
    assert not ((labels > 0) & ~under_mask).any()
    assert (labels > 0).sum() < under_mask.sum(), "the mask's spill onto the table and flying pixels stay 0"


def test_an_id_too_large_for_mono16_is_left_out_of_the_labels():
    frame, geometry = _box_geometry()
    assert not label_image(frame.depth_raw.shape, [70_000], [geometry]).any()
