"""What a grounding asks and answers: the mode, the points a model placed, the masks of an object.

Shared by the pipeline (which acts on them) and the backends (which produce them).
"""

from dataclasses import dataclass
from enum import IntEnum

import torch


class GroundingMode(IntEnum):
    """Values match GroundingCommand.MODE_*."""

    POINT = 0
    TRACK = 1


@dataclass(frozen=True)
class GroundedPoint:
    """A point the model placed: on window frame `frame_index`, in that frame's pixels.

    `object_id` is the model's own identity for the object (Molmo2 track mode numbers objects
    1, 2, ... within one answer); None when the model gives none (pointing). `score` is the
    model's 0-1 confidence in the point, None when it gives none; points below the node's
    `tracker.min_point_score` are dropped.
    """

    frame_index: int
    x: float
    y: float
    label: str = ""
    object_id: int | None = None
    score: float | None = None


@dataclass(frozen=True)
class GroundingResult:
    """All a pointer found for one query, with what it could not make sense of.

    `problems` lists parts of the model output that were dropped (malformed, out of range);
    the node logs and counts them while still using the points that did parse.
    `skipped_frames` counts window frames the model was not shown (counted by the pipeline).
    """

    points: tuple[GroundedPoint, ...]
    raw_output: str = ""
    problems: tuple[str, ...] = ()
    skipped_frames: int = 0


@dataclass(frozen=True)
class ObjectMask:
    """One object's mask on one frame: H x W bool on any device, with a 0-1 confidence."""

    mask: torch.Tensor
    score: float = 1.0
