"""Scores what the node answered during a bag replay against the bag's ground truth.

No ROS: bag_replay turns its bags into the plain structures here, so tests and notebooks can
score hand-made cases. Every number comes from `videomolmo_ros.metrics`, so it means what the
papers mean by it. Each command is scored on its own, against every ground-truth object.
"""

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from videomolmo_ros.mask_geometry import interior_point, mask_box
from videomolmo_ros.metrics import (
    CountScores,
    LatencyStats,
    MaskScores,
    PointingScores,
    PointingTruth,
    VideoPoint,
    count_accuracy,
    id_switches,
    latency_stats,
    mask_scores,
    match_tracks,
    mean_mask_scores,
    video_pointing_scores,
)

Masks = Mapping[int, np.ndarray]  # object or track id -> bool mask (height x width)

# J&F gives partial credit, as DAVIS does, so any overlap pairs a track with an object; whether the
# track *is* that object, for ID switches, takes CLEAR-MOT's IoU >= 0.5 (match_tracks's default).
ANY_OVERLAP = 1e-9
# missed: annotated frames without masks; union: its J&F; count: exact count accuracy; ms: mask latency.
TABLE_HEADER = (
    "command",
    "query",
    "frames",
    "missed",
    "J",
    "F",
    "J&F",
    "union",
    "ID sw",
    "point F1",
    "count",
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
    frames_scored: int  # annotated frames the command answered with masks
    frames_without_masks: tuple[int, ...]  # stamps of the annotated frames it did not answer
    masks: MaskScores | None  # per ground-truth object over its frames, then averaged over objects
    objects: dict[int, MaskScores]
    union: MaskScores | None  # all tracks' masks against all objects', per frame
    id_switches: int
    pointing_frames: int  # annotated frames the model placed targets on
    pointing: PointingScores | None
    counts: CountScores | None
    masks_latency: LatencyStats | None
    targets_latency: LatencyStats | None

    def report(self) -> dict:
        report = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        report["objects"] = {str(k): _jsonable(v) for k, v in self.objects.items()}
        return report


@dataclass(frozen=True)
class ReplayScore:
    """Every command's scores, and what of the ground truth could not be scored."""

    frames_annotated: int
    annotations_not_played: tuple[int, ...]  # ground-truth stamps of no frame the replay sent: not scored
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


def score_replay(
    truth: Mapping[int, Masks],
    masks: Sequence[MasksAnswer],
    targets: Sequence[TargetsAnswer],
    sent_ns: Mapping[int, int],
    queries: Mapping[str, str] | None = None,
) -> ReplayScore:
    """Score every command seen (in `queries`, id -> query, or in the outputs) on the annotated frames.

    `truth` is {frame stamp: {object id: mask}}; `sent_ns` maps each frame stamp the replay sent to
    when it sent it. A recorded frame's stamp lies in the recording's past, so latency runs from the
    moment the replay published the frame, as a live camera's stamp would.
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
        )
        for command_id in ids
    )
    return ReplayScore(len(truth), tuple(sorted(set(truth) - set(sent_ns))), commands)


def _score_command(
    command_id: str,
    query: str,
    truth: Mapping[int, Masks],
    stamps: list[int],
    masks: list[MasksAnswer],
    targets: list[TargetsAnswer],
    sent_ns: Mapping[int, int],
) -> CommandScore:
    answered = _first_by_stamp(masks)
    scored = [s for s in stamps if s in answered]
    objects, union, switches = _mask_scores(truth, scored, answered)
    placed = _first_by_stamp(targets)
    pointed = [s for s in stamps if s in placed]
    pointing, counts = _pointing_scores(truth, pointed, placed, stamps) if pointed else (None, None)
    return CommandScore(
        command_id=command_id,
        query=query,
        frames_scored=len(scored),
        frames_without_masks=tuple(s for s in stamps if s not in answered),
        masks=mean_mask_scores(list(objects.values())) if objects else None,
        objects=objects,
        union=union,
        id_switches=switches,
        pointing_frames=len(pointed),
        pointing=pointing,
        counts=counts,
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
) -> tuple[dict[int, MaskScores], MaskScores | None, int]:
    """Per-object J and F, the union's, and ID switches; frame by frame, so masks are decoded one frame at a time."""
    per_object: dict[int, list[MaskScores]] = defaultdict(list)
    union: list[MaskScores] = []
    assignments: list[dict[Hashable, Hashable]] = []
    for stamp in stamps:
        objects, tracks = dict(truth[stamp]), dict(answered[stamp].masks)
        shape = _frame_shape(stamp, objects, tracks)
        pairs = match_tracks(objects, tracks, min_iou=ANY_OVERLAP)
        for object_id, mask in objects.items():
            predicted = tracks[pairs[object_id]] if object_id in pairs else np.zeros_like(mask)
            per_object[object_id].append(mask_scores(predicted, mask))
        union.append(mask_scores(_union(tracks.values(), shape), _union(objects.values(), shape)))
        assignments.append(match_tracks(objects, tracks))
    objects = {k: mean_mask_scores(v) for k, v in sorted(per_object.items())}
    return objects, mean_mask_scores(union) if union else None, id_switches(assignments)


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
) -> tuple[PointingScores, CountScores]:
    """Pointing P/R/F1 and count accuracy on the annotated frames the model placed targets on.

    Each visible object's true point is its mask's interior point (any point on it would do: a
    prediction scores when it lands on the mask); time is normalised by the annotated span.
    """
    points, masks, predicted, counts = [], {}, [], []
    for stamp in pointed:
        t = (stamp - stamps[0]) / 1e9
        visible = [m for m in truth[stamp].values() if m.any()]
        if visible:
            masks[t] = _union(visible, visible[0].shape)
        points += [VideoPoint(t, *interior_point(m, mask_box(m))) for m in visible]
        predicted += [VideoPoint(t, x, y) for x, y in placed[stamp].points]
        counts.append((len(visible), len(placed[stamp].points)))
    height, width = next(iter(masks.values())).shape if masks else (1, 1)  # no true points: nothing is normalised
    duration_s = (stamps[-1] - stamps[0]) / 1e9 or 1.0  # one annotated frame: time plays no part
    pointing = video_pointing_scores(predicted, PointingTruth(points, masks, duration_s, width, height))
    return pointing, count_accuracy(counts)


def _latency(answers: Iterable[MasksAnswer | TargetsAnswer], sent_ns: Mapping[int, int]) -> LatencyStats | None:
    samples = [(sent_ns[a.stamp_ns], a.receive_ns) for a in answers if a.stamp_ns in sent_ns]
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
        _number(union and union.jf),
        str(score.id_switches),
        _number(score.pointing and score.pointing.f1),
        _number(score.counts and score.counts.exact),
        f"{latency.p50_ms:.0f}/{latency.p90_ms:.0f}" if latency else "-",
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
