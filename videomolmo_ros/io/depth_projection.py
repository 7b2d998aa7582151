"""Depth image + colour pixel -> 3D point in the camera optical frame. No ROS.

What goes wrong with depth in ROS perception, and what this module does about it:

- Units. REP 118 depth is 16UC1 in millimetres or 32FC1 in metres; every depth here is turned
  into float32 metres once, in `DepthImage.from_raw`, with the divisor chosen by the encoding
  unless the caller knows better (a sensor with 0.1 mm units).
- Registration and resolution. Pixel coordinates and intrinsics are the COLOUR camera's; the
  depth image must be registered to it (an `aligned_depth_to_color` or `depth_registered`
  topic), possibly at another resolution, which is handled by scaling. Raw depth from the
  depth sensor's own viewpoint is refused (`DepthRegistrationError`): its pixels do not line
  up with the colour pixels, and looking them up would silently give other objects' depths.
- Invalid depth. 0 (no return), negative, NaN and inf, and values outside an optional range,
  become NaN and are never used.
- Borders. A mask's border pixels often see the background behind the object; the depth of a
  mask is a median after median-absolute-deviation outlier rejection, not a mean.

Pixel convention: coordinates are continuous, the image spanning [0, W) x [0, H) with pixel i
covering [i, i + 1). Under it, the same camera at another resolution has its intrinsics scaled
exactly by the size ratio s (cx' = cx * s), as the usual CameraInfo resize code does, and a
pixel coordinate maps the same way (x' = x * s), so a pixel's ray is the same at every
resolution. OpenCV and ROS calibrations put pixel centres at integers, for which the exact rule
is cx' = (cx + 0.5) * s - 0.5; the difference, |1 - s| / 2 pixels (a quarter pixel at half
resolution: 0.8 mm at 1 m for a camera of fx = 600 at full resolution), is below depth noise.

Lens distortion. An unrectified image (image_raw) shows a point where the lens moved it: the
pixel is undistorted with CameraInfo's model and D (`lens_distortion`) before back-projection,
so a calibrated camera's 3D positions are right to the millimetre at the image corners too.
Rectified images (D empty or zero) skip it.
"""

import math
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from videomolmo_ros.io.image_codec import ENCODINGS, ImageDecodeError
from videomolmo_ros.io.lens_distortion import Distortion
from videomolmo_ros.io.text import clip

Point3 = tuple[float, float, float]

# Dividing raw values by these gives metres (REP 118): millimetres in 16UC1, metres in 32FC1.
DEFAULT_UNIT_DIVISORS: dict[str, float] = {"16UC1": 1000.0, "32FC1": 1.0}

# The standard deviation of normally distributed data is 1.4826 times its median absolute deviation.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class CameraIntrinsics:
    """A camera at one resolution: focal lengths and principal point in pixels, and its lens distortion.

    `distortion` None is a pinhole camera (a rectified image). Distortion acts on normalised
    coordinates, so it is the same at every resolution.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: Distortion | None = None

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.fx, self.fy, self.cx, self.cy)):
            raise ValueError(
                f"K holds a value that is not finite: fx {self.fx}, fy {self.fy}, cx {self.cx}, cy {self.cy}"
            )
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(
                f"focal lengths fx = {self.fx}, fy = {self.fy} must be positive: "
                "an all-zero K means the camera publishes no calibration"
            )
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size {self.width}x{self.height} (width x height) must be positive")

    @classmethod
    def from_camera_info(
        cls, k: Sequence[float], width: int, height: int, distortion_model: str = "", d: Sequence[float] = ()
    ) -> "CameraIntrinsics":
        """From CameraInfo's row-major 3x3 K (skew K[1], zero in practice, is ignored), model and D."""
        if len(k) != 9:
            raise ValueError(f"K must have 9 values (row-major 3x3), got {len(k)}")
        distortion = Distortion.from_camera_info(distortion_model, d)
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height), distortion)

    def scaled_to(self, width: int, height: int) -> "CameraIntrinsics":
        """The same camera at another resolution (see the module's pixel convention)."""
        sx, sy = width / self.width, height / self.height
        return CameraIntrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height, self.distortion)


def project(x_px: float, y_px: float, depth_m: float, intrinsics: CameraIntrinsics) -> Point3:
    """The 3D point (x right, y down, z forward; metres) seen at pixel (x_px, y_px).

    `depth_m` is the point's z, which is what depth images hold (not its distance along the
    ray). Pixel and intrinsics must be at the same resolution: the colour image's, for depth
    registered to the colour camera. A distorted pixel is undistorted first (ValueError where
    the lens model cannot be inverted).
    """
    x = (x_px - intrinsics.cx) / intrinsics.fx
    y = (y_px - intrinsics.cy) / intrinsics.fy
    if intrinsics.distortion is not None:
        x, y = intrinsics.distortion.undistort(x, y)
    return x * depth_m, y * depth_m, depth_m


