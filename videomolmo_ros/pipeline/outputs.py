"""What the pipeline produces (plain values, no ROS) and the sink it hands them to."""

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from videomolmo_ros.contracts.frames import FrameMeta
from videomolmo_ros.io.mask_geometry import Box
from videomolmo_ros.pipeline.track_manager import TrackState


@dataclass(frozen=True)
class Target:
    object_id: int
    label: str
    x: float
    y: float


@dataclass(frozen=True)
class TargetsOutput:
    """One grounding's points, on the source frame `meta` they were placed on."""

    meta: FrameMeta
    command_id: str
    query: str
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class TrackSnapshot:
    id: int
    label: str
    state: TrackState
    score: float
    x: float
    y: float
    box: Box | None
    age_ns: int
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)  # for 3D and debug views
    last_seen_ns: int = 0  # source stamp of the last frame the object was seen on


@dataclass(frozen=True)
class TracksOutput:
    meta: FrameMeta
    command_id: str
    query: str
    tracks: tuple[TrackSnapshot, ...]


@dataclass(frozen=True)
class MasksOutput:
    """Boolean H x W masks (numpy, CPU) of the tracks seen on `meta`, in `ids` order."""

    meta: FrameMeta
    command_id: str
    ids: tuple[int, ...]
    masks: tuple[np.ndarray, ...]
    shape: tuple[int, int]


class OutputSink(Protocol):
    """Where the pipeline's outputs go (the ROS node publishes them). Called from worker threads."""

    def publish_targets(self, output: TargetsOutput) -> None: ...

    def publish_tracks(self, output: TracksOutput) -> None: ...

    def publish_masks(self, output: MasksOutput) -> None: ...

    def problem(self, key: str, message: str) -> None: ...
