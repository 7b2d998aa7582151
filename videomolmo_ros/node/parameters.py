"""The node's parameters: declared with their descriptions and ranges, read into the core's configs.

Also the rules for changing them at runtime. Anyone on the DDS network can set parameters, so
every parameter that selects code, files or endpoints is read-only (READ_ONLY_PARAMETERS, the
camera topics, and the backend options marked `startup_only`): it comes from the params file or
launch only. So is every parameter that sizes memory (SIZING_PARAMETERS, each camera's
SIZING_CAMERA_SETTINGS), whose budget configure checks against the machine. Of the others, the
thresholds in RUNTIME_PARAMETERS change at once in any state; the rest can be set only while the
node is unconfigured, so the values the node uses always equal what get_parameters returns.
"""

import functools
from dataclasses import dataclass, replace

import torch
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from videomolmo_ros.backends import registry
from videomolmo_ros.backends.pointer_process import PointerProcess
from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.node.params_files import last_given, where_given
from videomolmo_ros.pipeline.cameras import CameraConfig, check_cameras
from videomolmo_ros.pipeline.device import resolve_device
from videomolmo_ros.pipeline.object_geometry import GeometryConfig
from videomolmo_ros.pipeline.object_points import PointsConfig
from videomolmo_ros.pipeline.pipeline import PipelineConfig, with_changes
from videomolmo_ros.pipeline.static_transforms import StaticTransforms
from videomolmo_ros.pipeline.track_manager import TrackerConfig

# What `ros2 run` without a params file gets: config/perception.yaml's backends.
DEFAULT_BACKENDS = {"pointer": "molmo2", "propagator": "sam2"}
# Parameters that can change while the node runs; the others need a reconfigure.
RUNTIME_PARAMETERS = frozenset(
    {"max_result_age_s", "tracker.match_distance", "tracker.confirm_frames", "tracker.max_lost_s"}
    | {"tracker.min_mask_score", "tracker.min_point_score", "tracker.reid_min_similarity", "tracker.reid_min_margin"}
)
# Parameters that select code, files or endpoints: read-only (params file or launch only). Backend
# options mark their own (contracts.startup_only); each camera's topics are READ_ONLY_CAMERA_SETTINGS.
# `autostart` decides whether the lifecycle services exist; `tracker.descriptor` which appearance code runs.
READ_ONLY_PARAMETERS = frozenset(
    {"device", "pointer_backend", "propagator_backend", "pointer_process", "cameras.names", "autostart"}
    | {"tracker.descriptor"}
)
READ_ONLY_CAMERA_SETTINGS = frozenset({"image_topic", "depth_topic", "camera_info_topic", "transport"})
# Parameters that size what the node holds (frame rings, queues, objects with their masks and
# propagator state): read-only too, so no peer can grow its memory or work; configure checks the
# frame rings' budget against the machine (pipeline.cameras.check_budget).
SIZING_PARAMETERS = frozenset(
    {"stream_frames", "context_frames", "catch_up_s", "fusion_max_lag_frames", "publish_queue"}
    | {"buffer_memory_limit_mb", "max_objects_per_command", "max_tracks", "points.max_points"}
)
SIZING_CAMERA_SETTINGS = frozenset({"max_width", "max_height", "queue_depth"})
_TYPE_NAMES = {bool: "a bool", int: "an integer", float: "a double", str: "a string", list: "a list"}


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
    static_transforms: StaticTransforms
    tf_timeout_s: float
    geometry: GeometryConfig
    debug_views: bool
    buffer_memory_limit_mb: float
    vision_msgs: bool
    max_concurrent_goals: int
    pointer_process: bool


