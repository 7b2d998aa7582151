"""scoring on cases small enough to compute by hand (no ROS)."""

import json

import numpy as np
import pytest
from box_masks import box

from videomolmo_ros.evaluation.mask_metrics import MaskScores
from videomolmo_ros.evaluation.metrics import CountScores, LatencyStats, PointingScores
from videomolmo_ros.evaluation.scoring import MasksAnswer, TargetsAnswer, score_outputs

MS = 1_000_000
STAMPS = [1_000 * MS, 1_100 * MS, 1_200 * MS]
SENT = {s: s + 5_000 * MS for s in STAMPS}  # the replay sent each frame 5 s after its recorded stamp


SQUARE = box(30, 30, 70, 70)
OTHER = box(0, 80, 20, 100)


def answer(stamp: int, masks: dict, latency_ms: int = 10, command: str = "cmd-1") -> MasksAnswer:
    return MasksAnswer(command, stamp, SENT[stamp] + latency_ms * MS, masks)


def test_perfect_masks_score_one():
    truth = {s: {1: SQUARE, 2: OTHER} for s in STAMPS}
    masks = [answer(s, {7: SQUARE, 8: OTHER}) for s in STAMPS]
    [score] = score_outputs(truth, masks, [], SENT, {"cmd-1": "the square"}).commands
    assert (score.query, score.frames_scored, score.frames_without_masks) == ("the square", 3, ())
    assert score.masks == score.union == MaskScores(1.0, 1.0)
    assert score.objects == {1: MaskScores(1.0, 1.0), 2: MaskScores(1.0, 1.0)}
    assert score.id_switches == 0
    assert score.pointing is None and score.frame_counts is None  # no targets: nothing to score


def test_a_shifted_mask_scores_its_iou_and_boundary_f():
    # 40 x 40 square shifted by 5 columns: J = 35 * 40 / (45 * 40) = 7/9, F = 0.5 (see test_metrics).
    shifted = box(30, 35, 70, 75)
    [score] = score_outputs({STAMPS[0]: {1: SQUARE}}, [answer(STAMPS[0], {4: shifted})], [], SENT).commands
    assert (score.masks.j, score.masks.f) == pytest.approx((7 / 9, 0.5))
    assert (score.union.j, score.union.f) == pytest.approx((7 / 9, 0.5))


def test_a_poor_mask_gets_partial_credit_but_no_identity():
    # IoU 1/7 (4 x 4 squares overlapping in 2 x 2): J counts it, as DAVIS does; below 0.5 the track
    # is not the object, so a later track for it is its first identity, not a switch.
    truth = {STAMPS[0]: {1: box(0, 0, 4, 4, 10)}, STAMPS[1]: {1: box(0, 0, 4, 4, 10)}}
    masks = [answer(STAMPS[0], {5: box(2, 2, 6, 6, 10)}), answer(STAMPS[1], {6: box(0, 0, 4, 4, 10)})]
    [score] = score_outputs(truth, masks, [], SENT).commands
    # One track per object for the sequence (DAVIS): track 6, perfect on frame 1, absent on frame 0.
    assert (score.object_tracks, score.objects[1].j) == ({1: 6}, 0.5)
    # Matched frame by frame, each frame takes the track there.
    assert score.objects_frame_matched[1].j == pytest.approx((1 / 7 + 1) / 2)
    assert score.id_switches == 0


def test_an_annotated_frame_without_masks_is_counted_not_scored():
    truth = {s: {1: SQUARE} for s in STAMPS}
    [score] = score_outputs(truth, [answer(STAMPS[0], {3: SQUARE}), answer(STAMPS[2], {3: SQUARE})], [], SENT).commands
    assert score.frames_scored == 2
    assert score.frames_without_masks == (STAMPS[1],)
    assert score.masks == MaskScores(1.0, 1.0)


def test_ground_truth_of_a_frame_never_played_is_reported_apart():
    truth = {STAMPS[0]: {1: SQUARE}, 5: {1: SQUARE}}  # stamp 5 ns: no frame the replay sent
    result = score_outputs(truth, [answer(STAMPS[0], {3: SQUARE})], [], SENT)
    assert (result.frames_annotated, result.annotations_not_played) == (2, (5,))
    assert result.commands[0].frames_without_masks == ()
    assert "1 annotated stamps match no frame played" in result.table()


def test_in_lockstep_an_annotated_frame_without_masks_scores_as_finding_nothing():
    truth = {s: {1: SQUARE} for s in STAMPS}
    masks = [answer(STAMPS[0], {3: SQUARE}), answer(STAMPS[2], {3: SQUARE})]
    [score] = score_outputs(truth, masks, [], SENT, unanswered_found_nothing=True).commands
    assert (score.frames_scored, score.frames_without_masks) == (3, (STAMPS[1],))
    assert score.union_frames == {
        STAMPS[0]: MaskScores(1.0, 1.0),
        STAMPS[1]: MaskScores(0.0, 0.0),
        STAMPS[2]: MaskScores(1.0, 1.0),
    }
    assert score.masks == score.union == MaskScores(2 / 3, 2 / 3)


