"""Per-track 3D velocity from recent positions: a constant-velocity fit over a short window. No ROS.

A planner grasping or avoiding a moving object needs its velocity, and one frame-to-frame
difference is mostly depth noise (a 2 mm jitter at 15 Hz is 3 cm/s). The velocity is the
least-squares slope of the positions over the last `window_s` (a constant-velocity model), so
noise averages out over the window while a change of motion shows within it. A track's history
restarts when its positions change frame or time goes back (a looping bag); memory is bounded
by `capacity` tracks, the longest-unseen forgotten first.
"""

from collections import OrderedDict, deque
from collections.abc import Hashable

import numpy as np

from videomolmo_ros.io.depth_projection import Point3


class VelocityFilter:
    """Velocities (m/s, in the positions' frame) per key, e.g. (camera, command, track id)."""

    def __init__(self, window_s: float = 0.5, min_samples: int = 3, capacity: int = 1024):
        self.window_ns = round(window_s * 1e9)
        self.min_samples = min_samples
        self.capacity = capacity
        self._history: OrderedDict[Hashable, tuple[str, deque[tuple[int, Point3]]]] = OrderedDict()

    def __len__(self) -> int:
        """Tracks remembered."""
        return len(self._history)

    def update(self, key: Hashable, stamp_ns: int, xyz: Point3, frame_id: str) -> Point3 | None:
        """Adds a position; the velocity over the window, or None until it holds `min_samples` spanning half of it."""
        frame, samples = self._history.pop(key, (frame_id, deque()))
        if frame != frame_id or (samples and stamp_ns <= samples[-1][0]):
            samples = deque()
        samples.append((stamp_ns, xyz))
        while stamp_ns - samples[0][0] > self.window_ns:
            samples.popleft()
        self._history[key] = (frame_id, samples)
        if len(self._history) > self.capacity:
            self._history.popitem(last=False)
        if len(samples) < self.min_samples or stamp_ns - samples[0][0] < self.window_ns / 2:
            return None
        return _slope(samples)


def _slope(samples: deque[tuple[int, Point3]]) -> Point3:
    t = np.array([s for s, _ in samples], dtype=np.float64) * 1e-9
    t -= t.mean()
    xyz = np.array([p for _, p in samples], dtype=np.float64)
    vx, vy, vz = (t @ (xyz - xyz.mean(axis=0))) / (t @ t)
    return float(vx), float(vy), float(vz)
