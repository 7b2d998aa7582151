"""The tracking worker's state: tracks, the propagator and the fuser, and how groundings and frames update them.

Only the tracking worker calls into a TrackingStage (the pipeline queues every other request
to it), so nothing here takes a lock.
"""

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from videomolmo_ros.contracts.frames import Frame, FrameMeta, FrameWindow
from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingResult, ObjectMask
from videomolmo_ros.contracts.interfaces import MaskPropagator
from videomolmo_ros.pipeline.appearance import descriptor_for
from videomolmo_ros.pipeline.catch_up import CatchUp, history_frames
from videomolmo_ros.pipeline.commands import Command, CommandBook
from videomolmo_ros.pipeline.counters import Counters
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer
from videomolmo_ros.pipeline.mask_fusion import FixedLagFuser, ReleasedFrame
from videomolmo_ros.pipeline.model_health import ModelHealth
from videomolmo_ros.pipeline.outputs import MasksOutput, OutputSink, Target, TargetsOutput, TrackSnapshot, TracksOutput
from videomolmo_ros.pipeline.track_manager import TrackManager
from videomolmo_ros.pipeline.track_reports import TrackReports
from videomolmo_ros.pipeline.tracked_frames import TrackedFrames

if TYPE_CHECKING:
    from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig

FUSION_MODES = ("forward", "bidirectional")
T = TypeVar("T")


@dataclass(frozen=True)
class Grounded:
    """A pointer's answer on its window, for the command it was asked for."""

    command: Command
    window: FrameWindow
    result: GroundingResult
    epoch: int


@dataclass(frozen=True)
class _Tracked:
    """A tracked frame held for fusion, with the forward pass's scores."""

    frame: Frame
    scores: dict[int, float]


def latest_sightings(points: list[GroundedPoint]) -> list[GroundedPoint]:
    """The points that become prompts: each object's most recent sighting in the window.

    With model object ids (Molmo2 track mode numbers objects consistently within one answer),
    each object's latest point, so an object out of sight in the last frames keeps its last
    position; without ids (pointing), the points of the latest frame that has any.
    """
    if all(p.object_id is not None for p in points):
        latest: dict[int, GroundedPoint] = {}
        for p in points:
            if p.object_id not in latest or p.frame_index > latest[p.object_id].frame_index:
                latest[p.object_id] = p
        return sorted(latest.values(), key=lambda p: (p.frame_index, p.object_id))
    index = max(p.frame_index for p in points)
    return [p for p in points if p.frame_index == index]


def make_fuser(
    fusion: str,
    max_lag_frames: int,
    iou_threshold: float,
    propagator: MaskPropagator | None,
    max_lag_s: float = math.inf,
):
    """None in the zero-lag forward mode; else the fuser holding frames until the next keyframe (or the lag bounds)."""
    if fusion not in FUSION_MODES:
        raise ValueError(f"fusion {fusion!r}: use forward or bidirectional")
    if fusion == "forward":
        return None
    if propagator is None or type(propagator).propagate is MaskPropagator.propagate:
        name = type(propagator).__name__ if propagator else "no propagator"
        raise ValueError(f"fusion bidirectional needs a propagator with a backward pass; {name} has none")
    return FixedLagFuser(max_lag_frames, iou_threshold, key=lambda t: t.frame.meta.stamp_ns, max_lag_s=max_lag_s)


