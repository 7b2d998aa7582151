"""Offline evaluation on a video-folder dataset, through the node's own pipeline and without ROS.

Each (video, expression) runs in a fresh PerceptionPipeline with the given pointer and mask
propagator, so the scores are those of the code the node runs. The frames are fed in order,
stamped at a fixed rate, the expression is a TRACK command, and each frame waits for the
pipeline's outputs (lockstep_run.py) instead of racing it.

Scores are videomolmo_ros.evaluation.scoring's, as replay_bag's: J, F and J&F per sequence of the union
of the tracks' masks over the frames with ground truth (DAVIS; a frame the pipeline never
answered scores as finding nothing), pointing P/R/F1 and count accuracy on the annotated frames
the targets are on (Molmo2), identity switches (CLEAR-MOT), and mask and target latency from
when each frame was fed.

A pass is a queue of videos handed to workers (this process, or Ray actors: ray_workers.py), each
video's expressions one after another on one worker. Each finished expression is appended to
results.jsonl at once (results_file.py); a video that raises is tried once more, then recorded as
failed with its error. report.json, table.md and plots.png are built from results.jsonl alone;
an overlay GIF per sequence is written as it finishes.
"""

import dataclasses
import io
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.evaluation.eval_report import FailedVideo, Report, SequenceResult, gif_frames, score, write_report
from videomolmo_ros.evaluation.lockstep_run import EvalConfig, run_sequence
from videomolmo_ros.evaluation.output_files import write_bytes
from videomolmo_ros.evaluation.results_file import RESULTS_FILE, ResultsWriter, read_results, report_from_results
from videomolmo_ros.evaluation.video_dataset import ExpressionRef, VideoDataset

ATTEMPTS = 2  # a video that raises is tried once more (a worker killed, out of memory), then recorded failed


class EvalError(RuntimeError):
    """A run that cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class Scored:
    """One expression evaluated by a worker: its scores, its overlay GIF and how long it took."""

    result: SequenceResult
    gif: bytes
    seconds: float


class ExpressionEvaluator:
    """A worker's loaded models, reused for every expression it is given."""

    def __init__(
        self,
        dataset: VideoDataset,
        pointer: Pointer,
        propagator: MaskPropagator,
        device: torch.device,
        config: EvalConfig,
    ) -> None:
        self.dataset, self.pointer, self.propagator = dataset, pointer, propagator
        self.device, self.config = device, config

    def __call__(self, ref: ExpressionRef) -> Scored:
        start = time.monotonic()
        sample = self.dataset.load(ref)
        run = run_sequence(sample, self.pointer, self.propagator, self.device, self.config)
        result = score(sample, run)
        with io.BytesIO() as gif:
            frames, duration_ms = gif_frames(sample, run, result, self.config)
            frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
            return Scored(result, gif.getvalue(), time.monotonic() - start)


class Workers(Protocol):
    """Where expressions are evaluated: `slots` workers, each running one expression at a time."""

    slots: int

    def start(self, slot: int, ref: ExpressionRef) -> None:
        """Begin evaluating `ref` on worker `slot` (which is idle)."""

    def finished(self) -> list[tuple[int, Scored | BaseException]]:
        """Wait until at least one worker finished; (slot, its Scored or what it raised) of each."""

    def name(self, slot: int) -> str:
        """The worker as the results name it (where it ran)."""


class LocalWorkers:
    """One worker: this process, evaluating as soon as it is started."""

    slots = 1

    def __init__(self, evaluator: ExpressionEvaluator) -> None:
        self._evaluate = evaluator
        self._finished: list[tuple[int, Scored | BaseException]] = []

    def start(self, slot: int, ref: ExpressionRef) -> None:
        try:
            self._finished.append((slot, self._evaluate(ref)))
        except Exception as error:
            self._finished.append((slot, error))

    def finished(self) -> list[tuple[int, Scored | BaseException]]:
        done, self._finished = self._finished, []
        return done

    def name(self, slot: int) -> str:
        return "in-process"


