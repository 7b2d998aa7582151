"""Test doubles of the pointer and the mask propagator: colour-threshold oracles.

They implement the real interfaces on synthetic video (test/synthetic_video.py), where the
colour named in the query identifies the object, so the pipeline and the node can be tested
end to end without model weights. They never ship as backends.
"""

import math
import os
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from synthetic_video import COLOURS

from videomolmo_ros.contracts.frames import Frame, FrameWindow
from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingMode, GroundingResult, ObjectMask
from videomolmo_ros.contracts.interfaces import BackendError, MaskPropagator, Pointer

_TOLERANCE = 40


def colour_components(image: np.ndarray, rgb: Sequence[int], min_area: int = 20) -> list[np.ndarray]:
    """Boolean masks of the connected regions of `image` close to colour `rgb`."""
    close = np.abs(image.astype(np.int16) - np.asarray(rgb, np.int16)).max(axis=2) <= _TOLERANCE
    count, labels, stats, _ = cv2.connectedComponentsWithStats(close.astype(np.uint8), connectivity=8)
    return [labels == k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= min_area]


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return float(cols.mean()), float(rows.mean())


def _reach(mask: np.ndarray, point: tuple[float, float]) -> float:
    """Distance in px from `point` to the nearest pixel of `mask`."""
    rows, cols = np.nonzero(mask)
    return float(np.hypot(cols - point[0], rows - point[1]).min())


@dataclass(frozen=True)
class OracleOptions:
    delay_s: float = 0.0  # pretend to be a slow model
    fail_on: str = ""  # raise when the query contains this text (tests of model failures)


class ColorOraclePointerDouble(Pointer):
    """Points at the centroid of every region whose colour the query names, on every frame."""

    Options = OracleOptions

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        if self.options.fail_on and self.options.fail_on in query:
            raise RuntimeError(f"double told to fail on {self.options.fail_on!r}")
        time.sleep(self.options.delay_s)
        colours = [name for name in COLOURS if name in query.lower()]
        points = []
        for index in range(len(window)):
            image = window.images[index].cpu().numpy()
            for name in colours:
                for mask in colour_components(image, COLOURS[name]):
                    x, y = _centroid(mask)
                    points.append(GroundedPoint(index, x, y, name))
        return GroundingResult(tuple(points), raw_output=f"{len(points)} points")


class ColorOraclePropagatorDouble(MaskPropagator):
    """Carries each prompted object by its colour: the region nearest its last position."""

    search_radius = math.inf  # px around the last position a region must reach into to be found

    def __init__(self, options: object, device: torch.device):
        super().__init__(options, device)
        self._objects: dict[int, tuple[np.ndarray, tuple[float, float]]] = {}
        self.steps: list[tuple[int, tuple[int, ...]]] = []  # (stamp, objects stepped) of every step, in order

    def add_prompts(self, frame: Frame, prompts: Mapping[int, Sequence[tuple[float, float]]]) -> None:
        image = frame.image.cpu().numpy()
        for object_id, points in prompts.items():
            x, y = points[0]
            patch = image[max(0, int(y) - 1) : int(y) + 2, max(0, int(x) - 1) : int(x) + 2]
            self._objects[object_id] = (patch.reshape(-1, 3).mean(axis=0), (x, y))

    def step(self, frame: Frame, object_ids: Collection[int] | None = None) -> dict[int, ObjectMask]:
        image = frame.image.cpu().numpy()
        masks = {}
        ids = tuple(self._objects if object_ids is None else [i for i in object_ids if i in self._objects])
        self.steps.append((frame.meta.stamp_ns, ids))
        for object_id in ids:
            rgb, last = self._objects[object_id]
            regions = [m for m in colour_components(image, rgb) if _reach(m, last) <= self.search_radius]
            if not regions:
                masks[object_id] = ObjectMask(torch.zeros(image.shape[:2], dtype=torch.bool))
                continue
            nearest = min(regions, key=lambda m: np.hypot(*np.subtract(_centroid(m), last)))
            self._objects[object_id] = (rgb, _centroid(nearest))
            masks[object_id] = ObjectMask(torch.from_numpy(nearest), score=0.9)
        return masks

    def remove(self, object_ids: Iterable[int]) -> None:
        for object_id in object_ids:
            self._objects.pop(object_id, None)

    def propagate(
        self, frames: Sequence[Frame], prompts: Mapping[int, Sequence[tuple[float, float]]], reverse: bool
    ) -> list[dict[int, ObjectMask]]:
        order = list(reversed(frames)) if reverse else list(frames)
        session = type(self)(self.options, self.device)
        session.add_prompts(order[0], prompts)
        masks = [session.step(frame) for frame in order]
        return masks[::-1] if reverse else masks

    def reset(self) -> None:
        self._objects.clear()


@dataclass(frozen=True)
class LocalOptions:
    search_radius: float = 25.0


