"""Frames as every layer sees them: one image with its source, and a window of recent ones.

The pipeline's buffers hand these out and the backends read them; they sit here, below both,
so neither layer imports the other.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class FrameMeta:
    """Where a frame came from. `seq` counts pushes into its buffer and never repeats."""

    seq: int
    stamp_ns: int
    frame_id: str
    camera: str = ""  # the name of the camera (the node's cameras.names entry)


@dataclass(frozen=True)
class Frame:
    """One frame: an H x W x 3 uint8 RGB tensor on the buffer's device, with its source."""

    meta: FrameMeta
    image: torch.Tensor

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class FrameWindow:
    """The last K frames, oldest first, with what has been cached for each of them."""

    metas: tuple[FrameMeta, ...]
    images: torch.Tensor  # K x H x W x 3 uint8
    features: tuple[dict[str, Any], ...]
    # Where a feature computed for one of these frames is kept (the buffer they came from).
    store: Callable[[FrameMeta, str, Any], bool] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.metas)

    def put_feature(self, index: int, key: str, value: Any) -> bool:
        """Cache a feature of frame `index` in its buffer, so later windows get it for free.

        False when the frame has left the buffer (or the window has no buffer behind it).
        """
        self.features[index][key] = value
        return self.store is not None and self.store(self.metas[index], key, value)

    def frame(self, index: int) -> Frame:
        return Frame(self.metas[index], self.images[index])

    def seconds_since_first(self) -> list[float]:
        """Each frame's source time relative to the first frame, as video models take it."""
        first = self.metas[0].stamp_ns
        return [(meta.stamp_ns - first) / 1e9 for meta in self.metas]
