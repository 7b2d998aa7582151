"""Rolling buffer of recent camera frames, kept on the model's device.

A preallocated ring (one tensor, `capacity` slots) bounds memory on an endless stream and
avoids allocator churn on the GPU. Each slot carries the source stamp and frame_id, so every
output can be stamped with the header of the image it came from, and a per-frame feature
cache, so a temporal model encodes each frame once however many queries read it.

Readers get copies of exactly the frames they ask for (one gather kernel), never views of the
ring: the camera thread keeps overwriting slots while a slow model is still reading.
"""

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from videomolmo_ros.contracts.frames import Frame, FrameMeta, FrameWindow


class StampOrderError(ValueError):
    """A frame older than the newest buffered one: the caller decides whether to reset."""


@dataclass
class _Slot:
    meta: FrameMeta | None = None
    features: dict[str, Any] = field(default_factory=dict)


class FrameBuffer:
    """A fixed-capacity ring of frames on `device`, safe to use from several threads.

    `sample_period_s` decimates the stream: source time is cut into slots of that length from
    the first frame on, and only the first frame of each slot is stored, so the kept rate is
    exactly 1 / period on average whatever the camera's stamp rounding or jitter (a 2 Hz
    context window for a video model, fed from a 30 fps camera, holds 4 s of video in 8 slots).
    """

    def __init__(
        self, capacity: int, device: torch.device | str = "cpu", sample_period_s: float = 0.0, camera: str = ""
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.sample_period_ns = round(sample_period_s * 1e9)
        self.camera = camera
        self._origin_ns = 0  # start of the first sampling slot
        self._lock = threading.Lock()
        self._ring: torch.Tensor | None = None
        self._slots = [_Slot() for _ in range(capacity)]
        self._next_seq = 0
        self._newest: FrameMeta | None = None

    @property
    def frame_shape(self) -> tuple[int, int, int] | None:
        """(H, W, 3) of the allocated ring, None before the first frame."""
        return None if self._ring is None else tuple(self._ring.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes held by the ring itself (cached features not included)."""
        return 0 if self._ring is None else self._ring.numel() * self._ring.element_size()

    def __len__(self) -> int:
        with self._lock:
            return len(self._held())

    def newest(self) -> FrameMeta | None:
        with self._lock:
            return self._newest

    def push(self, image: np.ndarray | torch.Tensor, stamp_ns: int, frame_id: str) -> FrameMeta | None:
        """Store an H x W x 3 uint8 frame; return its meta, or None when decimation skipped it.

        A frame of another size than the ring reallocates it (and forgets older frames: the
        window must be of one resolution). Raises StampOrderError for a frame older than the
        newest one, so a looping bag is noticed instead of scrambling the window.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"expected an H x W x 3 uint8 image, got {tuple(image.shape)} {image.dtype}")
        with self._lock:
            newest = self._newest
            if newest is not None:
                if stamp_ns < newest.stamp_ns:
                    raise StampOrderError(
                        f"frame stamp {stamp_ns / 1e9:.3f} s is older than the newest buffered "
                        f"frame ({newest.stamp_ns / 1e9:.3f} s)"
                    )
                if self.sample_period_ns and self._slot_of(stamp_ns) <= self._slot_of(newest.stamp_ns):
                    return None
            if self._ring is None or tuple(self._ring.shape[1:]) != tuple(image.shape):
                self._allocate(tuple(image.shape))
            if self._newest is None:
                self._origin_ns = int(stamp_ns)
            meta = FrameMeta(self._next_seq, int(stamp_ns), frame_id, self.camera)
            slot_index = meta.seq % self.capacity
            source = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
            self._ring[slot_index].copy_(source, non_blocking=False)
            self._slots[slot_index] = _Slot(meta)
            self._next_seq += 1
            self._newest = meta
            return meta

    def _slot_of(self, stamp_ns: int) -> int:
        return (stamp_ns - self._origin_ns) // self.sample_period_ns

    def _allocate(self, shape: tuple[int, ...]) -> None:
        self._ring = None  # release the old ring before allocating the new one
        self._ring = torch.zeros((self.capacity, *shape), dtype=torch.uint8, device=self.device)
        self._slots = [_Slot() for _ in range(self.capacity)]
        self._newest = None

    def clear(self) -> None:
        """Forget every frame (the ring stays allocated); sequence numbers keep counting."""
        with self._lock:
            self._slots = [_Slot() for _ in range(self.capacity)]
            self._newest = None

    def _held(self) -> list[int]:
        """Ring indices of the frames held, oldest first."""
        if self._newest is None:
            return []
        newest = self._newest.seq
        return [
            seq % self.capacity
            for seq in range(max(0, newest - self.capacity + 1), newest + 1)
            if self._slots[seq % self.capacity].meta is not None and self._slots[seq % self.capacity].meta.seq == seq
        ]

    def window(self, count: int) -> FrameWindow | None:
        """Copies of the last `count` frames (fewer if fewer are held), or None when empty."""
        with self._lock:
            indices = self._held()[-count:] if count > 0 else []
            if not indices:
                return None
            images = self._ring.index_select(0, torch.tensor(indices, device=self.device))
            return FrameWindow(
                metas=tuple(self._slots[i].meta for i in indices),
                images=images,
                features=tuple(dict(self._slots[i].features) for i in indices),
                store=self.put_feature,
            )

    def latest(self) -> Frame | None:
        """A copy of the newest frame, or None when empty (a plain copy: faster than a one-frame gather)."""
        with self._lock:
            newest = self._newest
        return None if newest is None else self.get(newest.seq)

    def newest_into(self, destination: torch.Tensor) -> FrameMeta | None:
        """Copy the newest frame into `destination` (the reader's own H x W x 3 uint8 tensor) and return its meta.

        A copy without allocating one. None when empty or when the frame is not of destination's shape.
        """
        with self._lock:
            newest = self._newest
            if newest is None or tuple(destination.shape) != tuple(self._ring.shape[1:]):
                return None
            destination.copy_(self._ring[newest.seq % self.capacity])
            return newest

    def get(self, seq: int) -> Frame | None:
        """A copy of frame `seq` if it is still held."""
        with self._lock:
            slot = self._slots[seq % self.capacity]
            if slot.meta is None or slot.meta.seq != seq:
                return None
            return Frame(slot.meta, self._ring[seq % self.capacity].clone())

    def put_feature(self, meta: FrameMeta, key: str, value: Any) -> bool:
        """Cache a computed feature beside its frame; False when the frame is already gone.

        The cache lives and dies with the slot, so cached features are bounded like frames.
        """
        with self._lock:
            slot = self._slots[meta.seq % self.capacity]
            if slot.meta != meta:
                return False
            slot.features[key] = value
            return True
