"""Catch-up: carrying objects prompted on an older frame through the frames tracked since. No ROS.

Grounding answers on a frame the camera left a second ago. A tracker that follows an object from
where it last saw it (SAM2 does) would otherwise jump from the prompted frame straight to the
newest one, and lose anything that moved further than it searches. So the tracking stage keeps
the frames it stepped in the last `seconds` (copies it already made, on the device) and, before
a prompted object's next live step, steps that object alone through the frames after its prompt.

The work is bounded per live step: when more frames wait than `max_frames_per_step`, that many
are stepped, evenly spread over the span and always ending on the newest one (the object moves
by a few frames' motion between them instead of the whole span), and the others are skipped and
counted. Objects whose prompt came before a frame share its step (one batched call).
"""

import math
from collections import deque
from dataclasses import dataclass

from videomolmo_ros.pipeline.frame_buffer import Frame

# The history holds at most this many frames per second of `seconds` (memory is budgeted for it).
MAX_RATE_HZ = 30


def history_frames(seconds: float) -> int:
    """Frames the history holds at most for `seconds` of catch-up (0 disables it)."""
    return math.ceil(seconds * MAX_RATE_HZ) if seconds > 0 else 0


@dataclass(frozen=True)
class CatchUpPlan:
    """What one live step's catch-up does: frames (oldest first) with the objects stepped on each."""

    steps: tuple[tuple[Frame, tuple[int, ...]], ...]
    skipped: int  # frames of the span not stepped (over the per-step bound)


class CatchUp:
    """The tracked frames of the last `seconds` and the objects waiting to be carried through them.

    Owned by the tracking worker (not thread-safe).
    """

    def __init__(self, seconds: float, max_frames_per_step: int):
        if max_frames_per_step < 1:
            raise ValueError(f"catch_up_max_frames_per_step must be at least 1, got {max_frames_per_step}")
        self.seconds = seconds
        self.max_frames_per_step = max_frames_per_step
        self._history: deque[Frame] = deque(maxlen=max(1, history_frames(seconds)))
        self._pending: dict[int, int] = {}  # object id -> stamp of the frame it was prompted on

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    @property
    def capacity(self) -> int:
        return history_frames(self.seconds)

    @property
    def nbytes(self) -> int:
        """Bytes of the frames kept."""
        return sum(f.image.numel() * f.image.element_size() for f in tuple(self._history))

    def stepped(self, frame: Frame) -> None:
        """Remember a frame the live step went through; forget frames older than `seconds` before it."""
        if not self.enabled:
            return
        self._history.append(frame)
        oldest_ns = frame.meta.stamp_ns - round(self.seconds * 1e9)
        while self._history[0].meta.stamp_ns < oldest_ns:
            self._history.popleft()

    def prompted(self, object_ids: list[int], stamp_ns: int) -> None:
        """These objects were (re)started from a prompt on the frame stamped `stamp_ns`."""
        if self.enabled:
            self._pending.update(dict.fromkeys(object_ids, stamp_ns))

    def forget(self, object_ids: list[int]) -> None:
        for object_id in object_ids:
            self._pending.pop(object_id, None)

    def clear(self) -> None:
        """Forget frames and waiting objects (a time jump, a restart)."""
        self._history.clear()
        self._pending.clear()

    def plan(self) -> CatchUpPlan:
        """The steps that carry every waiting object to the newest tracked frame; nothing waits after."""
        pending, self._pending = self._pending, {}
        if not pending:
            return CatchUpPlan((), 0)
        span = [f for f in self._history if f.meta.stamp_ns > min(pending.values())]
        chosen = _spread(len(span), self.max_frames_per_step)
        steps = []
        for index in chosen:
            frame = span[index]
            ids = tuple(i for i, stamp in pending.items() if stamp < frame.meta.stamp_ns)
            if ids:
                steps.append((frame, ids))
        return CatchUpPlan(tuple(steps), len(span) - len(chosen))


def _spread(count: int, limit: int) -> list[int]:
    """`limit` indices of `count` evenly spread, the last one always included (all when they fit)."""
    if count <= limit:
        return list(range(count))
    return [round((k + 1) * count / limit) - 1 for k in range(limit)]