class TrackingStage:
    """Turns groundings into prompts and tracks, and each tracked frame into published tracks and masks.

    `health` judges the propagator from how its calls went (model_health.py).
    """

    def __init__(
        self,
        camera: str,
        tracker: TrackManager,
        fuser: FixedLagFuser | None,
        propagator: MaskPropagator | None,
        commands: CommandBook,
        sink: OutputSink,
        counters: Counters,
        problem: Callable[..., None],  # (key, message, count=1)
        catch_up: CatchUp | None = None,
        frames: TrackedFrames | None = None,
    ):
        self.camera = camera
        self.tracker = tracker
        self.propagator = propagator
        self._fuser = fuser
        self._commands = commands
        self._sink = sink
        self._counters = counters
        self._problem = problem
        self._reports = TrackReports(tracker, counters, problem)
        self._catch_up = catch_up or CatchUp(0.0, 1)
        self.frames = frames or TrackedFrames(2)  # the tracker's own copies of the frames it tracks
        self.health = ModelHealth("propagator", "propagation step")
        self._published: dict[str, Command] = {}  # the commands frames were published for, by id

    def take(self, stream: FrameBuffer) -> Frame | None:
        """The tracker's own copy of the stream's newest frame (in its ring: no allocation per frame)."""
        return self.frames.take(stream)

    def forget_command(self, command_id: str) -> None:
        """Forget a stopped command's tracks, after publishing its share of the frames held for fusion."""
        command = self._published.pop(command_id, None)
        replaced = any(c.id == command_id for c in self._commands.running(self.camera))  # its frames go out under it
        if self._fuser is not None and command is not None and not replaced:
            for item in self._fuser.peek():
                self._publish_frame(item.meta.frame, self._released_masks(item), (command,))
        self._remove(self.tracker.remove_command(command_id))

    def release_overdue(self) -> float | None:
        """Publish the frames held for fusion longer than its time bound; seconds until the next is due."""
        if self._fuser is None:
            return None
        expired = self._fuser.expired
        released = self._fuser.expire()
        self._counters.add("fusion_frames_unfused_age", self._fuser.expired - expired)
        self._publish_released(released)
        return self._fuser.due_in()

    def release_held(self) -> None:
        """Publish every frame held for fusion as it is (the stream stops: no keyframe will come)."""
        if self._fuser is not None:
            self._publish_released(self._fuser.flush())

    def _remove(self, object_ids: list[int]) -> None:
        if self.propagator is not None and object_ids:
            self.propagator.remove(object_ids)
            self._catch_up.forget(object_ids)

    def forget_all(self) -> None:
        if self._fuser is not None:
            self._counters.add("fusion_frames_dropped_reset", self._fuser.reset())
        self.tracker.clear()
        self._catch_up.clear()
        self.frames.clear()
        if self.propagator is not None:
            self.propagator.reset()

    def apply_grounding(self, grounded: Grounded) -> None:
        """Publish a grounding's targets and prompt the propagator with them (or update point tracks)."""
        command, window, result = grounded.command, grounded.window, grounded.result
        for problem in result.problems:
            self._problem("model_output_problems", f"model output for {command.query!r}: {problem}")
        points = self._valid_points(window, result.points, command.query)
        sightings = latest_sightings(points) if points else []
        last = window.metas[max((p.frame_index for p in sightings), default=len(window) - 1)]
        observed = [(p.x, p.y, p.label or command.query) for p in sightings]
        size = tuple(window.images.shape[1:3])
        image = functools.cache(lambda index: self._look(window.frame(index)))  # only the frames looked at
        scores = [p.score for p in sightings]
        association = self.tracker.associate(
            command.id, observed, size, last.stamp_ns, scores, lambda i: image(sightings[i].frame_index)
        )
        self._reports.association(association, command.query)
        self._remove(list(association.evicted))
        kept = [(i, p) for i, p in zip(association.ids, sightings, strict=True) if i is not None]
        if not kept:
            self._sink.publish_targets(TargetsOutput(window.metas[-1], command.id, command.query, ()))
        for index in sorted({p.frame_index for _, p in kept}):
            here = [(i, p) for i, p in kept if p.frame_index == index]
            frame = window.frame(index)
            targets = tuple(Target(i, p.label or command.query, p.x, p.y) for i, p in here)
            self._sink.publish_targets(TargetsOutput(frame.meta, command.id, command.query, targets))
            if self.propagator is not None:
                prompts = {i: [(p.x, p.y)] for i, p in here}
                self.propagator.add_prompts(frame, prompts)
                self._catch_up.prompted(list(prompts), frame.meta.stamp_ns)
                for i, p in here:
                    self.tracker.sighted(i, frame.meta.stamp_ns, p.x, p.y)
        if self.propagator is None:
            self.tracker.update_from_points(command.id, {i: (p.x, p.y) for i, p in kept}, last.stamp_ns)
            self._publish_tracks(command, last)
        elif self._fuser is not None and kept:
            self._fuse_keyframe(frame, prompts)  # the newest frame with sightings is the keyframe

    def _valid_points(self, window: FrameWindow, points: tuple[GroundedPoint, ...], query: str) -> list[GroundedPoint]:
        height, width = window.images.shape[1:3]
        valid = [p for p in points if 0 <= p.frame_index < len(window) and 0 <= p.x < width and 0 <= p.y < height]
        if len(valid) < len(points):
            self._problem(
                "model_output_problems",
                f"{len(points) - len(valid)} point(s) for {query!r} fell outside the {len(window)}-frame "
                f"{width}x{height} window and were dropped",
            )
        min_score = self.tracker.config.min_point_score
        confident = [p for p in valid if p.score is None or p.score >= min_score]
        self._counters.add("points_dropped_low_score", len(valid) - len(confident))
        return confident

    def catch_up(self) -> None:
        """Carry the objects prompted since the last live step through the frames tracked after their prompts.

        Their masks there are not published again (those frames went out already), except on frames
        still held for fusion, which get them before release; the tracks remember where they were
        there, so a later grounding of one of those frames finds them.
        """
        plan = self._catch_up.plan(self.frames.recent())
        skipped = plan.skipped
        for done, (frame, object_ids) in enumerate(plan.steps):
            stepped = self._call("catch-up propagation", functools.partial(self.propagator.step, frame, object_ids))
            if stepped is None:
                skipped += len(plan.steps) - done  # this step and the planned ones after it
                break
            self._counters.add("catch_up_frames")
            masks = self._cpu_masks(stepped, frame)
            self.tracker.sighted_masks(masks, frame.meta.stamp_ns)
            if self._fuser is not None:
                self._amend_held(frame, masks)
        self._counters.add("catch_up_skipped", skipped)

    def _look(self, frame: Frame) -> object | None:
        """What the tracks' appearance descriptor reads of `frame` (None when it has nothing: they learn nothing).

        Not judged by `health`: a frame encoded while the steps fail must not make the propagator look well."""
        try:
            return self.tracker.descriptor.look(frame)
        except Exception as error:
            self._problem("propagation_failures", f"reading the frame's appearance failed: {error!r}")
            return None

    def _call(self, what: str, call: Callable[[], T]) -> T | None:
        """A propagator call, judged by `health`; its failure is counted and reported, and gives None."""
        try:
            with self.health.call():
                return call()
        except Exception as error:
            self._problem("propagation_failures", f"{what} failed: {error!r}")
            return None

    def _amend_held(self, frame: Frame, masks: dict[int, tuple[np.ndarray, float]]) -> None:
        held = next((t for t in self._fuser.held() if t.frame.meta.stamp_ns == frame.meta.stamp_ns), None)
        if held is not None:
            held.scores.update({object_id: score for object_id, (_, score) in masks.items()})
            self._fuser.amend(held, {object_id: mask for object_id, (mask, _) in masks.items()})

    def track(self, frame: Frame) -> None:
        """Step the propagator on `frame`; publish its tracks and masks (or hold them for fusion)."""
        stepped = self._call("mask propagation", functools.partial(self.propagator.step, frame))
        if stepped is None:
            return
        self._counters.add("frames_tracked")
        masks = self._cpu_masks(stepped, frame)
        if self._fuser is None:
            self._publish_frame(frame, masks)
            return
        tracked = _Tracked(frame, {object_id: score for object_id, (_, score) in masks.items()})
        timeouts = self._fuser.timeouts
        released = self._fuser.push(tracked, {object_id: mask for object_id, (mask, _) in masks.items()})
        self._counters.add("fusion_frames_unfused_lag", self._fuser.timeouts - timeouts)
        self._publish_released(released)

    def _cpu_masks(self, stepped: dict[int, ObjectMask], frame: Frame) -> dict[int, tuple[np.ndarray, float]]:
        """The propagator's masks as CPU numpy (once per frame), minus any of the wrong size."""
        masks = {
            object_id: (m.mask.detach().to("cpu", torch.bool).numpy(), float(m.score))
            for object_id, m in stepped.items()
            if tuple(m.mask.shape) == (frame.height, frame.width)
        }
        if len(masks) < len(stepped):
            self._problem(
                "propagation_failures",
                f"{len(stepped) - len(masks)} mask(s) ignored: not of the frame size {frame.width}x{frame.height}",
            )
        return masks

    def _fuse_keyframe(self, keyframe: Frame, prompts: dict[int, list[tuple[float, float]]]) -> None:
        """Backward pass from the keyframe's prompts over the held frames; release them fused.

        The keyframe lands on the newest held frame at or before it (the tracking worker may
        have skipped the keyframe's own frame); if that is not the keyframe, the keyframe is
        appended so the backward pass starts from the prompted image.
        """
        stamp = keyframe.meta.stamp_ns
        held = [t for t in self._fuser.held() if t.frame.meta.stamp_ns <= stamp]
        if not held:
            self._counters.add("fusion_missed_keyframes")
            return
        anchor = held[-1]
        span = [*self._fuser.frames_needing_backward(anchor), anchor]
        frames = [t.frame for t in span] + ([keyframe] if anchor.frame.meta.stamp_ns != stamp else [])
        backward = self._call(
            "backward pass for mask fusion", functools.partial(self.propagator.propagate, frames, prompts, reverse=True)
        )
        by_frame = {
            t.frame.meta.stamp_ns: {i: mask for i, (mask, _) in self._cpu_masks(masks, t.frame).items()}
            for t, masks in zip(span, backward or [], strict=False)  # `backward` may also cover the keyframe
        }
        self._publish_released(self._fuser.keyframe(anchor, by_frame))

    def _publish_released(self, released: list[ReleasedFrame]) -> None:
        for item in released:
            self._counters.add("fusion_frames_fused" if item.fused else "fusion_frames_unfused")
            self._publish_frame(item.meta.frame, self._released_masks(item))

    @staticmethod
    def _released_masks(item: ReleasedFrame) -> dict[int, tuple[np.ndarray, float]]:
        scores = item.meta.scores
        return {i: (mask, scores.get(i, 1.0)) for i, mask in item.masks.items() if mask is not None}

    def _publish_frame(
        self, frame: Frame, masks: dict[int, tuple[np.ndarray, float]], commands: tuple[Command, ...] | None = None
    ) -> None:
        """Update the commands' tracks (every running one by default) from one frame's masks and publish them."""
        shape = (frame.height, frame.width)
        image = self._look(frame) if masks else None  # tracks with masks learn from it (no mask: nothing to encode)
        for command in self._commands.running(self.camera) if commands is None else commands:
            self._published[command.id] = command
            before = self._reports.counts()
            self._remove(self.tracker.update_from_masks(command.id, masks, frame.meta.stamp_ns, image))
            self._reports.update(command.query, before)
            self._publish_tracks(command, frame.meta)
            seen = [t for t in self.tracker.tracks(command.id) if t.mask is not None]
            ids, seen_masks = tuple(t.id for t in seen), tuple(t.mask for t in seen)
            self._sink.publish_masks(MasksOutput(frame.meta, command.id, ids, seen_masks, shape))

    def _publish_tracks(self, command: Command, meta: FrameMeta) -> None:
        snapshots = tuple(
            TrackSnapshot(
                t.id, t.label, t.state, t.score, t.x, t.y, t.box, meta.stamp_ns - t.created_ns, t.mask, t.last_seen_ns
            )
            for t in self.tracker.tracks(command.id)
        )
        self._sink.publish_tracks(TracksOutput(meta, command.id, command.query, snapshots))


