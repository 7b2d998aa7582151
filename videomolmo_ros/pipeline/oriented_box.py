"""Oriented 3D boxes around an object's points. No ROS.

Two kinds, as a planner needs them:

- Gravity-aligned (`gravity_box`), for a frame whose z axis points up (a robot base): the box
  stands upright and turns only about z (yaw), what a top-down grasp needs. Seen from above
  (the points' outermost hull layer peeled off), a round footprint (its smallest enclosing
  circle under 1.3 times its area) gets the square around the circle fitted to its wall (yaw
  0): the camera sees only a can's front, and trimmed extents would cut its top's sparse back
  rim; any other footprint the minimum-area rectangle's yaw, with trimmed extents along it.
  The height runs from the lowest point, or down to the support surface the object stands on
  when the caller knows it (`floor_z`), to the top.
- PCA (`pca_box`), in any frame: axes along the points' principal directions.

Extents are order statistics of the points along each axis (`trim_percent` in from each end),
not min/max, so one stray point does not inflate a box. The box's x axis is its longer
horizontal (gravity) or major (PCA) axis; a gravity box's yaw is in (-90, 90] degrees.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

# A footprint whose smallest enclosing circle has less than this times its area is round (a disc: 1, a
# rectangle: pi/2 or more; seen: cans 1.04-1.2, boxes 1.4-1.85 under noise, their back rims thinned).
_ROUND_AREA_RATIO = 1.3
# A round object's wall: its points this far below its top (the top's rim is thinned at the back, where
# it meets the background); at least this many of them for a circle fit, else the enclosing circle.
_WALL_BELOW_TOP_M = 0.01
_MIN_WALL_POINTS = 20


@dataclass(frozen=True)
class OrientedBox:
    """A box: centre (metres), orientation (unit quaternion x, y, z, w) and size along its own x, y, z."""

    centre: tuple[float, float, float]
    rotation_xyzw: tuple[float, float, float, float]
    size: tuple[float, float, float]


def gravity_box(xyz: np.ndarray, floor_z: float | None = None, trim_percent: float = 0.5) -> OrientedBox:
    """An upright box with yaw around points of a z-up frame; `floor_z` (support height) extends it down."""
    (z_lo,), (z_hi,) = _extents(xyz[:, 2:3].astype(np.float64), trim_percent)
    if floor_z is not None and floor_z < z_lo:
        z_lo = floor_z
    ground = xyz[:, :2].astype(np.float64)
    mean = ground.mean(axis=0)
    footprint = _peeled_hull(ground - mean)
    circle = cv2.minEnclosingCircle(footprint)
    if math.pi * circle[1] ** 2 < _ROUND_AREA_RATIO * cv2.contourArea(footprint):
        (cx, cy), radius = _circle_fit(ground[xyz[:, 2] < z_hi - _WALL_BELOW_TOP_M] - mean) or circle
        centre = (cx + mean[0], cy + mean[1], (z_lo + z_hi) / 2)
        return OrientedBox(centre, (0.0, 0.0, 0.0, 1.0), (2 * radius, 2 * radius, z_hi - z_lo))
    yaw = math.radians(cv2.minAreaRect(footprint)[2]) % (math.pi / 2)
    axes = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
    (u_lo, v_lo), (u_hi, v_hi) = _extents(ground @ axes.T, trim_percent)
    if v_hi - v_lo > u_hi - u_lo:  # x along the longer side
        yaw += math.pi / 2
        (u_lo, v_lo, u_hi, v_hi) = (v_lo, -u_hi, v_hi, -u_lo)
    if yaw > math.pi / 2:
        yaw -= math.pi
        (u_lo, v_lo, u_hi, v_hi) = (-u_hi, -v_hi, -u_lo, -v_lo)
    u, v = (u_lo + u_hi) / 2, (v_lo + v_hi) / 2
    cx, cy = u * math.cos(yaw) - v * math.sin(yaw), u * math.sin(yaw) + v * math.cos(yaw)
    rotation = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    return OrientedBox((cx, cy, (z_lo + z_hi) / 2), rotation, (u_hi - u_lo, v_hi - v_lo, z_hi - z_lo))


def pca_box(xyz: np.ndarray, trim_percent: float = 0.5) -> OrientedBox:
    """A box along the points' principal axes (x the major one), right-handed."""
    points = xyz.astype(np.float64)
    mean = points.mean(axis=0)
    axes = np.linalg.svd(points - mean, full_matrices=False)[2]  # rows: major to minor
    if np.linalg.det(axes) < 0:
        axes[2] = -axes[2]
    low, high = _extents((points - mean) @ axes.T, trim_percent)
    centre = mean + ((low + high) / 2) @ axes
    return OrientedBox(tuple(centre), quaternion_from_matrix(axes.T), tuple(high - low))


def _peeled_hull(ground: np.ndarray) -> np.ndarray:
    """The convex hull (float32 vertices) of 2D points once their own outermost hull layer is dropped.

    No single stray point, in any direction, reaches it: what the trimmed extents do for a box's
    size, for the exact rectangle (rotating calipers, `cv2.minAreaRect`) and circle around it.
    Points sorted by x make the hulls' own sort cheap.
    """
    points = ground.astype(np.float32)
    points = points[np.argsort(points[:, 0])]
    inner = np.ones(len(points), bool)
    inner[cv2.convexHull(points, returnPoints=False).ravel()] = False
    return cv2.convexHull(points[inner] if inner.sum() >= 3 else points)


def _circle_fit(points: np.ndarray) -> tuple[tuple[float, float], float] | None:
    """The least-squares circle (centre, radius) through 2D points (Kasa's linear fit); None if too few, degenerate.

    The camera sees a round object's wall from one side only; its points, seen from above, lie on
    an arc of the circle, which fixes the centre behind them and the radius.
    """
    if len(points) < _MIN_WALL_POINTS:
        return None
    design = np.column_stack((2 * points, np.ones(len(points))))
    (cx, cy, c), *_ = np.linalg.lstsq(design, (points**2).sum(axis=1), rcond=None)
    squared = c + cx * cx + cy * cy
    return ((float(cx), float(cy)), math.sqrt(squared)) if squared > 0 else None


def _extents(coordinates: np.ndarray, trim_percent: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the order statistics `trim_percent` in from each end (one partition: 3x a percentile's speed)."""
    count = len(coordinates)
    low = int(trim_percent / 100 * (count - 1))
    ends = np.partition(coordinates, (low, count - 1 - low), axis=0)
    return ends[low], ends[count - 1 - low]


def quaternion_from_matrix(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3 x 3 rotation matrix (Shepperd's method: stable at every angle)."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2 * math.sqrt(trace + 1)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4)
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * math.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i], q[j], q[k] = s / 4, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
    return tuple(float(c) for c in q)


def matrix_from_quaternion(rotation_xyzw: tuple[float, float, float, float]) -> np.ndarray:
    """The 3 x 3 rotation of a unit quaternion (x, y, z, w)."""
    x, y, z, w = rotation_xyzw
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
