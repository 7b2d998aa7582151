"""Persistent object identities across grounding queries and frames.

Each grounding adds points; each point is matched to one of its command's tracks or starts
a new one, so an object keeps its id while it moves, while the model is queried again, and
while it is briefly out of sight. States follow stated rules:

- TENTATIVE: new, until its mask is seen in `confirm_frames` consecutive frames; deleted if
  unseen for more than `confirm_frames` frames first (a false detection);
- TRACKED: its mask is seen in the current frame;
- LOST: not seen in the current frame; deleted after `max_lost_frames` frames unseen.

A mask counts as seen when it has `min_mask_pixels` pixels and its confidence is at least
`min_mask_score`: a propagator unsure of the object reports it LOST, not TRACKED somewhere wrong.

Matching a point to tracks: a point inside a track's current mask costs ~0, otherwise its
distance to the track's point as a fraction of the image diagonal; pairs above
`match_distance` are not allowed; the Hungarian algorithm picks the cheapest assignment.
Grounding answers on an older frame than the tracks are on, so a track is also matched where
it was on that frame (its sighting then: point and box, kept for `sightings_s`), and the
cheaper of the two counts: a fast object keeps its id however far it moved since. Sightings
learnt after the fact count too: the point a track was prompted with, and where catch-up carried
it on frames it was not yet published on (a grounding of such a frame must not start a second
track on the same object, whose mask would hide the first one's).
"""

import bisect
import itertools
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from scipy.optimize import linear_sum_assignment

from videomolmo_ros.io.mask_geometry import Box, box_crop, interior_point, mask_box


class TrackState(IntEnum):
    """Values match ObjectTrack.STATE_*."""

    TENTATIVE = 0
    TRACKED = 1
    LOST = 2


@dataclass(frozen=True)
class TrackerConfig:
    confirm_frames: int = 3
    max_lost_frames: int = 90
    match_distance: float = 0.15
    min_mask_pixels: int = 4
    min_mask_score: float = 0.0  # weaker masks count as not seen
    min_point_score: float = 0.0  # weaker grounded points (of a pointer that scores them) are dropped


@dataclass
class Track:
    id: int
    command_id: str
    label: str
    x: float
    y: float
    created_ns: int
    state: TrackState = TrackState.TENTATIVE
    box: Box | None = None
    score: float = 1.0
    streak: int = 0  # consecutive frames seen
    unseen: int = 0  # consecutive frames not seen
    mask: np.ndarray | None = field(default=None, repr=False)
    sightings: deque[tuple[int, float, float, Box | None]] = field(default_factory=deque, repr=False)  # stamp, x, y

    def seen_at(self, stamp_ns: int) -> tuple[float, float, Box | None] | None:
        """Where the track was on the frame stamped `stamp_ns` (its last sighting by then), if known."""
        before = [s for s in self.sightings if s[0] <= stamp_ns]
        return before[-1][1:] if before else None


_INSIDE_COST = 1e-3  # scales the distance of a point that falls inside a track's mask


