"""One object's segmented 3D points from its mask and the depth image taken with it. No ROS.

A mask drawn on the colour image is never exactly the object: its border pixels see the table
and the background behind the object, and depth cameras put "flying pixels" (depths between the
object's and the background's) along every depth edge. Grasp planners take the cloud as the
object's surface, so each of these is removed in turn, at the depth image's resolution:

1. Depth edges: a mask pixel farther than a 4-neighbour by more than `edge_jump_ratio` x its
   depth is dropped (flying pixels, background seen past the border); the near side stays.
2. The depth MAD test (`depth_projection`'s rule): depths far from the mask's median go.
3. The connected cluster: of the pixels left, connected in the image grid, the largest piece is
   the object; pieces cut off by depth edges (a patch of background inside the mask) go.
4. The support surface: a plane fitted to a ring of pixels just outside the mask (the table the
   object stands on); mask points within `support_margin_m` of it or behind it go, since depth
   is continuous where an object meets its table and steps 1-3 cannot separate them there.

Then optionally a voxel grid (`voxel_m`, one mean point per voxel) and a cap (`max_points`,
evenly strided), so a cloud's size is bounded whatever the object's size in the image.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from videomolmo_ros.io.depth_projection import MAD_TO_SIGMA, CameraIntrinsics, mask_to_depth_resolution

# The support plane's ring: pixels between these distances (depth pixels) outside the mask.
_RING_INNER_PX, _RING_OUTER_PX = 2, 6
_PLANE_INLIER_M = 0.006  # ring points this close to the fitted plane are the plane's
_PLANE_MIN_INLIERS = 0.6  # of the ring's points, for the ring to be a support surface
_PLANE_POINTS = 500  # the plane is fitted to at most this many of the ring's points
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


@dataclass(frozen=True)
class PointsConfig:
    """How an object's points are cut out: edge and outlier rules, the support plane, the cloud's size."""

    edge_jump_ratio: float = 0.02  # a depth step above this x depth is an edge (2 cm at 1 m)
    mad_k: float = 3.0
    min_band_m: float = 0.02
    support_margin_m: float = 0.004  # points this close to the support plane are the table's
    voxel_m: float = 0.0  # 0: no downsampling
    max_points: int = 4000
    min_points: int = 10  # fewer than this after filtering: no cloud


@dataclass(frozen=True)
class ObjectPoints:
    """An object's points (N x 3 float32, optical frame), the depth pixels they came from, and its support plane.

    `pixels` are (row, column) of the depth image for each point before downsampling (for label
    images); `support` is (unit normal towards the camera, offset d) with n.p + d = 0, or None.
    """

    xyz: np.ndarray
    pixels: np.ndarray
    support: tuple[np.ndarray, float] | None


def object_points(
    depth_m: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray, config: PointsConfig
) -> ObjectPoints | None:
    """The object's surface points under `mask` (colour resolution; `intrinsics` the colour camera's), or None.

    None when fewer than `config.min_points` survive the filters.
    """
    inside = mask_to_depth_resolution(mask.astype(bool, copy=False), depth_m.shape)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))  # 20x np.nonzero's speed
    if rows.size == 0:
        return None
    margin = _RING_OUTER_PX + 1
    top, left = max(rows[0] - margin, 0), max(cols[0] - margin, 0)
    window = (slice(top, rows[-1] + margin + 1), slice(left, cols[-1] + margin + 1))
    depth, inside = depth_m[window], inside[window]
    camera = intrinsics.scaled_to(depth_m.shape[1], depth_m.shape[0])
    keep = inside & np.isfinite(depth) & ~_depth_edges(depth, config.edge_jump_ratio)
    keep &= _within_mad(depth, keep, config)
    keep = _largest_piece(keep)
    xyz = _back_project(depth, keep, camera, (top, left))
    support = _support_plane(depth, inside, camera, (top, left))
    if support is not None and len(xyz):
        normal, offset = support
        on_object = xyz @ normal + offset > config.support_margin_m
        keep[keep] = on_object
        xyz = xyz[on_object]
    if len(xyz) < config.min_points:
        return None
    pixels = np.argwhere(keep) + np.array([top, left])
    return ObjectPoints(_bounded(xyz, config).astype(np.float32), pixels, support)


def _depth_edges(depth: np.ndarray, ratio: float) -> np.ndarray:
    """Pixels farther than a 4-neighbour by over ratio x the neighbour's depth (flying pixels, background).

    The near side of a step is the object's true outline and is kept. One erosion (the nearest
    4-neighbour, invalid depth never nearest) instead of a pass per axis.
    """
    nearest = cv2.erode(np.where(np.isnan(depth), np.float32(np.inf), depth), _CROSS, borderType=cv2.BORDER_REPLICATE)
    with np.errstate(invalid="ignore"):
        return depth > (1 + ratio) * nearest


def _within_mad(depth: np.ndarray, keep: np.ndarray, config: PointsConfig) -> np.ndarray:
    """The depth MAD test of `depth_projection.robust_depth`, as a pixel mask."""
    values = depth[keep]
    if values.size == 0:
        return keep
    median = np.median(values)
    band = max(config.mad_k * MAD_TO_SIGMA * float(np.median(np.abs(values - median))), config.min_band_m)
    with np.errstate(invalid="ignore"):
        return np.abs(depth - median) <= band


def _largest_piece(keep: np.ndarray) -> np.ndarray:
    """The largest 4-connected piece of `keep` (the first in scan order on a tie)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(keep.view(np.uint8), connectivity=4)
    if count <= 2:  # background and at most one piece
        return keep
    return labels == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])


