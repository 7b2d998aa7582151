"""Offline evaluation on a video-folder dataset, through the node's own pipeline and without ROS.

Each (video, expression) runs in a fresh PerceptionPipeline with the given pointer and mask
propagator, so the scores are those of the code the node runs. The frames are fed in order,
stamped at a fixed rate, the expression is a TRACK command, and each frame waits for the
pipeline (lockstep) instead of racing it:

- for its tracks and masks, so no frame is skipped, and
- when it enters the context window, for the grounding of that window, so the model's speed
  does not change what it sees (a live node grounds as often as the model keeps up).

A wait that passes the per-frame timeout is counted, and the run goes on. As on the live node,
the first frame a grounding is made on is tracked while the grounding runs, so it usually
scores without a mask.

Scores are videomolmo_ros.scoring's, as replay_bag's: J, F and J&F per sequence of the union
of the tracks' masks over the frames with ground truth (DAVIS; a frame the pipeline never
answered scores as finding nothing), pointing P/R/F1 and count accuracy on the annotated frames
the targets are on (Molmo2), identity switches (CLEAR-MOT), and mask and target latency from
when each frame was fed. Written: report.json, table.md, an overlay GIF per sequence and plots.png.
"""

import argparse
import dataclasses
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from tqdm import tqdm

from videomolmo_ros import backend_registry
from videomolmo_ros.backend_registry import BackendError
from videomolmo_ros.commands import CommandRequest, CommandState, GroundingMode
from videomolmo_ros.debug_overlay import draw_overlay
from videomolmo_ros.device import resolve_device
from videomolmo_ros.interfaces import MaskPropagator, Pointer
from videomolmo_ros.metrics import CountScores, LatencyStats, PointingScores, count_accuracy, latency_stats
from videomolmo_ros.pipeline import MasksOutput, PerceptionPipeline, PipelineConfig, TargetsOutput, TracksOutput
from videomolmo_ros.scoring import MasksAnswer, TargetsAnswer, latency_samples, score_outputs
from videomolmo_ros.track_manager import TrackerConfig
from videomolmo_ros.video_dataset import DatasetError, ExpressionRef, Sample, VideoDataset

COMMAND_ID = "eval"
# Pipeline settings a run may change with --param (what VideoMolmo needs: 5 frames at camera rate).
PIPELINE_PARAMS = ("context_frames", "context_fps")
# Pipeline problems that end a grounding without targets.
_GROUNDING_ENDS = ("grounding_failures", "groundings_dropped_too_old")