def test_a_command_that_never_answered_scores_zero_in_lockstep():
    truth = {s: {1: SQUARE} for s in STAMPS[:2]}
    [score] = score_outputs(truth, [], [], SENT, {"cmd-1": "the square"}, unanswered_found_nothing=True).commands
    assert score.union == MaskScores(0.0, 0.0) and score.frames_without_masks == tuple(STAMPS[:2])
    assert score.pointing is None and score.frame_counts is None and score.masks_latency is None


def test_an_absent_object_and_an_empty_track_share_no_identity():
    # Their empty masks agree (IoU 1), which must not match the object to the empty track: when
    # it reappears under its old track, that is no switch.
    truth = {STAMPS[0]: {1: SQUARE}, STAMPS[1]: {1: np.zeros_like(SQUARE)}, STAMPS[2]: {1: SQUARE}}
    masks = [
        answer(STAMPS[0], {7: SQUARE}),
        answer(STAMPS[1], {8: np.zeros_like(SQUARE)}),
        answer(STAMPS[2], {7: SQUARE, 8: np.zeros_like(SQUARE)}),
    ]
    [score] = score_outputs(truth, masks, [], SENT).commands
    assert score.id_switches == 0
    assert score.objects == {1: MaskScores(1.0, 1.0)}


def test_ids_swapped_between_frames_are_two_switches():
    truth = {s: {1: SQUARE, 2: OTHER} for s in STAMPS[:2]}
    masks = [answer(STAMPS[0], {7: SQUARE, 8: OTHER}), answer(STAMPS[1], {8: SQUARE, 7: OTHER})]
    [score] = score_outputs(truth, masks, [], SENT).commands
    assert score.id_switches == 2
    assert score.masks_frame_matched == MaskScores(1.0, 1.0)  # the masks themselves are right


def test_a_swap_costs_j_and_f_as_in_davis_not_only_in_the_frame_matched_figure():
    # Two objects; the tracks swap at frame 2 of 4. DAVIS gives each object one track for the
    # sequence: right on half the frames. Matched frame by frame, the swap costs nothing.
    stamps = [s * 100 * MS for s in range(1, 5)]
    truth = {s: {1: SQUARE, 2: OTHER} for s in stamps}
    tracks = [{7: SQUARE, 8: OTHER}] * 2 + [{8: SQUARE, 7: OTHER}] * 2
    masks = [MasksAnswer("cmd-1", s, s, t) for s, t in zip(stamps, tracks, strict=True)]
    [score] = score_outputs(truth, masks, [], {s: s for s in stamps}).commands
    assert score.masks == score.objects[1] == score.objects[2] == MaskScores(0.5, 0.5)
    assert score.object_tracks in ({1: 7, 2: 8}, {1: 8, 2: 7})  # a tie: either is right half the time
    assert score.masks_frame_matched == MaskScores(1.0, 1.0)
    assert score.id_switches == 2
    assert score.idf1 == pytest.approx(0.5), "each object under its own id on half the frames"


def test_each_object_gets_the_track_that_scores_best_over_the_sequence():
    # Track 7 covers object 1 on all three frames but loosely; track 8 exactly, on one frame only.
    truth = {s: {1: SQUARE} for s in STAMPS}
    loose = box(30, 30, 70, 75)  # J = 40 / 45
    masks = [answer(STAMPS[0], {7: loose, 8: SQUARE}), answer(STAMPS[1], {7: loose}), answer(STAMPS[2], {7: loose})]
    [score] = score_outputs(truth, masks, [], SENT).commands
    assert score.object_tracks == {1: 7}
    assert score.objects[1].j == pytest.approx(40 / 45)


def test_an_object_left_without_a_track_scores_an_empty_prediction():
    truth = {s: {1: SQUARE, 2: OTHER} for s in STAMPS[:2]}
    masks = [answer(s, {7: SQUARE}) for s in STAMPS[:2]]
    [score] = score_outputs(truth, masks, [], SENT).commands
    assert score.object_tracks == {1: 7, 2: None}
    assert score.objects == {1: MaskScores(1.0, 1.0), 2: MaskScores(0.0, 0.0)}


def test_an_empty_answer_scores_zero_and_an_empty_frame_agrees_with_nothing():
    truth = {STAMPS[0]: {1: SQUARE}, STAMPS[1]: {}}
    masks = [answer(STAMPS[0], {}), answer(STAMPS[1], {})]
    [score] = score_outputs(truth, masks, [], SENT).commands
    # Missed on the first frame; not in the second frame's ground truth, it is absent there, and
    # finding nothing agrees (DAVIS scores every object on every frame).
    assert score.objects == score.objects_frame_matched == {1: MaskScores(0.5, 0.5)}
    assert score.union == MaskScores(0.5, 0.5)