def _back_project(depth: np.ndarray, keep: np.ndarray, camera: CameraIntrinsics, origin: tuple[int, int]) -> np.ndarray:
    """Optical-frame points of the kept depth pixels (pixel centres; the lens model undistorts them)."""
    rows, cols = np.nonzero(keep)
    z = depth[rows, cols].astype(np.float64)
    x = (cols + origin[1] + 0.5 - camera.cx) / camera.fx
    y = (rows + origin[0] + 0.5 - camera.cy) / camera.fy
    if camera.distortion is not None and len(z):
        x, y = np.array([camera.distortion.undistort(a, b) for a, b in zip(x, y, strict=True)]).T
    return np.column_stack((x * z, y * z, z))


def _support_plane(
    depth: np.ndarray, inside: np.ndarray, camera: CameraIntrinsics, origin: tuple[int, int]
) -> tuple[np.ndarray, float] | None:
    """The plane under most of a ring around the mask (n towards the camera, n.p + d = 0), or None."""
    outside = cv2.distanceTransform((~inside).view(np.uint8), cv2.DIST_L1, 3)  # 4-connected steps to the mask
    ring = (outside > _RING_INNER_PX) & (outside <= _RING_OUTER_PX) & np.isfinite(depth)
    count = np.count_nonzero(ring)
    if count < 30:
        return None
    ring[ring] = np.arange(count) % -(-count // _PLANE_POINTS) == 0  # every k-th: a plane needs few points
    points = _back_project(depth, ring, camera, origin)
    chosen = np.ones(len(points), bool)
    for _ in range(3):  # least squares, then refit on the inliers twice
        inliers = points[chosen]
        centre = inliers.mean(axis=0)
        offsets = inliers - centre
        normal = np.linalg.eigh(offsets.T @ offsets)[1][:, 0]  # the direction of least spread
        distance = np.abs((points - centre) @ normal)
        chosen = distance <= _PLANE_INLIER_M
        if chosen.sum() < 3:
            return None
    if chosen.mean() < _PLANE_MIN_INLIERS:
        return None
    if normal @ centre > 0:  # face the camera (the origin)
        normal = -normal
    return normal, float(-normal @ centre)


def _bounded(xyz: np.ndarray, config: PointsConfig) -> np.ndarray:
    """Voxel means (when `voxel_m` > 0), then at most `max_points`, evenly strided."""
    if config.voxel_m > 0 and len(xyz):
        keys = np.floor(xyz / config.voxel_m).astype(np.int64)
        _, voxel, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        sums = np.zeros((len(counts), 3))
        np.add.at(sums, voxel.ravel(), xyz)
        xyz = sums / counts[:, None]
    if len(xyz) > config.max_points:
        xyz = xyz[np.linspace(0, len(xyz) - 1, config.max_points).astype(np.intp)]
    return xyz
