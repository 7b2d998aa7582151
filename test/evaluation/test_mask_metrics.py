"""mask_metrics: J, F and J&F as the DAVIS 2017 evaluation computes them, on cases small enough to compute by hand."""

import numpy as np
import pytest
from box_masks import box

from videomolmo_ros.evaluation.mask_metrics import (
    MaskScores,
    ObjectScores,
    SequenceObjectScores,
    boundary_f_measure,
    boundary_tolerance,
    mask_scores,
    mean_mask_scores,
    region_similarity,
    sequence_mask_scores,
)

EMPTY = box(0, 0, 0, 0)

# ---------------------------------------------------------------- masks: J


def test_j_of_overlapping_rectangles():
    # Two 4 x 4 squares overlapping in 2 x 2: 4 / (16 + 16 - 4) = 1/7
    assert region_similarity(box(0, 0, 4, 4, 10), box(2, 2, 6, 6, 10)) == pytest.approx(1 / 7)


def test_j_of_two_empty_masks_is_one():
    assert region_similarity(EMPTY, EMPTY) == 1.0


# ---------------------------------------------------------------- masks: F

SQUARE = box(30, 30, 70, 70)


def shifted_right(columns: int) -> np.ndarray:
    return box(30, 30 + columns, 70, 70 + columns)


def test_tolerance_rounds_up_as_the_davis_code_does():
    # 0.008 * hypot(100, 100) = 1.13 -> 2 pixels (rounding to nearest would give 1)
    assert boundary_tolerance((100, 100)) == 2


def test_f_of_identical_masks_is_one():
    assert boundary_f_measure(SQUARE, SQUARE) == 1.0


def test_f_of_a_shift_within_the_tolerance_is_one():
    assert boundary_f_measure(shifted_right(2), SQUARE) == 1.0


def test_f_of_a_shift_just_past_the_tolerance_is_below_one():
    assert boundary_f_measure(shifted_right(3), SQUARE) < 1.0


def test_f_of_a_shift_well_past_the_tolerance():
    # Both boundaries have 160 pixels (seg2bmap of a 40 x 40 square). Shifted by 5, the vertical
    # edges match only within 2 pixels of a corner and the horizontal ones lose their last 3 pixels:
    # 38 + 5 + 37 + 0 of the prediction's and 38 + 0 + 38 + 4 of the truth's match, P = R = 0.5.
    assert boundary_f_measure(shifted_right(5), SQUARE) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("predicted", "truth", "expected"), [(EMPTY, EMPTY, 1.0), (EMPTY, SQUARE, 0.0), (SQUARE, EMPTY, 0.0)]
)
def test_f_with_empty_masks(predicted, truth, expected):
    assert boundary_f_measure(predicted, truth) == expected


# ---------------------------------------------------------------- masks: J&F


def test_jf_is_the_mean_of_j_and_f():
    scores = mask_scores(shifted_right(5), SQUARE)
    # J = 35 * 40 / (45 * 40) = 7/9
    assert (scores.j, scores.f, scores.jf) == pytest.approx((7 / 9, 0.5, (7 / 9 + 0.5) / 2))


def test_sequence_scores_average_over_frames():
    # A perfect frame and a missed one.
    scores = sequence_mask_scores([SQUARE, EMPTY], [SQUARE, SQUARE])
    assert scores == MaskScores(j=0.5, f=0.5)
    assert scores.jf == 0.5


def test_mean_of_per_object_scores():
    assert mean_mask_scores([MaskScores(1.0, 0.5), MaskScores(0.5, 0.0)]) == MaskScores(j=0.75, f=0.25)


def test_mean_of_no_scores_is_an_error():
    with pytest.raises(ValueError):
        mean_mask_scores([])


def test_sequence_scores_need_one_prediction_per_frame():
    with pytest.raises(ValueError):
        sequence_mask_scores([SQUARE], [SQUARE, SQUARE])


# ---------------------------------------------------------------- shapes, tolerance in pixels, void


@pytest.mark.parametrize("score", [region_similarity, boundary_f_measure, mask_scores])
def test_masks_of_different_shapes_are_an_error_not_a_score(score):
    # A 1 x 5 prediction would broadcast over a 4 x 5 truth (IoU 1.0) if shapes were not checked.
    with pytest.raises(ValueError, match="different shapes"):
        score(np.ones((1, 5), bool), np.ones((4, 5), bool))


def test_a_void_mask_of_another_shape_is_an_error():
    with pytest.raises(ValueError, match="different shapes"):
        region_similarity(SQUARE, SQUARE, void=np.zeros((10, 10), bool))


