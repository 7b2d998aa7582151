"""Oriented 3D boxes around an object's points. No ROS.

Two kinds, as a planner needs them:

- Gravity-aligned (`gravity_box`), for a frame whose z axis points up (a robot base): the box
  stands upright and turns only about z (yaw), what a top-down grasp needs. The yaw is the
  minimum-area rectangle of the points seen from above (their outermost hull layer peeled off);
  the height runs from the lowest point, or down to the support surface the object stands on
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


@dataclass(frozen=True)
class OrientedBox:
    """A box: centre (metres), orientation (unit quaternion x, y, z, w) and size along its own x, y, z."""

    centre: tuple[float, float, float]
    rotation_xyzw: tuple[float, float, float, float]
    size: tuple[float, float, float]


def gravity_box(xyz: np.ndarray, floor_z: float | None = None, trim_percent: float = 0.5) -> OrientedBox:
    """An upright box with yaw around points of a z-up frame; `floor_z` (support height) extends it down."""
    ground = xyz[:, :2].astype(np.float64)
    yaw = _min_area_yaw(ground - ground.mean(axis=0))
    axes = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
    (u_lo, v_lo), (u_hi, v_hi) = _extents(ground @ axes.T, trim_percent)
    if v_hi - v_lo > u_hi - u_lo:  # x along the longer side
        yaw += math.pi / 2
        (u_lo, v_lo, u_hi, v_hi) = (v_lo, -u_hi, v_hi, -u_lo)
    if yaw > math.pi / 2:
        yaw -= math.pi
        (u_lo, v_lo, u_hi, v_hi) = (-u_hi, -v_hi, -u_lo, -v_lo)
    (z_lo,), (z_hi,) = _extents(xyz[:, 2:3].astype(np.float64), trim_percent)
    if floor_z is not None and floor_z < z_lo:
        z_lo = floor_z
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


def _min_area_yaw(ground: np.ndarray) -> float:
    """The yaw in [0, 90) degrees of the smallest rectangle around 2D points, their outer hull peeled off.

    Exact (rotating calipers, `cv2.minAreaRect`) on the points left once the outermost convex-hull
    layer is dropped, so no single stray point, in any direction, turns the rectangle: what the
    trimmed extents do for the box's size, at the cost of two hulls. Points sorted by x make the
    hulls' own sort cheap.
    """
    points = ground[np.argsort(ground[:, 0])].astype(np.float32)
    inner = np.ones(len(points), bool)
    inner[cv2.convexHull(points, returnPoints=False).ravel()] = False
    if inner.sum() >= 3:
        points = points[inner]
    angle = cv2.minAreaRect(cv2.convexHull(points))[2]
    return math.radians(angle) % (math.pi / 2)


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
