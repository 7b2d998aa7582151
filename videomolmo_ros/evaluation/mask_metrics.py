"""Mask scores as the DAVIS 2017 evaluation (davis2017-evaluation) computes them.

J is the region IoU, F the boundary F-measure, J&F their mean, each with DAVIS's optional void
pixels and its boundary tolerance (a fraction of the image diagonal, or whole pixels from 1 up).
A sequence's per-object scores give each object the one track that the Hungarian assignment on
mean J&F gives it for the whole sequence, as DAVIS scores unsupervised results, so a track
swapped between two objects costs what it costs. VideoMolmo and Molmo2 report these numbers for
tracking and segmentation. Plain numpy, no ROS.
"""

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

Masks = Mapping[Hashable, np.ndarray]  # object or track id -> bool mask (height x width)


@dataclass(frozen=True)
class MaskScores:
    j: float
    f: float

    @property
    def jf(self) -> float:
        """J&F, the mean of region and boundary scores that VideoMolmo and Molmo2 report."""
        return (self.j + self.f) / 2


def region_similarity(predicted: np.ndarray, truth: np.ndarray, void: np.ndarray | None = None) -> float:
    """DAVIS J: the IoU of two masks of one shape, `void` pixels left out; two empty masks agree (1)."""
    keep = _kept(predicted, truth, void)
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    union = np.count_nonzero((predicted | truth) & keep)
    return 1.0 if union == 0 else np.count_nonzero(predicted & truth & keep) / union


def boundary_tolerance(shape: tuple[int, ...], bound_th: float = 0.008) -> int:
    """DAVIS's boundary tolerance in pixels: `bound_th` pixels if it is 1 or more, else that
    fraction of the image diagonal, rounded up (a 100 x 100 image allows 2 pixels at 0.008)."""
    if bound_th >= 1:
        if not float(bound_th).is_integer():
            raise ValueError(f"bound_th of 1 or more is a number of pixels, and {bound_th} is not whole")
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def boundary_f_measure(
    predicted: np.ndarray, truth: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008
) -> float:
    """DAVIS F: the F-measure of boundary pixels matched within `boundary_tolerance`.

    A boundary pixel of one mask is matched when a boundary pixel of the other lies within the
    tolerance disk, so outlines off by a pixel or two are not penalised as wrong objects. `void`
    pixels are cut out of both masks first.
    """
    keep = _kept(predicted, truth, void)
    radius = boundary_tolerance(truth.shape, bound_th)
    return _f_measure(_Outline(predicted, keep, radius), _Outline(truth, keep, radius))


def mask_scores(predicted: np.ndarray, truth: np.ndarray, void: np.ndarray | None = None) -> MaskScores:
    """J and F of one frame."""
    return MaskScores(region_similarity(predicted, truth, void), boundary_f_measure(predicted, truth, void))


