"""Synthetic RGB-D of known geometry: a box or a cylinder on a table, a camera tilted 45 degrees, noisy depth.

World frame: z up, the table is the plane z = 0. The camera stands `height` above the table
looking along +x, tilted 45 degrees down, so the table spans about 0.6-1.2 m in front of it. The
box (8 x 5 x 12 cm by default) stands on the table turned `yaw` about the vertical. Depth is
ray-cast at the depth image's own resolution (pixel centres), with the noise of a structured-
light / stereo camera (sigma = 1.5 mm x z^2) and flying pixels along depth edges (depths part
way between the two sides, as real cameras give them there). The object's mask is cast at the
colour resolution and dilated a little, like a segmenter's mask.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from videomolmo_ros.io.depth_projection import CameraIntrinsics, DepthImage
from videomolmo_ros.pipeline.object_geometry import RigidTransform
from videomolmo_ros.pipeline.oriented_box import quaternion_from_matrix

COLOUR = CameraIntrinsics(fx=600.0, fy=600.0, cx=320.0, cy=240.0, width=640, height=480)
TILT = math.radians(45)


@dataclass(frozen=True)
class Box:
    centre_xy: tuple[float, float] = (0.6, 0.0)
    size: tuple[float, float, float] = (0.08, 0.05, 0.12)  # along its x, y (turned by yaw), and height
    yaw: float = math.radians(30)

    @property
    def centre(self) -> tuple[float, float, float]:
        return (*self.centre_xy, self.size[2] / 2)

    def hit(self, directions: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """Slab test in the box's own frame: each ray's entry parameter, inf where it misses."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        to_box = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
        start = to_box @ (origin - np.array(self.centre))
        local = directions @ to_box.T
        half = np.array(self.size) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            near = (-half - start) / local
            far = (half - start) / local
        entry = np.nanmax(np.fmin(near, far), axis=-1)
        leave = np.nanmin(np.fmax(near, far), axis=-1)
        return np.where((entry <= leave) & (entry > 0), entry, np.inf)


@dataclass(frozen=True)
class Cylinder:
    """An upright cylinder standing on the table (a can): its box is diameter x diameter x height, any yaw."""

    centre_xy: tuple[float, float] = (0.6, 0.0)
    radius: float = 0.033
    height: float = 0.12

    @property
    def centre(self) -> tuple[float, float, float]:
        return (*self.centre_xy, self.height / 2)

    @property
    def size(self) -> tuple[float, float, float]:
        return (2 * self.radius, 2 * self.radius, self.height)

    def hit(self, directions: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """The nearer of the side (a quadratic in x, y) and the top disc, inf where the ray misses both."""
        px, py = origin[0] - self.centre_xy[0], origin[1] - self.centre_xy[1]
        dx, dy, dz = directions[..., 0], directions[..., 1], directions[..., 2]
        a, b, c = dx * dx + dy * dy, 2 * (px * dx + py * dy), px * px + py * py - self.radius**2
        with np.errstate(divide="ignore", invalid="ignore"):
            side = (-b - np.sqrt(b * b - 4 * a * c)) / (2 * a)
            z = origin[2] + side * dz
            side = np.where((side > 0) & (z >= 0) & (z <= self.height), side, np.inf)
            top = (self.height - origin[2]) / dz
            on_top = (px + top * dx) ** 2 + (py + top * dy) ** 2 <= self.radius**2
            top = np.where((top > 0) & on_top, top, np.inf)
        return np.fmin(np.nan_to_num(side, nan=np.inf), top)


@dataclass(frozen=True)
class RgbdFrame:
    """Depth as a driver publishes it (raw array, encoding, its CameraInfo), the object's mask, the truth."""

    depth_raw: np.ndarray
    encoding: str
    depth_intrinsics: CameraIntrinsics
    mask: np.ndarray  # colour resolution
    camera_to_world: RigidTransform  # world (z up) <- optical frame
    box: "Box | Cylinder"  # the object, its true geometry

    def depth(self, stamp_ns: int = 0) -> DepthImage:
        return DepthImage.from_raw(self.depth_raw, self.encoding, self.depth_intrinsics, stamp_ns)


def camera_rotation() -> np.ndarray:
    """World <- optical rotation: optical x right (world -y), z forward tilted 45 degrees down, y = z cross x."""
    forward = np.array([math.cos(TILT), 0.0, -math.sin(TILT)])
    right = np.array([0.0, -1.0, 0.0])
    return np.column_stack((right, np.cross(forward, right), forward))


def render(
    box: "Box | Cylinder" = Box(),
    *,
    colour: CameraIntrinsics = COLOUR,
    height: float = 0.6,
    depth_scale: int = 2,
    encoding: str = "16UC1",
    noise_mm: float = 1.5,
    flying_fraction: float = 0.5,
    mask_dilation_px: int = 2,
    seed: int = 0,
) -> RgbdFrame:
    """One RGB-D frame of `box` on the table; depth at 1/`depth_scale` of the colour resolution."""
    rng = np.random.default_rng(seed)
    rotation, origin = camera_rotation(), np.array([0.0, 0.0, height])
    depth_camera = colour.scaled_to(colour.width // depth_scale, colour.height // depth_scale)
    depth, _ = _cast(depth_camera, rotation, origin, box)
    depth = _with_flying_pixels(depth, flying_fraction, rng)
    depth = depth + rng.normal(0.0, noise_mm * 1e-3, depth.shape) * depth**2
    _, on_box = _cast(colour, rotation, origin, box)
    mask = ndimage.binary_dilation(on_box, iterations=mask_dilation_px) if mask_dilation_px else on_box
    raw = np.round(depth * 1000).astype(np.uint16) if encoding == "16UC1" else depth.astype(np.float32)
    transform = RigidTransform(tuple(origin), quaternion_from_matrix(rotation))
    return RgbdFrame(raw, encoding, depth_camera, mask, transform, box)


def _cast(camera: CameraIntrinsics, rotation: np.ndarray, origin: np.ndarray, box: "Box | Cylinder"):
    """Optical-frame depth (z) of each pixel centre's ray hitting the table or the box, and where the box is hit."""
    cols, rows = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    rays = np.stack(((cols - camera.cx) / camera.fx, (rows - camera.cy) / camera.fy, np.ones_like(cols)), axis=-1)
    world = rays @ rotation.T  # a ray's parameter t is its point's optical z
    with np.errstate(divide="ignore"):
        table = np.where(world[..., 2] < 0, -origin[2] / world[..., 2], np.inf)
    box_t = box.hit(world, origin)
    return np.fmin(table, box_t), np.isfinite(box_t) & (box_t <= table)


def _with_flying_pixels(depth: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Along depth steps over 3 cm, a `fraction` of the nearer side's pixels take a depth part way to the far side."""
    far_neighbour = ndimage.maximum_filter(depth, size=3)
    edge = (far_neighbour - depth > 0.03) & (rng.random(depth.shape) < fraction)
    mix = rng.random(depth.shape)
    return np.where(edge, depth + mix * (far_neighbour - depth), depth)


def moved(box: Box, velocity_xy: tuple[float, float], seconds: float) -> Box:
    """The box after sliding on the table at `velocity_xy` (m/s) for `seconds`."""
    x, y = box.centre_xy
    return Box((x + velocity_xy[0] * seconds, y + velocity_xy[1] * seconds), box.size, box.yaw)
