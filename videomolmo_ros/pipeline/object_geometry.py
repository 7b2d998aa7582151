"""The 3D stage: a frame's targets, the depth image taken with it and the camera -> per-object geometry. No ROS.

Every tool gets 3D from here (the node only converts the result to messages). Per object:

- `position`: the 3D point at its pixel, the depth read robustly under its mask
  (`depth_projection.Localizer`, unchanged rules), or a `reason` code why not;
- `points`: its segmented surface points (`object_points`), for a mask;
- `box`: an oriented box around the points (`oriented_box`).

All three are in the camera's optical frame, or in a target frame when a `RigidTransform`
(target <- optical, at the image's time) is given. A target frame is taken to have z up (a
robot base, REP 103): its boxes are gravity-aligned with a yaw, reaching down to the support
surface where one is found and the object's lowest points come within 3 cm of it (the camera
never sees an object's bottom); in the optical frame boxes follow the points' principal axes.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from videomolmo_ros.io.depth_projection import (
    CameraIntrinsics,
    DepthImage,
    Localizer,
    LocalizerConfig,
    Point3,
    transform_point,
)
from videomolmo_ros.pipeline.object_points import ObjectPoints, PointsConfig, object_points
from videomolmo_ros.pipeline.oriented_box import OrientedBox, gravity_box, matrix_from_quaternion, pca_box

# A support plane whose normal is within this cosine of the target frame's z is a floor to stand the box on,
# when the object's lowest points come within this gap of it (it stands there, it does not float above).
_HORIZONTAL_COS = 0.95
_SUPPORT_GAP_M = 0.03


@dataclass(frozen=True)
class RigidTransform:
    """target <- source: a translation and a unit quaternion (x, y, z, w), as tf2 gives them."""

    translation: Point3
    rotation_xyzw: tuple[float, float, float, float]

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        """N x 3 points moved into the target frame."""
        return xyz @ matrix_from_quaternion(self.rotation_xyzw).T + np.asarray(self.translation)


@dataclass(frozen=True)
class GeometryConfig:
    localizer: LocalizerConfig = field(default_factory=LocalizerConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    boxes: bool = True  # points and boxes; False: positions only
    trim_percent: float = 0.5  # robust box extents: order statistics this far in from each end


@dataclass(frozen=True)
class ObjectGeometry:
    """One target's 3D geometry; `reason` says why `position` is None (see `depth_projection.Position`)."""

    position: Point3 | None
    reason: str | None = None
    points: ObjectPoints | None = field(default=None, repr=False)  # xyz in the geometry's frame
    box: OrientedBox | None = None


def object_geometry(
    targets: Sequence[tuple[float, float, np.ndarray | None]],
    colour_size: tuple[int, int],
    intrinsics: CameraIntrinsics,
    depth: DepthImage,
    config: GeometryConfig | None = None,
    transform: RigidTransform | None = None,
) -> list[ObjectGeometry]:
    """Geometry for each (x, y, mask or None) target of a colour image of `colour_size` (width, height).

    Raises DepthRegistrationError when `depth` is not registered to the colour camera.
    """
    config = config or GeometryConfig()
    localizer = Localizer(colour_size, intrinsics, depth, config.localizer)
    return [_one(localizer, x, y, mask, config, transform) for x, y, mask in targets]


def _one(
    localizer: Localizer,
    x: float,
    y: float,
    mask: np.ndarray | None,
    config: GeometryConfig,
    transform: RigidTransform | None,
) -> ObjectGeometry:
    located = localizer.locate(x, y, mask)
    if located.xyz is None:
        return ObjectGeometry(None, located.reason)
    position = located.xyz
    if transform is not None:
        position = transform_point(position, transform.translation, transform.rotation_xyzw)
    if mask is None or not config.boxes:
        return ObjectGeometry(position)
    points = object_points(localizer.depth.depth_m, localizer.intrinsics, mask, config.points)
    if points is None:
        return ObjectGeometry(position)
    if transform is None:
        return ObjectGeometry(position, points=points, box=pca_box(points.xyz, config.trim_percent))
    moved = transform.apply(points.xyz).astype(np.float32)
    floor = _floor_z(points, moved, transform, config.trim_percent)
    box = gravity_box(moved, floor, config.trim_percent)
    return ObjectGeometry(position, points=ObjectPoints(moved, points.pixels, points.support), box=box)


def _floor_z(points: ObjectPoints, moved: np.ndarray, transform: RigidTransform, trim_percent: float) -> float | None:
    """The support plane's height under the object's centre in the target frame, if horizontal and touching it."""
    if points.support is None:
        return None
    normal, offset = points.support
    rotation = matrix_from_quaternion(transform.rotation_xyzw)
    up = rotation @ normal
    if abs(up[2]) < _HORIZONTAL_COS:
        return None
    # A point of the plane (-d n in the optical frame), moved; then the plane's z below the centre.
    on_plane = rotation @ (-offset * normal) + np.asarray(transform.translation)
    cx, cy = moved[:, 0].mean(), moved[:, 1].mean()
    floor = float(on_plane[2] - (up[0] * (cx - on_plane[0]) + up[1] * (cy - on_plane[1])) / up[2])
    return floor if np.percentile(moved[:, 2], trim_percent) - floor <= _SUPPORT_GAP_M else None
