"""clear_mot: identity switches and pairings equal py-motmetrics's CLEAR-MOT, on hand cases and random sequences."""

import motmetrics
import numpy as np
import pytest
from box_masks import box

from videomolmo_ros.evaluation.clear_mot import ClearMotMatcher
from videomolmo_ros.evaluation.mask_metrics import region_similarity

Frame = tuple[dict[int, np.ndarray], dict[int, np.ndarray]]  # (objects, tracks) by id


def cols(start: int, stop: int, width: int = 10) -> np.ndarray:
    """A 1 x width mask with columns start..stop-1 set: IoUs are ratios of lengths."""
    mask = np.zeros((1, width), bool)
    mask[0, start:stop] = True
    return mask


def ours(frames: list[Frame]) -> tuple[list[dict[int, int]], int]:
    matcher = ClearMotMatcher()
    pairs = [matcher.update(objects, tracks) for objects, tracks in frames]
    return pairs, matcher.switches


def reference(frames: list[Frame]) -> tuple[list[dict[int, int]], int]:
    """py-motmetrics on the same frames, distance 1 - IoU, pairs under IoU 0.5 forbidden."""
    accumulator = motmetrics.MOTAccumulator()
    for frame_id, (objects, tracks) in enumerate(frames):
        iou = np.array([[region_similarity(t, o) for t in tracks.values()] for o in objects.values()])
        iou = iou.reshape(len(objects), len(tracks))
        accumulator.update(list(objects), list(tracks), np.where(iou >= 0.5, 1 - iou, np.nan), frameid=frame_id)
    events = accumulator.mot_events
    pairs: list[dict[int, int]] = [{} for _ in frames]
    for (frame_id, _), event in events[events.Type.isin(["MATCH", "SWITCH"])].iterrows():
        pairs[frame_id][int(event.OId)] = int(event.HId)
    return pairs, int((events.Type == "SWITCH").sum())


def test_an_object_keeps_its_track_while_it_overlaps_enough_though_a_duplicate_overlaps_more():
    # Track 1 follows object 1; on frame 1 a duplicate track 2 covers it better (IoU 0.9 vs 0.6).
    # Pairing each frame afresh would hand the object to 2 and back: 2 switches.
    frames = [
        ({1: cols(0, 10)}, {1: cols(0, 10)}),
        ({1: cols(0, 10)}, {1: cols(0, 6), 2: cols(0, 9)}),
        ({1: cols(0, 10)}, {1: cols(0, 10)}),
    ]
    assert ours(frames) == ([{1: 1}, {1: 1}, {1: 1}], 0) == reference(frames)


def test_pairs_are_made_among_pairs_above_the_gate_only():
    # Object 2 is part of object 1 (a mug and its handle). On frame 0, IoU(1, track 7) = 1,
    # IoU(1, 8) = 2/3, IoU(2, 7) = 1/2, IoU(2, 8) = 1/3. The most IoU overall pairs 1-7 and 2-8,
    # and 2-8 is then dropped below the gate; CLEAR-MOT pairs among the allowed pairs only:
    # 1-8 and 2-7, which frame 1 confirms. Gating after the pairing would count object 1 switching.
    frames = [
        ({1: cols(1, 3), 2: cols(2, 3)}, {7: cols(1, 3), 8: cols(0, 3)}),
        ({1: cols(1, 3), 2: cols(2, 3)}, {7: cols(2, 3), 8: cols(1, 3)}),
    ]
    assert ours(frames) == ([{1: 8, 2: 7}, {1: 8, 2: 7}], 0) == reference(frames)


def test_a_swap_is_two_switches_and_a_return_after_a_gap_is_none():
    a, b = cols(0, 4), cols(5, 9)
    frames = [
        ({1: a, 2: b}, {7: a, 8: b}),
        ({1: a, 2: b}, {8: a, 7: b}),  # swapped: 2 switches
        ({2: b}, {7: b}),  # object 1 out of view
        ({1: a, 2: b}, {8: a, 7: b}),  # object 1 back on its last track 8: no switch
        ({1: a, 2: b}, {8: a, 9: b}),  # object 2 under a new id: 1 switch
    ]
    assert ours(frames)[1] == 3 == reference(frames)[1]