def to_pixel(point: Point3, intrinsics: CameraIntrinsics) -> tuple[float, float]:
    """The pixel where a point of the optical frame (z > 0) appears, through the lens: the inverse of `project`."""
    x, y, z = point
    x, y = x / z, y / z
    if intrinsics.distortion is not None:
        x, y = intrinsics.distortion.distort(x, y)
    return intrinsics.fx * x + intrinsics.cx, intrinsics.fy * y + intrinsics.cy


@dataclass(frozen=True)
class DepthImage:
    """Depth in metres (float32 H x W, read-only, NaN where invalid), its camera and stamp."""

    depth_m: np.ndarray
    intrinsics: CameraIntrinsics
    stamp_ns: int

    @classmethod
    def from_raw(
        cls,
        array: np.ndarray,
        encoding: str,
        intrinsics: CameraIntrinsics,
        stamp_ns: int,
        unit_divisor: float | None = None,
        min_depth_m: float = 0.0,
        max_depth_m: float = math.inf,
    ) -> "DepthImage":
        """Metres from a decoded 16UC1 or 32FC1 image: raw value / `unit_divisor`.

        `unit_divisor` None takes REP 118's units (1000 for 16UC1 millimetres, 1 for 32FC1
        metres). Zero, negative, NaN, inf and depths outside [min_depth_m, max_depth_m] (a
        sensor's trusted range) become NaN. `intrinsics` are the depth image's own CameraInfo.
        """
        _check_depth_array(array, encoding)
        divisor = DEFAULT_UNIT_DIVISORS[encoding] if unit_divisor is None else float(unit_divisor)
        if not (divisor > 0 and math.isfinite(divisor)):
            raise ValueError(f"unit_divisor {unit_divisor} must be positive and finite")
        if array.shape != (intrinsics.height, intrinsics.width):
            raise ValueError(
                f"depth image is {array.shape[1]}x{array.shape[0]} but its intrinsics are for "
                f"{intrinsics.width}x{intrinsics.height}"
            )
        depth = array.astype(np.float32) / np.float32(divisor)
        usable = np.isfinite(depth) & (depth > 0) & (depth >= min_depth_m) & (depth <= max_depth_m)
        depth[~usable] = np.nan
        depth.flags.writeable = False
        return cls(depth, intrinsics, stamp_ns)


def _check_depth_array(array: np.ndarray, encoding: str) -> None:
    if encoding not in DEFAULT_UNIT_DIVISORS:
        raise ImageDecodeError(
            f"depth encoding {clip(encoding)!r} is not supported (REP 118 depth is 16UC1 or 32FC1)",
            "unsupported_encoding",
        )
    dtype = ENCODINGS[encoding].dtype
    if array.dtype != dtype or array.ndim != 2:
        raise ImageDecodeError(f"{encoding} depth needs an H x W {dtype} array, got {array.shape} {array.dtype}")


def _robust_median(depths: np.ndarray, min_valid_pixels: int, k: float, min_band_m: float) -> float | None:
    """The median of the valid depths after rejecting outliers; None below `min_valid_pixels`.

    Rule: with m the median of the valid depths and MAD the median of |d - m|, keep the d with
    |d - m| <= max(k * 1.4826 * MAD, min_band_m), and return the median of those. MAD ignores
    the background up to half of the pixels, so a mask's border pixels that see far behind the
    object are dropped instead of pulling the median towards them; the minimum band keeps a flat
    surface's pixels when quantised depth makes MAD zero.
    """
    valid = depths[np.isfinite(depths) & (depths > 0)]
    if valid.size < min_valid_pixels:
        return None
    median = np.median(valid)
    deviation = np.abs(valid - median)
    band = max(k * MAD_TO_SIGMA * float(np.median(deviation)), min_band_m)
    return float(np.median(valid[deviation <= band]))


def mask_to_depth_resolution(mask: np.ndarray, depth_shape: tuple[int, int]) -> np.ndarray:
    """A colour-resolution mask resampled (nearest neighbour) to the depth image's H x W.

    Each depth pixel takes the mask value of the colour pixel under its centre, which keeps
    the object where it is at any size ratio.
    """
    if mask.shape == depth_shape:
        return mask
    rows = _nearest_indices(depth_shape[0], mask.shape[0])
    cols = _nearest_indices(depth_shape[1], mask.shape[1])
    return mask[np.ix_(rows, cols)]


