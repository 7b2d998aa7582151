"""Scores what the perception pipeline answered against ground-truth masks.

One definition for both ways of running it: replay_bag (a bag's ground-truth topic, the node's
outputs) and evaluate_dataset (a dataset's annotations, the pipeline's outputs). No ROS: each
turns its run into the plain structures here, so tests and notebooks can score hand-made cases.
Every number comes from `metrics`, `mask_metrics` and `clear_mot`, which follow the references the
papers score with (Molmo2's evaluation, DAVIS 2017, CLEAR-MOT); what no reference defines is named
apart (`masks_frame_matched`, counts per frame). Each command is scored on its own, against every
ground-truth object.
"""

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from videomolmo_ros.evaluation.clear_mot import ClearMotMatcher
from videomolmo_ros.evaluation.mask_metrics import MaskScores, SequenceObjectScores, mask_scores, mean_mask_scores
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
from videomolmo_ros.io.mask_geometry import interior_point, mask_box

Masks = Mapping[Hashable, np.ndarray]  # object or track id -> bool mask (height x width)

# missed: annotated frames without masks; J, F, J&F: per object, one track each (DAVIS); any-id: J&F with
# tracks matched to objects frame by frame; union: its J&F; count/fr: exact count accuracy per frame;
# ms: mask latency.
TABLE_HEADER = (
    "command",
    "query",
    "frames",
    "missed",
    "J",
    "F",
    "J&F",
    "any-id",
    "union",
    "ID sw",
    "IDF1",
    "point F1",
    "count/fr",
    "ms p50/90",
)


@dataclass(frozen=True)
class MasksAnswer:
    """One `masks` output: the command's track masks on the source frame `stamp_ns`."""

    command_id: str
    stamp_ns: int
    receive_ns: int
    masks: Masks


@dataclass(frozen=True)
class TargetsAnswer:
    """One `targets` output: the (x, y) pixels the model pointed at on the source frame `stamp_ns`."""

    command_id: str
    stamp_ns: int
    receive_ns: int
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class CommandScore:
    """One command's scores; None where it gave nothing to score (no masks, no targets)."""

    command_id: str
    query: str
    frames_scored: int  # annotated frames scored for masks: those answered (or all, see score_outputs)
    frames_without_masks: tuple[int, ...]  # stamps of the annotated frames it did not answer
    masks: MaskScores | None  # per object (DAVIS: one track for the sequence), averaged over objects
    objects: dict[Hashable, MaskScores]
    object_tracks: dict[Hashable, Hashable | None]  # the track each object's scores are of (None: none left)
    masks_frame_matched: MaskScores | None  # as `masks`, tracks matched to objects on each frame anew
    objects_frame_matched: dict[Hashable, MaskScores]
    union: MaskScores | None  # all tracks' masks against all objects', per frame
    union_frames: dict[int, MaskScores]  # the union's scores on each frame scored, by stamp
    id_switches: int
    idf1: float | None  # identity F1 (clear_mot); None: no object or track on any frame
    pointing_frames: int  # annotated frames the model placed targets on
    pointing: PointingScores | None
    # (objects visible, targets placed) per frame pointed at, and their accuracy: per frame, where
    # Molmo2 scores one count per video query, so not comparable to its count accuracy.
    frame_count_pairs: tuple[tuple[int, int], ...]
    frame_counts: CountScores | None
    masks_latency: LatencyStats | None
    targets_latency: LatencyStats | None

    def report(self) -> dict:
        report = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        for name in ("objects", "object_tracks", "objects_frame_matched", "union_frames"):  # JSON keys: strings
            report[name] = {str(k): _jsonable(v) for k, v in getattr(self, name).items()}
        return report


@dataclass(frozen=True)
class OutputScores:
    """Every command's scores, and what of the ground truth could not be scored."""

    frames_annotated: int
    annotations_not_played: tuple[int, ...]  # ground-truth stamps of no frame sent: not scored
    commands: tuple[CommandScore, ...]

    def report(self) -> dict:
        return {
            "frames_annotated": self.frames_annotated,
            "annotations_not_played": list(self.annotations_not_played),
            "commands": [c.report() for c in self.commands],
        }

    def table(self) -> str:
        rows = [TABLE_HEADER] + [_row(c) for c in self.commands]
        widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        if self.annotations_not_played:
            lines.append(f"{len(self.annotations_not_played)} annotated stamps match no frame played: not scored")
        return "\n".join(lines)