def random_sequence(rng: np.random.Generator, size: int = 12) -> list[Frame]:
    """Objects as boxes drifting on a small grid (they may overlap); tracks that follow them with
    jitter, swap ids, get lost and come back under new ids, duplicate one another, or cover nothing."""

    def random_box() -> np.ndarray:
        top, left, height, width = rng.integers([0, 0, 2, 2], [8, 8, 6, 6])
        return np.array([top, left, top + height, left + width])

    def jittered(corners: np.ndarray) -> np.ndarray:
        top, left, bottom, right = np.clip(corners + rng.integers(-1, 2, 4), 0, size)
        return box(top, left, max(bottom, top + 1), max(right, left + 1), size)

    count = int(rng.integers(1, 5))
    boxes = [random_box() for _ in range(count)]
    track_of = list(range(count))  # object -> the id of the track following it
    next_id = count
    frames = []
    for _ in range(int(rng.integers(2, 25))):
        boxes = [np.clip(b + rng.integers(-1, 2, 4), 0, size) for b in boxes]
        if rng.random() < 0.15 and count > 1:
            i, j = rng.choice(count, 2, replace=False)
            track_of[i], track_of[j] = track_of[j], track_of[i]
        if rng.random() < 0.1:
            track_of[int(rng.integers(count))], next_id = next_id, next_id + 1
        visible = [(k, box(*b, size)) for k, b in enumerate(boxes) if rng.random() < 0.85]
        objects = {k: mask for k, mask in visible if mask.any()}
        tracks = {100 + track_of[k]: jittered(b) for k, b in enumerate(boxes) if rng.random() < 0.85}
        for k in range(int(rng.integers(0, 3))):  # duplicates of a followed object, and strays
            tracks[200 + k] = jittered(boxes[int(rng.integers(count))] if rng.random() < 0.7 else random_box())
        ids = list(tracks)
        frames.append((objects, {ids[i]: tracks[ids[i]] for i in rng.permutation(len(ids))}))  # in no order
    return frames


@pytest.mark.parametrize("seed", range(3))
def test_pairings_and_switches_equal_py_motmetrics_on_random_sequences(seed):
    rng = np.random.default_rng(seed)
    sequences = [random_sequence(rng) for _ in range(100)]
    switched = 0
    for frames in sequences:
        expected = reference(frames)
        assert ours(frames) == expected
        switched += expected[1] > 0
    assert switched > 10  # the cases that matter are there: sequences with switches


def reference_idf1(frames: list[Frame]) -> float:
    accumulator = motmetrics.MOTAccumulator()
    for frame_id, (objects, tracks) in enumerate(frames):
        iou = np.array([[region_similarity(t, o) for t in tracks.values()] for o in objects.values()])
        iou = iou.reshape(len(objects), len(tracks))
        accumulator.update(list(objects), list(tracks), np.where(iou >= 0.5, 1 - iou, np.nan), frameid=frame_id)
    return float(motmetrics.metrics.create().compute(accumulator, metrics=["idf1"])["idf1"].iloc[0])


def idf1(frames: list[Frame]) -> float:
    matcher = ClearMotMatcher()
    for objects, tracks in frames:
        matcher.update(objects, tracks)
    return matcher.idf1


def test_idf1_weighs_how_long_an_object_is_under_another_id_where_switches_only_count():
    a = cols(0, 4)
    back_under_its_id = [({1: a}, {7: a})] * 5 + [({}, {})] * 2 + [({1: a}, {7: a})] * 5
    back_under_a_new_id = [({1: a}, {7: a})] * 5 + [({}, {})] * 2 + [({1: a}, {8: a})] * 5
    new_id_at_the_end = [({1: a}, {7: a})] * 9 + [({}, {})] * 2 + [({1: a}, {8: a})]
    assert idf1(back_under_its_id) == pytest.approx(1.0) == reference_idf1(back_under_its_id)
    assert idf1(back_under_a_new_id) == pytest.approx(0.5) == pytest.approx(reference_idf1(back_under_a_new_id))
    assert ours(back_under_a_new_id)[1] == ours(new_id_at_the_end)[1] == 1, "one switch each"
    assert idf1(new_id_at_the_end) == pytest.approx(0.9), "but 9 of 10 frames under the right id"


@pytest.mark.parametrize("seed", range(2))
def test_idf1_equals_py_motmetrics_on_random_sequences(seed):
    rng = np.random.default_rng(100 + seed)
    for frames in (random_sequence(rng) for _ in range(60)):
        expected = reference_idf1(frames)
        if np.isnan(expected):
            assert np.isnan(idf1(frames))
        else:
            assert idf1(frames) == pytest.approx(expected, abs=1e-9)