def sequence_mask_scores(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> MaskScores:
    """J and F averaged over the frames of a sequence, as DAVIS reports them per object."""
    if len(predicted) != len(truth) or not truth:
        raise ValueError(f"need one predicted mask per truth frame, got {len(predicted)} for {len(truth)}")
    return mean_mask_scores([mask_scores(p, t) for p, t in zip(predicted, truth, strict=True)])


def mean_mask_scores(scores: Sequence[MaskScores]) -> MaskScores:
    """The mean J and F of per-frame or per-object scores (DAVIS's J-Mean, F-Mean).

    Apart from `sequence_mask_scores` so a long video can be scored frame by frame without
    holding every mask, and per-object means can be averaged over objects.
    """
    if not scores:
        raise ValueError("mean_mask_scores needs at least one MaskScores")
    return MaskScores(float(np.mean([s.j for s in scores])), float(np.mean([s.f for s in scores])))


@dataclass(frozen=True)
class ObjectScores:
    """One object's mean J and F over a sequence, and the track they are of (None: no track was left
    for it, and it scores as predicted empty)."""

    track: Hashable | None
    scores: MaskScores


class SequenceObjectScores:
    """Every track's J and F against every object on every frame of a sequence, and the per-object
    scores made of them, the DAVIS way (`assigned`) and frame by frame (`frame_matched`).

    An object or a track missing from a frame has an empty mask there. Frames come one at a time and
    only their scores are kept, so a long sequence never holds its masks.
    """

    def __init__(self, object_ids: Sequence[Hashable], track_ids: Sequence[Hashable]) -> None:
        self._objects, self._tracks = list(object_ids), list(track_ids)
        # Per frame, (tracks + 1) x objects: the last row scores an empty prediction.
        self._j: list[np.ndarray] = []
        self._f: list[np.ndarray] = []

    def add_frame(self, objects: Masks, tracks: Masks, void: np.ndarray | None = None) -> None:
        unknown = set(objects) - set(self._objects) | set(tracks) - set(self._tracks)
        if unknown:
            raise ValueError(f"ids not declared for this sequence: {sorted(map(str, unknown))}")
        shapes = {m.shape for m in [*objects.values(), *tracks.values(), *([] if void is None else [void])]}
        if len(shapes) > 1:
            raise ValueError(f"masks of different shapes cannot be scored: {sorted(shapes)}")
        empty = np.zeros(shapes.pop() if shapes else (1, 1), bool)  # nothing at all: every pair agrees
        keep = _kept(empty, empty, void)
        radius = boundary_tolerance(empty.shape)
        truth = [objects.get(o, empty) for o in self._objects]
        predicted = [tracks.get(t, empty) for t in self._tracks] + [empty]
        outlines = {id(m): _Outline(m, keep, radius) for m in [*truth, *predicted]}  # the empty mask's once
        self._j.append(np.array([[region_similarity(p, t, void) for t in truth] for p in predicted]))
        self._f.append(np.array([[_f_measure(outlines[id(p)], outlines[id(t)]) for t in truth] for p in predicted]))

    def assigned(self) -> dict[Hashable, ObjectScores]:
        """DAVIS 2017's per-object scores: each object gets the one track for the whole sequence that
        the Hungarian assignment on mean J&F gives it (a track right on half the frames scores half);
        with fewer tracks than objects, those left over get an empty prediction."""
        if not self._j or not self._objects:
            return {}
        j, f = np.stack(self._j, axis=-1), np.stack(self._f, axis=-1)  # (tracks + 1) x objects x frames
        empty = len(self._tracks)
        rows = list(range(empty)) + [empty] * max(0, len(self._objects) - empty)
        j_mean, f_mean = j[rows].mean(axis=2), f[rows].mean(axis=2)
        picked, columns = linear_sum_assignment(-(j_mean + f_mean) / 2)
        by_column = {
            column: ObjectScores(
                self._tracks[rows[row]] if rows[row] < empty else None,
                MaskScores(float(j_mean[row, column]), float(f_mean[row, column])),
            )
            for row, column in zip(picked, columns, strict=True)
        }
        return {o: by_column[k] for k, o in enumerate(self._objects)}

    def frame_matched(self) -> dict[Hashable, MaskScores]:
        """Per-object scores with tracks paired to objects on each frame anew (Hungarian on IoU, any
        overlap pairs): how good the masks are whatever their ids, so a swap costs nothing. Not a
        reference's figure; `assigned` is DAVIS's."""
        if not self._j:
            return {}
        empty, columns = len(self._tracks), np.arange(len(self._objects))
        j_sum, f_sum = np.zeros(len(self._objects)), np.zeros(len(self._objects))
        for j, f in zip(self._j, self._f, strict=True):
            rows = np.full(len(self._objects), empty)
            for row, column in zip(*linear_sum_assignment(j[:empty], maximize=True), strict=True):
                if j[row, column] > 0:
                    rows[column] = row
            j_sum, f_sum = j_sum + j[rows, columns], f_sum + f[rows, columns]
        frames = len(self._j)
        return {o: MaskScores(float(j_sum[k] / frames), float(f_sum[k] / frames)) for k, o in enumerate(self._objects)}


def _kept(predicted: np.ndarray, truth: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    """The pixels scored: all but `void`; masks of different shapes cannot be compared."""
    shapes = {"predicted": predicted.shape, "truth": truth.shape}
    if void is not None:
        shapes["void"] = void.shape
    if len(set(shapes.values())) > 1:
        raise ValueError(f"masks of different shapes cannot be scored: {shapes}")
    return np.ones(truth.shape, bool) if void is None else ~void.astype(bool)


class _Outline:
    """A mask's 1-pixel boundary, and that boundary dilated by the tolerance disk.

    Computed once per mask, so scoring every track against every object dilates each mask once.
    """

    def __init__(self, mask: np.ndarray, keep: np.ndarray, radius: int) -> None:
        self.edge = _boundary(mask.astype(bool) & keep)
        self.pixels = np.count_nonzero(self.edge)
        self.dilated = _dilate(self.edge, radius) if self.pixels else self.edge


def _f_measure(predicted: _Outline, truth: _Outline) -> float:
    if predicted.pixels == 0 or truth.pixels == 0:
        return 1.0 if predicted.pixels == truth.pixels else 0.0
    precision = np.count_nonzero(predicted.edge & truth.dilated) / predicted.pixels
    recall = np.count_nonzero(truth.edge & predicted.dilated) / truth.pixels
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _boundary(seg: np.ndarray) -> np.ndarray:
    """DAVIS's 1-pixel boundary (seg2bmap): pixels that differ from their east, south or south-east
    neighbour; on the last row and column only the neighbour along the edge counts."""
    east, south, south_east = (np.zeros_like(seg) for _ in range(3))
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    edge = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    edge[-1, :] = seg[-1, :] ^ east[-1, :]
    edge[:, -1] = seg[:, -1] ^ south[:, -1]
    edge[-1, -1] = False
    return edge


def _dilate(edge: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by DAVIS's structuring element, skimage's disk: offsets with x^2 + y^2 <= r^2."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disk = (x * x + y * y <= radius * radius).astype(np.uint8)
    return cv2.dilate(edge.astype(np.uint8), disk).astype(bool)