@dataclass
class _Video:
    """A video's expressions still to run, and how many times it has raised."""

    video: str
    left: deque[ExpressionRef]
    attempts: int = 0


def evaluate(
    refs: Sequence[ExpressionRef],
    workers: Workers,
    config: EvalConfig,
    out_dir: Path,
    settings: Mapping[str, object] | None = None,
    resume: bool = False,
) -> Report:
    """Run and score every expression not yet in results.jsonl; write the GIFs and, from results.jsonl,
    report.json, table.md and plots.png.

    `settings` (backends, options, ...) is recorded beside `config`; a resumed pass must have the same.
    """
    if not refs:
        raise EvalError("no expression to evaluate")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = ResultsWriter(out_dir, pass_config(config, settings), resume)
    queue = _queue(refs, set(results.previous.done))
    running: dict[int, _Video] = {}
    progress = _Progress(sum(len(v.left) for v in queue), len(refs) - sum(len(v.left) for v in queue))
    with progress:
        while queue or running:
            for slot in set(range(workers.slots)) - set(running):
                if queue:
                    running[slot] = queue.popleft()
                    workers.start(slot, running[slot].left[0])
            progress.show(len(running))
            for slot, outcome in workers.finished():
                video = running.pop(slot)
                if isinstance(outcome, BaseException):
                    _failed(video, outcome, queue, results, progress)
                    continue
                ref = video.left.popleft()
                write_bytes(out_dir / f"{ref.name}.gif", outcome.gif)
                results.done(ref.name, ref.video, outcome.seconds, workers.name(slot), outcome.result)
                progress.expression_done()
                if video.left:
                    running[slot] = video
                    workers.start(slot, video.left[0])
    return rebuild_report(out_dir)


def pass_config(config: EvalConfig, settings: Mapping[str, object] | None) -> dict:
    """The config a pass records (its first results line, report.json's "config")."""
    return {**dataclasses.asdict(config), **(settings or {})}


def rebuild_report(out_dir: Path) -> Report:
    """report.json, table.md and plots.png from out_dir's results.jsonl alone."""
    report = report_from_results(read_results(out_dir / RESULTS_FILE))
    write_report(out_dir, report)
    return report


def _queue(refs: Sequence[ExpressionRef], done: set[str]) -> deque[_Video]:
    """The videos with expressions not in `done`, each with those expressions in order."""
    videos: dict[str, _Video] = {}
    for ref in refs:
        if ref.name not in done:
            videos.setdefault(ref.video, _Video(ref.video, deque())).left.append(ref)
    return deque(videos.values())


def _failed(
    video: _Video, error: BaseException, queue: deque[_Video], results: ResultsWriter, progress: "_Progress"
) -> None:
    """Try the video once more (first in line), or record it failed with what it raised."""
    video.attempts += 1
    if video.attempts < ATTEMPTS:
        queue.appendleft(video)
        return
    reason = f"{type(error).__name__}: {error}"
    results.failed(FailedVideo(video.video, [r.name for r in video.left], video.attempts, reason))
    progress.video_failed(len(video.left))


class _Progress:
    """One terminal line: expressions done of all, running, failed, time left (tqdm's, off without a terminal)."""

    def __init__(self, total: int, already: int) -> None:
        self._bar = tqdm(total=total, desc="evaluate", unit="expr", disable=None)
        self._already, self._failed_videos = already, 0

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

    def show(self, running: int) -> None:
        postfix = {"running": running, "failed videos": self._failed_videos}
        if self._already:
            postfix["resumed after"] = self._already
        self._bar.set_postfix(postfix, refresh=True)

    def expression_done(self) -> None:
        self._bar.update(1)

    def video_failed(self, expressions: int) -> None:
        self._failed_videos += 1
        self._bar.total -= expressions  # the time left is that of the expressions still to run
        self._bar.refresh()