class Parameters:
    """Declares (once: configure may run again) and reads the node's parameters."""

    def __init__(self, node: Node):
        self._node = node

    def declare(self, name: str, default, description: str, bounds: tuple | None = None, read_only: bool = False):
        """Declare `name` if new and return its value, enforcing its type and bounds.

        A params file's integer for a double parameter (`context_fps: 2`) is taken as that double;
        any other mismatch, or a value outside `bounds`, is a ConfigError naming the parameter,
        the value, what was expected and the file that gave it.
        """
        if not self._node.has_parameter(name):
            descriptor = describe(name, default, description, bounds, read_only)
            given = self._widen_integer_override(name, default)
            try:
                self._node.declare_parameter(name, default, descriptor)
            except (InvalidParameterTypeException, InvalidParameterValueException):
                raise ConfigError(self._mismatch(name, given, default, bounds)) from None
        value = self._node.get_parameter(name).value
        written = last_given(name)
        if written is not None and not _same_kind(written[1], default):  # rcl dropped it for its type
            raise ConfigError(self._mismatch(name, written[1], default, bounds))
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ConfigError(self._mismatch(name, value, default, bounds))
        return value

    def autostart(self) -> bool:
        """Whether the node configures and activates itself, offering no lifecycle services (declared first)."""
        return self.declare("autostart", True, "configure and activate at start-up (false: wait for a manager)")

    def _widen_integer_override(self, name: str, default):
        """The value given for `name` (None if none); an integer given for a double becomes that double."""
        override = self._node._parameter_overrides.get(name)
        if override is None:
            return None
        value = override.value
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            self._node._parameter_overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(value))
        return value

    def _mismatch(self, name: str, value, default, bounds: tuple | None) -> str:
        """What was wrong with a parameter's value, and where it was given."""
        expected = _TYPE_NAMES.get(type(default), type(default).__name__)
        if bounds is not None:
            expected += f" in [{bounds[0]}, {bounds[1]}]"
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
        return f"parameter {name} = {shown} ({type(value).__name__}) {where_given(name)}: expected {expected}"

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
            target_frame=p("target_frame", "", "frame to express positions in (tf2 or static_transforms)"),
            static_transforms=self._static_transforms(),
            tf_timeout_s=p("tf_timeout_s", 0.05, "wait for a transform at the image's time at most", (0.0, 5.0)),
            geometry=GeometryConfig(
                points=PointsConfig(
                    voxel_m=p("points.voxel_m", 0.0, "object points: voxel size, m (0: every point)", (0.0, 1.0)),
                    max_points=p("points.max_points", 4000, "object points kept per object at most", (10, 1_000_000)),
                ),
                boxes=p("points.enabled", True, "object points and oriented boxes (false: positions only)"),
            ),
            debug_views=p("debug_views", True, "offer debug_image and debug_markers"),
            buffer_memory_limit_mb=p(
                "buffer_memory_limit_mb", 0.0, "lowers the frame buffers' limit from the machine (0: not)", (0.0, 1e7)
            ),
            vision_msgs=p("publish_vision_msgs", False, "also publish detections, detections_3d (vision_msgs)"),
            max_concurrent_goals=p("max_concurrent_goals", 8, "Ground goals in flight; more are rejected", (1, 1024)),
            pointer_process=p("pointer_process", False, "run the pointer in a process of its own (frames shared)"),
        )

    def _static_transforms(self) -> StaticTransforms:
        text = self.declare("static_transforms", "", "'parent child x y z qx qy qz qw; ...' (fixed, used before tf2)")
        try:
            return StaticTransforms(text)
        except ValueError as error:
            raise ConfigError(f"parameter static_transforms {where_given('static_transforms')}: {error}") from None

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
            max_objects_per_command=p(
                "max_objects_per_command", 8, "objects a command tracks per camera at most; more are dropped", (1, 1000)
            ),
            max_tracks=p("max_tracks", 32, "objects tracked per camera at most, all commands together", (1, 1000)),
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
                max_lost_s=p(
                    "tracker.max_lost_s", 60.0, "source seconds unseen before a LOST track is deleted", (0.0, 3600.0)
                ),
                match_distance=p(
                    "tracker.match_distance", 0.15, "max point-track distance (image diagonals)", (0.0, 1.0)
                ),
                min_mask_score=p("tracker.min_mask_score", 0.0, "weaker masks: track LOST, not TRACKED", (0.0, 1.0)),
                min_point_score=p("tracker.min_point_score", 0.0, "drop weaker scored points", (0.0, 1.0)),
                reid_min_similarity=p(
                    "tracker.reid_min_similarity", 0.6, "appearance similarity to take a LOST track's id", (0.0, 1.0)
                ),
                reid_min_margin=p(
                    "tracker.reid_min_margin", 0.1, "... and its lead over the next candidate (else new id)", (0.0, 1.0)
                ),
                descriptor=p(
                    "tracker.descriptor",
                    "colour_texture",
                    "appearance source: colour_texture or propagator_features (the propagator's image features)",
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

    def backends(
        self, device: torch.device, pointer_process: bool = False
    ) -> tuple[Pointer | None, MaskPropagator | None]:
        """The pointer and propagator `*_backend` name, built with their options (all declared first).

        `pointer_process`: the pointer runs in a child process (PointerProcess), built there from the same options.
        """
        (pointer_spec, pointer_options), (spec, options) = (
            self._backend_options(role, kind) for role, kind in (("pointer", Pointer), ("propagator", MaskPropagator))
        )
        if pointer_spec is None:
            pointer = None
        elif pointer_process:
            pointer = PointerProcess(pointer_spec, pointer_options, device)
        else:
            pointer = registry.create(pointer_spec, Pointer, device, pointer_options)
        try:
            return pointer, None if spec is None else registry.create(spec, MaskPropagator, device, options)
        except Exception:
            if pointer is not None:
                pointer.close()
            raise

    def _backend_options(self, role: str, kind: type) -> tuple[str | None, dict]:
        """The backend `<role>_backend` names and its options `<prefix>.<option>`, declared; None if unset."""
        what = f"{role}: a registered name, package.module:Class, or none (or empty)"
        spec = registry.chosen(self.declare(f"{role}_backend", DEFAULT_BACKENDS[role], what))
        if spec is None:
            return None, {}
        return spec, self.backend_options(spec, kind)

    def backend_options(self, spec: str, kind: type) -> dict:
        """The options of the backend `spec`, declared as `<prefix>.<option>` with their comments as descriptions."""
        cls = registry.resolve(spec, kind)
        prefix, fixed = registry.parameter_prefix(spec), registry.read_only_options(cls)
        descriptions = registry.option_descriptions(cls)
        return {
            name: self.declare(
                f"{prefix}.{name}",
                default,
                descriptions.get(name, f"option of {cls.__name__}"),
                read_only=name in fixed,
            )
            for name, default in registry.option_defaults(cls).items()
        }

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


def _same_kind(written, default) -> bool:
    """Whether a value as a params file wrote it fits a parameter of `default`'s type (an int fits a double)."""
    if isinstance(default, float):
        return isinstance(written, int | float) and not isinstance(written, bool)
    if isinstance(default, bool) or isinstance(written, bool):
        return isinstance(default, bool) and isinstance(written, bool)
    return isinstance(written, type(default))


def describe(name: str, default, description: str, bounds: tuple | None, read_only: bool) -> ParameterDescriptor:
    """What `ros2 param describe` says of a parameter: its description, read-only flag and range."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only or is_read_only(name))
    if bounds is not None and isinstance(default, int) and not isinstance(default, bool):
        descriptor.integer_range = [IntegerRange(from_value=bounds[0], to_value=bounds[1], step=1)]
    elif bounds is not None and isinstance(default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=bounds[0], to_value=bounds[1])]
    return descriptor


def is_read_only(name: str) -> bool:
    """Whether a node parameter selects code, files or endpoints, or sizes memory (backend options: their metadata)."""
    parts = name.split(".")
    camera_setting = parts[2] if len(parts) == 3 and parts[0] == "cameras" else None
    return name in READ_ONLY_PARAMETERS | SIZING_PARAMETERS or camera_setting in (
        READ_ONLY_CAMERA_SETTINGS | SIZING_CAMERA_SETTINGS
    )


def runtime_change(params, settings: NodeSettings | None) -> tuple[NodeSettings | None, str]:
    """The settings after a set_parameters request, or (None, why it is refused).

    Unconfigured (`settings` None): anything goes, configure reads it. Configured: only the
    RUNTIME_PARAMETERS, which the caller applies at once to the settings and the running pipelines.
    """
    if settings is None:
        return None, ""
    changes = {}
    for param in params:
        if param.name not in RUNTIME_PARAMETERS:
            return None, (
                f"{param.name} needs a reconfigure: deactivate, cleanup, set it, then configure (a lifecycle "
                "manager's, with autostart: false), or restart the node with it"
            )
        changes[param.name] = param.value
    try:
        return replace(settings, pipeline=with_changes(settings.pipeline, changes)), ""
    except ValueError as error:
        return None, str(error)
