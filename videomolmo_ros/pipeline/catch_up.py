"""Catch-up: carrying objects prompted on an older frame through the frames tracked since. No ROS.

Grounding answers on a frame the camera left a second ago. A tracker that follows an object from
where it last saw it (SAM2 does) would otherwise jump from the prompted frame straight to the
newest one, and lose anything that moved further than it searches. So the tracking worker keeps
the frames it tracked in the last `seconds` (its own copies, in a ring on the device:
tracked_frames.py) and, before a prompted object's next live step, steps that object alone
through the frames after its prompt.

The work is bounded per live step: when more frames wait than `max_frames_per_step`, that many
are stepped, evenly spread over the span and always ending on the newest one (the object moves
by a few frames' motion between them instead of the whole span), and the others are skipped and
counted. Objects whose prompt came before a frame share its step (one batched call).
"""

import math
from dataclasses import dataclass

from videomolmo_ros.contracts.frames import Frame

# Catch-up keeps at most this many frames per second of `seconds` (memory is budgeted for it).
MAX_RATE_HZ = 30


def history_frames(seconds: float) -> int:
    """Frames kept at most for `seconds` of catch-up (0 disables it)."""
    return math.ceil(seconds * MAX_RATE_HZ) if seconds > 0 else 0


@dataclass(frozen=True)
class CatchUpPlan:
    """What one live step's catch-up does: frames (oldest first) with the objects stepped on each."""

    steps: tuple[tuple[Frame, tuple[int, ...]], ...]
    skipped: int  # frames of the span not stepped (over the per-step bound)


class CatchUp:
    """The objects waiting to be carried through the tracked frames, and the plan to carry them.

    Owned by the tracking worker (not thread-safe).
    """

    def __init__(self, seconds: float, max_frames_per_step: int):
        if max_frames_per_step < 1:
            raise ValueError(f"catch_up_max_frames_per_step must be at least 1, got {max_frames_per_step}")
        self.seconds = seconds
        self.max_frames_per_step = max_frames_per_step
        self._pending: dict[int, int] = {}  # object id -> stamp of the frame it was prompted on

    def prompted(self, object_ids: list[int], stamp_ns: int) -> None:
        """These objects were (re)started from a prompt on the frame stamped `stamp_ns`."""
        if self.seconds > 0:
            self._pending.update(dict.fromkeys(object_ids, stamp_ns))

    def forget(self, object_ids: list[int]) -> None:
        for object_id in object_ids:
            self._pending.pop(object_id, None)

    def clear(self) -> None:
        """Forget the waiting objects (a time jump, a restart)."""
        self._pending.clear()

    def plan(self, tracked: list[Frame]) -> CatchUpPlan:
        """The steps that carry every waiting object through `tracked` (oldest first) to its newest frame.

        Only frames of the last `seconds` before the newest count; nothing waits afterwards.
        """
        pending, self._pending = self._pending, {}
        if not pending or not tracked:
            return CatchUpPlan((), 0)
        oldest_ns = max(min(pending.values()), tracked[-1].meta.stamp_ns - round(self.seconds * 1e9) - 1)
        span = [f for f in tracked if f.meta.stamp_ns > oldest_ns]
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
