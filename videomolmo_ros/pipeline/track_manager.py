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

Bounded whatever the thresholds (any peer can set them at run time):

- caps: a grounding starts at most as many tracks as `max_objects_per_command` (tracks of its
  command) and `max_tracks` (tracks of all commands on this camera: one propagator) leave room
  for; existing tracks are matched first, so re-grounding known objects is never refused; the
  new objects beyond are dropped, the best scored kept (a pointer that scores points) else the
  first in the answer;
- no duplicates: an unmatched point inside the current mask of one of its command's tracks is
  that object again, not a new one (whatever `match_distance` is); and when two tracks of one
  command have masks overlapping at IoU >= DUPLICATE_IOU on a frame, the younger is deleted
  (merged into the older): two prompts on one object make one track.
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

DUPLICATE_IOU = 0.7  # two tracks of one command whose masks overlap this much on a frame are one object


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
    pixels: int = 0  # of the current mask
    sightings: deque[tuple[int, float, float, Box | None]] = field(default_factory=deque, repr=False)  # stamp, x, y

    def seen_at(self, stamp_ns: int) -> tuple[float, float, Box | None] | None:
        """Where the track was on the frame stamped `stamp_ns` (its last sighting by then), if known."""
        index = bisect.bisect_right(self.sightings, stamp_ns, key=lambda s: s[0])
        return self.sightings[index - 1][1:] if index else None


@dataclass(frozen=True)
class Association:
    """What a grounding's points became: each one's track id, or None for a point that starts none, and why."""

    ids: list[int | None]
    same_object: int = 0  # inside the mask of a track another point of the grounding took: that object again
    over_cap: int = 0  # new objects past max_objects_per_command or max_tracks


_INSIDE_COST = 1e-3  # scales the distance of a point that falls inside a track's mask


