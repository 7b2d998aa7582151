"""The node's cameras: each one's settings, and the memory their frame buffers will take.

Plain Python: the node reads these from parameters (cameras.names, cameras.<name>.<setting>) and
checks the budget at configure against a limit taken from the machine (free GPU memory, or a share
of the available memory on a CPU), so a configuration that cannot fit fails before any frame
arrives, with the numbers, instead of running out of memory mid-mission.
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


# On a CPU the frame rings live in the process's memory: they may take this share of what the kernel says
# is available at configure (the rest is for the models' activations, messages and other processes).
CPU_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class MemoryLimit:
    """The most the frame rings may take, and where that number comes from (said in a refusal)."""

    bytes: int
    source: str

    def text(self) -> str:
        return f"{self.bytes / MIB:.1f} MiB {self.source}"


def memory_limit(device: str, limit_mb: float, gpu_free: int | None, cpu_available: int | None) -> MemoryLimit:
    """The machine's room for the frame rings, lowered (never raised) by `limit_mb` (0: not lowered).

    On a GPU (`gpu_free` given) the rings live in its memory: what is free once the models are loaded.
    On a CPU: CPU_MEMORY_SHARE of `cpu_available` (bytes, MemAvailable) once the models are loaded.
    """
    if gpu_free is not None:
        machine = MemoryLimit(gpu_free, f"is free on {device} after loading the models")
    else:
        share = f"{CPU_MEMORY_SHARE:.0%} of the {cpu_available / MIB:.1f} MiB available (MemAvailable)"
        machine = MemoryLimit(int(cpu_available * CPU_MEMORY_SHARE), f"allowed on {device}: {share}")
    if limit_mb and round(limit_mb * MIB) < machine.bytes:
        return MemoryLimit(round(limit_mb * MIB), "allowed (buffer_memory_limit_mb)")
    return machine


def available_memory(meminfo: str = "/proc/meminfo") -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), a ValueError if it cannot say."""
    try:
        with open(meminfo) as file:
            fields = dict(line.split(":", 1) for line in file if ":" in line)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError) as error:
        raise ValueError(f"cannot read MemAvailable from {meminfo} ({error!r}) for the frame buffers' limit") from error


def check_budget(budget: BufferBudget, limit: MemoryLimit) -> None:
    """Raise ValueError with the numbers, and the parameters that set them, when the buffers exceed `limit`."""
    if budget.total > limit.bytes:
        raise ValueError(
            f"frame buffers need {budget.text()}, but only {limit.text()}: lower stream_frames / "
            "context_frames / catch_up_s / fusion_max_lag_frames or the cameras' max_width / max_height in the "
            "params file, or use fewer cameras"
        )
