"""Persistent object identities across grounding queries and frames.

Each grounding adds points; each point is matched to one of its command's tracks or starts
a new one, so an object keeps its id while it moves, while the model is queried again, and
while it is briefly out of sight. States follow stated rules:

- TENTATIVE: new, until its mask is seen in `confirm_frames` consecutive frames; deleted if
  unseen for more than `confirm_frames` frames first (a false detection);
- TRACKED: its mask is seen in the current frame;
- LOST: not seen in the current frame; keeps its last box, position and appearance; deleted
  `max_lost_s` seconds of source time after it was last seen.

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

An object that comes back takes its LOST track's id by appearance, never by position alone
(re-attachment: the rules are in appearance.py).

Bounded whatever the thresholds (any peer can set them at run time):

- caps: a grounding starts at most as many tracks as `max_objects_per_command` (tracks of its
  command) and `max_tracks` (tracks of all commands on this camera: one propagator) leave room
  for; existing tracks are matched first, so re-grounding known objects is never refused; the
  new objects beyond are dropped, the best scored kept (a pointer that scores points) else the
  first in the answer; when the caps are full, LOST tracks make room, the longest unseen first
  (of the command for its cap, of any command for the camera's; `evicted`): a new object in view
  is worth more than one out of it;
- no duplicates: an unmatched point inside the current mask of one of its command's tracks is
  that object again, not a new one (whatever `match_distance` is); and when two tracks of one
  command have masks overlapping at IoU >= DUPLICATE_IOU on a frame, the younger is deleted
  (merged into the older): two prompts on one object make one track;
- no regions between objects: a new track whose first mask holds most of its grounding's points,
  and more than `max_objects_per_command`, is not one object but what lies between those the
  model named (a stray point's background, as SAM2 segments the table under it; a real object
  holds its own point, or the few of a dense answer that fall on it). It is deleted (`regions`)
  and its region remembered for a while (refused_regions.py): a later point of its command there
  starts nothing (`in_region`), so an answer of 1000 points never makes a background a "disc".
"""

import bisect
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from videomolmo_ros.io.mask_geometry import Box, box_crop, interior_point, mask_box, points_in_mask
from videomolmo_ros.pipeline.appearance import AppearanceDescriptor, ColourTextureDescriptor, Gallery
from videomolmo_ros.pipeline.reattachment import assignment, distances, learn, reattach
from videomolmo_ros.pipeline.refused_regions import RefusedRegions, holds_most

DUPLICATE_IOU = 0.7  # two tracks of one command whose masks overlap this much on a frame are one object


class TrackState(IntEnum):
    """Values match ObjectTrack.STATE_*."""

    TENTATIVE = 0
    TRACKED = 1
    LOST = 2


@dataclass(frozen=True)
class TrackerConfig:
    confirm_frames: int = 3
    max_lost_s: float = 60.0  # source time a LOST track is kept after it was last seen
    match_distance: float = 0.15
    min_mask_pixels: int = 4
    min_mask_score: float = 0.0  # weaker masks count as not seen
    min_point_score: float = 0.0  # weaker grounded points (of a pointer that scores them) are dropped
    reid_min_similarity: float = 0.6  # a returning object's least appearance similarity to take a LOST id
    reid_min_margin: float = 0.1  # ... and by how much it must beat the next candidate
    descriptor: str = "colour_texture"  # the appearance source (appearance.DESCRIPTORS)


@dataclass
class Track:
    id: int
    command_id: str
    label: str
    x: float
    y: float
    created_ns: int
    last_seen_ns: int = 0  # source stamp of the last frame (or grounding) the object was seen on
    state: TrackState = TrackState.TENTATIVE
    box: Box | None = None
    score: float = 1.0
    streak: int = 0  # consecutive frames seen
    unseen: int = 0  # consecutive frames not seen
    mask: np.ndarray | None = field(default=None, repr=False)
    pixels: int = 0  # of the current mask
    sightings: deque[tuple[int, float, float, Box | None]] = field(default_factory=deque, repr=False)  # stamp, x, y
    gallery: Gallery | None = field(default=None, repr=False)  # its appearance, once seen cleanly
    learnt_ns: int | None = None  # source stamp of the last view the gallery learnt
    radius: float = 0.0  # of a disc the size of its last clean mask, px
    answer: np.ndarray | None = field(default=None, repr=False)  # its grounding's points, until its first mask

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
    reattached: int = 0  # LOST tracks found again by appearance
    ambiguous: int = 0  # points that looked like more than one LOST track (or alike another point): new ids
    evicted: tuple[int, ...] = ()  # LOST tracks deleted to make room for new objects
    undescribed: int = 0  # points compared with LOST tracks whose view described nothing: they take no LOST id
    in_region: int = 0  # new objects in a region refused as no one object (between the objects named)


_INSIDE_COST = 1e-3  # scales the distance of a point that falls inside a track's mask


