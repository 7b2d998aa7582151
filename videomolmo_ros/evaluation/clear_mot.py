"""Identity switches as CLEAR-MOT counts them, frame by frame (the rule of py-motmetrics), and IDF1.

A planner holds a track id; what it suffers from is that id changing object, or its object
reappearing under another id. CLEAR-MOT counts exactly that, and how it pairs tracks with
objects decides what counts: this follows py-motmetrics's MOTAccumulator, with mask IoU >= 0.5
as the distance gate, so a count here can be set beside a MOTChallenge-style number. Plain numpy.

Switches count events; IDF1 (identity F1, Ristani et al. 2016, as py-motmetrics computes it)
weighs them: each object is given the one track that covers it (IoU >= the gate) on the most
frames over the whole sequence, and IDF1 = 2 IDTP / (objects + tracks over all frames). An object
that comes back under a new id loses the frames after it; one that keeps its id loses none.
"""

import math
from collections import Counter
from collections.abc import Hashable, Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment

from videomolmo_ros.evaluation.mask_metrics import region_similarity

Masks = Mapping[Hashable, np.ndarray]  # object or track id -> bool mask (height x width)


class ClearMotMatcher:
    """Pairs each frame's objects with tracks and counts identity switches, as CLEAR-MOT does.

    On each frame:
    1. an object keeps the track it was last paired with (on any earlier frame) if that track is
       on this frame and still overlaps it at IoU >= `min_iou`, even if another track overlaps it
       more: a correct identity is never taken away by a better-fitting duplicate;
    2. the objects and tracks left are paired by the Hungarian algorithm on 1 - IoU over the pairs
       at IoU >= `min_iou` only: as many pairs as possible, then the least total distance;
    3. an object paired in step 2 with a track other than the one it was last paired with is a
       switch (however many frames it was unpaired in between).
    Give only what is on the frame: visible objects and non-empty tracks.
    """

    def __init__(self, min_iou: float = 0.5) -> None:
        self.min_iou = min_iou
        self.switches = 0
        self._last: dict[Hashable, Hashable] = {}  # object -> the track it was last paired with
        self._overlaps: Counter[tuple[Hashable, Hashable]] = Counter()  # (object, track) -> frames at IoU >= gate
        self._given = 0  # objects and tracks given, over all frames

    @property
    def idf1(self) -> float:
        """Identity F1 of the frames so far: 2 IDTP / (objects + tracks given); nan before any was given."""
        if not self._given:
            return math.nan
        objects = sorted({o for o, _ in self._overlaps}, key=str)
        tracks = sorted({t for _, t in self._overlaps}, key=str)
        frames = np.array([[self._overlaps[o, t] for t in tracks] for o in objects]).reshape(len(objects), len(tracks))
        rows, cols = linear_sum_assignment(frames, maximize=True)
        return 2 * float(frames[rows, cols].sum()) / self._given

    def update(self, objects: Masks, tracks: Masks) -> dict[Hashable, Hashable]:
        """Pair one frame's objects with its tracks; returns {object: track} and counts the switches."""
        object_ids, track_ids = list(objects), list(tracks)
        iou = np.array([[region_similarity(tracks[t], objects[o]) for t in track_ids] for o in object_ids])
        allowed = iou.reshape(len(object_ids), len(track_ids)) >= self.min_iou
        self._given += len(object_ids) + len(track_ids)
        self._overlaps.update((object_ids[row], track_ids[col]) for row, col in zip(*np.nonzero(allowed), strict=True))
        pairs = self._continued(object_ids, track_ids, allowed)
        allowed[list(pairs), :] = False
        allowed[:, list(pairs.values())] = False
        for row, col in _most_pairs_least_distance(1 - iou, allowed):
            self.switches += object_ids[row] in self._last and self._last[object_ids[row]] != track_ids[col]
            pairs[row] = col
        for row, col in pairs.items():
            self._last[object_ids[row]] = track_ids[col]
        return {object_ids[row]: track_ids[col] for row, col in pairs.items()}

    def _continued(self, object_ids: list, track_ids: list, allowed: np.ndarray) -> dict[int, int]:
        """Step 1: the objects (by row) whose last track is here and still overlaps, in object order."""
        pairs: dict[int, int] = {}
        for row, object_id in enumerate(object_ids):
            last = self._last.get(object_id)
            col = track_ids.index(last) if last in track_ids else None
            if col is not None and col not in pairs.values() and allowed[row, col]:
                pairs[row] = col
        return pairs


def _most_pairs_least_distance(distance: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """The Hungarian pairing over the allowed pairs only: a forbidden pair costs more than any set of
    allowed ones could save, so the most pairs are made first and the forbidden ones then dropped."""
    if not allowed.any():
        return []
    worst = np.abs(distance[allowed]).max() + 1
    rows, cols = linear_sum_assignment(np.where(allowed, distance, 2 * min(distance.shape) * worst + 1))
    return [(r, c) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]