def frames_kept(config: "PipelineConfig") -> int:
    """Frames the tracking worker keeps copies of: the live one, catch-up's last catch_up_s, fusion's held ones."""
    held = config.fusion_max_lag_frames + 1 if config.fusion == "bidirectional" else 0
    return 1 + max(history_frames(config.catch_up_s), held, 1)


def tracking_stage(
    config: "PipelineConfig",
    device: torch.device,
    propagator: MaskPropagator | None,
    track_ids: Iterator[int] | None,
    pipeline: "PerceptionPipeline",
) -> TrackingStage:
    """A pipeline's tracking stage: its tracks (ids from `track_ids`, within the caps), fuser (bidirectional
    fusion), catch-up and ring of tracked frames."""
    lag = (config.fusion_max_lag_frames, config.fusion_iou_threshold, propagator, config.fusion_max_lag_s)
    if propagator is not None:
        propagator.retain_frames(history_frames(config.catch_up_s))
    caps = (config.max_objects_per_command, config.max_tracks)
    descriptor = descriptor_for(config.tracker.descriptor, propagator)
    return TrackingStage(
        config.camera,
        TrackManager(config.tracker, track_ids, config.max_result_age_s, *caps, descriptor),
        make_fuser(config.fusion, *lag),
        propagator,
        pipeline.commands,
        pipeline.sink,
        pipeline.counters,
        pipeline.problem,
        catch_up=CatchUp(config.catch_up_s, config.catch_up_max_frames_per_step),
        frames=TrackedFrames(frames_kept(config), device),
    )
