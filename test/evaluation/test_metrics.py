"""metrics: every score checked against a case small enough to compute by hand."""

import numpy as np
import pytest
from box_masks import box

from videomolmo_ros.evaluation.metrics import (
    CountScores,
    LatencyStats,
    PointingScores,
    PointingTruth,
    TruthPoint,
    VideoPoint,
    count_accuracy,
    latency_stats,
    video_pointing_scores,
)

# ---------------------------------------------------------------- video pointing


def point(t_s: float, x: float, y: float, mask: np.ndarray) -> TruthPoint:
    """A true point whose prediction must be at its own time, on `mask` (Molmo2's evaluation data)."""
    return TruthPoint(t_s, x, y, {t_s: mask})


def truth(*points: TruthPoint, duration_s: float = 10.0) -> PointingTruth:
    return PointingTruth(points, duration_s, 100, 100)


# A 10 s video of 100 x 100 frames: one target at 2 s (square 10..29), another at 6 s (square 60..79).
TWO_TARGETS = truth(point(2.0, 20, 20, box(10, 10, 30, 30)), point(6.0, 70, 70, box(60, 60, 80, 80)))


def test_pointing_scores_a_hit_a_matched_miss_and_an_unmatched_prediction():
    predicted = [
        VideoPoint(2.0, 22, 21),  # pairs with the 2 s point, inside its mask: true positive
        VideoPoint(6.0, 90, 90),  # pairs with the 6 s point (normalised distance 0.28), off its mask
        VideoPoint(9.0, 5, 95),  # farther from both than the others: left unpaired
    ]
    # TP = 1: P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
    assert video_pointing_scores(predicted, TWO_TARGETS) == pytest.approx(PointingScores(1 / 3, 1 / 2, 0.4))


def test_pointing_checks_the_mask_of_the_paired_points_frame():
    # Only the 2 s point is asked for; the prediction is on where the target is at 6 s.
    assert video_pointing_scores([VideoPoint(2.0, 70, 70)], truth(TWO_TARGETS.points[0])).f1 == 0.0


def test_a_prediction_scores_only_at_its_paired_points_time():
    # One object, annotated at 0 s and 1 s in the same place; both predictions at 0 s, on it. Each
    # true point pairs with one prediction; the one paired with the 1 s point is at the wrong time.
    square = box(40, 40, 60, 60)
    predicted = [VideoPoint(0.0, 50, 50), VideoPoint(0.0, 51, 51)]
    scores = video_pointing_scores(predicted, truth(point(0.0, 50, 50, square), point(1.0, 50, 50, square)))
    assert scores == pytest.approx(PointingScores(0.5, 0.5, 0.5))


@pytest.mark.parametrize(
    ("x", "hit"),
    [(9.6, True), (10.4, True), (9.5, True), (10.5, True), (9.4, False), (10.6, False), (11.5, False)],
)
def test_the_predicted_pixel_is_rounded_half_to_even_as_the_reference_rounds(x, hit):
    # The mask is column 10 alone: x rounds onto it from 9.5 (-> 10) to 10.5 (-> 10, half to even).
    column = box(0, 10, 100, 11)
    assert video_pointing_scores([VideoPoint(0.0, x, 50)], truth(point(0.0, 10, 50, column))).f1 == float(hit)


def test_pointing_off_the_image_is_a_miss_not_an_error():
    whole = truth(point(0.0, 99, 99, box(0, 0, 100, 100)), duration_s=1.0)
    assert video_pointing_scores([VideoPoint(0.0, 100.5, 99)], whole).recall == 0.0


def test_pointing_at_nothing_when_there_is_nothing_scores_one():
    assert video_pointing_scores([], truth()) == PointingScores(1.0, 1.0, 1.0)


def test_pointing_at_nothing_when_there_are_targets_scores_zero():
    assert video_pointing_scores([], TWO_TARGETS) == PointingScores(0.0, 0.0, 0.0)


# ---------------------------------------------------------------- counting


def test_close_count_tolerance_at_twenty_is_two():
    # 1 + floor(0.05 * 20) = 2: 18 and 22 are close, 23 is not; only 20 is exact.
    pairs = [(20, 20), (20, 22), (20, 18), (20, 23)]
    assert count_accuracy(pairs) == CountScores(exact=0.25, close=0.75)


def test_close_count_tolerance_below_twenty_is_one():
    # 1 + floor(0.05 * 19) = 1
    assert count_accuracy([(19, 20), (19, 21)]) == CountScores(exact=0.0, close=0.5)


def test_count_accuracy_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        count_accuracy([])


# ---------------------------------------------------------------- latency


def test_latency_percentiles():
    # Latencies 10, 20, 30, 40, 50 ms; linear interpolation on ranks 0..4:
    # p50 at 2 -> 30, p90 at 3.6 -> 46, p99 at 3.96 -> 49.6.
    samples = [(k * 1_000_000_000, k * 1_000_000_000 + ms * 1_000_000) for k, ms in enumerate([30, 10, 50, 20, 40])]
    assert latency_stats(samples) == pytest.approx(LatencyStats(30.0, 46.0, 49.6, 50.0))


def test_latency_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        latency_stats([])
