"""3D per object: positions only (as before issue 29) against points + oriented box, side by side, one core.

    ./bench/run bench_object_geometry [--repeats 30]

The tests' synthetic RGB-D (test/support/rgbd_scene.py): a box 8 x 5 x 12 cm on a table, a camera
tilted 45 degrees with its transform (gravity-aligned boxes), noisy depth with flying pixels.
Each row is one colour resolution with depth at the same size (the worst case: most pixels per
mask). Printed: ms per object for the position alone and for the full geometry (points, support
plane, box, in the target frame), their ratio, the object's points and the cloud's bytes per
object on `object_points` (20 bytes a point).
"""

import argparse
import time

import numpy as np
from support import Box, render_rgbd

from videomolmo_ros.io.depth_projection import CameraIntrinsics
from videomolmo_ros.pipeline.grasp_outputs import object_cloud
from videomolmo_ros.pipeline.object_geometry import GeometryConfig, object_geometry

CAMERAS = {
    "640x480": CameraIntrinsics(600.0, 600.0, 320.0, 240.0, 640, 480),
    "1280x720": CameraIntrinsics(900.0, 900.0, 640.0, 360.0, 1280, 720),
}


def per_object_ms(frame, camera: CameraIntrinsics, config: GeometryConfig, repeats: int):
    """The best of `repeats` timings of one object's geometry (ms), and that geometry."""
    rows, cols = np.nonzero(frame.mask)
    target = [(float(np.median(cols)), float(np.median(rows)), frame.mask)]
    depth, size = frame.depth(), (camera.width, camera.height)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        found = object_geometry(target, size, camera, depth, config, frame.camera_to_world)
        best = min(best, time.perf_counter() - start)
    return best * 1e3, found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    header = ("colour=depth", "position ms", "geometry ms", "ratio", "points", "cloud bytes")
    print("{:>12} {:>12} {:>12} {:>6} {:>7} {:>12}".format(*header))
    for name, camera in CAMERAS.items():
        frame = render_rgbd(Box(), colour=camera, depth_scale=1)
        position_ms, _ = per_object_ms(frame, camera, GeometryConfig(boxes=False), args.repeats)
        geometry_ms, found = per_object_ms(frame, camera, GeometryConfig(), args.repeats)
        cloud = object_cloud([1], [found])
        print(
            f"{name:>12} {position_ms:12.2f} {geometry_ms:12.2f} {geometry_ms / position_ms:6.1f} "
            f"{len(found.points.xyz):7d} {cloud.nbytes:12d}"
        )


if __name__ == "__main__":
    main()
