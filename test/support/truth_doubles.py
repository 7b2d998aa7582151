"""Test doubles that know the ground truth of real footage: a pointer that points at the annotated object,
and propagators that return its annotated mask (or that mask's bounding box).

For scoring tests on real frames (DAVIS 2016): with the truth as the answer, every score is known
by hand. They recognise a frame by its content (the nearest thumbnail among the annotated
sequences' JPEGs), so they work the same behind evaluate_dataset's stamps, a bag's, raw or
JPEG transport. They never ship as backends.
"""

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch

from videomolmo_ros.contracts.frames import Frame, FrameWindow
from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingMode, GroundingResult, ObjectMask
from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.io.mask_geometry import interior_point, mask_box

_THUMB = (48, 27)  # width, height: enough to tell consecutive frames apart, cheap to compare


@dataclass(frozen=True)
class TruthOptions:
    davis_root: str = ""  # DAVIS 2016 root (JPEGImages/480p, Annotations/480p)
    sequences: str = ""  # comma-separated sequences to recognise frames of
    box: bool = False  # propagators: the annotation's bounding box instead of the mask


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32).ravel()


@cache
def _index(davis_root: str, sequences: str) -> tuple[np.ndarray, tuple[Path, ...]]:
    """Thumbnails of every frame of the sequences, and each frame's annotation PNG."""
    root = Path(davis_root)
    thumbs, annotations = [], []
    for name in sequences.split(","):
        for jpeg in sorted((root / "JPEGImages" / "480p" / name).glob("*.jpg")):
            thumbs.append(_thumbnail(cv2.imread(str(jpeg))[:, :, ::-1]))
            annotations.append(root / "Annotations" / "480p" / name / f"{jpeg.stem}.png")
    if not thumbs:
        raise ValueError(f"no frames of {sequences!r} under {root}")
    return np.stack(thumbs), tuple(annotations)


def truth_mask(options: TruthOptions, rgb: np.ndarray) -> np.ndarray:
    """The annotated object's mask on the frame `rgb` is (the annotated frame it looks most like)."""
    thumbs, annotations = _index(options.davis_root, options.sequences)
    nearest = int(np.argmin(np.abs(thumbs - _thumbnail(rgb)).mean(axis=1)))
    return cv2.imread(str(annotations[nearest]), cv2.IMREAD_GRAYSCALE) > 0


def box_of(mask: np.ndarray) -> np.ndarray:
    """The filled bounding box of a mask (empty for an empty mask)."""
    filled = np.zeros_like(mask)
    box = mask_box(mask)
    if box is not None:
        x0, y0, x1, y1 = (round(v) for v in box)
        filled[y0 : y1 + 1, x0 : x1 + 1] = True
    return filled


class TruthPointerDouble(Pointer):
    """Points at the annotated object on the newest frame of the window (its mask's interior point)."""

    Options = TruthOptions

    def __init__(self, options: TruthOptions, device: torch.device):
        super().__init__(options, device)
        _index(options.davis_root, options.sequences)  # at start-up, not in the first query

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        newest = len(window) - 1
        mask = truth_mask(self.options, window.images[newest].cpu().numpy())
        box = mask_box(mask)
        points = () if box is None else (GroundedPoint(newest, *interior_point(mask, box), "truth"),)
        return GroundingResult(points, raw_output=f"{len(points)} point(s)")


class TruthPropagatorDouble(MaskPropagator):
    """Every prompted object's mask on each frame is the annotation's (or its bounding box)."""

    Options = TruthOptions

    def __init__(self, options: TruthOptions, device: torch.device):
        super().__init__(options, device)
        _index(options.davis_root, options.sequences)
        self._ids: set[int] = set()

    def _masks(self, frame: Frame, ids: Iterable[int]) -> dict[int, ObjectMask]:
        mask = truth_mask(self.options, frame.image.cpu().numpy())
        answer = torch.from_numpy(box_of(mask) if self.options.box else mask)
        return {object_id: ObjectMask(answer, score=1.0) for object_id in ids}

    def add_prompts(self, frame: Frame, prompts: Mapping[int, Sequence[tuple[float, float]]]) -> None:
        self._ids |= set(prompts)

    def step(self, frame: Frame, object_ids: Collection[int] | None = None) -> dict[int, ObjectMask]:
        return self._masks(frame, self._ids if object_ids is None else self._ids & set(object_ids))

    def propagate(
        self, frames: Sequence[Frame], prompts: Mapping[int, Sequence[tuple[float, float]]], reverse: bool
    ) -> list[dict[int, ObjectMask]]:
        return [self._masks(frame, prompts) for frame in frames]

    def remove(self, object_ids: Iterable[int]) -> None:
        self._ids -= set(object_ids)

    def reset(self) -> None:
        self._ids.clear()
