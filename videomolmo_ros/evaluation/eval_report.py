"""Scoring an evaluation run and writing what a reader looks at: report.json, table.md, overlay GIFs, plots.png.

Scores are videomolmo_ros.evaluation.scoring's, as replay_bag's (see dataset_eval for what each means).
"""

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from videomolmo_ros.evaluation.lockstep_run import COMMAND_ID, EvalConfig, SequenceRun, read_frame
from videomolmo_ros.evaluation.metrics import CountScores, LatencyStats, PointingScores, count_accuracy, latency_stats
from videomolmo_ros.evaluation.output_files import output_path, write_text
from videomolmo_ros.evaluation.scoring import MasksAnswer, TargetsAnswer, latency_samples, score_outputs
from videomolmo_ros.evaluation.video_dataset import Sample
from videomolmo_ros.pipeline.debug_overlay import draw_overlay


@dataclass(frozen=True)
class SequenceResult:
    name: str
    video: str
    expression_id: str
    text: str
    frames: int
    scored_frames: int  # frames with ground truth
    j: float
    f: float
    jf: float
    pointing: PointingScores | None  # None: no targets on a frame with ground truth
    # Count accuracy per annotated frame pointed at, of its (objects visible, targets placed): not
    # Molmo2's count accuracy, which scores one count per video query. None: no targets, likewise.
    frame_count: CountScores | None
    frame_count_pairs: list[tuple[int, int]]
    id_switches: int
    idf1: float | None  # identity F1 (clear_mot); None: no object or track on any frame
    track_ids: int
    timeouts: int
    frame_j: list[float | None]  # J of the union per frame, None without ground truth
    tracking_latency: LatencyStats | None  # masks, from when their frame was fed
    grounding_latency: LatencyStats | None  # targets, likewise
    counters: dict[str, int]
    problems: dict[str, str]
    rejected: str
    latency_samples: dict[str, list[tuple[int, int]]] = field(repr=False, compare=False)  # pooled overall


def score(sample: Sample, run: SequenceRun) -> SequenceResult:
    """Score one run against its sample's ground truth, as replay_bag scores a replay."""
    truth = {
        stamp: {obj: masks[k] for obj, masks in sample.object_masks.items()}
        for k, stamp in enumerate(run.stamps)
        if sample.masks[k] is not None
    }
    masks, targets = _answers(run)
    queries = {COMMAND_ID: sample.ref.text}  # scored even if it never answered
    [command] = score_outputs(truth, masks, targets, run.fed_ns, queries, unanswered_found_nothing=True).commands
    assert command.union is not None, "every annotated frame is scored, and a sample has one"
    return SequenceResult(
        name=sample.ref.name,
        video=sample.ref.video,
        expression_id=sample.ref.expression_id,
        text=sample.ref.text,
        frames=len(run.stamps),
        scored_frames=len(truth),
        j=command.union.j,
        f=command.union.f,
        jf=command.union.jf,
        pointing=command.pointing,
        frame_count=command.frame_counts,
        frame_count_pairs=list(command.frame_count_pairs),
        id_switches=command.id_switches,
        idf1=command.idf1,
        track_ids=len({t.id for output in run.tracks if output for t in output.tracks}),
        timeouts=run.timeouts,
        frame_j=[None if (s := command.union_frames.get(stamp)) is None else s.j for stamp in run.stamps],
        tracking_latency=command.masks_latency,
        grounding_latency=command.targets_latency,
        counters=run.counters,
        problems=run.problems,
        rejected=run.rejected,
        latency_samples={
            "tracking": latency_samples(masks, run.fed_ns),
            "grounding": latency_samples(targets, run.fed_ns),
        },
    )


def _answers(run: SequenceRun) -> tuple[list[MasksAnswer], list[TargetsAnswer]]:
    """The run's outputs as the scorer takes them (as replay_bag reads them from its bag)."""
    masks = [
        MasksAnswer(COMMAND_ID, stamp, run.masks_received_ns[stamp], dict(zip(o.ids, o.masks, strict=True)))
        for stamp, o in zip(run.stamps, run.masks, strict=True)
        if o is not None
    ]
    targets = [
        TargetsAnswer(COMMAND_ID, o.meta.stamp_ns, received, [(t.x, t.y) for t in o.targets])
        for o, received in zip(run.targets, run.targets_received_ns, strict=True)
    ]
    return masks, targets


