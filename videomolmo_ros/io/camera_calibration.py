"""A camera's calibration for a CameraInfo: from a ROS camera_info YAML or from fx, fy, cx, cy. No ROS.

The YAML is the format ROS's camera_calibration writes and camera_info_manager reads
(image_width, image_height, camera_matrix, distortion_model, distortion_coefficients,
rectification_matrix, projection_matrix; each matrix as {rows, cols, data}).
"""

from dataclasses import dataclass
from pathlib import Path

import yaml

_MATRICES = {"camera_matrix": 9, "rectification_matrix": 9, "projection_matrix": 12}


class CalibrationError(RuntimeError):
    """A calibration that cannot describe the video; the message names the file or option."""


@dataclass(frozen=True)
class Calibration:
    """The fields of sensor_msgs/CameraInfo that a calibration fills (row-major matrices)."""

    width: int
    height: int
    k: tuple[float, ...]  # 3x3 intrinsics
    d: tuple[float, ...]  # distortion coefficients
    r: tuple[float, ...]  # 3x3 rectification
    p: tuple[float, ...]  # 3x4 projection
    distortion_model: str = "plumb_bob"

    def check_size(self, width: int, height: int, source: str) -> None:
        if (self.width, self.height) != (width, height):
            raise CalibrationError(
                f"the calibration is for {self.width}x{self.height} images, {source} is {width}x{height}"
            )


def from_intrinsics(
    width: int, height: int, fx: float, fy: float | None = None, cx: float | None = None, cy: float | None = None
) -> Calibration:
    """A pinhole camera without distortion; fy defaults to fx, the principal point to the image centre."""
    fy = fx if fy is None else fy
    cx = (width - 1) / 2 if cx is None else cx
    cy = (height - 1) / 2 if cy is None else cy
    if fx <= 0 or fy <= 0:
        raise CalibrationError(f"focal lengths must be positive (fx {fx}, fy {fy})")
    k = (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0)
    p = (fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0)
    return Calibration(width, height, k, (0.0,) * 5, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), p)


def read_calibration(path: str | Path) -> Calibration:
    """Read a camera_info YAML, checking every matrix has the size CameraInfo needs."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CalibrationError(f"cannot read the calibration {path}: {error}") from error
    if not isinstance(data, dict):
        raise CalibrationError(f"{path} is not a camera_info YAML (a mapping of image_width, camera_matrix, ...)")
    try:
        matrices = {name: _matrix(data[name], size, name) for name, size in _MATRICES.items()}
        d = tuple(float(v) for v in data.get("distortion_coefficients", {}).get("data", []))
        return Calibration(
            int(data["image_width"]),
            int(data["image_height"]),
            matrices["camera_matrix"],
            d,
            matrices["rectification_matrix"],
            matrices["projection_matrix"],
            str(data.get("distortion_model", "plumb_bob")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CalibrationError(f"{path}: not a camera_info YAML ({error!r})") from error


def _matrix(entry: dict, size: int, name: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in entry["data"])
    if len(values) != size:
        raise CalibrationError(f"{name} has {len(values)} values, not {size}")
    return values
