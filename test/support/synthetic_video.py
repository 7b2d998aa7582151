"""Synthetic video of coloured objects moving over a plain background, with ground truth.

Test material only: a stream whose true masks are known, so tests can check that outputs
land on the objects and follow them.
"""

import math
from dataclasses import dataclass

import numpy as np

BACKGROUND = (60, 60, 60)
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 220, 30),
}


@dataclass(frozen=True)
class MovingDisc:
    """A disc of `colour` circling around (cx, cy) with the given radius and period."""

    colour: str
    cx: float
    cy: float
    orbit: float
    period_s: float
    radius: float
    phase: float = 0.0

    def centre(self, t: float) -> tuple[float, float]:
        angle = 2 * math.pi * t / self.period_s + self.phase
        return self.cx + self.orbit * math.cos(angle), self.cy + self.orbit * math.sin(angle)


def default_scene(width: int = 320, height: int = 240) -> list[MovingDisc]:
    """Two discs, a red one and a blue one, on separate orbits."""
    return [
        MovingDisc("red", width * 0.3, height * 0.5, width * 0.1, 8.0, height * 0.1),
        MovingDisc("blue", width * 0.7, height * 0.5, width * 0.1, 6.0, height * 0.09, phase=math.pi),
    ]


@dataclass(frozen=True)
class PlacedDisc:
    """A disc that stands still, is taken out of view and put back elsewhere: `path` holds (from_s, x, y)
    in time order, x None while out of view. `name` tells apart discs of one colour."""

    name: str
    colour: str
    radius: float
    path: tuple[tuple[float, float | None, float], ...]

    def centre(self, t: float) -> tuple[float, float]:
        _, x, y = [step for step in self.path if step[0] <= t][-1]
        return (-10 * self.radius, -10 * self.radius) if x is None else (x, y)


def render(scene: list[MovingDisc], t: float, width: int = 320, height: int = 240):
    """The RGB frame at time t and each disc's true mask (later discs drawn on top)."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    rows, cols = np.mgrid[0:height, 0:width]
    masks: dict[str, np.ndarray] = {}
    for disc in scene:
        x, y = disc.centre(t)
        mask = (cols - x) ** 2 + (rows - y) ** 2 <= disc.radius**2
        for other in masks.values():
            other &= ~mask
        masks[getattr(disc, "name", disc.colour)] = mask
        image[mask] = COLOURS[disc.colour]
    return image, masks


def fast_scene(px_per_frame: float = 3.0, fps: float = 15.0, width: int = 320, height: int = 240) -> list[MovingDisc]:
    """A small red disc (radius 10 px) circling fast: `px_per_frame` px per frame at `fps`.

    At 3 px a frame, a grounding answered a second late is 45 px behind the disc: further than a
    tracker searching 25 px around the last position reaches.
    """
    orbit = 60.0
    return [MovingDisc("red", width / 2, height / 2, orbit, 2 * math.pi * orbit / (px_per_frame * fps), 10.0)]