@dataclass(frozen=True)
class Overall:
    """Means over sequences (DAVIS's J&F-Mean; pointing: over those with any); counts, switches and
    latency pooled."""

    sequences: int
    j: float
    f: float
    jf: float
    pointing: PointingScores | None
    frame_count: CountScores | None
    id_switches: int
    idf1: float | None  # mean over the sequences that have one
    timeouts: int
    tracking_latency: LatencyStats | None
    grounding_latency: LatencyStats | None


def summarize(results: Sequence[SequenceResult]) -> Overall:
    """The dataset's numbers from its sequences'."""

    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if values else math.nan  # every video failed

    def pooled(kind: str) -> LatencyStats | None:
        samples = [s for r in results for s in r.latency_samples[kind]]
        return latency_stats(samples) if samples else None

    pairs = [pair for r in results for pair in r.frame_count_pairs]
    pointing = [dataclasses.astuple(r.pointing) for r in results if r.pointing]
    return Overall(
        sequences=len(results),
        j=mean([r.j for r in results]),
        f=mean([r.f for r in results]),
        jf=mean([r.jf for r in results]),
        pointing=PointingScores(*map(mean, zip(*pointing, strict=True))) if pointing else None,
        frame_count=count_accuracy(pairs) if pairs else None,
        id_switches=sum(r.id_switches for r in results),
        idf1=mean(scored) if (scored := [r.idf1 for r in results if r.idf1 is not None]) else None,
        timeouts=sum(r.timeouts for r in results),
        tracking_latency=pooled("tracking"),
        grounding_latency=pooled("grounding"),
    )


@dataclass(frozen=True)
class VideoTiming:
    """Seconds a video's scored expressions took on their workers (from loading to scoring)."""

    seconds: float
    expressions: int
    workers: list[str]


@dataclass(frozen=True)
class FailedVideo:
    """A video that raised on every attempt: the expressions it left unscored, and its last error."""

    video: str
    names: list[str]
    attempts: int
    error: str


@dataclass(frozen=True)
class Report:
    sequences: list[SequenceResult]
    overall: Overall
    config: dict
    failed: list[FailedVideo] = field(default_factory=list)
    timings: dict[str, VideoTiming] = field(default_factory=dict)  # by video


def write_report(out_dir: Path, report: Report) -> None:
    """report.json (every number and the config), table.md and plots.png."""
    sequences = [dataclasses.asdict(r) for r in report.sequences]
    for sequence in sequences:
        del sequence["latency_samples"]  # monotonic clock readings: the stats are what a reader wants
    document = {
        "config": report.config,
        "overall": dataclasses.asdict(report.overall),
        "failed_videos": len(report.failed),
        "failed": [dataclasses.asdict(f) for f in report.failed],
        "timings": {video: dataclasses.asdict(t) for video, t in report.timings.items()},
        "sequences": sequences,
    }
    write_text(out_dir / "report.json", json.dumps(document, indent=2, default=str) + "\n")
    write_text(out_dir / "table.md", markdown_table(report))
    with output_path(out_dir / "plots.png") as path:
        write_plots(path, report.sequences)


def markdown_table(report: Report) -> str:
    """One row per sequence and a mean row."""
    header = "| sequence | expression | frames | J | F | J&F | P | R | F1 | count/frame | close/frame | ID sw | IDF1 "
    header += "| timeouts |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in report.sequences:
        text = r.text.replace("|", "\\|").replace("\n", " ")
        text = text if len(text) <= 60 else text[:57] + "..."
        lines.append(_row(r.name, text, r.frames, r, r.pointing, r.frame_count, (r.id_switches, r.idf1), r.timeouts))
    o = report.overall
    frames = sum(r.frames for r in report.sequences)
    identities = (o.id_switches, o.idf1)
    lines.append(_row(f"**mean** ({o.sequences})", "", frames, o, o.pointing, o.frame_count, identities, o.timeouts))
    if report.failed:
        expressions = sum(len(f.names) for f in report.failed)
        lines += ["", f"**{len(report.failed)} video(s) failed** ({expressions} expression(s) not scored):"]
        lines += [f"- {f.video} after {f.attempts} attempt(s): {f.error}" for f in report.failed]
    return "\n".join(lines) + "\n"