def _nearest_indices(size: int, source_size: int) -> np.ndarray:
    """For each of `size` pixels, the index of the source pixel under its centre."""
    centres = (np.arange(size) + 0.5) * (source_size / size)
    return np.minimum(centres.astype(np.intp), source_size - 1)


def robust_depth(
    depth_m: np.ndarray, mask: np.ndarray, *, min_valid_pixels: int = 10, k: float = 3.0, min_band_m: float = 0.02
) -> float | None:
    """The depth of the object under a boolean mask, border and background pixels rejected.

    Rule: m = median of the valid depths in the mask, MAD = median |d - m|; keep the d with
    |d - m| <= max(k * 1.4826 * MAD, min_band_m) and return their median. The mask may be at the
    colour resolution: it is resampled to the depth image's size. None when fewer than
    `min_valid_pixels` mask pixels have a valid depth.
    """
    inside = mask_to_depth_resolution(mask.astype(bool, copy=False), depth_m.shape)
    return _robust_median(depth_m[inside], min_valid_pixels, k, min_band_m)


def point_depth(
    depth_m: np.ndarray,
    x: int,
    y: int,
    radius: int,
    *,
    min_valid_pixels: int = 5,
    k: float = 3.0,
    min_band_m: float = 0.02,
) -> float | None:
    """The depth around depth pixel (x, y): the robust median of its (2 radius + 1)^2 window.

    For targets without a mask: a single pixel is too often a hole or an edge. The window is
    clipped at the image border; None when fewer than `min_valid_pixels` of it are valid.
    """
    height, width = depth_m.shape
    window = depth_m[max(y - radius, 0) : min(y + radius + 1, height), max(x - radius, 0) : min(x + radius + 1, width)]
    return _robust_median(window.ravel(), min_valid_pixels, k, min_band_m)


class DepthRegistrationError(ValueError):
    """The depth image's camera is not the colour camera: its pixels cannot be looked up by colour pixels."""


def check_registered(colour: CameraIntrinsics, depth: CameraIntrinsics, rel_tol: float = 0.01) -> None:
    """Raise unless `depth` is the colour camera at the depth image's resolution.

    Registered depth (aligned_depth_to_color, depth_registered) carries the colour camera's
    intrinsics; a depth sensor's own intrinsics differ (focal length, principal point), and so
    does a depth image of another aspect ratio (cropped, not scaled). Focal lengths must agree
    within `rel_tol` and the principal point within `rel_tol` of the image size.
    """
    expected = colour.scaled_to(depth.width, depth.height)
    close = (
        math.isclose(depth.fx, expected.fx, rel_tol=rel_tol)
        and math.isclose(depth.fy, expected.fy, rel_tol=rel_tol)
        and abs(depth.cx - expected.cx) <= rel_tol * depth.width
        and abs(depth.cy - expected.cy) <= rel_tol * depth.height
    )
    if not close:
        raise DepthRegistrationError(
            f"depth intrinsics {depth} are not the colour camera's scaled to {depth.width}x{depth.height} "
            f"({expected}): use depth registered to the colour camera (e.g. aligned_depth_to_color)"
        )


@dataclass(frozen=True)
class LocalizerConfig:
    """How depths are read: mask pixels needed, the point window, and the outlier rule."""

    min_valid_pixels: int = 10  # valid depth pixels a mask needs
    point_radius_px: int = 2  # window half-size, in depth pixels, for targets without a mask
    point_min_valid_pixels: int = 5  # valid depth pixels the window needs
    mad_k: float = 3.0
    min_band_m: float = 0.02


@dataclass(frozen=True)
class Position:
    """A target's 3D point in the colour camera's optical frame, or why there is none.

    `reason` is a short stable code (outside_image, mask_wrong_size, empty_mask, no_valid_depth,
    outside_lens_model)
    the node counts and logs; None when `xyz` is set.
    """

    xyz: Point3 | None
    reason: str | None = None


