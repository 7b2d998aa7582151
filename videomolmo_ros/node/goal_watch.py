"""When a planner's Ground goal is done: the rule, apart from ROS's action machinery."""

import threading
from dataclasses import dataclass, field

from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.pipeline.outputs import TargetsOutput, TracksOutput
from videomolmo_ros.pipeline.track_manager import TrackState

DEFAULT_TRACK_FRAMES = 30


@dataclass
class GoalWatch:
    """Collects one goal's outputs (from the pipeline's worker threads) and says when it is done.

    Point mode: done at the first grounding that found targets. Track mode: done once
    `track_frames` frames have had at least one TRACKED track (the object is confirmed and
    followed, not just seen once).
    """

    mode: GroundingMode
    track_frames: int = DEFAULT_TRACK_FRAMES
    targets: TargetsOutput | None = None
    confident: TargetsOutput | None = None
    tracks: TracksOutput | None = None
    tracked_frames: int = 0
    _fresh: list[TargetsOutput] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_targets(self, output: TargetsOutput) -> None:
        with self._lock:
            self.targets = output
            self._fresh.append(output)
            if output.targets and self.confident is None:
                self.confident = output

    def on_tracks(self, output: TracksOutput) -> None:
        with self._lock:
            self.tracks = output
            if any(t.state is TrackState.TRACKED for t in output.tracks):
                self.tracked_frames += 1

    def feedback(self) -> list[TargetsOutput]:
        """Targets that arrived since the last call, to send as feedback."""
        with self._lock:
            fresh, self._fresh = self._fresh, []
            return fresh

    def done(self) -> bool:
        with self._lock:
            if self.mode is GroundingMode.POINT:
                return self.confident is not None
            return self.tracked_frames >= (self.track_frames or DEFAULT_TRACK_FRAMES)
