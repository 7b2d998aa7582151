"""Running one video through a fresh PerceptionPipeline in lockstep: each frame waits for its outputs.

Each frame waits for the pipeline instead of racing it:

- for its tracks and masks, so no frame is skipped, and
- when it enters the context window, for the grounding of that window, so the model's speed
  does not change what it sees (a live node grounds as often as the model keeps up).

A wait that passes the per-frame timeout is counted, and the run goes on. As on the live node,
the first frame a grounding is made on is tracked while the grounding runs, so it usually
scores without a mask.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.evaluation.video_dataset import DatasetError, Sample
from videomolmo_ros.io.image_files import image_file
from videomolmo_ros.pipeline.commands import CommandRequest, CommandState
from videomolmo_ros.pipeline.outputs import MasksOutput, TargetsOutput, TracksOutput
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig

COMMAND_ID = "eval"
# Pipeline problems that end a grounding without targets.
_GROUNDING_ENDS = ("grounding_failures", "groundings_dropped_too_old")


@dataclass(frozen=True)
class EvalConfig:
    fps: float = 10.0  # rate the frames are stamped at (the layouts carry none)
    frame_timeout_s: float = 300.0  # per frame: its masks, and the grounding of its window
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    gif_frames: int = 40  # an overlay GIF shows at most this many frames, evenly spread
    gif_side: int = 320  # and is at most this many pixels wide and high


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


def read_frame(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """An H x W x 3 uint8 RGB frame (writable: the pipeline wraps it in a tensor) of its masks' `shape`,
    checked in the file's header before it is decoded."""
    with image_file(path) as image:
        if image.size[::-1] != shape:
            width, height = image.size
            raise DatasetError(f"{path} is {width}x{height}, its mask {shape[1]}x{shape[0]}")
        return np.array(image.convert("RGB"))


def run_sequence(
    sample: Sample, pointer: Pointer, propagator: MaskPropagator, device: torch.device, config: EvalConfig
) -> SequenceRun:
    """Play one sample through a fresh pipeline in lockstep; the outputs by frame."""
    propagator.reset()  # objects of the previous sequence
    sink = LockstepSink()
    pipeline = PerceptionPipeline(config.pipeline, device, pointer, propagator, sink)
    run = SequenceRun(config.fps, [round(k * 1e9 / config.fps) for k in range(len(sample.frame_paths))])
    pipeline.start()
    try:
        events = pipeline.submit_command(CommandRequest(COMMAND_ID, sample.ref.text, GroundingMode.TRACK))
        run.rejected = "; ".join(e.reason for e in events if e.state is not CommandState.ACCEPTED)
        for index, path in enumerate(sample.frame_paths):  # also when rejected: it scores as finding nothing
            image = read_frame(path, sample.shape)
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
