"""Evaluation metrics, defined as the references the node's models are scored with define them.

Scores computed here can be set beside the published numbers only if they follow the same
definitions: video pointing and counting as in Molmo2's evaluation code; J, F and J&F (DAVIS
2017) are in `mask_metrics`, identity switches (CLEAR-MOT) in `clear_mot`. The functions take
plain numbers and numpy masks, so a bag replay, a test or a notebook can use them without ROS.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


@dataclass(frozen=True)
class VideoPoint:
    """A point in a video: time from the start in seconds, pixel column and row."""

    t_s: float
    x: float
    y: float


@dataclass(frozen=True)
class TruthPoint:
    """A ground-truth point, and where a prediction paired with it must land to score.

    `masks` maps a time (s) to the mask (bool, height x width) of the point's object at that time:
    a paired prediction hits only at one of those times and on that mask, as in Molmo2's evaluation
    (its `gt_abs_masks`); `scoring` gives each point its own frame's mask. Times are compared
    exactly, so take both sides' times from the same frame stamps.
    """

    t_s: float
    x: float
    y: float
    masks: Mapping[float, np.ndarray]


@dataclass(frozen=True)
class PointingTruth:
    """Ground truth of one video pointing query: its points, and the video's duration and size."""

    points: Sequence[TruthPoint]
    duration_s: float
    width: int
    height: int


@dataclass(frozen=True)
class PointingScores:
    precision: float
    recall: float
    f1: float


def video_pointing_scores(predicted: Sequence[VideoPoint], truth: PointingTruth) -> PointingScores:
    """Precision, recall and F1 of predicted points, as Molmo2's video pointing evaluation scores them.

    Both sets are normalised (t by the duration, x and y by the image size, each to 0-100 rounded to
    0.1, as the reference does before pairing, so ties pair alike), paired by the Hungarian
    algorithm on Euclidean distance, and a pair is a true positive when the prediction is at a
    time of its paired point's `masks` and its pixel, rounded, is on that mask.
    Predicting nothing when there is nothing to find scores 1.
    """
    if not predicted and not truth.points:
        return PointingScores(1.0, 1.0, 1.0)
    if not predicted or not truth.points:
        return PointingScores(0.0, 0.0, 0.0)
    distance = cdist(_normalised(predicted, truth), _normalised(truth.points, truth))
    rows, cols = linear_sum_assignment(distance)
    hits = sum(_hits(predicted[r], truth.points[c]) for r, c in zip(rows, cols, strict=True))
    precision, recall = hits / len(predicted), hits / len(truth.points)
    return PointingScores(precision, recall, _f1(precision, recall))


def _normalised(points: Sequence[VideoPoint | TruthPoint], truth: PointingTruth) -> np.ndarray:
    scale = (truth.duration_s, truth.width, truth.height)
    return np.array([[round(v / s * 100, 1) for v, s in zip((p.t_s, p.x, p.y), scale, strict=True)] for p in points])


def _hits(prediction: VideoPoint, point: TruthPoint) -> bool:
    """Whether a prediction is at a time of the point's masks and on that mask (off the image: never).

    Pixels are Python-rounded (half to even) as the reference rounds them: x = 9.6 is column 10.
    """
    mask = point.masks.get(prediction.t_s)
    if mask is None:
        return False
    col, row = round(prediction.x), round(prediction.y)
    return 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and bool(mask[row, col])


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class CountScores:
    exact: float
    close: float


def count_accuracy(pairs: Sequence[tuple[int, int]]) -> CountScores:
    """Exact and "close" accuracy over (ground truth, predicted) counts, as in Molmo2.

    Close allows an error of 1 + floor(5 % of the true count), so miscounting a crowd by one or two
    is not scored like missing the only object. Molmo2 gives one pair per video query (the objects in
    the video, the count it answered); the accuracy is comparable to its number only over such pairs.
    """
    if not pairs:
        raise ValueError("count_accuracy needs at least one (ground truth, predicted) pair")
    exact = sum(gt == pred for gt, pred in pairs)
    close = sum(abs(gt - pred) <= 1 + math.floor(0.05 * gt) for gt, pred in pairs)
    return CountScores(exact / len(pairs), close / len(pairs))


@dataclass(frozen=True)
class LatencyStats:
    """Latency from an image's stamp to the output about it, in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def latency_stats(samples: Sequence[tuple[int, int]]) -> LatencyStats:
    """Percentiles (numpy's linear interpolation) of (stamp_ns, received_ns) pairs.

    Measured from the source image's stamp, not from when the node got it, so camera transport and
    queueing count: that is the age of the information a planner acts on.
    """
    if not samples:
        raise ValueError("latency_stats needs at least one (stamp_ns, received_ns) sample")
    latency_ms = np.array([received - stamp for stamp, received in samples], float) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(latency_ms, (50, 90, 99)))
    return LatencyStats(p50, p90, p99, float(latency_ms.max()))