def score_outputs(
    truth: Mapping[int, Masks],
    masks: Sequence[MasksAnswer],
    targets: Sequence[TargetsAnswer],
    sent_ns: Mapping[int, int],
    queries: Mapping[str, str] | None = None,
    unanswered_found_nothing: bool = False,
) -> OutputScores:
    """Score every command seen (in `queries`, id -> query, or in the outputs) on the annotated frames.

    `truth` is {frame stamp: {object id: mask}}; `sent_ns` maps each frame stamp sent to when it
    was sent. A recorded frame's stamp lies in the recording's past, so latency runs from the
    moment the frame was sent, as a live camera's stamp would.

    An annotated frame without masks is listed and left out of J and F: a node at camera rate
    skips frames by design. With `unanswered_found_nothing` it is scored as an empty answer, for
    runs in lockstep, where only a failure leaves a frame unanswered.
    """
    stamps = sorted(s for s in truth if s in sent_ns)
    ids = list(dict.fromkeys([*(queries or {}), *(a.command_id for a in [*masks, *targets])]))
    commands = tuple(
        _score_command(
            command_id,
            (queries or {}).get(command_id, ""),
            truth,
            stamps,
            [a for a in masks if a.command_id == command_id],
            [a for a in targets if a.command_id == command_id],
            sent_ns,
            unanswered_found_nothing,
        )
        for command_id in ids
    )
    return OutputScores(len(truth), tuple(sorted(set(truth) - set(sent_ns))), commands)


def _score_command(
    command_id: str,
    query: str,
    truth: Mapping[int, Masks],
    stamps: list[int],
    masks: list[MasksAnswer],
    targets: list[TargetsAnswer],
    sent_ns: Mapping[int, int],
    unanswered_found_nothing: bool,
) -> CommandScore:
    answered = _first_by_stamp(masks)
    scored = stamps if unanswered_found_nothing else [s for s in stamps if s in answered]
    sequence, union, identities = _mask_scores(truth, scored, answered)
    assigned, frame_matched = sequence.assigned(), sequence.frame_matched()
    placed = _first_by_stamp(targets)
    pointed = [s for s in stamps if s in placed]
    pointing, pairs = _pointing_scores(truth, pointed, placed, stamps) if pointed else (None, [])
    return CommandScore(
        command_id=command_id,
        query=query,
        frames_scored=len(scored),
        frames_without_masks=tuple(s for s in stamps if s not in answered),
        masks=mean_mask_scores([a.scores for a in assigned.values()]) if assigned else None,
        objects={k: a.scores for k, a in assigned.items()},
        object_tracks={k: a.track for k, a in assigned.items()},
        masks_frame_matched=mean_mask_scores(list(frame_matched.values())) if frame_matched else None,
        objects_frame_matched=frame_matched,
        union=mean_mask_scores(list(union.values())) if union else None,
        union_frames=union,
        id_switches=identities.switches,
        idf1=None if math.isnan(identities.idf1) else identities.idf1,
        pointing_frames=len(pointed),
        pointing=pointing,
        frame_count_pairs=tuple(pairs),
        frame_counts=count_accuracy(pairs) if pairs else None,
        masks_latency=_latency(masks, sent_ns),
        targets_latency=_latency(targets, sent_ns),
    )


def _first_by_stamp(answers: Iterable[MasksAnswer | TargetsAnswer]) -> dict:
    """The first answer received about each frame (a frame answered twice is scored once)."""
    first: dict = {}
    for answer in sorted(answers, key=lambda a: a.receive_ns):
        first.setdefault(answer.stamp_ns, answer)
    return first


def _mask_scores(
    truth: Mapping[int, Masks], stamps: list[int], answered: Mapping[int, MasksAnswer]
) -> tuple[SequenceObjectScores, dict[int, MaskScores], ClearMotMatcher]:
    """Every track against every object, the union's scores per frame, and identities (switches, IDF1); frame by
    frame, so masks are decoded one frame at a time. A frame not answered is scored as answered with
    no mask, an object not in a frame's ground truth as absent there."""
    objects_ids = sorted({k for stamp in stamps for k in truth[stamp]})
    track_ids = sorted({k for stamp in stamps if stamp in answered for k in answered[stamp].masks})
    sequence = SequenceObjectScores(objects_ids, track_ids)
    union: dict[int, MaskScores] = {}
    identities = ClearMotMatcher()
    for stamp in stamps:
        objects = dict(truth[stamp])
        tracks = dict(answered[stamp].masks) if stamp in answered else {}
        shape = _frame_shape(stamp, objects, tracks)
        sequence.add_frame(objects, tracks)
        union[stamp] = mask_scores(_union(tracks.values(), shape), _union(objects.values(), shape))
        identities.update(_present(objects), _present(tracks))
    return sequence, union, identities


