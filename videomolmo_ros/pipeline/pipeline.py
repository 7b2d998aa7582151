"""The perception pipeline: frames and commands in, targets, tracks and masks out. No ROS.

Two worker threads keep the camera callback free:

- the grounding worker runs the pointer at its own pace, round-robin over the running
  commands, each time on the newest context window, and never twice on the same window;
- the tracking worker steps the mask propagator on the newest camera frame, folds in the
  grounding results, and publishes tracks and masks at camera rate.

Drop policy (every drop is counted in `counters` under the name given here):

- a camera frame that arrives while the tracking worker is busy is superseded by newer
  frames: only the newest frame is tracked (`frames_skipped_tracking_busy`);
- an object prompted on an older frame is carried through the frames tracked since (catch-up,
  `catch_up_frames`), at most `catch_up_max_frames_per_step` of them per live step, spread over
  the span; the others are skipped (`catch_up_skipped`), and so are the steps planned after one that
  failed; frames older than `catch_up_s` are not kept;
- a grounding result whose command was stopped or replaced while the model ran is dropped
  (`groundings_dropped_command_gone`), and so is one whose frames are more than
  `max_result_age_s` older than the newest camera frame (`groundings_dropped_too_old`);
- a grounding's points that would start more tracks than `max_objects_per_command` (of its
  command) and `max_tracks` (of all commands on the camera) allow are dropped, the lowest scored
  first, else the last in the answer (`points_dropped_over_cap`); a point inside the mask of a
  track another point took is that object again (`points_dropped_same_object`); a new track whose
  first mask holds most of the answer's points is a region between objects, deleted
  (`tracks_rejected_region`), and new points there are dropped for 5 s (`points_dropped_in_region`); a track whose
  mask overlaps an older one's of the same command at IoU >= 0.7 is merged into it
  (`tracks_merged_duplicate`); LOST tracks (kept `tracker.max_lost_s`) are deleted, the longest
  unseen first, when a new object needs their room (`tracks_evicted_lost`); a returning object
  that looks like more than one LOST track gets a new id (`reid_ambiguous`); an appearance view
  that describes nothing (too few pixels under it, features that are not finite) is not learnt and
  takes no LOST id (`reid_views_undescribed`);
- a frame with the same stamp as the newest one is a duplicate and dropped
  (`frames_rejected_duplicate_stamp`);
- a frame older than the newest one (a looping or restarted bag) resets the buffers, tracks
  and propagator; commands keep running (`time_jump_resets`); a grounding of frames from
  before the reset is dropped (`groundings_dropped_reset`);
- a frame more than `max_result_age_s` newer than the previous one (a stalled camera, a gap in
  a bag) empties the context window, not the tracks (`time_gap_context_restarts`).
"""

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from videomolmo_ros.contracts.frames import FrameWindow
from videomolmo_ros.contracts.grounding import GroundingResult
from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.io.text import clip
from videomolmo_ros.pipeline.commands import (
    Command,
    CommandAction,
    CommandBook,
    CommandEvent,
    CommandRequest,
    CommandState,
    preview,
)
from videomolmo_ros.pipeline.counters import Counters
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer
from videomolmo_ros.pipeline.mask_fusion import TAU
from videomolmo_ros.pipeline.model_health import ModelHealth
from videomolmo_ros.pipeline.outputs import OutputSink
from videomolmo_ros.pipeline.publisher import QueuedSink
from videomolmo_ros.pipeline.track_manager import TrackerConfig
from videomolmo_ros.pipeline.tracking import Grounded, tracking_stage
from videomolmo_ros.pipeline.turns import TakeTurns


@dataclass(frozen=True)
class PipelineConfig:
    stream_frames: int = 4
    context_frames: int = 8
    context_fps: float = 2.0
    max_result_age_s: float = 5.0
    max_query_chars: int = 512
    max_commands: int = 16
    # Objects tracked at once (each costs a propagator step per frame): per command, and of all commands on the camera.
    max_objects_per_command: int = 8
    max_tracks: int = 32
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    fusion: str = "forward"  # forward (zero lag) or bidirectional (VideoMolmo's fusion, fixed lag)
    fusion_iou_threshold: float = TAU
    fusion_max_lag_frames: int = 30
    fusion_max_lag_s: float = 2.0  # ... or held this long (the stream ended or stalled): released unfused
    publish_queue: int = 0  # >0: outputs are published from a worker thread, at most this many waiting
    catch_up_s: float = 2.0  # objects prompted on an older frame are carried through the frames tracked since
    catch_up_max_frames_per_step: int = 8  # catch-up frames stepped per live step at most (the rest skipped)
    camera: str = ""  # the camera this pipeline serves: its frames' metas and its commands' selection


