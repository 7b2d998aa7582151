"""What a tracked object looks like, so it can be told apart from others when it comes back into view.

`AppearanceDescriptor` is the seam: a descriptor of the pixels under a mask, and a similarity
(0: nothing alike, 1: the same) between two descriptors. `ColourTextureDescriptor` needs nothing
from the propagator: a joint CIE Lab colour histogram (a perceptual space: lighting moves L more
than a and b) plus a histogram of the gradient magnitude inside the object (a little texture),
compared by the Bhattacharyya coefficient. `Gallery` keeps a few diverse views of one object.

How tracks use them: reattachment.py.
"""

import math
from typing import Protocol

import cv2
import numpy as np

from videomolmo_ros.io.mask_geometry import Box

GALLERY_VIEWS = 4  # views kept per track
DIVERSE_BELOW = 0.9  # a view this unlike every kept one is a new view; else it refreshes the nearest
MIN_PIXELS = 30  # fewer pixels under a mask describe nothing reliably

_L_BINS, _AB_BINS, _TEXTURE_BINS = 4, 8, 8
_COLOUR_WEIGHT = 0.8  # texture weighs the rest


class AppearanceDescriptor(Protocol):
    """How an object looks under a mask, comparable across frames and positions."""

    def describe(self, image: np.ndarray, mask: np.ndarray, box: Box) -> np.ndarray | None:
        """A descriptor of the RGB `image` pixels under `mask` (within `box`); None when too few to tell."""
        ...

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """0 (nothing alike) to 1 (alike)."""
        ...


class ColourTextureDescriptor:
    """Lab colour histogram (4 x 8 x 8 bins) and gradient-magnitude histogram (8 bins), each normalised."""

    def describe(self, image: np.ndarray, mask: np.ndarray, box: Box) -> np.ndarray | None:
        x0, y0, x1, y1 = (int(v) for v in box)
        crop = np.ascontiguousarray(image[y0 : y1 + 1, x0 : x1 + 1])
        under = mask[y0 : y1 + 1, x0 : x1 + 1]
        if np.count_nonzero(under) < MIN_PIXELS:
            return None
        lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB)
        pixels = lab[under].astype(np.int32)
        bins = (pixels[:, 0] * _L_BINS // 256) * _AB_BINS**2
        bins += (pixels[:, 1] * _AB_BINS // 256) * _AB_BINS + pixels[:, 2] * _AB_BINS // 256
        colour = np.bincount(bins, minlength=_L_BINS * _AB_BINS**2).astype(np.float32)
        light = lab[:, :, 0].astype(np.float32)
        magnitude = np.hypot(cv2.Sobel(light, cv2.CV_32F, 1, 0), cv2.Sobel(light, cv2.CV_32F, 0, 1))
        inner = cv2.erode(under.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0).astype(bool)
        inner = inner if inner.any() else under  # the object's outline is the background's edge, not texture
        levels = np.minimum(np.log2(1.0 + magnitude[inner]), _TEXTURE_BINS - 1).astype(np.int64)  # octaves of contrast
        texture = np.bincount(levels, minlength=_TEXTURE_BINS).astype(np.float32)
        return np.concatenate([colour / colour.sum(), texture / texture.sum()])

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        split = _L_BINS * _AB_BINS**2
        colour = float(np.sqrt(a[:split] * b[:split]).sum())
        texture = float(np.sqrt(a[split:] * b[split:]).sum())
        return min(1.0, _COLOUR_WEIGHT * colour + (1 - _COLOUR_WEIGHT) * texture)


def point_view(
    descriptor: AppearanceDescriptor,
    image: np.ndarray,
    point: tuple[float, float],
    radius: float,
    mask: np.ndarray | None = None,
) -> np.ndarray | None:
    """The descriptor of the disc of `radius` around `point`, within the image (and the `mask`, when known).

    Tracks learn, and grounded points (no mask yet) are compared, on this one kind of view: the
    object's core around its interior point. Measured on DAVIS (bench/bench_reid.py), it never gave
    a wrong id where the whole mask's colours did (against a point's disc) 3% of the time.
    """
    x0, y0 = max(0, math.floor(point[0] - radius)), max(0, math.floor(point[1] - radius))
    x1, y1 = math.ceil(point[0] + radius) + 1, math.ceil(point[1] + radius) + 1
    crop = image[y0:y1, x0:x1]
    if crop.size == 0:
        return None
    rows, cols = np.ogrid[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]
    disc = (cols - point[0]) ** 2 + (rows - point[1]) ** 2 <= radius**2
    if mask is not None:
        disc &= mask[y0:y1, x0:x1]
    return descriptor.describe(crop, disc, (0, 0, crop.shape[1] - 1, crop.shape[0] - 1))


class Gallery:
    """A few diverse views of one object (at most GALLERY_VIEWS): a new view unlike the kept ones is
    added (replacing the oldest when full), one like a kept view refreshes it (the running mean)."""

    def __init__(self, descriptor: AppearanceDescriptor):
        self._descriptor = descriptor
        self.views: list[np.ndarray] = []

    def add(self, view: np.ndarray) -> None:
        alike = [self._descriptor.similarity(view, kept) for kept in self.views]
        nearest = int(np.argmax(alike)) if alike else -1
        if alike and alike[nearest] >= DIVERSE_BELOW:
            self.views[nearest] = (self.views[nearest] + view) / 2
            return
        if len(self.views) >= GALLERY_VIEWS:
            self.views.pop(0)
        self.views.append(view)

    def similarity(self, view: np.ndarray) -> float:
        """How much `view` looks like the object: its best match among the kept views (0 with none)."""
        return max((self._descriptor.similarity(view, kept) for kept in self.views), default=0.0)