class EvalError(RuntimeError):
    """A run that cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class EvalConfig:
    fps: float = 10.0  # rate the frames are stamped at (the layouts carry none)
    frame_timeout_s: float = 300.0  # per frame: its masks, and the grounding of its window
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    gif_frames: int = 40  # an overlay GIF shows at most this many frames, evenly spread
    gif_side: int = 320  # and is at most this many pixels wide and high


# ---------------------------------------------------------------- running one sequence


class LockstepSink:
    """The pipeline's output sink: outputs by frame stamp, and waits on them for the evaluator."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.masks: dict[int, MasksOutput] = {}
        self.tracks: dict[int, TracksOutput] = {}
        self.masks_received_ns: dict[int, int] = {}
        self.targets: list[TargetsOutput] = []
        self.targets_received_ns: list[int] = []
        self.grounding_ends = 0  # groundings applied (targets published, maybe none) or failed
        self.problems: dict[str, str] = {}  # the first message of each kind

    def publish_targets(self, output: TargetsOutput) -> None:
        with self._changed:
            self.targets.append(output)
            self.targets_received_ns.append(time.monotonic_ns())
            self._grounding_ended()

    def publish_tracks(self, output: TracksOutput) -> None:
        with self._changed:
            self.tracks[output.meta.stamp_ns] = output

    def publish_masks(self, output: MasksOutput) -> None:
        with self._changed:  # published after the frame's tracks: the frame is done
            self.masks[output.meta.stamp_ns] = output
            self.masks_received_ns[output.meta.stamp_ns] = time.monotonic_ns()
            self._changed.notify_all()

    def problem(self, key: str, message: str) -> None:
        with self._changed:
            self.problems.setdefault(key, message)
            if key in _GROUNDING_ENDS:
                self._grounding_ended()

    def _grounding_ended(self) -> None:
        self.grounding_ends += 1
        self._changed.notify_all()

    def wait(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Whether `predicate` came true before `deadline` (time.monotonic)."""
        with self._changed:
            return self._changed.wait_for(predicate, max(0.0, deadline - time.monotonic()))


@dataclass
class SequenceRun:
    """What the pipeline published for one sequence, by frame index, and when (monotonic ns)."""

    fps: float
    stamps: list[int]
    fed_ns: dict[int, int] = field(default_factory=dict)  # frame stamp -> when it was fed
    masks: list[MasksOutput | None] = field(default_factory=list)
    masks_received_ns: dict[int, int] = field(default_factory=dict)  # frame stamp -> when its masks came
    tracks: list[TracksOutput | None] = field(default_factory=list)
    targets: list[TargetsOutput] = field(default_factory=list)
    targets_received_ns: list[int] = field(default_factory=list)  # one per target output
    timeouts: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    rejected: str = ""  # why the pipeline refused the expression, if it did


def read_frame(path: Path) -> np.ndarray:
    """An H x W x 3 uint8 RGB frame (writable: the pipeline wraps it in a tensor)."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def run_sequence(
    sample: Sample, pointer: Pointer, propagator: MaskPropagator, device: torch.device, config: EvalConfig
) -> SequenceRun:
    """Play one sample through a fresh pipeline in lockstep; the outputs by frame."""
    propagator.reset()  # objects of the previous sequence
    sink = LockstepSink()
    pipeline = PerceptionPipeline(config.pipeline, device, pointer, propagator, sink)
    run = SequenceRun(config.fps, [round(k * 1e9 / config.fps) for k in range(len(sample.frame_paths))])
    shape = next(m.shape for m in sample.masks if m is not None)
    pipeline.start()
    try:
        events = pipeline.submit_command(CommandRequest(COMMAND_ID, sample.ref.text, GroundingMode.TRACK))
        run.rejected = "; ".join(e.reason for e in events if e.state is not CommandState.ACCEPTED)
        for index, path in enumerate(sample.frame_paths):  # also when rejected: it scores as finding nothing
            image = read_frame(path)
            if image.shape[:2] != shape:
                raise DatasetError(f"{path} is {image.shape[1]}x{image.shape[0]}, its mask {shape[1]}x{shape[0]}")
            _feed(pipeline, sink, run, index, image, 0.0 if run.rejected else config.frame_timeout_s)
    finally:
        pipeline.close(config.frame_timeout_s)
    run.masks = [sink.masks.get(stamp) for stamp in run.stamps]
    run.tracks = [sink.tracks.get(stamp) for stamp in run.stamps]
    run.masks_received_ns = dict(sink.masks_received_ns)
    run.targets, run.targets_received_ns = list(sink.targets), list(sink.targets_received_ns)
    run.problems = dict(sink.problems)
    run.counters = pipeline.counters.snapshot()
    return run


def _feed(
    pipeline: PerceptionPipeline, sink: LockstepSink, run: SequenceRun, index: int, image: np.ndarray, timeout_s: float
) -> None:
    """Submit one frame and wait for its masks and, if it entered the context window, its grounding."""
    stamp = run.stamps[index]
    ends_before, deadline = sink.grounding_ends, time.monotonic() + timeout_s
    run.fed_ns[stamp] = time.monotonic_ns()
    pipeline.submit_frame(image, stamp, "dataset")
    newest = pipeline.context.newest()
    grounds = newest is not None and newest.stamp_ns == stamp
    tracked = sink.wait(lambda: stamp in sink.masks, deadline)
    grounded = not grounds or sink.wait(lambda: sink.grounding_ends > ends_before, deadline)
    run.timeouts += timeout_s > 0 and not (tracked and grounded)


# ---------------------------------------------------------------- scores


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
    count: CountScores | None  # likewise
    count_pairs: list[tuple[int, int]]  # (objects visible, targets placed) per annotated frame pointed at
    id_switches: int
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
        count=command.counts,
        count_pairs=list(command.count_pairs),
        id_switches=command.id_switches,
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
    count: CountScores | None
    id_switches: int
    timeouts: int
    tracking_latency: LatencyStats | None
    grounding_latency: LatencyStats | None


def summarize(results: Sequence[SequenceResult]) -> Overall:
    """The dataset's numbers from its sequences'."""

    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values))

    def pooled(kind: str) -> LatencyStats | None:
        samples = [s for r in results for s in r.latency_samples[kind]]
        return latency_stats(samples) if samples else None

    pairs = [pair for r in results for pair in r.count_pairs]
    pointing = [dataclasses.astuple(r.pointing) for r in results if r.pointing]
    return Overall(
        sequences=len(results),
        j=mean([r.j for r in results]),
        f=mean([r.f for r in results]),
        jf=mean([r.jf for r in results]),
        pointing=PointingScores(*map(mean, zip(*pointing, strict=True))) if pointing else None,
        count=count_accuracy(pairs) if pairs else None,
        id_switches=sum(r.id_switches for r in results),
        timeouts=sum(r.timeouts for r in results),
        tracking_latency=pooled("tracking"),
        grounding_latency=pooled("grounding"),
    )


