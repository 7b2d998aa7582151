"""What grasp planners take, as plain arrays (no ROS): every object's points in one cloud, and a label image.

- `object_cloud`: one record per point, x y z (float32, metres, in the geometry's frame), rgb (the
  track's colour packed as PCL and RViz read it: 0x00RRGGBB in a float32's bytes) and id (uint32,
  the track id), as GraspNet/AnyGrasp-style planners take a segmented cloud and GPD an indexed one.
- `label_image`: the depth image's size, each pixel the id of the object whose points it gave
  (0: none), as Contact-GraspNet takes depth + segmask. Only pixels that passed the object-points
  filters are labelled, so flying pixels and the table under a mask's edge stay 0.
"""

from collections.abc import Sequence

import numpy as np

from videomolmo_ros.pipeline.debug_overlay import track_colour
from videomolmo_ros.pipeline.object_geometry import ObjectGeometry

CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("id", "<u4")])


def object_cloud(ids: Sequence[int], geometries: Sequence[ObjectGeometry]) -> np.ndarray:
    """The points of every object that has them, as CLOUD_DTYPE records, object after object."""
    parts = []
    for track_id, geometry in zip(ids, geometries, strict=True):
        if geometry.points is None:
            continue
        xyz = geometry.points.xyz
        records = np.empty(len(xyz), CLOUD_DTYPE)
        records["x"], records["y"], records["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        r, g, b = track_colour(track_id)
        records["rgb"] = np.array([(r << 16) | (g << 8) | b], "<u4").view("<f4")[0]
        records["id"] = track_id
        parts.append(records)
    return np.concatenate(parts) if parts else np.empty(0, CLOUD_DTYPE)


def label_image(shape: tuple[int, int], ids: Sequence[int], geometries: Sequence[ObjectGeometry]) -> np.ndarray:
    """uint16 H x W (the depth image's shape): each object's id on the depth pixels its points came from.

    Ids above 65535 cannot be written in mono16: such an object's pixels are left 0.
    """
    labels = np.zeros(shape, np.uint16)
    for track_id, geometry in zip(ids, geometries, strict=True):
        if geometry.points is not None and 0 < track_id <= np.iinfo(np.uint16).max:
            rows, cols = geometry.points.pixels.T
            labels[rows, cols] = track_id
    return labels