class TrackManager:
    """Tracks of every command of one camera; ids are unique across commands for the node's lifetime.

    Managers of several cameras share one `ids` counter, so ids are unique across cameras too.
    `merged` counts the tracks deleted as duplicates of an older one.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        ids: Iterator[int] | None = None,
        sightings_s: float = 5.0,
        max_objects_per_command: int = 8,
        max_tracks: int = 32,
    ):
        self.config = config or TrackerConfig()
        self.max_objects_per_command = max_objects_per_command
        self.max_tracks = max_tracks
        self.merged = 0
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
        scores: Sequence[float | None] | None = None,
    ) -> Association:
        """The track of each (x, y, label) point on the frame stamped `stamp_ns`.

        Points are matched to the command's tracks first; an unmatched point inside one of their
        current masks is dropped (that object again); the others start tracks while the caps
        leave room, the best `scores` first (None: unscored, ranks as 1), else in answer order.
        """
        candidates = self.tracks(command_id)
        xy = np.asarray([(x, y) for x, y, _ in points], float).reshape(-1, 2)
        cost, inside = self._costs(xy, candidates, math.hypot(image_size[1], image_size[0]), stamp_ns)
        ids: list[int | None] = [None] * len(points)
        for i, j in _assignment(cost):
            ids[i] = candidates[j].id
        unmatched = [i for i, track_id in enumerate(ids) if track_id is None]
        fresh = [i for i in unmatched if not inside[i].any()]
        if scores is not None:
            fresh.sort(key=lambda i: -(1.0 if scores[i] is None else scores[i]))  # stable: ties keep answer order
        room = min(self.max_objects_per_command - len(candidates), self.max_tracks - len(self._tracks))
        started = sorted(fresh[: max(0, room)])
        for i in started:
            x, y, label = points[i]
            track = Track(next(self._ids), command_id, label, x, y, created_ns=stamp_ns)
            self._tracks[track.id] = track
            ids[i] = track.id
        return Association(ids, len(unmatched) - len(fresh), len(fresh) - len(started))

    def _costs(
        self, xy: np.ndarray, tracks: list[Track], diagonal: float, stamp_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points x tracks: the matching costs (inf: not allowed), and which points lie inside each current mask.

        A track costs the cheaper of where it is now and where it was on the grounded frame.
        """
        if not tracks:
            return np.zeros((len(xy), 0)), np.zeros((len(xy), 0), bool)
        inside = np.stack([_inside_mask(t.mask, xy) for t in tracks], axis=1)
        cost = self._cost(_distances(xy, [(t.x, t.y) for t in tracks]) / diagonal, inside)
        then = [(j, seen) for j, t in enumerate(tracks) if (seen := t.seen_at(stamp_ns)) is not None]
        if then:
            columns = [j for j, _ in then]
            in_box = np.stack([_inside_box(seen[2], xy) for _, seen in then], axis=1)
            earlier = self._cost(_distances(xy, [seen[:2] for _, seen in then]) / diagonal, in_box)
            cost[:, columns] = np.minimum(cost[:, columns], earlier)
        return cost, inside

    def _cost(self, distance: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """Points x positions: ~0 inside the mask (or box), else the distance while within match_distance."""
        allowed = inside | (distance <= self.config.match_distance)
        return np.where(allowed, np.where(inside, distance * _INSIDE_COST, distance), np.inf)

    def update_from_points(
        self, command_id: str, positions: dict[int, tuple[float, float]], stamp_ns: int | None = None
    ) -> list[int]:
        """Without masks, a grounding is the only sighting: move its tracks to their points (track id -> x, y);
        the command's other tracks count as unseen. Return the ids deleted as lost too long."""
        deleted = []
        for track in self.tracks(command_id):
            if track.id in positions:
                track.x, track.y = positions[track.id]
                self._seen(track, stamp_ns)
            elif self._unseen(track):
                deleted.append(track.id)
        for track_id in deleted:
            del self._tracks[track_id]
        return deleted

    def update_from_masks(
        self, command_id: str, masks: dict[int, tuple[np.ndarray, float]], stamp_ns: int | None = None
    ) -> list[int]:
        """Update a command's tracks from one frame's masks; return the ids deleted (lost too long, or duplicates).

        With `stamp_ns` (the frame's), each sighting is kept for late groundings' matching.
        """
        deleted = []
        for track in self.tracks(command_id):
            mask, score = masks.get(track.id, (None, 0.0))
            seen = self._seen_box(mask, score)
            if seen is None:
                if self._unseen(track):
                    deleted.append(track.id)
                continue
            track.mask, (track.box, track.pixels), track.score = mask, seen, score
            track.x, track.y = interior_point(mask, track.box)
            self._seen(track, stamp_ns)
        for track_id in deleted:
            del self._tracks[track_id]
        duplicates = self._duplicates(command_id)
        for track_id in duplicates:
            del self._tracks[track_id]
        self.merged += len(duplicates)
        return deleted + duplicates

    def _unseen(self, track: Track) -> bool:
        """A frame (or grounding) without the track; whether it is now to be deleted."""
        track.mask = None
        track.streak = 0
        track.unseen += 1
        limit = self.config.max_lost_frames
        if track.state is TrackState.TENTATIVE:
            limit = self.config.confirm_frames
        else:
            track.state = TrackState.LOST
        return track.unseen > limit

    def _duplicates(self, command_id: str) -> list[int]:
        """The command's tracks whose mask overlaps an older track's at IoU >= DUPLICATE_IOU (the older one stays)."""
        seen = sorted((t for t in self.tracks(command_id) if t.mask is not None), key=lambda t: t.id)
        duplicates: list[int] = []
        for k, track in enumerate(seen):
            if any(older.id not in duplicates and _iou(older, track) >= DUPLICATE_IOU for older in seen[:k]):
                duplicates.append(track.id)
        return duplicates

    def sighted(self, track_id: int, stamp_ns: int, x: float, y: float) -> None:
        """Where a track was on an earlier frame, learnt after the fact (the point it was prompted with)."""
        track = self._tracks.get(track_id)
        if track is not None:
            self._remember(track, (stamp_ns, x, y, None))

    def sighted_masks(self, masks: dict[int, tuple[np.ndarray, float]], stamp_ns: int) -> None:
        """Where tracks were on an earlier frame catch-up carried them through; their states are left as they are."""
        for track_id, (mask, score) in masks.items():
            track = self._tracks.get(track_id)
            seen = None if track is None else self._seen_box(mask, score)
            if seen is not None:
                self._remember(track, (stamp_ns, *interior_point(mask, seen[0]), seen[0]))

    def _seen_box(self, mask: np.ndarray | None, score: float) -> tuple[Box, int] | None:
        """The box and pixel count of a mask that counts as seen (enough pixels, confident enough), else None."""
        box = None if mask is None or score < self.config.min_mask_score else mask_box(mask)
        if box is None:
            return None
        pixels = np.count_nonzero(box_crop(mask, box))
        return (box, pixels) if pixels >= self.config.min_mask_pixels else None

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


def _assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """The cheapest (point, track) pairs of finite cost (Hungarian), among the points that can match at all."""
    rows = np.flatnonzero(np.isfinite(cost).any(axis=1))
    if rows.size == 0:
        return []
    candidates = cost[rows]
    chosen = linear_sum_assignment(np.where(np.isinf(candidates), 1e9, candidates))
    return [(int(rows[i]), int(j)) for i, j in zip(*chosen, strict=True) if np.isfinite(candidates[i, j])]


def _distances(xy: np.ndarray, positions: Sequence[tuple[float, float]]) -> np.ndarray:
    """Points x positions: the distances between them, in pixels."""
    return np.hypot(*(xy[:, None, :] - np.asarray(positions, float)[None, :, :]).transpose(2, 0, 1))


def _inside_box(box: Box | None, xy: np.ndarray) -> np.ndarray:
    if box is None:
        return np.zeros(len(xy), bool)
    x, y = xy.T
    return (box[0] <= x) & (x <= box[2]) & (box[1] <= y) & (y <= box[3])


def _inside_mask(mask: np.ndarray | None, xy: np.ndarray) -> np.ndarray:
    """Which points fall on a pixel of `mask` (rounded to the nearest pixel, as a point's pixel)."""
    inside = np.zeros(len(xy), bool)
    if mask is None:
        return inside
    cols, rows = np.rint(xy).astype(np.int64).T
    within = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    inside[within] = mask[rows[within], cols[within]]
    return inside


def _iou(a: Track, b: Track) -> float:
    """IoU of two tracks' current masks, counted only where their boxes overlap."""
    overlap = (max(a.box[0], b.box[0]), max(a.box[1], b.box[1]), min(a.box[2], b.box[2]), min(a.box[3], b.box[3]))
    if overlap[0] > overlap[2] or overlap[1] > overlap[3]:
        return 0.0
    shared = np.count_nonzero(box_crop(a.mask, overlap) & box_crop(b.mask, overlap))
    return shared / (a.pixels + b.pixels - shared)