# ---------------------------------------------------------------- the whole dataset


@dataclass(frozen=True)
class Report:
    sequences: list[SequenceResult]
    overall: Overall
    config: dict


def evaluate(
    dataset: VideoDataset,
    refs: Sequence[ExpressionRef],
    pointer: Pointer,
    propagator: MaskPropagator,
    device: torch.device,
    config: EvalConfig,
    out_dir: Path,
    settings: Mapping[str, object] | None = None,
) -> Report:
    """Run and score every expression; write report.json, table.md, the GIFs and plots.png.

    `settings` (backends, options, ...) is recorded in the report beside `config`.
    """
    if not refs:
        raise EvalError("no expression to evaluate")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for ref in tqdm(refs, desc="evaluate", unit="seq", disable=None):
        sample = dataset.load(ref)
        run = run_sequence(sample, pointer, propagator, device, config)
        result = score(sample, run)
        write_gif(out_dir / f"{ref.name}.gif", sample, run, result, config)
        results.append(result)
    report = Report(results, summarize(results), {**dataclasses.asdict(config), **(settings or {})})
    write_report(out_dir, report)
    return report


# ---------------------------------------------------------------- outputs


def write_report(out_dir: Path, report: Report) -> None:
    """report.json (every number and the config), table.md and plots.png."""
    sequences = [dataclasses.asdict(r) for r in report.sequences]
    for sequence in sequences:
        del sequence["latency_samples"]  # monotonic clock readings: the stats are what a reader wants
    document = {"config": report.config, "overall": dataclasses.asdict(report.overall), "sequences": sequences}
    (out_dir / "report.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out_dir / "table.md").write_text(markdown_table(report))
    write_plots(out_dir / "plots.png", report.sequences)


def markdown_table(report: Report) -> str:
    """One row per sequence and a mean row."""
    header = "| sequence | expression | frames | J | F | J&F | P | R | F1 | count | close | ID sw | timeouts |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in report.sequences:
        text = r.text.replace("|", "\\|").replace("\n", " ")
        text = text if len(text) <= 60 else text[:57] + "..."
        lines.append(_row(r.name, text, r.frames, r, r.pointing, r.count, r.id_switches, r.timeouts))
    o = report.overall
    frames = sum(r.frames for r in report.sequences)
    lines.append(_row(f"**mean** ({o.sequences})", "", frames, o, o.pointing, o.count, o.id_switches, o.timeouts))
    return "\n".join(lines) + "\n"


def _row(
    name: str,
    text: str,
    frames: int,
    masks: SequenceResult | Overall,
    pointing: PointingScores | None,
    count: CountScores | None,
    switches: int,
    timeouts: int,
) -> str:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    cells = [name, text, str(frames), number(masks.j), number(masks.f), number(masks.jf)]
    cells += [number(pointing and pointing.precision), number(pointing and pointing.recall)]
    cells += [number(pointing and pointing.f1)]
    cells += [number(count and count.exact), number(count and count.close), str(switches), str(timeouts)]
    return "| " + " | ".join(cells) + " |"


def write_gif(path: Path, sample: Sample, run: SequenceRun, result: SequenceResult, config: EvalConfig) -> None:
    """The predicted masks tinted, the ground truth outlined in white, the targets as crosses."""
    count = len(sample.frame_paths)
    step = math.ceil(count / config.gif_frames)
    frames = [_overlay_frame(sample, run, result, k, config.gif_side) for k in range(0, count, step)]
    duration_ms = round(1000 * step / config.fps)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)


def _overlay_frame(sample: Sample, run: SequenceRun, result: SequenceResult, index: int, side: int) -> Image.Image:
    here = [o for o in run.targets if o.meta.stamp_ns == run.stamps[index]]
    targets = dataclasses.replace(here[0], targets=tuple(t for o in here for t in o.targets)) if here else None
    tracks = run.tracks[index].tracks if run.tracks[index] else ()
    canvas = draw_overlay(read_frame(sample.frame_paths[index]), tracks, run.masks[index], targets)
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
    mean_jf = float(np.mean([r.jf for r in results]))
    bars.bar(positions, [r.jf for r in results], color="tab:blue")
    bars.axhline(mean_jf, color="grey", linestyle="--", linewidth=1)
    bars.set_xticks(positions, [r.name for r in results], rotation=45, ha="right", fontsize="small")
    bars.set(ylim=(0, 1), ylabel="J&F", title=f"J&F per sequence (mean {mean_jf:.3f})")
    for r in results:
        curves.plot([math.nan if j is None else j for j in r.frame_j], linewidth=1, label=r.name)
    curves.set(ylim=(0, 1.02), xlabel="frame", ylabel="J", title="J per frame")
    if len(results) <= 12:
        curves.legend(fontsize="small", loc="lower right")
    figure.savefig(path, dpi=100)


