"""The node's cameras: each one's settings, and the memory their frame buffers will take.

Plain Python: the node reads these from parameters (cameras.names, cameras.<name>.<setting>) and
checks the budget at configure, so a configuration that cannot fit fails before any frame
arrives, with the numbers, instead of running out of GPU memory mid-mission.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
MIB = 1024 * 1024


@dataclass(frozen=True)
class CameraConfig:
    """One camera: its topics, how its images arrive, and the largest frame it may send."""

    name: str
    image_topic: str = "image"
    transport: str = "raw"  # raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage (jpeg, png)
    reliability: str = "best_effort"
    queue_depth: int = 5
    depth_topic: str = "depth"  # "" = no depth for this camera
    camera_info_topic: str = "camera_info"
    max_width: int = 1920
    max_height: int = 1080

    def check(self) -> None:
        """Raise ValueError naming the parameter that is wrong."""
        prefix = f"cameras.{self.name}"
        if not _NAME.fullmatch(self.name) or self.name == "names":
            raise ValueError(f"camera name {self.name!r}: use 1-32 letters, digits or _, starting with a letter")
        if not self.image_topic:
            raise ValueError(f"{prefix}.image_topic is empty")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"{prefix}.transport = {self.transport!r}: use {' or '.join(TRANSPORTS)}")
        if self.reliability not in RELIABILITIES:
            raise ValueError(f"{prefix}.reliability = {self.reliability!r}: use {' or '.join(RELIABILITIES)}")
        if self.max_width < 1 or self.max_height < 1:
            raise ValueError(f"{prefix}.max_width and max_height must be positive")

    def too_large(self, height: int, width: int) -> str:
        """Why a frame of this size is refused ("" when it fits the budgeted size)."""
        if width <= self.max_width and height <= self.max_height:
            return ""
        return (
            f"{width}x{height} is larger than the {self.max_width}x{self.max_height} its buffers were budgeted for "
            f"(raise cameras.{self.name}.max_width / max_height)"
        )


def check_cameras(cameras: Sequence[CameraConfig]) -> None:
    """Every camera valid, at least one, no name or image topic used twice."""
    if not cameras:
        raise ValueError("cameras.names is empty: name at least one camera")
    for camera in cameras:
        camera.check()
    for field in ("name", "image_topic"):
        values = [getattr(c, field) for c in cameras]
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"two cameras share the {field.replace('_', ' ')} {', '.join(repeated)}")


@dataclass(frozen=True)
class BufferBudget:
    """Bytes the frame rings of every camera hold at their largest frames."""

    per_camera: dict[str, int]
    frames_per_camera: int

    @property
    def total(self) -> int:
        return sum(self.per_camera.values())

    def text(self) -> str:
        parts = ", ".join(f"{name} {size / MIB:.1f} MiB" for name, size in self.per_camera.items())
        return f"{self.total / MIB:.1f} MiB for {self.frames_per_camera} frames per camera ({parts})"


def buffer_budget(
    cameras: Sequence[CameraConfig], stream_frames: int, context_frames: int, tracked_frames: int = 0
) -> BufferBudget:
    """The rings' size: (stream + context + tracked) slots of max_width x max_height RGB8 per camera.

    The tracked ring holds the tracking worker's copies: the live frame, the last catch_up_s
    seconds for catch-up, the frames held for fusion. Windows handed to the models are copies of
    up to context_frames frames on top of this, held only while a query runs.
    """
    frames = stream_frames + context_frames + tracked_frames
    return BufferBudget({c.name: frames * c.max_width * c.max_height * 3 for c in cameras}, frames)


def check_budget(budget: BufferBudget, limit_mb: float, gpu_free: int | None, device: str) -> None:
    """Raise ValueError with the numbers when the buffers cannot fit.

    The room is the smaller of `limit_mb` (0: none) and the GPU memory free once the models are
    loaded (`gpu_free`, None on CPU, where only the limit applies).
    """
    rooms = []
    if limit_mb:
        rooms.append((round(limit_mb * MIB), "allowed (buffer_memory_limit_mb)"))
    if gpu_free is not None:
        rooms.append((gpu_free, f"is free on {device} after loading the models"))
    if not rooms:
        return
    available, where = min(rooms)
    if budget.total > available:
        raise ValueError(
            f"frame buffers need {budget.text()}, but only {available / MIB:.1f} MiB {where}: lower "
            "stream_frames / context_frames / catch_up_s or the cameras' max_width / max_height, or use fewer "
            "cameras"
        )
