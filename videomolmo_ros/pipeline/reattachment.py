"""Re-attachment: an object that comes back into view takes its LOST track's id by appearance, never another's.

A LOST track is matched by position only while it has no appearance yet (no image given, or never
seen cleanly) or while the grounded frame is not after its last sighting. Otherwise a point that
matched no live track is compared with its command's LOST tracks by appearance (the track's gallery
against a disc around the point, half the object's radius), one Hungarian assignment over (1 -
similarity) plus a little position (a tie-breaker): similarity decides, so two objects that come
back swapped keep their own ids. A pair needs `reid_min_similarity`; when the point looks as much
like another LOST track, or the track like another point (within `reid_min_margin`), it is
ambiguous: the point starts a new track rather than maybe take another object's id. A gallery
learns only from clean views: TRACKED, score >= max(min_mask_score, GALLERY_MIN_SCORE), no other
track's box overlapping (another command's track on the same object does not count), at most every
GALLERY_EVERY_S of source time.
"""

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from videomolmo_ros.io.mask_geometry import Box
from videomolmo_ros.pipeline.appearance import AppearanceDescriptor, Gallery, point_view

if TYPE_CHECKING:
    from videomolmo_ros.pipeline.track_manager import Track, TrackerConfig

GALLERY_MIN_SCORE = 0.5  # weaker masks do not teach a track's appearance
GALLERY_EVERY_S = 0.2  # source time between two views learnt by one track
SAME_OBJECT_BOX_IOU = 0.7  # boxes overlapping this much are one object (tracked by two commands), not an occluder
POSITION_WEIGHT = 0.05  # per image diagonal, beside 1 - appearance similarity: a tie-breaker only


def learn(
    tracked: "list[Track]",
    shown: "list[Track]",
    image: Any,
    stamp_ns: int | None,
    descriptor: AppearanceDescriptor,
    min_mask_score: float,
) -> int:
    """Add the current view (its core: appearance.point_view) of the TRACKED tracks seen cleanly (none of the
    `shown` ones' boxes over theirs) to their galleries; how many views described nothing (no pixels, not finite)."""
    unusable = 0
    every_ns = round(GALLERY_EVERY_S * 1e9)
    min_score = max(min_mask_score, GALLERY_MIN_SCORE)
    for track in tracked:
        due = stamp_ns is None or track.learnt_ns is None or stamp_ns - track.learnt_ns >= every_ns
        if track.mask is None or track.score < min_score or not due:
            continue
        if any(other is not track and _occludes(other.box, track.box) for other in shown):
            continue
        radius = math.sqrt(track.pixels / math.pi)
        view = point_view(descriptor, image, (track.x, track.y), max(2.0, radius / 2), track.mask)
        if view is None or not np.isfinite(view).all():
            unusable += 1
            continue
        track.gallery = track.gallery or Gallery(descriptor)
        track.gallery.add(view)
        track.learnt_ns, track.radius = stamp_ns, radius
    return unusable


def reattach(
    points: list[tuple[int, np.ndarray, Any]],
    returning: "list[Track]",
    diagonal: float,
    descriptor: AppearanceDescriptor,
    config: "TrackerConfig",
) -> tuple[dict[int, int], int, int]:
    """Points (index, xy, what the descriptor looked at on its frame: None for nothing) that are `returning` tracks
    come back -> their track ids; how many pairs were ambiguous; how many points described nothing (they take no
    id). Similarity decides, position (a small weight) breaks ties."""
    if not points or not returning:
        return {}, 0, 0
    similar = np.array([[_looks_like(descriptor, t, xy, image) for t in returning] for _, xy, image in points])
    unusable = int(np.isnan(similar).all(axis=1).sum())
    similar = np.nan_to_num(similar, nan=0.0)
    distance = distances(np.array([xy for _, xy, _ in points]), [(t.x, t.y) for t in returning]) / diagonal
    cost = np.where(similar >= config.reid_min_similarity, 1.0 - similar + POSITION_WEIGHT * distance, np.inf)
    reattached, ambiguous = {}, 0
    for row, column in assignment(cost):
        others = max(_runner_up(similar[row], column), _runner_up(similar[:, column], row))
        if similar[row, column] - others < config.reid_min_margin:
            ambiguous += 1
            continue
        reattached[points[row][0]] = returning[column].id
    return reattached, ambiguous, unusable


def _looks_like(descriptor: AppearanceDescriptor, track: "Track", point: np.ndarray, image: Any) -> float:
    """How much the disc around `point` (half the track's radius) looks like the track (NaN: nothing to compare)."""
    if image is None:
        return math.nan
    view = point_view(descriptor, image, (float(point[0]), float(point[1])), max(2.0, track.radius / 2))
    return math.nan if view is None or not np.isfinite(view).all() else track.gallery.similarity(view)


def assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """The cheapest (point, track) pairs of finite cost (Hungarian), among the points that can match at all."""
    rows = np.flatnonzero(np.isfinite(cost).any(axis=1))
    if rows.size == 0:
        return []
    candidates = cost[rows]
    chosen = linear_sum_assignment(np.where(np.isinf(candidates), 1e9, candidates))
    return [(int(rows[i]), int(j)) for i, j in zip(*chosen, strict=True) if np.isfinite(candidates[i, j])]


def distances(xy: np.ndarray, positions: Sequence[tuple[float, float]]) -> np.ndarray:
    """Points x positions: the distances between them, in pixels."""
    return np.hypot(*(xy[:, None, :] - np.asarray(positions, float)[None, :, :]).transpose(2, 0, 1))


def _runner_up(values: np.ndarray, best: int) -> float:
    """The highest of `values` but the one at `best` (0 when there is no other)."""
    return float(np.delete(values, best).max(initial=0.0))


def _occludes(other: Box, box: Box) -> bool:
    """Whether `other` overlaps `box` without being the same object (box IoU below SAME_OBJECT_BOX_IOU)."""
    width = min(other[2], box[2]) - max(other[0], box[0]) + 1
    height = min(other[3], box[3]) - max(other[1], box[1]) + 1
    if width <= 0 or height <= 0:
        return False
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1) + (other[2] - other[0] + 1) * (other[3] - other[1] + 1)
    return width * height / (area - width * height) < SAME_OBJECT_BOX_IOU