class TrackManager:
    """Tracks of every command; ids are unique across commands for the node's lifetime.

    Managers of several cameras share one `ids` counter, so ids are unique across cameras too.
    """

    def __init__(self, config: TrackerConfig | None = None, ids: Iterator[int] | None = None, sightings_s: float = 5.0):
        self.config = config or TrackerConfig()
        self._tracks: dict[int, Track] = {}
        self._ids = ids if ids is not None else itertools.count(1)
        self._sightings_ns = round(sightings_s * 1e9)

    def tracks(self, command_id: str) -> list[Track]:
        return [t for t in self._tracks.values() if t.command_id == command_id]

    def associate(
        self,
        command_id: str,
        points: Sequence[tuple[float, float, str]],
        image_size: tuple[int, int],
        stamp_ns: int,
    ) -> list[int]:
        """The track id of each (x, y, label) point on the frame stamped `stamp_ns`; unmatched points start tracks."""
        candidates = self.tracks(command_id)
        diagonal = math.hypot(image_size[1], image_size[0])
        cost = np.full((len(points), len(candidates)), np.inf)
        for i, (x, y, _) in enumerate(points):
            for j, track in enumerate(candidates):
                now = self._cost(x, y, track.x, track.y, _inside(track.mask, x, y), diagonal)
                then = track.seen_at(stamp_ns)
                if then is not None:
                    now = min(now, self._cost(x, y, then[0], then[1], _inside_box(then[2], x, y), diagonal))
                cost[i, j] = now
        ids: list[int | None] = [None] * len(points)
        if candidates and points:
            rows, cols = linear_sum_assignment(np.where(np.isinf(cost), 1e9, cost))
            for i, j in zip(rows, cols, strict=True):
                if np.isfinite(cost[i, j]):
                    ids[i] = candidates[j].id
        for i, (x, y, label) in enumerate(points):
            if ids[i] is None:
                track = Track(next(self._ids), command_id, label, x, y, created_ns=stamp_ns)
                self._tracks[track.id] = track
                ids[i] = track.id
        return ids

    def _cost(self, x: float, y: float, track_x: float, track_y: float, inside: bool, diagonal: float) -> float:
        """Cost of matching a point to a track's position: ~0 inside its mask (or box), else its distance."""
        distance = math.hypot(x - track_x, y - track_y) / diagonal
        if inside:
            return distance * _INSIDE_COST
        return distance if distance <= self.config.match_distance else math.inf

    def update_from_points(
        self, ids: Sequence[int], points: Sequence[tuple[float, float, str]], stamp_ns: int | None = None
    ) -> None:
        """Without masks, a grounding is the only sighting: move the tracks to their points."""
        for track_id, (x, y, _) in zip(ids, points, strict=True):
            track = self._tracks[track_id]
            track.x, track.y = x, y
            self._seen(track, stamp_ns)

    def update_from_masks(
        self, command_id: str, masks: dict[int, tuple[np.ndarray, float]], stamp_ns: int | None = None
    ) -> list[int]:
        """Update a command's tracks from one frame's masks; return the ids deleted as lost too long.

        With `stamp_ns` (the frame's), each sighting is kept for late groundings' matching.
        """
        deleted = []
        for track in self.tracks(command_id):
            mask, score = masks.get(track.id, (None, 0.0))
            box = self._seen_box(mask, score)
            if box is None:
                track.mask = None
                track.streak = 0
                track.unseen += 1
                limit = self.config.max_lost_frames
                if track.state is TrackState.TENTATIVE:
                    limit = self.config.confirm_frames
                else:
                    track.state = TrackState.LOST
                if track.unseen > limit:
                    deleted.append(track.id)
                continue
            track.mask, track.box, track.score = mask, box, score
            track.x, track.y = interior_point(mask, box)
            self._seen(track, stamp_ns)
        for track_id in deleted:
            del self._tracks[track_id]
        return deleted

    def sighted(self, track_id: int, stamp_ns: int, x: float, y: float) -> None:
        """Where a track was on an earlier frame, learnt after the fact (the point it was prompted with)."""
        track = self._tracks.get(track_id)
        if track is not None:
            self._remember(track, (stamp_ns, x, y, None))

    def sighted_masks(self, masks: dict[int, tuple[np.ndarray, float]], stamp_ns: int) -> None:
        """Where tracks were on an earlier frame catch-up carried them through; their states are left as they are."""
        for track_id, (mask, score) in masks.items():
            track = self._tracks.get(track_id)
            box = None if track is None else self._seen_box(mask, score)
            if box is not None:
                self._remember(track, (stamp_ns, *interior_point(mask, box), box))

    def _seen_box(self, mask: np.ndarray | None, score: float) -> Box | None:
        """The box of a mask that counts as seen (enough pixels, confident enough), else None."""
        box = None if mask is None or score < self.config.min_mask_score else mask_box(mask)
        if box is not None and np.count_nonzero(box_crop(mask, box)) < self.config.min_mask_pixels:
            return None
        return box

    def _remember(self, track: Track, sighting: tuple[int, float, float, Box | None]) -> None:
        """Keep a sighting in stamp order (learnt ones come late), for `sightings_s` before the newest."""
        bisect.insort(track.sightings, sighting, key=lambda s: s[0])
        while track.sightings[0][0] < track.sightings[-1][0] - self._sightings_ns:
            track.sightings.popleft()

    def _seen(self, track: Track, stamp_ns: int | None) -> None:
        track.streak += 1
        track.unseen = 0
        if stamp_ns is not None:
            self._remember(track, (stamp_ns, track.x, track.y, track.box))
        if track.state is not TrackState.TENTATIVE or track.streak >= self.config.confirm_frames:
            track.state = TrackState.TRACKED

    def remove_command(self, command_id: str) -> list[int]:
        ids = [t.id for t in self.tracks(command_id)]
        for track_id in ids:
            del self._tracks[track_id]
        return ids

    def clear(self) -> None:
        self._tracks.clear()


def _inside_box(box: Box | None, x: float, y: float) -> bool:
    return box is not None and box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _inside(mask: np.ndarray | None, x: float, y: float) -> bool:
    if mask is None:
        return False
    row, col = round(y), round(x)
    return 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and bool(mask[row, col])