def ring_sizes(config: PipelineConfig, pointer: Pointer | None) -> tuple[int, int]:
    """Slots of the stream ring and of the context ring (0: the pointer reads the stream ring).

    A pointer that wants N consecutive camera frames (Pointer.camera_rate_frames) reads them from
    a stream ring of at least N slots, and no context ring is kept.
    """
    wanted = pointer.camera_rate_frames if pointer is not None else 0
    if wanted:
        return max(config.stream_frames, wanted), 0
    return config.stream_frames, config.context_frames


def with_changes(config: PipelineConfig, changes: dict[str, object]) -> PipelineConfig:
    """`config` with settings named as the node's parameters (max_result_age_s, tracker.match_distance, ...)."""
    tracker = {k.removeprefix("tracker."): v for k, v in changes.items() if k.startswith("tracker.")}
    top = {k: v for k, v in changes.items() if not k.startswith("tracker.")}
    try:
        return replace(config, **top, tracker=replace(config.tracker, **tracker))
    except TypeError as error:
        raise ValueError(f"not a runtime setting: {error}") from error


class PerceptionPipeline:
    """Owns one camera's buffers, tracks and two workers.

    Several cameras run one pipeline each, sharing the command book (`commands`), the track id
    counter (`track_ids`, so ids are unique across cameras) and turns on the pointer model
    (`pointer_turns`); each pipeline needs its own propagator (MaskPropagator.for_another_camera).
    """

    def __init__(
        self,
        config: PipelineConfig,
        device: torch.device,
        pointer: Pointer | None,
        propagator: MaskPropagator | None,
        sink: OutputSink,
        commands: CommandBook | None = None,
        track_ids: Iterator[int] | None = None,
        pointer_turns: TakeTurns | None = None,
    ):
        self.config = config
        self.camera = config.camera
        self.device = device
        self.pointer = pointer
        self.propagator = propagator
        self._publisher = (
            QueuedSink(sink, config.publish_queue, self.problem, f"publish-{config.camera}")
            if config.publish_queue
            else None
        )
        self.sink = self._publisher or sink
        self.counters = Counters()
        self.commands = commands or CommandBook(config.max_query_chars, config.max_commands, (config.camera,))
        self._pointer_turns = pointer_turns or TakeTurns()
        stream_frames, context_frames = ring_sizes(config, pointer)
        self.stream = FrameBuffer(stream_frames, device, camera=config.camera)
        # A pointer that reads consecutive camera frames gets them from the stream ring.
        self.context = (
            FrameBuffer(context_frames, device, sample_period_s=1.0 / config.context_fps, camera=config.camera)
            if context_frames
            else self.stream
        )
        self._window_frames = context_frames or pointer.camera_rate_frames
        self._stage = tracking_stage(config, device, propagator, track_ids, self)  # the tracking worker's alone
        self.last_grounding_s: float | None = None
        self.pointer_health, self.propagator_health = ModelHealth("pointer", "grounding"), self._stage.health
        self._wake = threading.Condition()
        self._results: deque[Grounded] = deque()
        self._controls: deque[Callable[[], None]] = deque()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, args=(self._tracking_turn,), name="tracking", daemon=True),
            threading.Thread(target=self._run, args=(self._grounding_turn,), name="grounding", daemon=True),
        ]
        self._tracked_seq = -1  # tracking worker only
        self._grounded: dict[tuple[str, int], int] = {}  # grounding worker only
        self._epoch = 0  # counts restarts; guarded by _wake

    # ----------------------------------------------------------------- inputs (any thread)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers; a running model call is waited for up to `timeout_s`, then abandoned.

        An abandoned worker (a daemon thread) ends when its call returns, reporting and publishing nothing.
        Frames held for fusion are published as they are: no keyframe will come for them.
        """
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout_s)
        if not self._threads[0].is_alive():  # the tracking worker's state is ours now
            self._stage.release_held()
        if self._publisher is not None:
            self._publisher.close(timeout_s)

    @property
    def buffer_bytes(self) -> int:
        """Bytes the frame rings hold (one ring when the pointer reads the stream ring), and the tracker's copies."""
        context = self.context.nbytes if self.context is not self.stream else 0
        return self.stream.nbytes + context + self._stage.frames.nbytes

    def reconfigure(self, **changes: float) -> None:
        """Change thresholds while running, named as the node's parameters (tracker.match_distance, ...)."""
        config = with_changes(self.config, changes)
        self.config = config
        self._stage.tracker.config = config.tracker  # one reference swap: the tracking worker sees old or new

    def problem(self, key: str, message: str, amount: int = 1) -> None:
        """Count `amount` problems (points of one answer, DDS losses) under `key`; report it naming the camera."""
        self.counters.add(key, amount)
        self.sink.problem(key, f"camera {self.camera}: {message}" if self.camera else message)

    def submit_frame(self, image: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        """Buffer an H x W x 3 uint8 RGB camera frame. Cheap: called from the image callback."""
        self.counters.add("frames_received")
        newest = self.stream.newest()
        if newest is not None and stamp_ns == newest.stamp_ns:
            self.problem(
                "frames_rejected_duplicate_stamp",
                f"image stamped {stamp_ns / 1e9:.3f} s dropped: the previous image has the same stamp "
                "(a driver publishing a frame twice?)",
            )
            return
        if newest is not None and stamp_ns < newest.stamp_ns:
            self.problem(
                "time_jump_resets",
                f"image stamps went back from {newest.stamp_ns / 1e9:.3f} s to {stamp_ns / 1e9:.3f} s "
                "(a looping or restarted bag?): buffers, tracks and masks restart; commands keep running",
            )
            self._restart()
        elif newest is not None and 0 < self.config.max_result_age_s < (stamp_ns - newest.stamp_ns) / 1e9:
            self.problem(
                "time_gap_context_restarts",
                f"image stamps jumped forward {(stamp_ns - newest.stamp_ns) / 1e9:.1f} s (a stalled camera or a "
                "gap in a bag): the grounding context restarts so the model never combines frames that far "
                "apart; tracks keep running",
            )
            self.context.clear()
        shape = self.stream.frame_shape
        if shape is not None and shape != image.shape:
            self.problem(
                "resolution_changes",
                f"image size changed from {shape[1]}x{shape[0]} to {image.shape[1]}x{image.shape[0]}: "
                "buffers, tracks and masks restart",
            )
            self._restart()
        tensor = torch.from_numpy(image).to(self.device)
        self.stream.push(tensor, stamp_ns, frame_id)
        if self.context is not self.stream:
            self.context.push(tensor, stamp_ns, frame_id)
        with self._wake:
            self._wake.notify_all()

    def submit_command(self, request: CommandRequest) -> list[CommandEvent]:
        """Apply a command; the events say what was accepted, rejected or stopped."""
        if self.pointer is None and request.action in (CommandAction.ADD, CommandAction.REPLACE):
            self.counters.add("commands_rejected")
            reason = "no pointer backend is configured (set the pointer_backend parameter)"
            return [CommandEvent(CommandState.REJECTED, clip(request.id, 64), preview(request.query), reason)]
        events = self.commands.apply(request)
        for event in events:
            self.counters.add(f"commands_{event.state.name.lower()}")
        self.commands_changed(events)
        return events

    def commands_changed(self, events: list[CommandEvent]) -> None:
        """Forget the tracks of stopped commands and wake the workers (the book may be shared)."""
        for event in events:
            if event.state is CommandState.STOPPED:
                self._control(lambda command_id=event.id: self._stage.forget_command(command_id))
        with self._wake:
            self._wake.notify_all()

    def _restart(self) -> None:
        with self._wake:  # with the buffers, so no grounding pairs a window of before with the new epoch
            self._epoch += 1
            self.stream.clear()
            self.context.clear()
        self._control(self._stage.forget_all)  # _tracked_seq stays: no frame is tracked twice

    def _control(self, action: Callable[[], None]) -> None:
        """Run `action` on the tracking worker, which alone touches tracks and the propagator."""
        with self._wake:
            self._controls.append(action)
            self._wake.notify_all()

    # ----------------------------------------------------------------- workers

    def _run(self, turn: Callable[[], bool]) -> None:
        """A worker loop: one bug or model failure is reported, never the end of the worker."""
        while True:
            try:
                if not turn():
                    return
            except Exception as error:
                if self._stopping:
                    return  # an abandoned worker: its outputs, ROS context included, are gone
                self.problem(
                    "internal_errors",
                    f"{threading.current_thread().name} worker: {error!r}\n{traceback.format_exc()}",
                )
                time.sleep(0.1)

    def _tracking_has_work(self) -> bool:
        newest = self.stream.newest()
        fresh_frame = self.propagator is not None and newest is not None and newest.seq > self._tracked_seq
        return bool(self._controls or self._results or fresh_frame)

    def _tracking_turn(self) -> bool:
        due_s = self._stage.release_overdue()  # frames held for fusion too long; wake when the next one is due
        with self._wake:
            self._wake.wait_for(lambda: self._stopping or self._tracking_has_work(), timeout=due_s)
            if self._stopping:
                return False
            controls, self._controls = list(self._controls), deque()
            results, self._results = list(self._results), deque()
            epoch = self._epoch
        for action in controls:
            action()
        for grounded in results:
            self._apply_grounding(grounded)
        if results:
            self._stage.catch_up()
        newest = self.stream.newest()
        if self.propagator is None or newest is None or newest.seq <= self._tracked_seq:
            return True
        if not self.commands.running(self.camera):
            self._tracked_seq = newest.seq  # nothing to track: not a skip, no frame copy, no model step
            return True
        frame = self._stage.take(self.stream)
        with self._wake:
            if self._epoch != epoch:  # restarted meanwhile: the next turn forgets the old state first
                return True
        if frame is not None:
            if self._tracked_seq >= 0:
                self.counters.add("frames_skipped_tracking_busy", frame.meta.seq - self._tracked_seq - 1)
            self._tracked_seq = frame.meta.seq
            self._stage.track(frame)
        return True

    def _next_grounding(self) -> tuple[Command, FrameWindow] | None:
        """The next command with a context window it has not been grounded on yet."""
        newest = self.context.newest()
        if newest is None:
            return None
        running = self.commands.running(self.camera)
        running_ids = {c.id for c in running}
        self._grounded = {key: seq for key, seq in self._grounded.items() if key[0] in running_ids}
        for _ in range(len(running)):
            command = self.commands.next_turn(self.camera)
            if command is not None and self._grounded.get((command.id, command.generation), -1) < newest.seq:
                window = self.context.window(self._window_frames)
                return (command, window) if window is not None else None
        return None

    def _grounding_turn(self) -> bool:
        choice = None

        def ready() -> bool:
            nonlocal choice
            choice = None if self._stopping else self._next_grounding()
            return self._stopping or choice is not None

        with self._wake:
            self._wake.wait_for(ready)
            if self._stopping:
                return False
            epoch = self._epoch
        command, window = choice
        self._grounded[(command.id, command.generation)] = window.metas[-1].seq
        try:
            result = self._ground(window, command)
        except Exception as error:
            if not self._stopping:
                self.problem("grounding_failures", f"grounding {command.query!r} failed: {error!r}")
            return not self._stopping
        self.counters.add("groundings")
        if result.skipped_frames:
            self.counters.add("grounding_frames_not_shown_same_time", result.skipped_frames)
        with self._wake:
            self._results.append(Grounded(command, window, result, epoch))
            self._wake.notify_all()
        return True

    def _ground(self, window: FrameWindow, command: Command) -> GroundingResult:
        """One pointer call, in this camera's turn on the model, judged; its time (not the wait) is reported."""
        with self._pointer_turns.turn(), self.pointer_health.call():
            started = time.monotonic()
            try:
                return self.pointer.ground(window, command.query, command.mode)
            finally:
                self.last_grounding_s = time.monotonic() - started

    def _apply_grounding(self, grounded: Grounded) -> None:
        """Hand a grounding to the tracking stage unless its command, the buffers or its frames moved on."""
        command, window = grounded.command, grounded.window
        if not self.commands.is_current(command):
            self.counters.add("groundings_dropped_command_gone")
            return
        with self._wake:
            if grounded.epoch != self._epoch:
                self.counters.add("groundings_dropped_reset")
                return
        newest = self.stream.newest()
        age_s = 0.0 if newest is None else (newest.stamp_ns - window.metas[-1].stamp_ns) / 1e9
        if age_s > self.config.max_result_age_s:
            self.problem(
                "groundings_dropped_too_old",
                f"grounding of {command.query!r} dropped: its frames are {age_s:.1f} s behind the camera "
                f"(max_result_age_s = {self.config.max_result_age_s})",
            )
            return
        self._stage.apply_grounding(grounded)