def _row(
    name: str,
    text: str,
    frames: int,
    masks: SequenceResult | Overall,
    pointing: PointingScores | None,
    count: CountScores | None,
    identities: tuple[int, float | None],  # ID switches, IDF1
    timeouts: int,
) -> str:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    cells = [name, text, str(frames), number(masks.j), number(masks.f), number(masks.jf)]
    cells += [number(pointing and pointing.precision), number(pointing and pointing.recall)]
    cells += [number(pointing and pointing.f1)]
    cells += [number(count and count.exact), number(count and count.close), str(identities[0]), number(identities[1])]
    cells += [str(timeouts)]
    return "| " + " | ".join(cells) + " |"


def gif_frames(
    sample: Sample, run: SequenceRun, result: SequenceResult, config: EvalConfig
) -> tuple[list[Image.Image], int]:
    """The overlay GIF's frames and its frame duration in ms: the predicted masks tinted, the ground
    truth outlined in white, the targets as crosses."""
    count = len(sample.frame_paths)
    step = math.ceil(count / config.gif_frames)
    frames = [_overlay_frame(sample, run, result, k, config.gif_side) for k in range(0, count, step)]
    return frames, round(1000 * step / config.fps)


def _overlay_frame(sample: Sample, run: SequenceRun, result: SequenceResult, index: int, side: int) -> Image.Image:
    here = [o for o in run.targets if o.meta.stamp_ns == run.stamps[index]]
    targets = dataclasses.replace(here[0], targets=tuple(t for o in here for t in o.targets)) if here else None
    tracks = run.tracks[index].tracks if run.tracks[index] else ()
    canvas = draw_overlay(read_frame(sample.frame_paths[index], sample.shape), tracks, run.masks[index], targets)
    truth = sample.masks[index]
    if truth is not None:
        contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, (255, 255, 255), 2)
    j = result.frame_j[index]
    caption = f"{index + 1}/{len(sample.frame_paths)}" + ("" if j is None else f"  J {j:.2f}")
    height, width = canvas.shape[:2]
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined: readable anywhere
        cv2.putText(canvas, caption, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thickness, cv2.LINE_AA)
    scale = min(1.0, side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return Image.fromarray(cv2.resize(canvas, size, interpolation=cv2.INTER_AREA) if scale < 1 else canvas)


def write_plots(path: Path, results: Sequence[SequenceResult]) -> None:
    """J&F per sequence (bars) and J per frame (one line per sequence)."""
    figure = Figure(figsize=(min(30.0, max(7.0, 2.0 + 0.4 * len(results))), 8.0), layout="constrained")
    FigureCanvasAgg(figure)
    bars, curves = figure.subplots(2, 1)
    positions = range(len(results))
    mean_jf = float(np.mean([r.jf for r in results])) if results else math.nan
    bars.bar(positions, [r.jf for r in results], color="tab:blue")
    bars.axhline(mean_jf, color="grey", linestyle="--", linewidth=1)
    bars.set_xticks(positions, [r.name for r in results], rotation=45, ha="right", fontsize="small")
    bars.set(ylim=(0, 1), ylabel="J&F", title=f"J&F per sequence (mean {mean_jf:.3f})")
    for r in results:
        curves.plot([math.nan if j is None else j for j in r.frame_j], linewidth=1, label=r.name)
    curves.set(ylim=(0, 1.02), xlabel="frame", ylabel="J", title="J per frame")
    if 0 < len(results) <= 12:
        curves.legend(fontsize="small", loc="lower right")
    figure.savefig(path, dpi=100)