class TrackManager:
    """Tracks of every command of one camera; ids are unique across commands for the node's lifetime.

    Managers of several cameras share one `ids` counter, so ids are unique across cameras too.
    `merged` counts the tracks deleted as duplicates of an older one, `undescribed` the clean views
    whose descriptor described nothing (no pixels, not finite): not learnt, `regions` the new tracks
    deleted as a region between objects.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        ids: Iterator[int] | None = None,
        sightings_s: float = 5.0,
        max_objects_per_command: int = 8,
        max_tracks: int = 32,
        descriptor: AppearanceDescriptor | None = None,
    ):
        self.config = config or TrackerConfig()
        self.max_objects_per_command = max_objects_per_command
        self.max_tracks = max_tracks
        self.merged = 0
        self.undescribed = 0
        self.regions = 0
        self._tracks: dict[int, Track] = {}
        self._regions = RefusedRegions()
        self._ids = ids if ids is not None else itertools.count(1)
        self._sightings_ns = round(sightings_s * 1e9)
        self.descriptor = descriptor or ColourTextureDescriptor()

    def tracks(self, command_id: str) -> list[Track]:
        return [t for t in self._tracks.values() if t.command_id == command_id]

    def associate(
        self,
        command_id: str,
        points: Sequence[tuple[float, float, str]],
        image_size: tuple[int, int],
        stamp_ns: int,
        scores: Sequence[float | None] | None = None,
        image_of: Callable[[int], object | None] | None = None,
    ) -> Association:
        """The track of each (x, y, label) point on the frame stamped `stamp_ns`.

        Points are matched to the command's tracks by position first, then the rest to its LOST
        tracks by appearance (`image_of(i)`: what the descriptor looked at on point i's frame, None
        for nothing); an unmatched point inside one of the current masks is dropped (that object
        again); the others start tracks while the caps leave room (LOST tracks evicted for it), the
        best `scores` first (None: unscored, ranks as 1), else in answer order.
        """
        candidates = self.tracks(command_id)
        returning = [t for t in candidates if image_of is not None and self._returning(t, stamp_ns)]
        placed = [t for t in candidates if t not in returning]
        xy = np.asarray([(x, y) for x, y, _ in points], float).reshape(-1, 2)
        diagonal = math.hypot(image_size[1], image_size[0])
        cost, inside = self._costs(xy, placed, diagonal, stamp_ns)
        ids: list[int | None] = [None] * len(points)
        for i, j in assignment(cost):
            ids[i] = placed[j].id
        unmatched = [i for i, track_id in enumerate(ids) if track_id is None]
        fresh = [i for i in unmatched if not inside[i].any()]
        looked_at = [(i, xy[i], image_of(i)) for i in fresh] if returning else []
        reattached, ambiguous, undescribed = reattach(looked_at, returning, diagonal, self.descriptor, self.config)
        for i, track_id in reattached.items():
            ids[i] = track_id
        fresh = [i for i in fresh if i not in reattached]
        in_region = self._regions.holding(command_id, xy, fresh, stamp_ns)
        fresh = [i for i in fresh if i not in in_region]
        if scores is not None:
            fresh.sort(key=lambda i: -(1.0 if scores[i] is None else scores[i]))  # stable: ties keep answer order
        evicted = self._make_room(command_id, len(fresh), keep=set(reattached.values()))
        started = sorted(fresh[: max(0, self._room(command_id))])
        for i in started:
            x, y, label = points[i]
            track = Track(next(self._ids), command_id, label, x, y, created_ns=stamp_ns, last_seen_ns=stamp_ns)
            track.answer = xy
            self._tracks[track.id] = track
            ids[i] = track.id
        same_object = len(unmatched) - len(fresh) - len(reattached) - len(in_region)
        over_cap = len(fresh) - len(started)
        return Association(
            ids, same_object, over_cap, len(reattached), ambiguous, tuple(evicted), undescribed, len(in_region)
        )

    def _returning(self, track: Track, stamp_ns: int) -> bool:
        """A LOST track with an appearance, grounded on a frame after it was last seen: matched by appearance."""
        return track.state is TrackState.LOST and track.gallery is not None and stamp_ns > track.last_seen_ns

    def _room(self, command_id: str) -> int:
        """New tracks the caps leave room for on the command."""
        return min(self.max_objects_per_command - len(self.tracks(command_id)), self.max_tracks - len(self._tracks))

    def _make_room(self, command_id: str, wanted: int, keep: set[int]) -> list[int]:
        """Delete LOST tracks (not in `keep`), the longest unseen first, until `wanted` new tracks fit; their ids."""
        evicted = []
        while self._room(command_id) < wanted:
            short_on_command = self.max_objects_per_command - len(self.tracks(command_id)) < wanted
            pool = [
                t
                for t in (self.tracks(command_id) if short_on_command else self._tracks.values())
                if t.state is TrackState.LOST and t.id not in keep
            ]
            if not pool:
                break
            oldest = min(pool, key=lambda t: (t.last_seen_ns, t.id))
            del self._tracks[oldest.id]
            evicted.append(oldest.id)
        return evicted

    def _costs(
        self, xy: np.ndarray, tracks: list[Track], diagonal: float, stamp_ns: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points x tracks: the matching costs (inf: not allowed), and which points lie inside each current mask.

        A track costs the cheaper of where it is now and where it was on the grounded frame.
        """
        if not tracks:
            return np.zeros((len(xy), 0)), np.zeros((len(xy), 0), bool)
        inside = np.stack([points_in_mask(t.mask, xy) for t in tracks], axis=1)
        cost = self._cost(distances(xy, [(t.x, t.y) for t in tracks]) / diagonal, inside)
        then = [(j, seen) for j, t in enumerate(tracks) if (seen := t.seen_at(stamp_ns)) is not None]
        if then:
            columns = [j for j, _ in then]
            in_box = np.stack([_inside_box(seen[2], xy) for _, seen in then], axis=1)
            earlier = self._cost(distances(xy, [seen[:2] for _, seen in then]) / diagonal, in_box)
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
            elif self._unseen(track, stamp_ns):
                deleted.append(track.id)
        for track_id in deleted:
            del self._tracks[track_id]
        return deleted

    def update_from_masks(
        self,
        command_id: str,
        masks: dict[int, tuple[np.ndarray, float]],
        stamp_ns: int | None = None,
        image: object | None = None,
    ) -> list[int]:
        """Update a command's tracks from one frame's masks; return the ids deleted (lost too long, or duplicates).

        With `stamp_ns` (the frame's), each sighting is kept for late groundings' matching, and LOST
        tracks expire; with the frame's `image` (what the descriptor looked at), tracks seen cleanly learn what
        they look like.
        """
        deleted = []
        for track in self.tracks(command_id):
            mask, score = masks.get(track.id, (None, 0.0))
            seen = self._seen_box(mask, score)
            if seen is None:
                if self._unseen(track, stamp_ns):
                    deleted.append(track.id)
                continue
            track.mask, (track.box, track.pixels), track.score = mask, seen, score
            answer, track.answer = track.answer, None  # judged on its first mask only
            if answer is not None and holds_most(mask, answer, self.max_objects_per_command):
                self._regions.add(command_id, stamp_ns if stamp_ns is not None else track.last_seen_ns, track.box, mask)
                deleted.append(track.id)
                self.regions += 1
                continue
            track.x, track.y = interior_point(mask, track.box)
            self._seen(track, stamp_ns)
        for track_id in deleted:
            del self._tracks[track_id]
        duplicates = self._duplicates(command_id)
        for track_id in duplicates:
            del self._tracks[track_id]
        self.merged += len(duplicates)
        if image is not None:
            shown = [t for t in self._tracks.values() if t.mask is not None]
            tracked = [t for t in self.tracks(command_id) if t.state is TrackState.TRACKED]
            self.undescribed += learn(tracked, shown, image, stamp_ns, self.descriptor, self.config.min_mask_score)
        return deleted + duplicates

    def _unseen(self, track: Track, stamp_ns: int | None) -> bool:
        """A frame (or grounding) without the track; whether it is now to be deleted.

        TENTATIVE: after more than `confirm_frames` such frames; LOST: `max_lost_s` after it was last seen.
        """
        track.mask = None
        track.streak = 0
        track.unseen += 1
        if track.state is TrackState.TENTATIVE:
            return track.unseen > self.config.confirm_frames
        track.state = TrackState.LOST
        return stamp_ns is not None and stamp_ns - track.last_seen_ns > self.config.max_lost_s * 1e9

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
            track.last_seen_ns = stamp_ns
            self._remember(track, (stamp_ns, track.x, track.y, track.box))
        if track.state is not TrackState.TENTATIVE or track.streak >= self.config.confirm_frames:
            track.state = TrackState.TRACKED

    def remove_command(self, command_id: str) -> list[int]:
        ids = [t.id for t in self.tracks(command_id)]
        for track_id in ids:
            del self._tracks[track_id]
        self._regions.forget(command_id)
        return ids

    def clear(self) -> None:
        self._tracks.clear()
        self._regions.clear()


def _inside_box(box: Box | None, xy: np.ndarray) -> np.ndarray:
    if box is None:
        return np.zeros(len(xy), bool)
    x, y = xy.T
    return (box[0] <= x) & (x <= box[2]) & (box[1] <= y) & (y <= box[3])


def _iou(a: Track, b: Track) -> float:
    """IoU of two tracks' current masks, counted only where their boxes overlap."""
    overlap = (max(a.box[0], b.box[0]), max(a.box[1], b.box[1]), min(a.box[2], b.box[2]), min(a.box[3], b.box[3]))
    if overlap[0] > overlap[2] or overlap[1] > overlap[3]:
        return 0.0
    shared = np.count_nonzero(box_crop(a.mask, overlap) & box_crop(b.mask, overlap))
    return shared / (a.pixels + b.pixels - shared)
