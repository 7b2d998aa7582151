"""Tracks as vision_msgs detections (plain values): what a vision_msgs consumer reads from a tracked frame."""

import numpy as np
import pytest

from videomolmo_ros.contracts.frames import FrameMeta
from videomolmo_ros.io.mask_geometry import mask_box
from videomolmo_ros.pipeline.detections import detections_2d, detections_3d
from videomolmo_ros.pipeline.oriented_box import OrientedBox
from videomolmo_ros.pipeline.outputs import TrackSnapshot, TracksOutput
from videomolmo_ros.pipeline.track_manager import TrackState

META = FrameMeta(seq=7, stamp_ns=1_000_000_000, frame_id="cam", camera="main")


def _snapshot(track_id, state, box, label="mug", score=0.8, point=(0.0, 0.0)):
    return TrackSnapshot(track_id, label, state, score, *point, box, age_ns=0)


def test_a_tracked_mask_becomes_a_box_covering_its_pixels_with_the_track_id_label_and_score():
    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:34] = True  # rows 10-19, columns 30-33: 4 x 10 pixels
    output = TracksOutput(META, "c", "the mug", (_snapshot(12, TrackState.TRACKED, mask_box(mask), score=0.93),))
    [detection] = detections_2d(output)
    assert (detection.id, detection.class_id, detection.score) == ("12", "mug", 0.93)
    assert (detection.size_x, detection.size_y) == (4, 10)
    assert (detection.center_x, detection.center_y) == pytest.approx((31.5, 14.5)), "centre of pixels 30-33, 10-19"


def test_only_tracked_tracks_are_detections():
    tracks = (
        _snapshot(1, TrackState.TENTATIVE, (0, 0, 5, 5)),
        _snapshot(2, TrackState.TRACKED, (0, 0, 5, 5)),
        _snapshot(3, TrackState.LOST, (0, 0, 5, 5)),
    )
    output = TracksOutput(META, "c", "q", tracks)
    assert [d.id for d in detections_2d(output)] == ["2"]
    assert [d.id for d in detections_3d(output, [(0, 0, 1)] * 3)] == ["2"]


def test_a_track_without_a_mask_is_a_point_sized_box_at_its_point():
    output = TracksOutput(META, "c", "q", (_snapshot(4, TrackState.TRACKED, None, point=(50.0, 20.0)),))
    [detection] = detections_2d(output)
    assert (detection.center_x, detection.center_y, detection.size_x, detection.size_y) == (50.0, 20.0, 0.0, 0.0)


def test_3d_detections_are_the_tracked_tracks_with_a_position():
    tracks = (_snapshot(5, TrackState.TRACKED, (0, 0, 1, 1)), _snapshot(6, TrackState.TRACKED, (2, 2, 3, 3)))
    [detection] = detections_3d(TracksOutput(META, "c", "q", tracks), [None, (0.1, -0.2, 0.8)])
    assert (detection.id, detection.position, detection.score) == ("6", (0.1, -0.2, 0.8), 0.8)


def test_a_3d_detection_carries_the_tracks_oriented_box():
    tracks = (_snapshot(7, TrackState.TRACKED, (0, 0, 1, 1)), _snapshot(8, TrackState.TRACKED, (2, 2, 3, 3)))
    box = OrientedBox((0.6, 0.0, 0.06), (0.0, 0.0, 0.2588, 0.9659), (0.08, 0.05, 0.12))
    found = detections_3d(TracksOutput(META, "c", "q", tracks), [(0.6, 0.0, 0.1), (0.1, 0.1, 0.5)], [box, None])
    assert [d.box for d in found] == [box, None]
