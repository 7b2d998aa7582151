"""Fixed transforms given as a parameter: a fixed camera's extrinsics where tf2 is not there. No ROS.

A camera bolted over a table has one transform to the robot's base for ever. Where tf2_ros is
not installed (or nothing broadcasts it), the `static_transforms` parameter gives it as text,
one transform per `;`: `parent child x y z qx qy qz qw` (the child frame's pose in the parent,
as `static_transform_publisher` takes it). A lookup finds a transform given either way round
(the inverse is computed); chains of several are not followed.
"""

import math

import numpy as np

from videomolmo_ros.pipeline.object_geometry import RigidTransform
from videomolmo_ros.pipeline.oriented_box import matrix_from_quaternion, quaternion_from_matrix


class StaticTransforms:
    """target <- source transforms from the parameter's text."""

    def __init__(self, text: str = ""):
        """Raises ValueError naming the entry that is not `parent child x y z qx qy qz qw` with a unit quaternion."""
        self._transforms: dict[tuple[str, str], RigidTransform] = {}
        for entry in filter(None, (e.strip() for e in text.split(";"))):
            parent, child, *numbers = entry.split()
            values = [float(v) for v in numbers] if len(numbers) == 7 else []
            if not values or not all(map(math.isfinite, values)):
                raise ValueError(f"static transform {entry!r} is not 'parent child x y z qx qy qz qw'")
            norm = math.sqrt(sum(q * q for q in values[3:]))
            if abs(norm - 1) > 1e-3:
                raise ValueError(f"static transform {entry!r}: the quaternion's norm is {norm:.4f}, not 1")
            self._transforms[(parent, child)] = RigidTransform(tuple(values[:3]), tuple(q / norm for q in values[3:]))

    def __bool__(self) -> bool:
        return bool(self._transforms)

    def lookup(self, target: str, source: str) -> RigidTransform | None:
        """target <- source (points of `source` expressed in `target`), or None when not given either way."""
        if (target, source) in self._transforms:
            return self._transforms[(target, source)]
        forward = self._transforms.get((source, target))
        if forward is None:
            return None
        rotation = matrix_from_quaternion(forward.rotation_xyzw).T
        translation = -rotation @ np.asarray(forward.translation)
        return RigidTransform(tuple(float(t) for t in translation), quaternion_from_matrix(rotation))