class Localizer:
    """Places colour-image targets in 3D using one depth image registered to the colour camera."""

    def __init__(
        self,
        colour_size: tuple[int, int],
        colour_intrinsics: CameraIntrinsics,
        depth: DepthImage,
        config: LocalizerConfig | None = None,
    ):
        """`colour_size` is (width, height); intrinsics of another resolution are scaled to it.

        Raises DepthRegistrationError when `depth` is not registered to the colour camera.
        """
        width, height = colour_size
        self.intrinsics = colour_intrinsics.scaled_to(width, height)
        check_registered(self.intrinsics, depth.intrinsics)
        self.depth = depth
        self.config = config or LocalizerConfig()

    def locate(self, x: float, y: float, mask: np.ndarray | None = None) -> Position:
        """The 3D point at colour pixel (x, y), its depth read from `mask` (colour size) or around the pixel."""
        width, height = self.intrinsics.width, self.intrinsics.height
        if not (0 <= x < width and 0 <= y < height):
            return Position(None, "outside_image")
        if mask is not None and mask.shape != (height, width):
            return Position(None, "mask_wrong_size")
        if mask is not None and not mask.any():
            return Position(None, "empty_mask")
        depth = self._mask_depth(mask) if mask is not None else self._point_depth(x, y)
        if depth is None:
            return Position(None, "no_valid_depth")
        try:
            return Position(project(x, y, depth, self.intrinsics))
        except ValueError:
            return Position(None, "outside_lens_model")

    def locate_all(self, targets: Iterable[tuple[float, float, np.ndarray | None]]) -> list[Position]:
        """`locate` for each (x, y, mask or None), in order."""
        return [self.locate(x, y, mask) for x, y, mask in targets]

    def _mask_depth(self, mask: np.ndarray) -> float | None:
        c = self.config
        return robust_depth(
            self.depth.depth_m, mask, min_valid_pixels=c.min_valid_pixels, k=c.mad_k, min_band_m=c.min_band_m
        )

    def _point_depth(self, x: float, y: float) -> float | None:
        """Depth in the window around the depth pixel containing colour coordinate (x, y)."""
        c, depth = self.config, self.depth
        column = min(int(x * depth.intrinsics.width / self.intrinsics.width), depth.intrinsics.width - 1)
        row = min(int(y * depth.intrinsics.height / self.intrinsics.height), depth.intrinsics.height - 1)
        return point_depth(
            depth.depth_m,
            column,
            row,
            c.point_radius_px,
            min_valid_pixels=c.point_min_valid_pixels,
            k=c.mad_k,
            min_band_m=c.min_band_m,
        )


class DepthSync:
    """Recent depth images by stamp, to pair each colour frame with the depth taken with it.

    A depth image pairs with a colour frame when their stamps differ by at most `tolerance_s`
    (drivers that align depth to colour stamp both with the same time; separate sensors drift by
    a few ms). The newest `capacity` depth images are kept, so memory is bounded.
    """

    def __init__(self, tolerance_s: float = 0.02, capacity: int = 30):
        self.tolerance_ns = round(tolerance_s * 1e9)
        self._images: deque[DepthImage] = deque(maxlen=capacity)
        self._arrived = threading.Condition()

    def add(self, depth: DepthImage) -> None:
        with self._arrived:
            if self._images and depth.stamp_ns < self._images[-1].stamp_ns:
                self._images.clear()  # time went back (a looping bag): older depth no longer applies
            self._images.append(depth)
            self._arrived.notify_all()

    def find(self, stamp_ns: int, wait_s: float = 0.0) -> DepthImage | None:
        """The depth image closest in time to `stamp_ns`, if within the tolerance.

        Depth often arrives a few ms after its colour frame (another topic): with `wait_s`, wait up
        to that long for a depth image stamped at or after the frame before choosing.
        """
        with self._arrived:
            self._arrived.wait_for(lambda: self._images and self._images[-1].stamp_ns >= stamp_ns, wait_s)
            best = min(self._images, key=lambda d: abs(d.stamp_ns - stamp_ns), default=None)
        if best is None or abs(best.stamp_ns - stamp_ns) > self.tolerance_ns:
            return None
        return best


def transform_point(
    xyz: tuple[float, float, float],
    translation: tuple[float, float, float],
    rotation_xyzw: tuple[float, float, float, float],
) -> tuple[float, float, float]:
    """A point moved by a rigid transform (as tf2 gives it: translation and unit quaternion x, y, z, w)."""
    qx, qy, qz, qw = rotation_xyzw
    px, py, pz = xyz
    # v' = v + 2 w (q x v) + 2 q x (q x v), with q the vector part.
    cx, cy, cz = qy * pz - qz * py, qz * px - qx * pz, qx * py - qy * px
    dx, dy, dz = qy * cz - qz * cy, qz * cx - qx * cz, qx * cy - qy * cx
    tx, ty, tz = translation
    return px + 2 * (qw * cx + dx) + tx, py + 2 * (qw * cy + dy) + ty, pz + 2 * (qw * cz + dz) + tz