def test_pointing_and_counting_on_the_frames_with_targets():
    truth = {STAMPS[0]: {1: SQUARE}, STAMPS[1]: {1: SQUARE, 2: OTHER}, STAMPS[2]: {1: SQUARE}}
    targets = [
        TargetsAnswer("cmd-1", STAMPS[0], SENT[STAMPS[0]] + 300 * MS, [(50, 50), (10, 10)]),  # a hit and a miss
        TargetsAnswer("cmd-1", STAMPS[1], SENT[STAMPS[1]] + 100 * MS, [(90, 10)]),  # on OTHER; SQUARE unfound
    ]
    [score] = score_outputs(truth, [], targets, SENT).commands
    # 3 true points (frame 0: SQUARE; frame 1: SQUARE, OTHER), 3 predictions, 2 on target.
    assert score.pointing_frames == 2
    assert score.pointing == pytest.approx(PointingScores(2 / 3, 2 / 3, 2 / 3))
    # Counts (truth, predicted): (1, 2) and (2, 1); both off by one, within "close".
    assert score.frame_count_pairs == ((1, 2), (2, 1))
    assert score.frame_counts == CountScores(exact=0.0, close=1.0)
    assert score.targets_latency == pytest.approx(LatencyStats(200.0, 280.0, 298.0, 300.0))
    assert score.frames_without_masks == tuple(STAMPS)  # a point-mode command: no masks at all
    assert score.masks is None and score.union is None


def test_two_targets_on_one_of_two_objects_find_only_that_one():
    # Each object is its own true point with its own mask: the target paired with OTHER's point
    # is on SQUARE, a miss (scored against the union of both, it would hit).
    truth = {STAMPS[0]: {1: SQUARE, 2: OTHER}}
    targets = [TargetsAnswer("cmd-1", STAMPS[0], SENT[STAMPS[0]], [(50, 50), (40, 40)])]
    [score] = score_outputs(truth, [], targets, SENT).commands
    assert score.pointing == pytest.approx(PointingScores(0.5, 0.5, 0.5))


def test_latency_runs_from_when_the_frame_was_sent():
    truth = {STAMPS[0]: {1: SQUARE}}
    masks = [answer(s, {3: SQUARE}, latency_ms=ms) for s, ms in zip(STAMPS, (10, 20, 30), strict=True)]
    [score] = score_outputs(truth, masks, [], SENT).commands
    assert score.masks_latency == pytest.approx(LatencyStats(20.0, 28.0, 29.8, 30.0))


def test_each_command_is_scored_on_its_own_and_the_first_answer_counts():
    truth = {STAMPS[0]: {1: SQUARE}}
    masks = [
        answer(STAMPS[0], {3: SQUARE}, command="a"),
        answer(STAMPS[0], {}, latency_ms=50, command="a"),  # a second, later answer about the same frame
        answer(STAMPS[0], {}, command="b"),
    ]
    result = score_outputs(truth, masks, [], SENT, {"b": "nothing", "c": "never answered"})
    by_id = {c.command_id: c for c in result.commands}
    assert list(by_id) == ["b", "c", "a"]
    assert by_id["a"].masks == MaskScores(1.0, 1.0)
    assert by_id["b"].masks == MaskScores(0.0, 0.0)
    assert by_id["c"].frames_without_masks == (STAMPS[0],)


def test_masks_of_another_size_than_the_ground_truth_are_an_error():
    with pytest.raises(ValueError, match="several sizes"):
        score_outputs({STAMPS[0]: {1: SQUARE}}, [answer(STAMPS[0], {3: box(0, 0, 5, 5, 50)})], [], SENT)


def test_the_report_is_json_and_the_table_has_a_row_per_command():
    truth = {s: {1: SQUARE} for s in STAMPS}
    targets = [TargetsAnswer("cmd-1", STAMPS[0], SENT[STAMPS[0]], [(50, 50)])]
    result = score_outputs(truth, [answer(STAMPS[0], {3: SQUARE})], targets, SENT, {"cmd-1": "the square"})
    [command] = json.loads(json.dumps(result.report()))["commands"]
    assert command["masks"] == {"j": 1.0, "f": 1.0, "jf": 1.0}
    assert command["objects"] == command["objects_frame_matched"] == {"1": {"j": 1.0, "f": 1.0, "jf": 1.0}}
    assert command["object_tracks"] == {"1": 3}
    assert command["union_frames"] == {str(STAMPS[0]): {"j": 1.0, "f": 1.0, "jf": 1.0}}
    assert command["frame_count_pairs"] == [[1, 1]]
    assert command["frames_without_masks"] == STAMPS[1:]
    assert command["pointing"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    header, row = result.table().splitlines()
    assert header.split()[:4] == ["command", "query", "frames", "missed"]
    assert row.split()[:6] == ["cmd-1", "the", "square", "1", "2", "1.000"]
