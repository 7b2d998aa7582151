"""The tracking worker's own copies of the frames it tracks, in a ring on the device. No ROS.

The tracker reads each camera frame as a copy: the camera thread keeps overwriting the stream
ring while a model step runs. A fresh tensor per frame costs a page-faulting allocation the size
of the frame (at 1080p more than the copy itself, as long as older copies are kept); a ring
allocated once does not. The ring also holds what the tracker looks back at: the frames of the
last seconds for catch-up and the frames fusion holds. Only the tracking worker takes and reads,
so a frame taken stays valid until `capacity - 1` more frames are taken.
"""

from collections import deque

import torch

from videomolmo_ros.contracts.frames import Frame
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer


class TrackedFrames:
    """A ring of `capacity` frames on `device`: the newest frames the tracking worker took, as views."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu"):
        if capacity < 2:
            raise ValueError(
                f"the tracked-frame ring needs at least 2 slots (the live frame and one more), got {capacity}"
            )
        self.capacity = capacity
        self.device = torch.device(device)
        self._ring: torch.Tensor | None = None
        self._taken: deque[Frame] = deque(maxlen=capacity)
        self._next = 0  # slot the next frame goes to

    @property
    def nbytes(self) -> int:
        """Bytes of the ring (allocated at the first frame, for its size)."""
        ring = self._ring
        return 0 if ring is None else ring.numel() * ring.element_size()

    def take(self, source: FrameBuffer) -> Frame | None:
        """A copy of `source`'s newest frame in the next slot, with its meta; None when `source` is empty.

        The ring is (re)allocated for the first frame and when the frame size changes.
        """
        shape = source.frame_shape
        if shape is None:
            return None
        if self._ring is None or tuple(self._ring.shape[1:]) != shape:
            self._ring = None  # release the old ring before allocating the new one
            self._ring = torch.empty((self.capacity, *shape), dtype=torch.uint8, device=self.device)
            self._taken.clear()
        slot = self._ring[self._next]
        meta = source.newest_into(slot)
        if meta is None:
            return None
        self._next = (self._next + 1) % self.capacity
        frame = Frame(meta, slot)
        self._taken.append(frame)
        return frame

    def recent(self) -> list[Frame]:
        """The frames taken, oldest first (each still valid: the ring holds exactly these)."""
        return list(self._taken)

    def clear(self) -> None:
        """Forget the frames taken (the ring stays allocated)."""
        self._taken.clear()
