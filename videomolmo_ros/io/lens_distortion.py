"""Lens distortion as sensor_msgs/CameraInfo gives it: the true ray of a distorted pixel. No ROS.

A camera that publishes unrectified images (image_raw) sees a point at a pixel displaced by
its lens; back-projecting that pixel with K alone puts the point centimetres off at a metre
near the image corners. CameraInfo's `distortion_model` and `D` describe the displacement in
normalised image coordinates (x = X / Z, y = Y / Z), the models ROS calibrations write:

- plumb_bob: k1, k2, p1, p2, k3 (radial-tangential, OpenCV's default model);
- rational_polynomial: k1, k2, p1, p2, k3, k4, k5, k6 (radial numerator and denominator);
- equidistant: k1, k2, k3, k4 (the fisheye model of OpenCV's cv::fisheye).

The forward model is closed-form; undistortion inverts it with Newton's method to 1e-12 in
normalised coordinates (a micrometre at a metre), far past the 1 mm the 3D positions need.
"""

import math
from dataclasses import dataclass

import numpy as np

# Coefficients each model takes, in CameraInfo's order.
MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}

_TOLERANCE = 1e-12
_MAX_ITERATIONS = 50
_STEP = 1e-7  # finite-difference step of the Jacobian, normalised units


@dataclass(frozen=True)
class Distortion:
    """One camera's lens distortion: a model of MODELS and its coefficients (missing ones are zero)."""

    model: str
    coefficients: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(
                f"distortion model {self.model!r} is not supported (supported: {', '.join(MODELS)}); "
                "publish rectified images with zero D, or calibrate with one of these"
            )
        size = MODELS[self.model]
        if any(c != 0 for c in self.coefficients[size:]):
            raise ValueError(f"{self.model} takes {size} coefficients, got {len(self.coefficients)}")
        if not all(math.isfinite(c) for c in self.coefficients):
            raise ValueError(f"distortion coefficients {self.coefficients} must be finite")
        padded = tuple(float(c) for c in self.coefficients[:size]) + (0.0,) * (size - len(self.coefficients))
        object.__setattr__(self, "coefficients", padded)

    @classmethod
    def from_camera_info(cls, model: str, d) -> "Distortion | None":
        """The distortion CameraInfo describes; None for a rectified image (D empty or all zero)."""
        d = tuple(float(c) for c in d)
        if not any(d):
            return None
        return cls(model, d)

    def distort(self, x: float, y: float) -> tuple[float, float]:
        """Where the lens puts the normalised point (x, y)."""
        if self.model == "equidistant":
            return _equidistant(self.coefficients, x, y)
        return _radial_tangential(self.coefficients, x, y)

    def undistort(self, xd: float, yd: float) -> tuple[float, float]:
        """The normalised point (x, y) the lens moved to (xd, yd).

        ValueError where the model has no such point on the lens: Newton's method does not
        converge, or lands where the model folds back (mirrored through the centre, or beyond
        the radius where a strong barrel distortion stops growing), which no real ray maps to.
        """
        target = np.array([xd, yd])
        point = target.copy()
        for _ in range(_MAX_ITERATIONS):
            residual = np.array(self.distort(*point)) - target
            jacobian = self._jacobian(point)
            if np.abs(residual).max() < _TOLERANCE:
                if np.linalg.det(jacobian) > 0 and point @ target >= 0:
                    return float(point[0]), float(point[1])
                break
            point = point - np.linalg.solve(jacobian, residual)
        raise ValueError(f"({xd:.4f}, {yd:.4f}) is outside the {self.model} lens model: no ray maps there")

    def _jacobian(self, point: np.ndarray) -> np.ndarray:
        """d distort / d point, by forward differences."""
        at = np.array(self.distort(*point))
        return np.column_stack([(np.array(self.distort(*(point + step))) - at) / _STEP for step in np.eye(2) * _STEP])


def _radial_tangential(d: tuple[float, ...], x: float, y: float) -> tuple[float, float]:
    k1, k2, p1, p2, k3, *rational = d
    k4, k5, k6 = rational or (0.0, 0.0, 0.0)
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    return (
        x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
        y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
    )


def _equidistant(d: tuple[float, ...], x: float, y: float) -> tuple[float, float]:
    k1, k2, k3, k4 = d
    r = math.hypot(x, y)
    if r < 1e-15:
        return x, y
    theta = math.atan(r)
    t2 = theta * theta
    theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    return x * theta_d / r, y * theta_d / r