def _present(masks: Masks) -> dict[Hashable, np.ndarray]:
    """The non-empty masks: an absent object and an empty track agree (IoU 1) but share no identity."""
    return {k: m for k, m in masks.items() if m.any()}


def _frame_shape(stamp: int, objects: Masks, tracks: Masks) -> tuple[int, ...]:
    """The frame's mask shape; ground truth of another size than the outputs cannot be scored."""
    shapes = {m.shape for m in [*objects.values(), *tracks.values()]}
    if len(shapes) > 1:
        raise ValueError(f"masks of several sizes on the frame stamped {stamp}: {sorted(shapes)}")
    return shapes.pop() if shapes else (1, 1)  # nothing on either side: they agree, at any size


def _union(masks: Iterable[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    union = np.zeros(shape, bool)
    for mask in masks:
        union |= mask
    return union


def _pointing_scores(
    truth: Mapping[int, Masks], pointed: list[int], placed: Mapping[int, TargetsAnswer], stamps: list[int]
) -> tuple[PointingScores, list[tuple[int, int]]]:
    """Pointing P/R/F1 and (true, predicted) counts on the annotated frames the model placed targets on.

    Each visible object is one true point, its mask's interior point (any point on it would do: a
    prediction scores when it lands on the mask), carrying that object's mask on that frame only:
    a target scores on the object it is paired with, at its time, as in Molmo2's evaluation. Time
    is normalised by the annotated span.
    """
    points, predicted, counts = [], [], []
    for stamp in pointed:
        t = (stamp - stamps[0]) / 1e9
        visible = [m for m in truth[stamp].values() if m.any()]
        points += [TruthPoint(t, *interior_point(m, mask_box(m)), {t: m}) for m in visible]
        predicted += [VideoPoint(t, x, y) for x, y in placed[stamp].points]
        counts.append((len(visible), len(placed[stamp].points)))
    # No true points: nothing is normalised by the size.
    height, width = next(iter(points[0].masks.values())).shape if points else (1, 1)
    duration_s = (stamps[-1] - stamps[0]) / 1e9 or 1.0  # one annotated frame: time plays no part
    pointing = video_pointing_scores(predicted, PointingTruth(points, duration_s, width, height))
    return pointing, counts


def latency_samples(
    answers: Iterable[MasksAnswer | TargetsAnswer], sent_ns: Mapping[int, int]
) -> list[tuple[int, int]]:
    """(sent, received) of every answer about a frame sent: what latency is measured on (and pooled)."""
    return [(sent_ns[a.stamp_ns], a.receive_ns) for a in answers if a.stamp_ns in sent_ns]


def _latency(answers: Iterable[MasksAnswer | TargetsAnswer], sent_ns: Mapping[int, int]) -> LatencyStats | None:
    samples = latency_samples(answers, sent_ns)
    return latency_stats(samples) if samples else None


def _jsonable(value: object) -> object:
    if isinstance(value, MaskScores):
        return {"j": value.j, "f": value.f, "jf": value.jf}
    if isinstance(value, PointingScores | CountScores | LatencyStats):
        return asdict(value)
    return list(value) if isinstance(value, tuple) else value


def _row(score: CommandScore) -> tuple[str, ...]:
    masks, union, latency = score.masks, score.union, score.masks_latency
    return (
        score.command_id,
        score.query if len(score.query) <= 24 else score.query[:21] + "...",
        str(score.frames_scored),
        str(len(score.frames_without_masks)),
        _number(masks and masks.j),
        _number(masks and masks.f),
        _number(masks and masks.jf),
        _number(score.masks_frame_matched and score.masks_frame_matched.jf),
        _number(union and union.jf),
        str(score.id_switches),
        _number(score.idf1),
        _number(score.pointing and score.pointing.f1),
        _number(score.frame_counts and score.frame_counts.exact),
        f"{latency.p50_ms:.0f}/{latency.p90_ms:.0f}" if latency else "-",
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
