"""3D per object: positions only, points + oriented box, and issue 29's first cut of the latter, side by side, one core.

    ./bench/run bench_object_geometry [--repeats 30]

The tests' synthetic RGB-D (test/support/rgbd_scene.py): a box 8 x 5 x 12 cm on a table, a camera
tilted 45 degrees with its transform (gravity-aligned boxes), noisy depth with flying pixels.
Each row is one colour resolution with depth at the same size (the worst case: most pixels per
mask). Printed: ms per object for the position alone, for the full geometry (points, support
plane, box, in the target frame) and for the same stage running the first cut's pieces
(`first_cut_*`, kept here only as this baseline), the speed-up, the worst centre / size error
(mm) and yaw error (degrees) over a few box poses and over upright cans (6.6 cm across, 12 cm
tall) for both, the object's points and the cloud's bytes per object on `object_points` (20
bytes a point). The timings interleave the three paths
and keep each one's best, so a busy machine slows all three alike.
"""

import argparse
import math
import time
from contextlib import contextmanager, nullcontext
from unittest import mock

import numpy as np
from scipy import ndimage
from support import Box, Cylinder, render_rgbd

from videomolmo_ros.io.depth_projection import CameraIntrinsics
from videomolmo_ros.pipeline import object_geometry as stage
from videomolmo_ros.pipeline import object_points, oriented_box
from videomolmo_ros.pipeline.grasp_outputs import object_cloud
from videomolmo_ros.pipeline.object_geometry import GeometryConfig, object_geometry

CAMERAS = {
    "640x480": CameraIntrinsics(600.0, 600.0, 320.0, 240.0, 640, 480),
    "1280x720": CameraIntrinsics(900.0, 900.0, 640.0, 360.0, 1280, 720),
}
BOXES = [Box((x, 0.0), yaw=math.radians(yaw)) for x in (0.35, 0.6, 0.85) for yaw in (-20, 30, 60)]
CANS = [Cylinder((x, 0.02)) for x in (0.35, 0.6, 0.85)]  # 6.6 cm across, 12 cm tall


# The baseline: issue 29's first cut of the edge rule, connected pieces, support plane and gravity box (replaced since).


def first_cut_depth_edges(depth: np.ndarray, ratio: float) -> np.ndarray:
    edges = np.zeros(depth.shape, bool)
    with np.errstate(invalid="ignore"):
        for axis in (0, 1):
            step = np.diff(depth, axis=axis)
            jump = ratio * np.fmin(np.delete(depth, -1, axis=axis), np.delete(depth, 0, axis=axis))
            this, after = [slice(None)] * 2, [slice(None)] * 2
            this[axis], after[axis] = slice(None, -1), slice(1, None)
            edges[tuple(this)] |= -step > jump
            edges[tuple(after)] |= step > jump
    return edges


