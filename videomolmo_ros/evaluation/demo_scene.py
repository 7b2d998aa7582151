"""A short synthetic tabletop scene for videomolmo_demo without a video: no download, no camera. No ROS.

A red ball rolls to and fro across a wooden table in front of a wall, past a blue box, a green
cup and a yellow ball. Shaded, with shadows and a little sensor noise, so the models see
something closer to a camera frame than flat colours. It reads like a VideoSource.
"""

from collections.abc import Iterator

import cv2
import numpy as np

WIDTH, HEIGHT, FPS, SECONDS = 640, 480, 15.0, 6.0
_TABLE_TOP = 0.42  # the table's far edge, as a fraction of the height


class TabletopScene:
    """The scene as a frame source: `fps`, `frame_count`, `width`, `height`, `frames()`."""

    name = "synthetic tabletop (videomolmo_demo)"
    frame_names = None

    def __init__(self, width: int = WIDTH, height: int = HEIGHT, fps: float = FPS, seconds: float = SECONDS):
        self.width, self.height, self.fps = width, height, fps
        self.frame_count = round(seconds * fps)
        self._background = _background(width, height)
        self._noise = np.random.default_rng(0)

    def frames(self, loop: bool = False) -> Iterator[np.ndarray]:
        while True:
            for index in range(self.frame_count):
                yield self.render(index / self.fps)
            if not loop:
                return

    def render(self, t: float) -> np.ndarray:
        """The RGB frame at `t` seconds."""
        w, h = self.width, self.height
        image = self._background.copy()
        s = h / HEIGHT
        # Static objects: a blue box, a green cup, a yellow ball.
        _shadow(image, (0.74 * w, 0.80 * h), (70 * s, 14 * s))
        _box(image, (0.66 * w, 0.60 * h, 0.82 * w, 0.80 * h), (40, 70, 200))
        _shadow(image, (0.25 * w, 0.74 * h), (38 * s, 10 * s))
        _cup(image, (0.25 * w, 0.74 * h), 34 * s, 60 * s, (40, 160, 70))
        _shadow(image, (0.50 * w, 0.62 * h), (22 * s, 6 * s))
        _ball(image, (0.50 * w, 0.62 * h - 20 * s), 20 * s, (230, 200, 40))
        # The red ball rolls to and fro along the table's front.
        x = w * (0.5 + 0.36 * np.sin(2 * np.pi * t / 4.0))
        y = 0.88 * h - 28 * s
        _shadow(image, (x, 0.88 * h), (30 * s, 8 * s))
        _ball(image, (x, y), 28 * s, (210, 35, 35))
        noise = self._noise.integers(-3, 4, image.shape, dtype=np.int16)  # a little sensor noise
        return np.clip(image + noise, 0, 255).astype(np.uint8)

    def close(self) -> None:
        pass

    def __enter__(self) -> "TabletopScene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _background(width: int, height: int) -> np.ndarray:
    """A pale wall lit from above, and a wooden table with grain."""
    rows = np.linspace(0.0, 1.0, height)[:, None]
    cols = np.linspace(0.0, 1.0, width)[None, :]
    wall = np.stack([215 - 40 * rows, 210 - 40 * rows, 195 - 40 * rows], axis=-1) * np.ones((1, width, 1))
    grain = 10 * np.sin(60 * cols + 8 * np.sin(9 * rows)) + 6 * np.sin(170 * cols + 3 * rows)
    table = np.stack([150 + grain + 40 * rows, 100 + grain + 25 * rows, 60 + 0.5 * grain + 10 * rows], axis=-1)
    image = np.where(rows[..., None] < _TABLE_TOP, wall, table)
    edge = round(_TABLE_TOP * height)
    image[edge : edge + max(2, height // 160)] = (90, 60, 35)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shadow(image: np.ndarray, centre: tuple[float, float], axes: tuple[float, float]) -> None:
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(mask, _point(centre), (round(axes[0]), round(axes[1])), 0, 0, 360, 1, -1)
    image[mask > 0] = (image[mask > 0] * 0.55).astype(np.uint8)


def _ball(image: np.ndarray, centre: tuple[float, float], radius: float, colour: tuple[int, int, int]) -> None:
    """A sphere lit from the upper left: brighter towards the light, with a highlight."""
    cx, cy = centre
    x0, y0 = max(int(cx - radius), 0), max(int(cy - radius), 0)
    x1, y1 = min(int(cx + radius) + 2, image.shape[1]), min(int(cy + radius) + 2, image.shape[0])
    rows, cols = np.ogrid[y0:y1, x0:x1]
    dx, dy = (cols - cx) / radius, (rows - cy) / radius
    inside = dx**2 + dy**2 <= 1.0
    light = np.clip(1.0 - 0.55 * np.hypot(dx + 0.35, dy + 0.35), 0.35, 1.0)
    shaded = np.asarray(colour, np.float32) * light[..., None] * 1.1
    highlight = np.exp(-((dx + 0.4) ** 2 + (dy + 0.4) ** 2) / 0.02)[..., None] * 120
    crop = image[y0:y1, x0:x1]
    crop[inside] = np.clip(shaded + highlight, 0, 255)[inside]


def _box(image: np.ndarray, corners: tuple[float, float, float, float], colour: tuple[int, int, int]) -> None:
    """A box seen slightly from above: its front face, a lighter top and a darker side."""
    x0, y0, x1, y1 = corners
    depth = 0.25 * (y1 - y0)
    top = np.array([[x0, y0], [x1, y0], [x1 + depth, y0 - depth], [x0 + depth, y0 - depth]], np.int32)
    side = np.array([[x1, y0], [x1 + depth, y0 - depth], [x1 + depth, y1 - depth], [x1, y1]], np.int32)
    cv2.fillConvexPoly(image, top, tuple(min(255, int(c * 1.3)) for c in colour), cv2.LINE_AA)
    cv2.fillConvexPoly(image, side, tuple(int(c * 0.6) for c in colour), cv2.LINE_AA)
    cv2.rectangle(image, _point((x0, y0)), _point((x1, y1)), colour, -1, cv2.LINE_AA)


def _cup(image: np.ndarray, base: tuple[float, float], radius: float, height: float, colour) -> None:
    """A cup: a tapered body, darker on the right, with an opening at the top."""
    bx, by = base
    body = np.array(
        [[bx - 0.8 * radius, by], [bx + 0.8 * radius, by], [bx + radius, by - height], [bx - radius, by - height]]
    )
    cv2.fillConvexPoly(image, body.astype(np.int32), colour, cv2.LINE_AA)
    right = np.array(
        [[bx + 0.3 * radius, by], [bx + 0.8 * radius, by], [bx + radius, by - height], [bx + 0.4 * radius, by - height]]
    )
    cv2.fillConvexPoly(image, right.astype(np.int32), tuple(int(c * 0.7) for c in colour), cv2.LINE_AA)
    rim = _point((bx, by - height))
    cv2.ellipse(image, rim, (round(radius), round(0.25 * radius)), 0, 0, 360, tuple(int(c * 0.45) for c in colour), -1)


def _point(xy: tuple[float, float]) -> tuple[int, int]:
    return round(xy[0]), round(xy[1])
