"""The node's parameters: declared with their descriptions and ranges, read into the core's configs.

Also the rule for changing them at runtime: only the thresholds in RUNTIME_PARAMETERS change
while the node is active; the rest take effect at the next configure.
"""

import functools
from dataclasses import dataclass

import torch
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from videomolmo_ros.backends import registry
from videomolmo_ros.backends.pointer_process import PointerProcess
from videomolmo_ros.pipeline.cameras import CameraConfig, check_cameras
from videomolmo_ros.pipeline.device import resolve_device
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig
from videomolmo_ros.pipeline.track_manager import TrackerConfig

# Parameters that can change while the node runs; the others need a reconfigure.
RUNTIME_PARAMETERS = frozenset(
    {"max_result_age_s", "tracker.match_distance", "tracker.confirm_frames", "tracker.max_lost_frames"}
)


class ConfigError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


@dataclass(frozen=True)
class NodeSettings:
    """What configure read: the core's configs and the ROS shell's own settings."""

    device: torch.device
    pipeline: PipelineConfig
    cameras: tuple[CameraConfig, ...]
    mask_compression: int
    stats_period_s: float
    use_depth: bool
    depth_unit_divisor: float
    depth_sync_tolerance_s: float
    target_frame: str
    debug_views: bool
    buffer_memory_limit_mb: float
    pointer_process: bool