def first_cut_largest_piece(keep: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(keep)
    if count <= 1:
        return keep
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == np.argmax(sizes)


def first_cut_support_plane(depth, inside, camera, origin):
    ring = ndimage.binary_dilation(inside, iterations=6)
    ring &= ~ndimage.binary_dilation(inside, iterations=2) & np.isfinite(depth)
    points = object_points._back_project(depth, ring, camera, origin)
    if len(points) < 30:
        return None
    chosen = np.ones(len(points), bool)
    for _ in range(3):
        centre = points[chosen].mean(axis=0)
        offsets = points[chosen] - centre
        normal = np.linalg.eigh(offsets.T @ offsets)[1][:, 0]
        chosen = np.abs((points - centre) @ normal) <= 0.006
        if chosen.sum() < 3:
            return None
    if chosen.mean() < 0.6:
        return None
    if normal @ centre > 0:
        normal = -normal
    return normal, float(-normal @ centre)


def first_cut_gravity_box(xyz: np.ndarray, floor_z: float | None = None, trim_percent: float = 0.5):
    """A rectangle for every footprint, its yaw from the search, trimmed extents along it."""
    ground = xyz[:, :2].astype(np.float64)
    yaw = first_cut_min_area_yaw(ground - ground.mean(axis=0), trim_percent)
    axes = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
    (u_lo, v_lo), (u_hi, v_hi) = oriented_box._extents(ground @ axes.T, trim_percent)
    if v_hi - v_lo > u_hi - u_lo:
        yaw += math.pi / 2
        (u_lo, v_lo, u_hi, v_hi) = (v_lo, -u_hi, v_hi, -u_lo)
    if yaw > math.pi / 2:
        yaw -= math.pi
        (u_lo, v_lo, u_hi, v_hi) = (-u_hi, -v_hi, -u_lo, -v_lo)
    (z_lo,), (z_hi,) = oriented_box._extents(xyz[:, 2:3].astype(np.float64), trim_percent)
    if floor_z is not None and floor_z < z_lo:
        z_lo = floor_z
    u, v = (u_lo + u_hi) / 2, (v_lo + v_hi) / 2
    cx, cy = u * math.cos(yaw) - v * math.sin(yaw), u * math.sin(yaw) + v * math.cos(yaw)
    rotation = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    return oriented_box.OrientedBox((cx, cy, (z_lo + z_hi) / 2), rotation, (u_hi - u_lo, v_hi - v_lo, z_hi - z_lo))


def first_cut_min_area_yaw(ground: np.ndarray, trim_percent: float) -> float:
    """2-degree steps on 300 points, then 0.1-degree steps on 400, areas from trimmed extents."""
    angles = np.linspace(0, math.pi / 2, 45, endpoint=False)
    best = angles[np.argmin(first_cut_areas(ground[:: max(len(ground) // 300, 1)], angles, trim_percent))]
    fine = np.linspace(best - angles[1], best + angles[1], 41)
    areas = first_cut_areas(ground[:: max(len(ground) // 400, 1)], fine, trim_percent)
    return float(fine[np.argmin(areas)]) % (math.pi / 2)


def first_cut_areas(ground: np.ndarray, angles: np.ndarray, trim_percent: float) -> np.ndarray:
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    x, y = ground[:, 0], ground[:, 1]
    along = np.stack((cos * x + sin * y, cos * y - sin * x))
    count = along.shape[-1]
    k = int(trim_percent / 100 * (count - 1))
    ends = np.partition(along, (k, count - 1 - k), axis=-1)
    low, high = ends[..., k], ends[..., count - 1 - k]
    return (high[0] - low[0]) * (high[1] - low[1])


@contextmanager
def running_first_cut():
    """The stage as it is, with the first cut's pieces in place of today's."""
    with (
        mock.patch.object(object_points, "_depth_edges", first_cut_depth_edges),
        mock.patch.object(object_points, "_largest_piece", first_cut_largest_piece),
        mock.patch.object(object_points, "_support_plane", first_cut_support_plane),
        mock.patch.object(stage, "gravity_box", first_cut_gravity_box),
    ):
        yield


def _target(frame):
    rows, cols = np.nonzero(frame.mask)
    return [(float(np.median(cols)), float(np.median(rows)), frame.mask)]


def best_ms(frame, camera: CameraIntrinsics, repeats: int) -> dict[str, float]:
    """The best of `repeats` timings (ms) of one object's position, geometry and first-cut geometry, interleaved."""
    target, depth, size = _target(frame), frame.depth(), (camera.width, camera.height)
    paths = {"position": GeometryConfig(boxes=False), "geometry": GeometryConfig(), "first cut": GeometryConfig()}
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(repeats):
        for name, config in paths.items():
            with running_first_cut() if name == "first cut" else nullcontext():
                start = time.perf_counter()
                object_geometry(target, size, camera, depth, config, frame.camera_to_world)
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e3 for name, seconds in best.items()}


def worst_errors(camera: CameraIntrinsics, shapes) -> tuple[float, float, float]:
    """Over `shapes` (boxes or cans): the worst centre and size errors (mm) and yaw error (degrees; a can has none)."""
    worst = np.zeros(3)
    for seed, shape in enumerate(shapes):
        frame = render_rgbd(shape, colour=camera, depth_scale=1, seed=seed)
        found = object_geometry(
            _target(frame), (camera.width, camera.height), camera, frame.depth(), None, frame.camera_to_world
        )[0].box
        yaw = 2 * math.atan2(found.rotation_xyzw[2], found.rotation_xyzw[3])
        errors = (
            1e3 * np.abs(np.subtract(found.centre, shape.centre)).max(),
            1e3 * np.abs(np.subtract(found.size, shape.size)).max(),
            abs((math.degrees(yaw - shape.yaw) + 90) % 180 - 90) if isinstance(shape, Box) else 0.0,
        )
        worst = np.maximum(worst, errors)
    return tuple(worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    header = ("colour=depth", "position ms", "geometry ms", "first cut ms", "speed-up")
    header += ("box now", "box first cut", "can now", "can first cut", "points", "cloud bytes")
    print("{:>12} {:>12} {:>12} {:>13} {:>9} {:>17} {:>17} {:>11} {:>13} {:>7} {:>12}".format(*header))
    for name, camera in CAMERAS.items():
        ms = best_ms(render_rgbd(Box(), colour=camera, depth_scale=1), camera, args.repeats)
        boxes, cans = worst_errors(camera, BOXES), worst_errors(camera, CANS)
        with running_first_cut():
            boxes_before, cans_before = worst_errors(camera, BOXES), worst_errors(camera, CANS)
        frame = render_rgbd(Box(), colour=camera, depth_scale=1)
        found = object_geometry(
            _target(frame), (camera.width, camera.height), camera, frame.depth(), None, frame.camera_to_world
        )[0]
        cloud = object_cloud([1], [found])
        print(
            f"{name:>12} {ms['position']:12.2f} {ms['geometry']:12.2f} {ms['first cut']:13.2f} "
            f"{ms['first cut'] / ms['geometry']:9.2f} {_errors(boxes):>17} {_errors(boxes_before):>17} "
            f"{_errors(cans[:2]):>11} {_errors(cans_before[:2]):>13} {len(found.points.xyz):7d} {cloud.nbytes:12d}"
        )
    print(
        f"box, can: the worst centre / size error (mm) / yaw error (degrees) over {len(BOXES)} box poses and "
        f"{len(CANS)} cans, 0.7-1.0 m away"
    )


def _errors(errors: tuple[float, ...]) -> str:
    return " / ".join(f"{error:.1f}" for error in errors)


if __name__ == "__main__":
    main()
