"""What a tracked object looks like, so it can be told apart from others when it comes back into view.

`AppearanceDescriptor` is the seam: what it reads of a frame (`look`), a descriptor of that under a
mask, and a similarity (0: nothing alike, 1: the same) between two descriptors. Two sources
(tracker.descriptor, `descriptor_for`): `ColourTextureDescriptor` needs nothing from the
propagator: a joint CIE Lab colour histogram (a perceptual space: lighting moves L more than a
and b) plus a histogram of the gradient magnitude inside the object (a little texture), compared
by the Bhattacharyya coefficient. `PropagatorFeatureDescriptor` averages the propagator's own
image features (MaskPropagator.image_features: SAM2 computes them every frame) under the mask,
compared by cosine. `Gallery` keeps a few diverse views of one object.

How tracks use them: reattachment.py.
"""

import math
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from videomolmo_ros.contracts.frames import Frame
from videomolmo_ros.contracts.interfaces import MaskPropagator
from videomolmo_ros.io.mask_geometry import Box

GALLERY_VIEWS = 4  # views kept per track
DIVERSE_BELOW = 0.9  # a view this unlike every kept one is a new view; else it refreshes the nearest
MIN_PIXELS = 30  # fewer pixels under a mask describe nothing reliably

_L_BINS, _AB_BINS, _TEXTURE_BINS = 4, 8, 8
_COLOUR_WEIGHT = 0.8  # texture weighs the rest
DESCRIPTORS = ("colour_texture", "propagator_features")  # tracker.descriptor


class AppearanceDescriptor(Protocol):
    """How an object looks under a mask, comparable across frames and positions."""

    def look(self, frame: Frame) -> Any | None:
        """What it describes `frame` by (an image whose .shape[:2] is the frame's height and width); None: nothing."""
        ...

    def describe(self, image: Any, mask: np.ndarray, box: Box) -> np.ndarray | None:
        """A descriptor of what `look` gave, under the frame-sized `mask` (within `box`); None: too little to tell."""
        ...

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """0 (nothing alike) to 1 (alike)."""
        ...


class ColourTextureDescriptor:
    """Lab colour histogram (4 x 8 x 8 bins) and gradient-magnitude histogram (8 bins), each normalised."""

    def look(self, frame: Frame) -> np.ndarray:
        return frame.image.cpu().numpy()

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
    image: Any,
    point: tuple[float, float],
    radius: float,
    mask: np.ndarray | None = None,
) -> np.ndarray | None:
    """The descriptor of the disc of `radius` around `point`, within the image (and the `mask`, when known).

    Tracks learn, and grounded points (no mask yet) are compared, on this one kind of view: the
    object's core around its interior point. Measured on DAVIS (bench/bench_reid.py), it never gave
    a wrong id where the whole mask's colours did (against a point's disc) 3% of the time.
    """
    height, width = image.shape[:2]
    x0, y0 = max(0, math.floor(point[0] - radius)), max(0, math.floor(point[1] - radius))
    x1, y1 = min(width, math.ceil(point[0] + radius) + 1), min(height, math.ceil(point[1] + radius) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    rows, cols = np.ogrid[y0:y1, x0:x1]
    disc = np.zeros((height, width), bool)  # frame-sized: a feature map is read where the disc lies in the frame
    disc[y0:y1, x0:x1] = (cols - point[0]) ** 2 + (rows - point[1]) ** 2 <= radius**2
    if mask is not None:
        disc[y0:y1, x0:x1] &= mask[y0:y1, x0:x1]
    return descriptor.describe(image, disc, (x0, y0, x1 - 1, y1 - 1))


@dataclass(frozen=True)
class FeatureMap:
    """A propagator's image features of a frame (C x h x w, the whole frame stretched over h x w) and the frame's
    size: masks and points are in the frame's pixels."""

    features: torch.Tensor
    shape: tuple[int, int]  # the frame's height, width


class PropagatorFeatureDescriptor:
    """The propagator's image features averaged under the mask (each feature cell weighted by the mask pixels whose
    centres fall in it), L2-normalised; similarity: their cosine mapped to 0-1. One pixel is enough (a cell is
    16 px of the model's input); none, or features that are not finite, describe nothing."""

    def __init__(self, propagator: MaskPropagator):
        self._propagator = propagator

    def look(self, frame: Frame) -> FeatureMap | None:
        features = self._propagator.image_features(frame)
        return None if features is None else FeatureMap(features, (frame.height, frame.width))

    def describe(self, image: FeatureMap, mask: np.ndarray, box: Box) -> np.ndarray | None:
        x0, y0, x1, y1 = (int(v) for v in box)
        rows, cols = np.nonzero(mask[y0 : y1 + 1, x0 : x1 + 1])
        if rows.size == 0:
            return None
        (height, width), (_, cell_rows, cell_cols) = image.shape, image.features.shape
        cell_y = ((rows + y0 + 0.5) * cell_rows / height).astype(np.int64)
        cell_x = ((cols + x0 + 0.5) * cell_cols / width).astype(np.int64)
        cells, pixels = np.unique(cell_y * cell_cols + cell_x, return_counts=True)
        flat = image.features.flatten(1)
        with torch.no_grad():
            picked = flat[:, torch.from_numpy(cells).to(flat.device)].float()
            pooled = (picked @ torch.from_numpy(pixels).to(picked)).cpu().numpy().astype(np.float64)
        norm = np.linalg.norm(pooled)
        if not np.isfinite(pooled).all() or norm == 0:
            return None
        return pooled / norm

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        cosine = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)  # gallery means: not unit
        return min(1.0, max(0.0, (cosine + 1.0) / 2.0))


def descriptor_for(name: str, propagator: MaskPropagator | None) -> AppearanceDescriptor:
    """The descriptor tracker.descriptor names; a propagator that exposes no image features cannot give one."""
    if name == "colour_texture":
        return ColourTextureDescriptor()
    if name != "propagator_features":
        raise ValueError(f"tracker.descriptor {name!r}: use {' or '.join(DESCRIPTORS)}")
    if propagator is None or type(propagator).image_features is MaskPropagator.image_features:
        what = type(propagator).__name__ if propagator else "no propagator"
        raise ValueError(
            f"tracker.descriptor propagator_features needs a propagator that exposes its image features "
            f"(MaskPropagator.image_features); {what} has none: use colour_texture"
        )
    return PropagatorFeatureDescriptor(propagator)


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