# ---------------------------------------------------------------- command line


def settable_parameters(backends: Mapping[str, type]) -> dict[str, object]:
    """Every --param name with its default: each backend's options (named as the node's
    parameters, `<backend>.<option>`), the context window and the tracker thresholds."""
    base = PipelineConfig()
    defaults: dict[str, object] = {name: getattr(base, name) for name in PIPELINE_PARAMS}
    defaults |= {f"tracker.{f.name}": getattr(base.tracker, f.name) for f in dataclasses.fields(TrackerConfig)}
    for spec, kind in backends.items():
        prefix = backend_registry.parameter_prefix(spec)
        cls = backend_registry.resolve(spec, kind)
        defaults |= {f"{prefix}.{name}": value for name, value in backend_registry.option_defaults(cls).items()}
    return defaults


def parse_params(pairs: Sequence[str], defaults: Mapping[str, object]) -> dict[str, object]:
    """`name=value` strings -> values of the type of each name's default."""
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise EvalError(f"--param {pair!r}: use name=value")
        if name not in defaults:
            raise EvalError(f"--param {name}: unknown; known: {', '.join(sorted(defaults))}")
        values[name] = _coerce(name, text, defaults[name])
    return values


def _coerce(name: str, text: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
        if isinstance(default, int | float | str):
            return type(default)(text)
    except (KeyError, ValueError):
        raise EvalError(f"--param {name}={text}: expected a value of type {type(default).__name__}") from None
    raise EvalError(f"--param {name}: a {type(default).__name__} option cannot be set from the command line")


def backend_options(spec: str, values: Mapping[str, object]) -> dict[str, object]:
    prefix = backend_registry.parameter_prefix(spec) + "."
    return {name.removeprefix(prefix): value for name, value in values.items() if name.startswith(prefix)}


def pipeline_config(values: Mapping[str, object]) -> PipelineConfig:
    tracker = {k.removeprefix("tracker."): v for k, v in values.items() if k.startswith("tracker.")}
    top = {k: v for k, v in values.items() if k in PIPELINE_PARAMS}
    return PipelineConfig(**top, tracker=TrackerConfig(**tracker))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evaluate_dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset folder (Ref-DAVIS17 / Ref-YouTube-VOS or MeViS layout)")
    parser.add_argument("-o", "--output", required=True, help="folder for report.json, table.md, GIFs, plots.png")
    parser.add_argument("--pointer", default="molmo2", help="registered name or package.module:Class")
    parser.add_argument("--propagator", default="sam2", help="registered name or package.module:Class")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="backend option (molmo2.model=..., sam2.checkpoint=...), context_frames, context_fps or "
        "tracker.*, as the node's parameters (repeat)",
    )
    parser.add_argument("--videos", default="", help="comma-separated video names (default: all)")
    parser.add_argument("--max-expressions", type=int, default=0, help="at most N expressions per video (0: all)")
    parser.add_argument("--fps", type=float, default=10.0, help="rate to stamp the frames at, Hz")
    parser.add_argument("--frame-timeout", type=float, default=300.0, help="seconds to wait for one frame's outputs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    if args.fps <= 0 or args.frame_timeout <= 0 or args.max_expressions < 0:
        parser.error("--fps and --frame-timeout must be > 0, --max-expressions >= 0")
    return args


def run(args: argparse.Namespace) -> Report:
    """Check the dataset first (cheap), then load the models (slow) and evaluate."""
    dataset = VideoDataset(args.dataset)
    refs = dataset.expressions([v for v in args.videos.split(",") if v], args.max_expressions)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise EvalError(str(error)) from error
    values = parse_params(args.param, settable_parameters({args.pointer: Pointer, args.propagator: MaskPropagator}))
    # The propagator first: SAM2 loads in seconds, a grounding model can take minutes.
    propagator = backend_registry.create(
        args.propagator, MaskPropagator, device, backend_options(args.propagator, values)
    )
    pointer = backend_registry.create(args.pointer, Pointer, device, backend_options(args.pointer, values))
    config = EvalConfig(args.fps, args.frame_timeout, pipeline_config(values))
    settings = {
        "dataset": str(dataset.root),
        "layout": dataset.layout,
        "pointer": args.pointer,
        "propagator": args.propagator,
        "params": values,
        "device": str(device),
    }
    return evaluate(dataset, refs, pointer, propagator, device, config, Path(args.output), settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (BackendError, DatasetError, EvalError) as error:
        print(f"evaluate_dataset: error: {error}", file=sys.stderr)
        return 1
    print(markdown_table(report), end="")
    print(f"report.json, table.md, plots.png and {len(report.sequences)} GIF(s) in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