def disk(radius: int, shift: int = 0, shape: tuple[int, int] = (480, 854)) -> np.ndarray:
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (x - shape[1] // 2 - shift) ** 2 + (y - shape[0] // 2) ** 2 <= radius**2


def test_a_bound_th_of_one_or_more_is_pixels_as_in_davis():
    assert boundary_tolerance((480, 854), 2) == 2
    assert boundary_tolerance((480, 854), 1.0) == 1
    assert boundary_tolerance((480, 854), 0.008) == 8  # ceil(0.008 * 979.7)


def test_a_fractional_pixel_tolerance_is_an_error():
    with pytest.raises(ValueError, match="number of pixels"):
        boundary_tolerance((480, 854), 1.5)


def test_f_with_a_one_pixel_tolerance_on_a_large_image():
    # A disk shifted by 3 pixels on a 480 x 854 frame: within the default 8 pixels, but not within
    # one (read as a fraction, 1.0 would be the whole diagonal and F 1.0).
    truth, shifted = disk(100), disk(100, shift=3)
    assert boundary_f_measure(shifted, truth) == 1.0
    one_pixel = boundary_f_measure(shifted, truth, bound_th=1)
    assert one_pixel < 0.5
    # 1 pixel is what the fraction 0.001 of this diagonal rounds up to.
    assert one_pixel == boundary_f_measure(shifted, truth, bound_th=0.001)


def test_void_pixels_are_left_out_of_j():
    # The prediction spills over the square only into void pixels: J counts neither.
    void = box(30, 70, 70, 80)
    spilled = box(30, 30, 70, 80)
    assert region_similarity(spilled, SQUARE) == pytest.approx(40 / 50)
    assert region_similarity(spilled, SQUARE, void) == 1.0


def test_void_pixels_are_cut_out_of_both_boundaries_for_f():
    void = box(30, 70, 70, 80)
    spilled = box(30, 30, 70, 80)
    assert boundary_f_measure(spilled, SQUARE) < 1.0
    assert mask_scores(spilled, SQUARE, void) == MaskScores(1.0, 1.0)


def test_void_everywhere_a_mask_is_leaves_nothing_to_disagree_on():
    assert mask_scores(SQUARE, EMPTY, void=SQUARE) == MaskScores(1.0, 1.0)


# ---------------------------------------------------------------- per-object scores of a sequence


def scored(frames: list[tuple[dict, dict]], objects: list, tracks: list) -> SequenceObjectScores:
    sequence = SequenceObjectScores(objects, tracks)
    for truth, predicted in frames:
        sequence.add_frame(truth, predicted)
    return sequence


def test_with_as_many_tracks_as_objects_each_object_gets_one_even_a_poor_one():
    # As in DAVIS: the object is absent on 3 of 4 frames, and the only track is elsewhere on all 4.
    # An empty prediction would score 0.75, but a track is there, so the object is scored by it.
    elsewhere = box(0, 0, 10, 10)
    frames = [({"a": SQUARE}, {7: elsewhere})] + [({}, {7: elsewhere})] * 3
    assert scored(frames, ["a"], [7]).assigned() == {"a": ObjectScores(7, MaskScores(0.0, 0.0))}


def test_objects_beyond_the_number_of_tracks_score_an_empty_prediction():
    frames = [({"a": SQUARE, "b": box(0, 0, 10, 10)}, {7: SQUARE}), ({"a": SQUARE}, {7: SQUARE})]
    assert scored(frames, ["a", "b"], [7]).assigned() == {
        "a": ObjectScores(7, MaskScores(1.0, 1.0)),
        "b": ObjectScores(None, MaskScores(0.5, 0.5)),  # found nothing where it was, agreed where it was not
    }


def test_frame_matched_scores_pair_each_frame_anew():
    swapped = [({"a": SQUARE, "b": EMPTY}, {7: SQUARE}), ({"a": EMPTY, "b": SQUARE}, {7: SQUARE})]
    sequence = scored(swapped, ["a", "b"], [7])
    assert sequence.frame_matched() == {"a": MaskScores(1.0, 1.0), "b": MaskScores(1.0, 1.0)}
    assert sequence.assigned()["a"].scores == MaskScores(0.5, 0.5)


def test_void_pixels_are_left_out_of_every_pair():
    void = box(30, 70, 70, 80)
    sequence = scored([], ["a"], [7])
    sequence.add_frame({"a": SQUARE}, {7: box(30, 30, 70, 80)}, void)
    assert sequence.assigned()["a"].scores == MaskScores(1.0, 1.0)


def test_an_undeclared_id_or_another_shape_is_an_error():
    with pytest.raises(ValueError, match="not declared"):
        scored([({"a": SQUARE}, {9: SQUARE})], ["a"], [7])
    with pytest.raises(ValueError, match="different shapes"):
        scored([({"a": SQUARE}, {7: np.ones((4, 4), bool)})], ["a"], [7])


def test_nothing_scored_gives_no_objects():
    assert scored([], ["a"], [7]).assigned() == {} == scored([], ["a"], [7]).frame_matched()
