"""debug_overlay: masks, boxes, points and labels drawn on a copy of the camera frame."""

import numpy as np
import pytest

from videomolmo_ros.contracts.frames import FrameMeta
from videomolmo_ros.io.mask_geometry import interior_point, mask_box
from videomolmo_ros.pipeline.debug_overlay import PALETTE, draw_overlay, track_colour
from videomolmo_ros.pipeline.outputs import MasksOutput, Target, TargetsOutput, TrackSnapshot
from videomolmo_ros.pipeline.track_manager import TrackState

H, W = 480, 640
META = FrameMeta(seq=1, stamp_ns=1_000_000_000, frame_id="camera")


def grey_image(value=100):
    return np.full((H, W, 3), value, dtype=np.uint8)


def disc(cx, cy, r, shape=(H, W)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r**2


def masks_output(ids, masks):
    return MasksOutput(META, "cmd-1", tuple(ids), tuple(masks), (H, W))


def snapshot_of(track_id, mask, label="mug", state=TrackState.TRACKED):
    box = mask_box(mask)
    x, y = interior_point(mask, box)
    return TrackSnapshot(track_id, label, state, 0.9, x, y, box, 0)


# ----------------------------------------------------------------- colours


def test_colour_of_an_id_is_stable():
    assert all(track_colour(i) == track_colour(i) for i in range(100))
    assert track_colour(7) == tuple(int(c) for c in PALETTE[(7 * 5) % len(PALETTE)])


def test_neighbouring_ids_get_different_colours():
    assert all(track_colour(i) != track_colour(i + 1) for i in range(1000))
    assert len({track_colour(i) for i in range(len(PALETTE))}) == len(PALETTE)


def test_same_id_gets_the_same_tint_on_different_frames():
    mask = disc(200, 200, 40)
    first = draw_overlay(grey_image(), [], masks_output([5], [mask]), None)
    later = draw_overlay(grey_image(), [], masks_output([9, 5], [disc(500, 100, 30), mask]), None)
    assert np.array_equal(first[mask], later[mask])


# ----------------------------------------------------------------- masks


def test_mask_pixels_are_tinted_towards_the_track_colour_and_others_untouched():
    image = grey_image()
    mask = disc(300, 240, 50)
    out = draw_overlay(image, [], masks_output([3], [mask]), None)
    assert np.array_equal(out[~mask], image[~mask])
    colour = np.array(track_colour(3), dtype=float)
    before = np.abs(image[mask].astype(float) - colour).sum(axis=1)
    after = np.abs(out[mask].astype(float) - colour).sum(axis=1)
    assert (after < before).all()


def test_pixels_away_from_boxes_and_labels_are_untouched():
    image = grey_image()
    mask = disc(300, 300, 40)
    track = snapshot_of(4, mask)
    out = draw_overlay(image, [track], masks_output([4], [mask]), None)
    x0, y0, x1, y1 = (int(v) for v in track.box)
    near = np.zeros((H, W), dtype=bool)
    near[y0 - 3 : y1 + 4, x0 - 3 : x1 + 4] = True  # the box
    near[y0 - 25 : y0, x0 - 3 : x0 + 150] = True  # its label above it
    assert np.array_equal(out[~near], image[~near])
    assert not np.array_equal(out[mask], image[mask])


def test_masks_of_another_size_are_skipped():
    image = grey_image()
    out = draw_overlay(image, [], masks_output([1, 2], [disc(10, 10, 5, (20, 20)), np.ones((H, W, 2), bool)]), None)
    assert np.array_equal(out, image)


def test_overlapping_masks_show_the_later_one():
    first, second = disc(300, 240, 50), disc(330, 240, 50)
    out = draw_overlay(grey_image(), [], masks_output([1, 2], [first, second]), None)
    alone = draw_overlay(grey_image(), [], masks_output([2], [second]), None)
    assert np.array_equal(out[second], alone[second])


# ----------------------------------------------------------------- tracks and targets


def test_tracks_and_targets_are_drawn_in_their_colours():
    image = grey_image()
    mask = disc(200, 200, 40)
    track = snapshot_of(6, mask, state=TrackState.TENTATIVE)
    targets = TargetsOutput(META, "cmd-1", "mug", (Target(6, "mug", 400.0, 300.0),))
    out = draw_overlay(image, [track], None, targets)
    colour = np.array(track_colour(6), dtype=np.uint8)
    x0, y0, _, _ = (int(v) for v in track.box)
    assert np.array_equal(out[y0 + 10, x0], colour)  # the box's left edge
    assert np.array_equal(out[int(track.y), int(track.x)], colour)  # the interior point
    assert np.array_equal(out[300, 400], colour)  # the target's cross
    assert np.array_equal(out[100:150, 500:600], image[100:150, 500:600])


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1280, 720), (1920, 1080)])
def test_labels_grow_with_the_image_and_sit_on_a_box_of_the_track_colour(width, height):
    image = np.full((height, width, 3), 100, np.uint8)
    mask = disc(width / 2, height / 2, height / 8, (height, width))
    track = snapshot_of(3, mask, label="the red cups", state=TrackState.TENTATIVE)
    out = draw_overlay(image, [track], None, None)
    x0, y0 = int(track.box[0]), int(track.box[1])
    above = out[: y0 - 2, x0:]  # the label, clear of the box's top edge
    fill = (above == track_colour(3)).all(axis=2)
    rows, cols = np.flatnonzero(fill.any(axis=1)), np.flatnonzero(fill.any(axis=0))
    label = above[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert len(rows) >= 0.035 * height, "the label box grows with the image"
    assert fill[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].mean() > 0.6, "a filled box, not outlined text"
    ink = (np.abs(label.astype(int) - track_colour(3)).sum(axis=2) > 200).any(axis=1)
    assert np.count_nonzero(ink) >= 0.022 * height, f"letters {np.count_nonzero(ink)} px high at {height} px"


def test_points_outside_the_image_and_odd_values_do_not_raise():
    odd = [
        TrackSnapshot(1, "far away", TrackState.LOST, 0.1, 5000.0, -300.0, (4000.0, -500.0, 6000.0, -100.0), 0),
        TrackSnapshot(2, "nan", TrackState.TRACKED, 0.1, float("nan"), 10.0, (float("inf"), 0.0, 1.0, 1.0), 0),
        TrackSnapshot(3, "no box " + "very long label " * 40, TrackState.TENTATIVE, 0.1, 639.9, 479.9, None, 0),
        TrackSnapshot(-4, "négatif ✓", 7, 0.1, 0.0, 0.0, (0.0, 0.0, 0.0, 0.0), 0),
    ]
    targets = TargetsOutput(META, "c", "q", (Target(1, "t", -1e12, 1e12), Target(2, "t", float("nan"), 0.0)))
    masks = MasksOutput(META, "c", (1, 2, 3), (disc(5, 5, 3), np.zeros((0, 0), bool)), (H, W))
    out = draw_overlay(grey_image(), odd, masks, targets)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert draw_overlay(np.zeros((1, 1, 3), np.uint8), odd, None, targets).shape == (1, 1, 3)


def test_input_image_is_not_modified_and_a_new_array_is_returned():
    image = grey_image()
    original = image.copy()
    mask = disc(200, 200, 40)
    targets = TargetsOutput(META, "c", "q", (Target(1, "t", 200.0, 200.0),))
    out = draw_overlay(image, [snapshot_of(1, mask)], masks_output([1], [mask]), targets)
    assert np.array_equal(image, original)
    assert not np.shares_memory(out, image)
    assert not np.array_equal(out, image)


def test_a_non_contiguous_frame_is_drawn_on():
    image = np.ascontiguousarray(grey_image()[:, :, ::-1])[:, ::2]  # a strided view, as a crop would give
    out = draw_overlay(image, [snapshot_of(1, disc(100, 100, 20, image.shape[:2]))], None, None)
    assert out.shape == image.shape and out.flags.c_contiguous
