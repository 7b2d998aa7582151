"""Tracks as vision_msgs detections, in plain values (no ROS): for planners that speak vision_msgs.

Isaac ROS and many planners consume `vision_msgs/Detection2DArray` and `Detection3DArray`, not this
package's messages. The node converts these values into them where vision_msgs is installed
(`publish_vision_msgs`). A detection is a track seen on the frame (TRACKED): its id is the track
id as text (vision_msgs' Detection2D.id carries identity across messages), its class the label,
its score the mask confidence. Tentative tracks (not yet confirmed) and lost ones are left out.

Boxes follow vision_msgs' BoundingBox2D: centre and size in pixels, pixel centres at integers, the
size covering the box's pixels (a one-pixel box is 1 x 1). A track without a mask (no propagator)
is a 0 x 0 box at its point.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from videomolmo_ros.pipeline.oriented_box import OrientedBox
from videomolmo_ros.pipeline.outputs import TrackSnapshot, TracksOutput
from videomolmo_ros.pipeline.track_manager import TrackState


@dataclass(frozen=True)
class Detection2D:
    id: str
    class_id: str
    score: float
    center_x: float
    center_y: float
    size_x: float
    size_y: float


@dataclass(frozen=True)
class Detection3D:
    """A track's 3D position (metres, in the frame the tracks' positions are in) and its oriented box if known.

    vision_msgs' BoundingBox3D is centred on the box; without a box it is a 0-size box at the position.
    """

    id: str
    class_id: str
    score: float
    position: tuple[float, float, float]
    box: OrientedBox | None = None


def _detected(track: TrackSnapshot) -> bool:
    return track.state is TrackState.TRACKED


def detections_2d(output: TracksOutput) -> list[Detection2D]:
    """The frame's detections: a box, id, label and score per TRACKED track."""
    detections = []
    for track in filter(_detected, output.tracks):
        if track.box is None:
            centre, size = (track.x, track.y), (0.0, 0.0)
        else:
            x_min, y_min, x_max, y_max = track.box
            centre, size = ((x_min + x_max) / 2, (y_min + y_max) / 2), (x_max - x_min + 1, y_max - y_min + 1)
        detections.append(Detection2D(str(track.id), track.label, track.score, *centre, *size))
    return detections


def detections_3d(
    output: TracksOutput,
    positions: Sequence[tuple[float, float, float] | None],
    boxes: Sequence[OrientedBox | None] | None = None,
) -> list[Detection3D]:
    """The TRACKED tracks with a 3D position (`positions`, `boxes` in `output.tracks` order, None where missing)."""
    boxes = boxes if boxes is not None else [None] * len(positions)
    return [
        Detection3D(str(track.id), track.label, track.score, position, box)
        for track, position, box in zip(output.tracks, positions, boxes, strict=True)
        if _detected(track) and position is not None
    ]