class LocalPropagatorDouble(ColorOraclePropagatorDouble):
    """A tracker that, like SAM2, follows an object from where it last saw it: it only finds a region
    within `search_radius` px of the object's last position, so an object that moved further is lost."""

    Options = LocalOptions

    def __init__(self, options: LocalOptions, device: torch.device):
        super().__init__(options, device)
        self.search_radius = options.search_radius


class ColourFeaturesPropagatorDouble(LocalPropagatorDouble):
    """The local tracker exposing image features as SAM2 does (MaskPropagator.image_features): here each 8 x 8
    cell's mean colour, centred on grey, so objects of unlike colours have unlike features."""

    def image_features(self, frame: Frame) -> torch.Tensor:
        centred = frame.image.permute(2, 0, 1).float() - 128.0
        return torch.nn.functional.avg_pool2d(centred[None], 8, ceil_mode=True)[0]


@dataclass(frozen=True)
class SlowOptions:
    step_s: float = 0.0  # each step takes this long (a large model at high resolution)


class SlowPropagatorDouble(ColorOraclePropagatorDouble):
    """The colour oracle with steps of `step_s`: tracking slower than the camera."""

    Options = SlowOptions

    def step(self, frame: Frame, object_ids: Collection[int] | None = None) -> dict[int, ObjectMask]:
        time.sleep(self.options.step_s)
        return super().step(frame, object_ids)


class FeatureCachingPointerDouble(ColorOraclePointerDouble):
    """The colour oracle caching each frame's regions as a per-frame feature (as VideoMolmo caches vision
    features); its raw output says how many frames of the window it had to compute."""

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        computed = 0
        for index, cached in enumerate(window.features):
            if "regions" not in cached:
                window.put_feature(index, "regions", super().ground(window, query, mode).points)
                computed += 1
        result = super().ground(window, query, mode)
        return GroundingResult(result.points, raw_output=f"computed {computed} of {len(window)}")


class ConsecutiveFramesPointerDouble(ColorOraclePointerDouble):
    """The colour oracle as a pointer that reads 3 consecutive camera frames and has a say on the context window."""

    camera_rate_frames = 3

    def check_context(self, context_frames: int, context_fps: float) -> list[str]:
        if context_fps > 100:
            raise BackendError(f"context_fps {context_fps}: too fast for this double")
        return [f"reads {self.camera_rate_frames} camera frames, not {context_frames} at {context_fps:g} Hz"]


class ScriptedPointerDouble(Pointer):
    """Answers every query with the same scripted result (pipeline tests of what an answer does)."""

    def __init__(self, result: GroundingResult):
        super().__init__(None, torch.device("cpu"))
        self.result = result

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        return self.result


class RecordingPointerDouble(ScriptedPointerDouble):
    """Answers with a scripted result and keeps every window it was given (what the pipeline feeds a pointer).

    `camera_rate_frames` asks for consecutive camera frames, as VideoMolmo does.
    """

    def __init__(self, result: GroundingResult, camera_rate_frames: int = 0):
        super().__init__(result)
        self.camera_rate_frames = camera_rate_frames
        self.windows: list[FrameWindow] = []

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        self.windows.append(window)
        return self.result


class WrongColourPointerDouble(ColorOraclePointerDouble):
    """Points at every object whose colour the query does not name: a confident wrong answer."""

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        others = " ".join(name for name in COLOURS if name not in query.lower())
        return super().ground(window, others, mode)


@dataclass(frozen=True)
class FloodOptions(OracleOptions):
    points: int = 1000  # points per answer


class FloodPointerDouble(ColorOraclePointerDouble):
    """Answers as a model asked for "all the grains of rice" may: on the newest frame, the regions the query's
    colours name first, then points on a grid over the whole frame, `points` points in all."""

    Options = FloodOptions

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        newest = len(window) - 1
        real = [p for p in super().ground(window, query, mode).points if p.frame_index == newest]
        height, width = window.images.shape[1:3]
        count = max(0, self.options.points - len(real))
        columns = max(1, round(math.sqrt(count * width / height)))
        rows = math.ceil(count / columns)
        grid = [
            GroundedPoint(newest, (k % columns + 0.5) * width / columns, (k // columns + 0.5) * height / rows, "grain")
            for k in range(count)
        ]
        return GroundingResult(tuple(real + grid), raw_output=f"{len(real) + len(grid)} points")


@dataclass(frozen=True)
class DyingOptions(OracleOptions):
    die_on: str = ""  # the query whose first grounding ends the process, as a worker killed out of memory
    marker: str = ""  # a file made when it does: the process started again after it lives


class DyingPointerDouble(ColorOraclePointerDouble):
    """Ends its whole process (os._exit, no clean-up) at the first grounding of `die_on`, once per `marker`."""

    Options = DyingOptions

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        marker = Path(self.options.marker)
        if query == self.options.die_on and not marker.exists():
            marker.touch()
            os._exit(1)
        return super().ground(window, query, mode)