class Parameters:
    """Declares (once: configure may run again) and reads the node's parameters."""

    def __init__(self, node: Node):
        self._node = node

    def declare(self, name: str, default, description: str, bounds: tuple | None = None):
        """Declare `name` if new and return its value, enforcing its bounds."""
        if not self._node.has_parameter(name):
            descriptor = ParameterDescriptor(description=description)
            if bounds is not None and isinstance(default, int) and not isinstance(default, bool):
                descriptor.integer_range = [IntegerRange(from_value=bounds[0], to_value=bounds[1], step=1)]
            elif bounds is not None and isinstance(default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=bounds[0], to_value=bounds[1])]
            self._node.declare_parameter(name, default, descriptor)
        value = self._node.get_parameter(name).value
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ConfigError(f"parameter {name} = {value} is outside [{bounds[0]}, {bounds[1]}]")
        return value

    def read(self) -> NodeSettings:
        """Every setting of the node (the backends' options are read by `backend`)."""
        p = self.declare
        return NodeSettings(
            device=resolve_device(p("device", "auto", "auto, cpu, cuda or cuda:N")),
            pipeline=self._pipeline_config(),
            cameras=tuple(self._camera_configs()),
            mask_compression=p("mask_png_compression", 1, "PNG level of ObjectMasks data", (0, 9)),
            stats_period_s=p("stats_period_s", 10.0, "counters log period (0 = never)", (0.0, 3600.0)),
            use_depth=p("use_depth", False, "3D positions from the depth and camera_info topics"),
            depth_unit_divisor=p(
                "depth_unit_divisor", 0.0, "raw depth per metre (0: 1000 for 16UC1, 1 for 32FC1)", (0.0, 1e9)
            ),
            depth_sync_tolerance_s=p("depth_sync_tolerance_s", 0.02, "depth-colour stamp gap", (0.0, 1.0)),
            target_frame=p("target_frame", "", "frame to express positions in (needs tf2)"),
            debug_views=p("debug_views", True, "offer debug_image and debug_markers"),
            buffer_memory_limit_mb=p(
                "buffer_memory_limit_mb", 0.0, "frame buffers' limit (0: free GPU memory)", (0.0, 1e7)
            ),
            pointer_process=p("pointer_process", False, "run the pointer in a process of its own (frames shared)"),
        )

    def _pipeline_config(self) -> PipelineConfig:
        p = self.declare
        return PipelineConfig(
            stream_frames=p("stream_frames", 4, "camera-rate ring size (tracking reads the newest)", (1, 256)),
            context_frames=p("context_frames", 8, "frames the grounding model sees per query", (1, 384)),
            context_fps=p("context_fps", 2.0, "rate the context frames are sampled at, Hz", (0.01, 120.0)),
            max_result_age_s=p(
                "max_result_age_s", 5.0, "drop a grounding whose frames are older than this", (0.0, 600.0)
            ),
            max_query_chars=p("max_query_chars", 512, "longer queries are rejected", (1, 100_000)),
            max_commands=p("max_commands", 16, "commands running at once", (1, 1024)),
            fusion=p("fusion", "forward", "forward (masks at once) or bidirectional (VideoMolmo fusion, late)"),
            fusion_iou_threshold=p("fusion_iou_threshold", 0.7, "IoU above which fused masks intersect", (0.0, 1.0)),
            fusion_max_lag_frames=p(
                "fusion_max_lag_frames", 30, "frames held for fusion before release unfused", (1, 10_000)
            ),
            fusion_max_lag_s=p(
                "fusion_max_lag_s", 2.0, "seconds held for fusion before release unfused", (0.01, 3600.0)
            ),
            publish_queue=p(
                "publish_queue",
                32,
                "outputs waiting for the publisher thread at most (0: publish on tracking)",
                (0, 10_000),
            ),
            catch_up_s=p(
                "catch_up_s", 2.0, "carry late-grounded objects through the frames of this many seconds", (0.0, 10.0)
            ),
            catch_up_max_frames_per_step=p(
                "catch_up_max_frames_per_step", 8, "catch-up frames stepped per live step at most", (1, 1000)
            ),
            tracker=TrackerConfig(
                confirm_frames=p("tracker.confirm_frames", 3, "frames seen before tentative -> tracked", (1, 1000)),
                max_lost_frames=p(
                    "tracker.max_lost_frames", 90, "frames unseen before a track is deleted", (0, 1_000_000)
                ),
                match_distance=p(
                    "tracker.match_distance", 0.15, "max point-track distance (image diagonals)", (0.0, 1.0)
                ),
            ),
        )

    def _camera_configs(self) -> list[CameraConfig]:
        """cameras.names, then cameras.<name>.<setting>; the first camera's topics keep the old names."""
        names = self.declare("cameras.names", ["main"], "camera names; the first is the default camera")
        cameras = []
        for index, name in enumerate(names):
            topic = (lambda leaf: leaf) if index == 0 else (lambda leaf, name=name: f"{name}/{leaf}")
            p = functools.partial(self._camera_param, name)
            cameras.append(
                CameraConfig(
                    name=name,
                    image_topic=p("image_topic", topic("image"), "sensor_msgs/Image or CompressedImage topic"),
                    transport=p("transport", "raw", "raw (Image) or compressed (CompressedImage: jpeg, png)"),
                    reliability=p("reliability", "best_effort", "best_effort (SensorDataQoS) or reliable"),
                    queue_depth=p("queue_depth", 5, "image subscription keep-last depth", (1, 1000)),
                    depth_topic=p("depth_topic", topic("depth"), "registered depth image (use_depth); empty: none"),
                    camera_info_topic=p("camera_info_topic", topic("camera_info"), "the colour camera's CameraInfo"),
                    max_width=p("max_width", 1920, "widest frame; buffers are budgeted for it", (1, 16384)),
                    max_height=p("max_height", 1080, "tallest frame; buffers are budgeted for it", (1, 16384)),
                )
            )
        try:
            check_cameras(cameras)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        return cameras

    def _camera_param(self, camera: str, setting: str, default, description: str, bounds: tuple | None = None):
        return self.declare(f"cameras.{camera}.{setting}", default, description, bounds)

    def backend(self, role: str, kind: type, device: torch.device, own_process: bool = False):
        """The backend `<role>_backend` names, built with its options `<prefix>.<option>`; None if unset.

        `own_process`: a pointer run in a child process (PointerProcess), built there from the same options.
        """
        spec = self.declare(f"{role}_backend", "", f"{role}: a registered name or package.module:Class")
        if not spec:
            return None
        cls = registry.resolve(spec, kind)
        prefix = registry.parameter_prefix(spec)
        options = {
            name: self.declare(f"{prefix}.{name}", default, f"option of {cls.__name__}")
            for name, default in registry.option_defaults(cls).items()
        }
        if own_process:
            return PointerProcess(spec, options, device)
        return registry.create(spec, kind, device, options)

    def warn_unknown(self) -> None:
        """Say which given parameters the node has no use for (a typo'd camera or option name).

        rclpy drops them without a word. Options of the backends not chosen are not reported:
        one params file configures every backend.
        """
        backends = {*registry.POINTERS, *registry.PROPAGATORS}
        unknown = sorted(
            name
            for name in self._node._parameter_overrides
            if not self._node.has_parameter(name) and name.split(".")[0] not in backends
        )
        if unknown:
            self._node.get_logger().warning(
                f"parameters given but unknown to the node (typos?), ignored: {', '.join(unknown)}"
            )

    @staticmethod
    def on_set(params, pipelines: list[PerceptionPipeline]) -> SetParametersResult:
        """Apply safe changes at once; refuse bad values and changes that need a reconfigure."""
        if not pipelines:
            return SetParametersResult(successful=True)  # before activation, configure reads them
        changes = {}
        for param in params:
            if param.name not in RUNTIME_PARAMETERS:
                return SetParametersResult(successful=False, reason=f"{param.name} needs a reconfigure")
            changes[param.name] = param.value
        try:
            for pipeline in pipelines:
                pipeline.reconfigure(**changes)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)
