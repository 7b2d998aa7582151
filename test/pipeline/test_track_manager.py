"""track_manager and mask_geometry: persistent object ids, track states, boxes and aim points."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from synthetic_video import render

from videomolmo_ros.io.mask_geometry import interior_point, mask_box
from videomolmo_ros.pipeline.track_manager import TrackerConfig, TrackManager, TrackState

SIZE = (240, 320)  # height, width: diagonal 400 px
DIAGONAL = 400.0
SECOND = 10**9


def disc(centre, radius, size=SIZE):
    rows, cols = np.ogrid[: size[0], : size[1]]
    return (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius**2


def tracks_at(manager, command, *points):
    """New tracks (of a command with none yet) for points (x, y), as a mask-less grounding makes them."""
    assert manager.tracks(command) == []
    points = [(x, y, "obj") for x, y in points]
    ids = manager.associate(command, points, SIZE, 0).ids
    manager.update_from_points(command, {i: (x, y) for i, (x, y, _) in zip(ids, points, strict=True)})
    assert len(set(ids)) == len(points)
    return ids


def state(manager, command, track_id):
    [track] = [t for t in manager.tracks(command) if t.id == track_id]
    return track.state


def empty():
    return np.zeros(SIZE, bool)


# ----------------------------------------------------------------- association


def test_point_inside_a_track_mask_keeps_its_id_even_when_another_track_is_closer():
    manager = TrackManager()
    big, small = tracks_at(manager, "c", (100, 100), (150, 100))
    manager.update_from_masks("c", {big: (disc((100, 100), 40), 1.0), small: (disc((150, 100), 5), 1.0)})
    point = (137.0, 100.0, "obj")  # 37 px from the big object's point, 13 px from the small one's
    assert manager.associate("c", [point], SIZE, 1).ids == [big]


def test_reordered_points_keep_their_ids():
    manager = TrackManager()
    a, b = manager.associate("c", [(50, 50, "a"), (250, 180, "b")], SIZE, 0).ids
    manager.update_from_points("c", {a: (50, 50), b: (250, 180)})
    assert manager.associate("c", [(252, 178, "b"), (48, 51, "a")], SIZE, 1).ids == [b, a]


def test_assignment_is_global_not_greedy_in_point_order():
    """The first point is slightly nearer track A, but only A can take the second point."""
    manager = TrackManager()
    a, b = tracks_at(manager, "c", (100, 100), (160, 100))
    # first point: 28 px from A, 32 px from B; second point: 60 px from A, 120 px (too far) from B
    assert manager.associate("c", [(128, 100, "x"), (40, 100, "x")], SIZE, 1).ids == [b, a]
    assert len(manager.tracks("c")) == 2


def test_point_beyond_match_distance_starts_a_new_track():
    manager = TrackManager(TrackerConfig(match_distance=0.15))
    [old] = tracks_at(manager, "c", (100, 100))
    near = 100 + 0.1 * DIAGONAL
    far = 100 + 0.2 * DIAGONAL
    assert manager.associate("c", [(near, 100, "obj")], SIZE, 1).ids == [old]
    [new] = manager.associate("c", [(far, 100, "obj")], SIZE, 2).ids
    assert new != old
    assert sorted(t.id for t in manager.tracks("c")) == sorted([old, new])


@dataclass(frozen=True)
class SlidingDisc:
    """A disc moving in a straight line (render() only needs colour, radius and centre)."""

    colour: str
    x0: float
    y: float
    vx: float
    radius: float

    def centre(self, t):
        return self.x0 + self.vx * t, self.y


def centroid(mask):
    rows, cols = np.nonzero(mask)
    return float(cols.mean()), float(rows.mean())


def test_crossing_objects_keep_their_ids():
    """Two discs pass each other; groundings arrive late (from 2 frames back) and in either order."""
    fps = 20.0
    scene = [SlidingDisc("red", 40, 108, 200, 16), SlidingDisc("blue", 280, 132, -200, 16)]
    frames = [render(scene, k / fps) for k in range(26)]
    manager = TrackManager()
    _, masks = frames[0]
    points = [(*centroid(masks["red"]), "red"), (*centroid(masks["blue"]), "blue")]
    red, blue = manager.associate("c", points, SIZE, 0).ids
    for k in range(1, len(frames)):
        _, masks = frames[k]
        manager.update_from_masks("c", {red: (masks["red"], 1.0), blue: (masks["blue"], 1.0)})
        if k % 3 == 0:  # a slow grounding on an older frame
            _, seen = frames[k - 2]
            points = [(*centroid(seen["red"]), "red"), (*centroid(seen["blue"]), "blue")]
            expected = [red, blue]
            if k % 2:
                points.reverse()
                expected.reverse()
            assert manager.associate("c", points, SIZE, k).ids == expected, f"ids swapped at frame {k}"
    assert sorted(t.id for t in manager.tracks("c")) == sorted([red, blue])
    [red_track] = [t for t in manager.tracks("c") if t.id == red]
    assert red_track.x > 160  # red really did cross from the left to the right


# ----------------------------------------------------------------- states


def test_tentative_becomes_tracked_after_confirm_frames_consecutive_masks():
    manager = TrackManager(TrackerConfig(confirm_frames=3))
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    mask = disc((100, 100), 10)
    for _ in range(2):
        manager.update_from_masks("c", {track_id: (mask, 1.0)})
        assert state(manager, "c", track_id) is TrackState.TENTATIVE
    manager.update_from_masks("c", {track_id: (mask, 1.0)})
    assert state(manager, "c", track_id) is TrackState.TRACKED


def test_tentative_streak_restarts_after_a_miss():
    manager = TrackManager(TrackerConfig(confirm_frames=3))
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    mask = disc((100, 100), 10)
    for masks in [mask, mask, empty(), mask, mask]:
        manager.update_from_masks("c", {track_id: (masks, 1.0)})
    assert state(manager, "c", track_id) is TrackState.TENTATIVE
    manager.update_from_masks("c", {track_id: (mask, 1.0)})
    assert state(manager, "c", track_id) is TrackState.TRACKED


def test_tentative_unseen_for_more_than_confirm_frames_is_deleted():
    manager = TrackManager(TrackerConfig(confirm_frames=3, max_lost_s=50.0))
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    for _ in range(3):
        assert manager.update_from_masks("c", {track_id: (empty(), 1.0)}) == []
        assert state(manager, "c", track_id) is TrackState.TENTATIVE
    assert manager.update_from_masks("c", {}) == [track_id]
    assert manager.tracks("c") == []


def test_tracked_lost_tracked_then_deleted_max_lost_s_of_source_time_after_last_seen():
    manager = TrackManager(TrackerConfig(confirm_frames=1, max_lost_s=0.5))
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    mask = disc((100, 100), 10)
    manager.update_from_masks("c", {track_id: (mask, 0.8)}, stamp_ns=0)
    assert state(manager, "c", track_id) is TrackState.TRACKED
    manager.update_from_masks("c", {track_id: (empty(), 0.0)}, stamp_ns=SECOND // 10)
    assert state(manager, "c", track_id) is TrackState.LOST
    manager.update_from_masks("c", {track_id: (mask, 0.8)}, stamp_ns=2 * SECOND // 10)
    assert state(manager, "c", track_id) is TrackState.TRACKED
    for k in range(3, 8):  # up to 0.5 s after it was last seen, however many frames (a fast camera has more)
        assert manager.update_from_masks("c", {track_id: (empty(), 0.0)}, stamp_ns=k * SECOND // 10) == []
        [track] = manager.tracks("c")
        assert track.state is TrackState.LOST and track.last_seen_ns == 2 * SECOND // 10
        assert track.box is not None and (track.x, track.y) == pytest.approx((100, 100), abs=1), "kept while LOST"
    assert manager.update_from_masks("c", {track_id: (empty(), 0.0)}, stamp_ns=8 * SECOND // 10) == [track_id]
    assert manager.tracks("c") == []


def test_a_lost_track_outlives_many_frames_of_a_fast_camera_within_max_lost_s():
    manager = TrackManager(TrackerConfig(confirm_frames=1))  # 60 s by default
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    manager.update_from_masks("c", {track_id: (disc((100, 100), 10), 1.0)}, stamp_ns=0)
    for k in range(1, 1201):  # 40 s at 30 Hz: 1200 frames unseen
        assert manager.update_from_masks("c", {}, stamp_ns=k * SECOND // 30) == []
    assert state(manager, "c", track_id) is TrackState.LOST


def test_mask_smaller_than_min_pixels_counts_as_unseen():
    manager = TrackManager(TrackerConfig(confirm_frames=1, min_mask_pixels=4))
    [track_id] = tracks_at(manager, "c", (100, 100))
    speck = empty()
    speck[100, 100:103] = True  # 3 pixels
    manager.update_from_masks("c", {track_id: (speck, 1.0)})
    assert state(manager, "c", track_id) is TrackState.LOST


def test_object_back_within_max_lost_s_keeps_its_id_when_regrounded_near():
    manager = TrackManager(TrackerConfig(confirm_frames=1, max_lost_s=1.0))
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    manager.update_from_masks("c", {track_id: (disc((100, 100), 10), 1.0)}, stamp_ns=0)
    for k in range(1, 9):  # out of view
        manager.update_from_masks("c", {track_id: (empty(), 0.0)}, stamp_ns=k * SECOND // 10)
    assert manager.associate("c", [(106, 97, "obj")], SIZE, 9 * SECOND // 10).ids == [track_id]
    manager.update_from_points("c", {track_id: (106, 97)})
    assert state(manager, "c", track_id) is TrackState.TRACKED


def test_object_back_after_deletion_gets_a_new_id():
    manager = TrackManager(TrackerConfig(confirm_frames=1, max_lost_s=0.2))
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    manager.update_from_masks("c", {track_id: (disc((100, 100), 10), 1.0)}, stamp_ns=0)
    for k in range(1, 4):
        manager.update_from_masks("c", {}, stamp_ns=k * SECOND // 10)
    assert manager.associate("c", [(100, 100, "obj")], SIZE, 4 * SECOND // 10).ids != [track_id]


# ----------------------------------------------------------------- commands


def test_ids_are_unique_across_commands():
    manager = TrackManager()
    a = manager.associate("mugs", [(100, 100, "mug"), (200, 100, "mug")], SIZE, 0).ids
    b = manager.associate("bottles", [(100, 100, "bottle"), (200, 100, "bottle")], SIZE, 0).ids
    assert len(set(a + b)) == 4
    assert sorted(t.id for t in manager.tracks("mugs")) == sorted(a)
    assert sorted(t.id for t in manager.tracks("bottles")) == sorted(b)


def test_masks_of_one_command_do_not_touch_another_commands_tracks():
    manager = TrackManager(TrackerConfig(confirm_frames=1))
    [mug] = manager.associate("mugs", [(100, 100, "mug")], SIZE, 0).ids
    [bottle] = manager.associate("bottles", [(200, 100, "bottle")], SIZE, 0).ids
    manager.update_from_masks("mugs", {mug: (disc((100, 100), 10), 1.0), bottle: (disc((200, 100), 10), 1.0)})
    assert state(manager, "mugs", mug) is TrackState.TRACKED
    assert state(manager, "bottles", bottle) is TrackState.TENTATIVE


def test_remove_command_removes_only_its_tracks_and_ids_are_not_reused():
    manager = TrackManager()
    mugs = manager.associate("mugs", [(100, 100, "mug"), (200, 100, "mug")], SIZE, 0).ids
    [bottle] = manager.associate("bottles", [(50, 50, "bottle")], SIZE, 0).ids
    assert sorted(manager.remove_command("mugs")) == sorted(mugs)
    assert manager.tracks("mugs") == []
    assert [t.id for t in manager.tracks("bottles")] == [bottle]
    [again] = manager.associate("mugs", [(100, 100, "mug")], SIZE, 1).ids
    assert again not in [*mugs, bottle]


# ----------------------------------------------------------------- geometry


def test_track_point_lies_inside_a_ring_where_the_centroid_would_not():
    ring = disc((160, 120), 60) & ~disc((160, 120), 35)
    manager = TrackManager(TrackerConfig(confirm_frames=1))
    [track_id] = manager.associate("c", [(160, 35, "ring")], SIZE, 0).ids
    manager.update_from_masks("c", {track_id: (ring, 1.0)})
    [track] = manager.tracks("c")
    cy, cx = (float(v.mean()) for v in np.nonzero(ring))
    assert not ring[round(cy), round(cx)]  # the centroid misses the ring
    assert ring[round(track.y), round(track.x)]
    # well inside: at least a few pixels from the ring's edges (width 25)
    assert 35 + 5 < np.hypot(track.x - 160, track.y - 120) < 60 - 5


def test_interior_point_of_an_l_shape_is_on_the_shape():
    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:25] = True
    mask[75:90, 10:90] = True
    x, y = interior_point(mask, mask_box(mask))
    assert mask[round(y), round(x)]


def test_box_is_tight_and_stored_on_the_track():
    mask = np.zeros(SIZE, bool)
    mask[40:61, 100:131] = True  # rows 40..60, columns 100..130
    mask[70, 90] = True  # one stray pixel extends the box
    assert mask_box(mask) == (90.0, 40.0, 130.0, 70.0)
    manager = TrackManager(TrackerConfig(confirm_frames=1))
    [track_id] = manager.associate("c", [(110, 50, "obj")], SIZE, 0).ids
    manager.update_from_masks("c", {track_id: (mask, 0.7)})
    [track] = manager.tracks("c")
    assert track.box == (90.0, 40.0, 130.0, 70.0)
    assert track.score == pytest.approx(0.7)


def test_box_of_empty_mask_is_none():
    assert mask_box(np.zeros((5, 5), bool)) is None


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(bool, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_box_is_tight_and_interior_point_on_mask_for_any_mask(mask):
    box = mask_box(mask)
    if not mask.any():
        assert box is None
        return
    x0, y0, x1, y1 = (int(v) for v in box)
    rows, cols = np.nonzero(mask)
    assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max(), rows.max())
    x, y = interior_point(mask, box)
    assert mask[int(y), int(x)]


def test_a_mask_below_min_mask_score_leaves_the_track_lost_not_tracked():
    manager = TrackManager(TrackerConfig(confirm_frames=1, min_mask_score=0.5))
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    mask = disc((100, 100), 10)
    manager.update_from_masks("c", {track_id: (mask, 0.9)})
    assert state(manager, "c", track_id) is TrackState.TRACKED
    manager.update_from_masks("c", {track_id: (disc((200, 50), 10), 0.3)})  # a weak mask elsewhere
    [track] = manager.tracks("c")
    assert track.state is TrackState.LOST and track.mask is None
    assert (track.x, track.y) == pytest.approx((100, 100), abs=1), "the weak mask does not move the track"
    manager.update_from_masks("c", {track_id: (mask, 0.5)})
    assert state(manager, "c", track_id) is TrackState.TRACKED, "at the threshold counts as seen"


def test_a_late_grounding_matches_the_track_where_it_was_on_the_grounded_frame():
    manager = TrackManager(TrackerConfig(confirm_frames=1), sightings_s=5.0)
    [track_id] = manager.associate("c", [(40, 120, "obj")], SIZE, 0).ids
    for k in range(1, 31):  # the object moves 8 px a frame: 240 px in 30 frames
        manager.update_from_masks("c", {track_id: (disc((40 + 8 * k, 120), 10), 1.0)}, stamp_ns=k * 10**8)
    # A grounding of frame 10 (where the object was at x = 120) answers now (it is at x = 280).
    assert manager.associate("c", [(120, 120, "obj")], SIZE, 10 * 10**8).ids == [track_id]
    assert manager.associate("c", [(120, 120, "obj")], SIZE, 30 * 10**8).ids != [track_id], "not where it is now"


def test_a_grounding_of_a_frame_known_only_after_the_fact_matches_the_track_there():
    manager = TrackManager(TrackerConfig(confirm_frames=1), sightings_s=5.0)
    [track_id] = manager.associate("c", [(40, 120, "obj")], SIZE, 0).ids
    manager.sighted(track_id, 0, 40, 120)  # prompted on frame 0 with its point
    for k in range(21, 31):  # seen live from frame 21 on (catch-up carried it through 1-20)
        manager.update_from_masks("c", {track_id: (disc((40 + 8 * k, 120), 10), 1.0)}, stamp_ns=k * 10**8)
    manager.sighted_masks({track_id: (disc((120, 120), 10), 1.0), 999: (disc((5, 5), 3), 1.0)}, 10 * 10**8)
    assert manager.associate("c", [(120, 120, "obj")], SIZE, 10 * 10**8).ids == [track_id], "where catch-up had it"
    assert manager.associate("c", [(44, 120, "obj")], SIZE, 5 * 10**8).ids == [track_id], "near its prompted point"
    [track] = manager.tracks("c")
    assert [s[0] for s in track.sightings] == sorted(s[0] for s in track.sightings), "kept in frame order"
    assert (track.x, track.y) == pytest.approx((280, 120), abs=1), "learnt sightings do not move the track"
    assert manager.associate("c", [(200, 120, "obj")], SIZE, 10 * 10**8).ids != [track_id], "80 px from it then"


# ----------------------------------------------------------------- caps


def grid(count, step=12):
    """`count` points on a grid, `step` px apart: objects far enough apart never to match each other."""
    columns = SIZE[1] // step
    return [(step / 2 + step * (k % columns), step / 2 + step * (k // columns), "obj") for k in range(count)]


def test_a_grounding_starts_no_more_tracks_than_the_caps_and_counts_the_rest():
    manager = TrackManager(TrackerConfig(match_distance=0.01), max_objects_per_command=3, max_tracks=5)
    mugs = manager.associate("mugs", grid(10), SIZE, 0)
    assert len(manager.tracks("mugs")) == 3 and mugs.over_cap == 7
    assert mugs.ids[:3] == [t.id for t in manager.tracks("mugs")] and mugs.ids[3:] == [None] * 7, "the first kept"
    cups = manager.associate("cups", grid(10), SIZE, 0)
    assert len(manager.tracks("cups")) == 2 and cups.over_cap == 8, "5 on the camera in all"
    assert manager.associate("bowls", grid(4), SIZE, 0).ids == [None] * 4


def test_a_regrounding_of_known_objects_is_never_refused_by_a_full_cap():
    manager = TrackManager(TrackerConfig(match_distance=0.01), max_objects_per_command=3, max_tracks=3)
    known = manager.associate("c", grid(3), SIZE, 0).ids
    again = [(x + 1, y, label) for x, y, label in grid(3)]  # the same objects, moved a pixel, then two new ones
    association = manager.associate("c", [*grid(5)[3:], *again], SIZE, 1)
    assert association.ids == [None, None, *known] and association.over_cap == 2


def test_over_a_cap_the_best_scored_points_are_kept_else_the_first_ones():
    points = grid(4)
    scored = TrackManager(max_objects_per_command=2).associate("c", points, SIZE, 0, [0.2, 0.9, None, 0.5])
    assert [i is not None for i in scored.ids] == [False, True, True, False], "an unscored point ranks as 1"
    unscored = TrackManager(max_objects_per_command=2).associate("c", points, SIZE, 0, [None] * 4)
    assert [i is not None for i in unscored.ids] == [True, True, False, False]


# ----------------------------------------------------------------- no duplicates


def test_a_point_inside_a_taken_tracks_mask_is_that_object_again_whatever_match_distance():
    manager = TrackManager(TrackerConfig(confirm_frames=1, match_distance=0.0))
    [track_id] = manager.associate("c", [(100, 100, "obj")], SIZE, 0).ids
    manager.update_from_masks("c", {track_id: (disc((100, 100), 30), 1.0)})
    association = manager.associate("c", [(90, 100, "obj"), (110, 95, "obj"), (200, 200, "obj")], SIZE, 1)
    assert association.ids[:2] in ([track_id, None], [None, track_id]) and association.same_object == 1
    assert association.ids[2] not in (None, track_id), "a point outside every mask is a new object"


def test_a_track_on_the_same_pixels_as_an_older_one_of_its_command_is_merged_into_it():
    manager = TrackManager(TrackerConfig(confirm_frames=1, match_distance=0.0))
    older, younger = manager.associate("c", [(100, 100, "obj"), (104, 100, "obj")], SIZE, 0).ids
    [other] = manager.associate("other", [(100, 100, "obj")], SIZE, 0).ids
    beside = manager.associate("c", [(200, 100, "obj")], SIZE, 0).ids[0]
    masks = {older: (disc((100, 100), 20), 1.0), younger: (disc((103, 100), 20), 0.9)}
    masks |= {other: (disc((100, 100), 20), 1.0), beside: (disc((150, 100), 40), 1.0)}  # beside: overlapping a little
    assert manager.update_from_masks("c", masks) == [younger]
    assert sorted(t.id for t in manager.tracks("c")) == sorted([older, beside]) and manager.merged == 1
    assert manager.update_from_masks("other", masks) == [], "another command may track the same object"


def test_hostile_thresholds_keep_tracks_within_the_caps_and_leave_no_duplicates_once_restored():
    """Any peer can set these at run time: nothing matches, nothing is seen, nothing confirms or expires."""
    hostile = TrackerConfig(
        match_distance=0.0, min_mask_score=1.0, confirm_frames=1000, max_lost_s=3600.0, reid_min_similarity=0.0
    )
    manager = TrackManager(TrackerConfig(confirm_frames=1))
    objects = {}  # track id -> the disc it was started on

    def frame(k):
        centres = [(80 + 2 * k, 100), (240 - 2 * k, 160)]
        masks = {i: (disc(centres[n], 20), 0.9) for i, n in objects.items()}
        return centres, masks

    for k in range(60):
        centres, masks = frame(k)
        manager.update_from_masks("c", masks, stamp_ns=k)
        if k == 5:
            manager.config = hostile
        ids = manager.associate("c", [(x, y, "obj") for x, y in centres], SIZE, k).ids
        objects |= {i: n for n, i in enumerate(ids) if i is not None}
        assert len(manager.tracks("c")) <= 8
    manager.config = TrackerConfig()
    for k in range(60, 64):
        manager.update_from_masks("c", frame(k)[1], stamp_ns=k)
    tracked = [t for t in manager.tracks("c") if t.state is TrackState.TRACKED]
    assert sorted(objects[t.id] for t in tracked) == [0, 1], "one TRACKED track per object"


# ----------------------------------------------------------------- without masks


def test_without_masks_a_track_missing_from_groundings_is_lost_then_deleted():
    manager = TrackManager(TrackerConfig(confirm_frames=1, max_lost_s=2.0))
    kept, gone = tracks_at(manager, "c", (50, 50), (250, 180))
    for k in (1, 2):
        assert manager.update_from_points("c", {kept: (52, 50)}, stamp_ns=k * SECOND) == []
        assert state(manager, "c", gone) is TrackState.LOST
    assert manager.update_from_points("c", {kept: (54, 50)}, stamp_ns=3 * SECOND) == [gone]
    assert [t.id for t in manager.tracks("c")] == [kept]


# ----------------------------------------------------------------- LOST tracks and the caps


def test_lost_tracks_make_room_for_new_objects_the_longest_unseen_first_never_a_seen_one():
    """With 60 s lifetimes LOST tracks would fill the caps: a new object in view evicts the stalest."""
    manager = TrackManager(TrackerConfig(confirm_frames=1, match_distance=0.01), max_objects_per_command=3)
    objects = grid(3)
    ids = manager.associate("c", objects, SIZE, 0).ids
    masks = {i: (disc((x, y), 4), 1.0) for i, (x, y, _) in zip(ids, objects, strict=True)}
    manager.update_from_masks("c", masks, stamp_ns=0)
    manager.update_from_masks("c", {ids[2]: masks[ids[2]]}, stamp_ns=SECOND)  # 0 and 1 LOST since 0 s
    manager.update_from_masks("c", {ids[2]: masks[ids[2]]}, stamp_ns=2 * SECOND)
    manager.update_from_masks("c", {ids[0]: masks[ids[0]]}, stamp_ns=3 * SECOND)  # 0 seen again, 2 LOST since 2 s
    manager.update_from_masks("c", {}, stamp_ns=4 * SECOND)
    new = [(200, 200, "obj"), (260, 200, "obj"), (300, 220, "obj")]
    association = manager.associate("c", new, SIZE, 4 * SECOND)
    assert association.evicted == (ids[1], ids[2], ids[0]), "the longest unseen first"
    assert None not in association.ids and len(manager.tracks("c")) == 3

    manager.update_from_masks(
        "c", {i: (disc((x, y), 4), 1.0) for i, (x, y, _) in zip(association.ids, new, strict=True)}
    )
    full = manager.associate("c", [(100, 30, "obj")], SIZE, 5 * SECOND)
    assert full.evicted == () and full.ids == [None] and full.over_cap == 1, "seen tracks are never evicted"


def test_the_camera_cap_evicts_lost_tracks_of_other_commands():
    manager = TrackManager(TrackerConfig(confirm_frames=1, match_distance=0.01), max_tracks=2)
    [old] = manager.associate("mugs", [(50, 50, "mug")], SIZE, 0).ids
    manager.update_from_masks("mugs", {old: (disc((50, 50), 4), 1.0)}, stamp_ns=0)
    manager.update_from_masks("mugs", {}, stamp_ns=SECOND)
    [seen] = manager.associate("cups", [(150, 50, "cup")], SIZE, SECOND).ids
    association = manager.associate("cups", [(250, 50, "cup")], SIZE, 2 * SECOND)
    assert association.evicted == (old,) and association.ids[0] not in (None, old, seen)
    assert manager.tracks("mugs") == []


# ----------------------------------------------------------------- regions between objects


def test_a_new_track_whose_first_mask_holds_most_answer_points_is_a_region_not_an_object():
    """'all the grains of rice' with a stray point on the table: the table's mask holds the other grains' points."""
    manager = TrackManager(TrackerConfig(confirm_frames=1, match_distance=0.01), max_objects_per_command=3)
    grains = [(40.0, 40.0, "grain"), (120.0, 40.0, "grain"), *grid(40)[20:]]  # two grains, then a grid on the table
    ids = manager.associate("rice", grains, SIZE, 0).ids
    grain_ids, stray = ids[:2], ids[2]
    table = np.ones(SIZE, bool) & ~disc((40, 40), 6) & ~disc((120, 40), 6)
    masks = {grain_ids[0]: (disc((40, 40), 6), 1.0), grain_ids[1]: (disc((120, 40), 6), 1.0), stray: (table, 1.0)}
    assert manager.update_from_masks("rice", masks, stamp_ns=SECOND // 15) == [stray]
    assert manager.regions == 1 and {t.id for t in manager.tracks("rice")} == set(grain_ids)

    again = manager.associate("rice", grains, SIZE, SECOND)
    assert again.ids[:2] == grain_ids and again.ids[2:] == [None] * 20, "the grains keep their tracks, the table none"
    assert again.in_region == 20 and again.over_cap == 0
    assert None not in manager.associate("mugs", grains[:3], SIZE, SECOND).ids, "another command is not held back"
    later = manager.associate("rice", grains, SIZE, 7 * SECOND)
    assert later.in_region == 0 and later.ids[2] is not None, "the region is forgotten after REGION_KEPT_S"


def test_a_mask_holding_a_few_answer_points_stays_an_object():
    """Two cups touching: SAM2's mask of one may cover the other's point too; and a real object under a dense
    answer holds several of its points (but not most): neither is a region."""
    manager = TrackManager(TrackerConfig(confirm_frames=1, match_distance=0.01), max_objects_per_command=3)
    cups = [(100.0, 100.0, "cup"), (112.0, 100.0, "cup"), (200.0, 100.0, "cup")]
    ids = manager.associate("cups", cups, SIZE, 0).ids
    both = disc((106, 100), 14)
    masks = {ids[0]: (both, 1.0), ids[1]: (disc((112, 100), 5), 1.0), ids[2]: (disc((200, 100), 6), 1.0)}
    manager.update_from_masks("cups", masks, stamp_ns=SECOND // 15)
    assert manager.regions == 0 and ids[0] in {t.id for t in manager.tracks("cups")}

    dense = TrackManager(TrackerConfig(confirm_frames=1, match_distance=0.01), max_objects_per_command=3)
    answer = [(100.0, 100.0, "grain"), *grid(500)]  # a grid 12 px apart over the whole frame
    [big, *_] = dense.associate("rice", answer, SIZE, 0).ids
    held = np.count_nonzero(disc((100, 100), 40)[[round(y) for _, y, _ in answer], [round(x) for x, _, _ in answer]])
    assert 3 < held < len(answer) / 2
    dense.update_from_masks("rice", {big: (disc((100, 100), 40), 1.0)}, stamp_ns=SECOND // 15)
    assert dense.regions == 0 and big in {t.id for t in dense.tracks("rice")}, f"holds {held} of the points: an object"
