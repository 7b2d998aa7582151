"""perception_node: the ROS 2 shell around the perception pipeline, as a managed (lifecycle) node.

It converts messages, hands them to the ROS-free pipeline and publishes what the pipeline
produces, stamped with the source image's header. Everything else lives in the core modules.

- configure: reads and validates the parameters, loads the models;
- activate: subscribes, starts the workers, offers the Ground action and the command services;
- deactivate: stops work and frees the GPU memory the buffers held (models stay loaded);
- cleanup / shutdown: releases the models too.

By default it drives itself to active (`autostart`), so `ros2 run` and launch just work;
`autostart: false` waits for a lifecycle manager.

Several cameras (`cameras.names`) each get their own subscriptions, frame buffers, propagator
state and health; they share the models, the running commands and the track id counter.

    perception_node --ros-args --params-file config/perception.yaml
"""

import functools
import gc
import itertools
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field, replace

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from videomolmo_ros import backend_registry, ros_messages
from videomolmo_ros.cameras import CameraConfig, buffer_budget, check_budget, check_cameras
from videomolmo_ros.commands import CommandAction, CommandBook, CommandRequest, CommandState, GroundingMode
from videomolmo_ros.counters import ProblemLog
from videomolmo_ros.debug_overlay import draw_overlay, track_colour
from videomolmo_ros.decode_worker import DecodeWorker
from videomolmo_ros.depth_projection import CameraIntrinsics, DepthImage, DepthSync, Localizer, transform_point
from videomolmo_ros.device import resolve_device
from videomolmo_ros.goal_watch import GoalWatch
from videomolmo_ros.health import HealthMonitor
from videomolmo_ros.image_codec import ImageDecodeError, decode_compressed, decode_image, encode_image
from videomolmo_ros.interfaces import MaskPropagator, Pointer
from videomolmo_ros.msg import CommandStatus, GroundingCommand, ObjectMasks, ObjectTracks, PointedTargets
from videomolmo_ros.pipeline import (
    MasksOutput,
    PerceptionPipeline,
    PipelineConfig,
    TakeTurns,
    TargetsOutput,
    TracksOutput,
)
from videomolmo_ros.track_manager import TrackerConfig

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
_GOAL_POLL_S = 0.05
# Parameters that can change while the node runs; the others need a reconfigure.
RUNTIME_PARAMETERS = frozenset(
    {"max_result_age_s", "tracker.match_distance", "tracker.confirm_frames", "tracker.max_lost_frames"}
)


def _free_memory() -> None:
    """Return what dropped tensors held to the GPU, so other processes (and nvidia-smi) see it free."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ConfigError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


def guarded(callback):
    """A callback that reports its own bugs (counted on its camera) instead of taking the node down."""

    @functools.wraps(callback)
    def run(self, *args) -> None:
        try:
            callback(self, *args)
        except Exception as error:
            camera = args[0] if isinstance(args[0], _Camera) else None
            self.internal_error(f"{callback.__name__}: {error!r}\n{traceback.format_exc()}", camera)

    return run


@dataclass
class _Camera:
    """One camera's share of the node: settings, pipeline, depth, health, debug view."""

    config: CameraConfig
    debug_image_pub: object
    depths: DepthSync
    health: HealthMonitor = field(default_factory=HealthMonitor)
    intrinsics: CameraIntrinsics | None = None
    pipeline: PerceptionPipeline | None = None
    decoder: DecodeWorker | None = None
    last_tracks: dict[str, TracksOutput] = field(default_factory=dict)
    last_targets: dict[str, TargetsOutput] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name


class PerceptionNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("perception_node")
        self._cameras: dict[str, _Camera] = {}  # made at configure; the first is the default camera
        self._commands: CommandBook | None = None  # shared by the cameras' pipelines while active
        self._budget = None
        self._backends: tuple = (None, None)
        self._live: list = []  # subscriptions, services, action server, timer: made at activate
        self._watches: dict[str, GoalWatch] = {}
        self._problems = ProblemLog(self.get_logger().warning)
        self._last_stats: dict[str, dict[str, int]] = {}
        self._tf_buffer = None
        self.autostart = self._param("autostart", True, "configure and activate at start-up")
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ------------------------------------------------------------------ lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.device = resolve_device(self._param("device", "auto", "auto, cpu, cuda or cuda:N"))
            self.config = self._pipeline_config()
            cameras = self._camera_configs()
            self.mask_compression = self._param("mask_png_compression", 1, "PNG level of ObjectMasks data", (0, 9))
            self.stats_period_s = self._param("stats_period_s", 10.0, "counters log period (0 = never)", (0.0, 3600.0))
            self.use_depth = self._param("use_depth", False, "3D positions from the depth and camera_info topics")
            self.depth_unit_divisor = self._param(
                "depth_unit_divisor", 0.0, "raw depth per metre (0: 1000 for 16UC1, 1 for 32FC1)", (0.0, 1e9)
            )
            depth_tolerance_s = self._param("depth_sync_tolerance_s", 0.02, "depth-colour stamp gap", (0.0, 1.0))
            self.target_frame = self._param("target_frame", "", "frame to express positions in (needs tf2)")
            self.debug_views = self._param("debug_views", True, "offer debug_image and debug_markers")
            self._backends = (self._backend("pointer", Pointer), self._backend("propagator", MaskPropagator))
            self._budget = self._check_buffer_memory(cameras)
        except (ConfigError, backend_registry.BackendError, ValueError) as error:
            self.get_logger().fatal(f"cannot configure: {error}")
            self._backends = (None, None)
            _free_memory()
            return TransitionCallbackReturn.FAILURE
        self._status_pub = self.create_lifecycle_publisher(CommandStatus, "command_status", 20)
        self._targets_pub = self.create_lifecycle_publisher(PointedTargets, "targets", 10)
        self._tracks_pub = self.create_lifecycle_publisher(ObjectTracks, "tracks", 10)
        self._masks_pub = self.create_lifecycle_publisher(ObjectMasks, "masks", 10)
        self._cameras = {
            c.name: _Camera(
                c,
                self.create_lifecycle_publisher(Image, self._debug_topic(c, cameras), 2),
                DepthSync(depth_tolerance_s),
            )
            for c in cameras
        }
        self._debug_markers_pub = self.create_lifecycle_publisher(MarkerArray, "debug_markers", 2)
        self._diagnostics_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf_buffer = self._transform_listener() if self.target_frame else None
        self._warn_unknown_parameters()
        names = ", ".join(type(b).__name__ if b else "none" for b in self._backends)
        self.get_logger().info(
            f"configured on {self.device}: pointer, propagator = {names}; cameras {', '.join(self._cameras)}; "
            f"frame buffers {self._budget.text()}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        pointer, propagator = self._backends
        try:
            self._start_pipelines(pointer, propagator)
        except ValueError as error:
            self.get_logger().fatal(f"cannot activate: {error}")
            self._stop_work()
            return TransitionCallbackReturn.FAILURE
        self._make_interfaces()
        inputs = ", ".join(f"{c.name} <- {c.config.image_topic} ({c.config.transport})" for c in self._cameras.values())
        self.get_logger().info(
            f"ready on {self.device}: pointer {type(pointer).__name__ if pointer else 'none'}, "
            f"propagator {type(propagator).__name__ if propagator else 'none'}; cameras {inputs}; "
            f"commands on {self._command_sub.topic_name}"
        )
        if pointer is None:
            self.get_logger().warning("no pointer_backend set: commands will be rejected")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_work()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def _start_pipelines(self, pointer: Pointer | None, propagator: MaskPropagator | None) -> None:
        """A pipeline per camera: shared commands, track ids and pointer turns; own propagator state."""
        self._commands = CommandBook(self.config.max_query_chars, self.config.max_commands, tuple(self._cameras))
        track_ids, turns = itertools.count(1), TakeTurns()
        for index, camera in enumerate(self._cameras.values()):
            own = propagator.for_another_camera() if propagator is not None and index > 0 else propagator
            config = replace(self.config, camera=camera.name)
            camera.pipeline = PerceptionPipeline(
                config, self.device, pointer, own, self, self._commands, track_ids, turns
            )
            camera.pipeline.start()

    def _pipelines(self) -> list[PerceptionPipeline]:
        return [c.pipeline for c in self._cameras.values() if c.pipeline is not None]

    def _stop_work(self) -> None:
        """Stop subscriptions, services and workers; free what the buffers held on the GPU."""
        for entity in self._live:
            entity.destroy() if isinstance(entity, ActionServer) else self._destroy(entity)
        self._live = []
        for camera in self._cameras.values():
            if camera.decoder is not None:
                camera.decoder.close()
                camera.decoder = None
            if camera.pipeline is not None:
                camera.pipeline.close()
                camera.pipeline = None
        self._commands = None
        _free_memory()

    def release(self) -> None:
        """Everything the node holds, models included (cleanup, shutdown, exit)."""
        self._stop_work()
        self._backends = (None, None)
        _free_memory()

    def _destroy(self, entity) -> None:
        for destroy in (self.destroy_subscription, self.destroy_service, self.destroy_timer):
            if destroy(entity):
                return

    # ------------------------------------------------------------------ parameters

    def _param(self, name: str, default, description: str, bounds: tuple | None = None):
        """Declare (once: configure may run again) and read a parameter, enforcing its bounds."""
        if not self.has_parameter(name):
            descriptor = ParameterDescriptor(description=description)
            if bounds is not None and isinstance(default, int) and not isinstance(default, bool):
                descriptor.integer_range = [IntegerRange(from_value=bounds[0], to_value=bounds[1], step=1)]
            elif bounds is not None and isinstance(default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=bounds[0], to_value=bounds[1])]
            self.declare_parameter(name, default, descriptor)
        value = self.get_parameter(name).value
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ConfigError(f"parameter {name} = {value} is outside [{bounds[0]}, {bounds[1]}]")
        return value

    def _pipeline_config(self) -> PipelineConfig:
        p = self._param
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
        names = self._param("cameras.names", ["main"], "camera names; the first is the default camera")
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
                    queue_depth=p("queue_depth", 5, "image subscription keep-last depth", (1, 100)),
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

    def _warn_unknown_parameters(self) -> None:
        """Say which given parameters the node has no use for (a typo'd camera or option name).

        rclpy drops them without a word. Options of the backends not chosen are not reported:
        one params file configures every backend.
        """
        backends = {*backend_registry.POINTERS, *backend_registry.PROPAGATORS}
        unknown = sorted(
            name
            for name in self._parameter_overrides
            if not self.has_parameter(name) and name.split(".")[0] not in backends
        )
        if unknown:
            self.get_logger().warning(
                f"parameters given but unknown to the node (typos?), ignored: {', '.join(unknown)}"
            )

    def _camera_param(self, camera: str, setting: str, default, description: str, bounds: tuple | None = None):
        return self._param(f"cameras.{camera}.{setting}", default, description, bounds)

    def _check_buffer_memory(self, cameras: list[CameraConfig]):
        """Budget every camera's frame rings now (models loaded), failing with the numbers if they cannot fit."""
        limit_mb = self._param("buffer_memory_limit_mb", 0.0, "frame buffers' limit (0: free GPU memory)", (0.0, 1e7))
        budget = buffer_budget(cameras, self.config.stream_frames, self.config.context_frames)
        gpu_free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else None
        try:
            check_budget(budget, limit_mb, gpu_free, str(self.device))
        except ValueError as error:
            raise ConfigError(str(error)) from error
        return budget

    @staticmethod
    def _debug_topic(camera: CameraConfig, cameras: list[CameraConfig]) -> str:
        return "debug_image" if camera is cameras[0] else f"{camera.name}/debug_image"

    @staticmethod
    def _image_qos(camera: CameraConfig) -> QoSProfile:
        return QoSProfile(
            history=qos_profile_sensor_data.history,
            depth=camera.queue_depth,
            reliability=RELIABILITY[camera.reliability],
            durability=qos_profile_sensor_data.durability,
        )

    def _backend(self, role: str, kind: type):
        spec = self._param(f"{role}_backend", "", f"{role}: a registered name or package.module:Class")
        if not spec:
            return None
        cls = backend_registry.resolve(spec, kind)
        prefix = backend_registry.parameter_prefix(spec)
        options = {
            name: self._param(f"{prefix}.{name}", default, f"option of {cls.__name__}")
            for name, default in backend_registry.option_defaults(cls).items()
        }
        return backend_registry.create(spec, kind, self.device, options)

    # ------------------------------------------------------------------ topics, services, action

    def _make_interfaces(self) -> None:
        from videomolmo_ros.action import Ground
        from videomolmo_ros.srv import ListCommands, StopCommand

        planner_group = ReentrantCallbackGroup()  # a goal waits for results while others run
        self._command_sub = self.create_subscription(GroundingCommand, "command", self._on_command, 10)
        self._live = [
            self._command_sub,
            self.create_subscription(String, "command_text", self._on_command_text, 10),
            self.create_service(ListCommands, "list_commands", self._list_commands, callback_group=planner_group),
            self.create_service(StopCommand, "stop_command", self._stop_command, callback_group=planner_group),
            ActionServer(
                self,
                Ground,
                "ground",
                execute_callback=self._execute_goal,
                goal_callback=lambda goal: GoalResponse.ACCEPT,
                cancel_callback=lambda goal: CancelResponse.ACCEPT,
                callback_group=planner_group,
            ),
        ]
        if self.stats_period_s > 0:
            self._live.append(self.create_timer(self.stats_period_s, self._log_stats))
        self._live.append(self.create_timer(1.0, self._publish_diagnostics))
        for camera in self._cameras.values():
            self._live += self._camera_subscriptions(camera)

    def _camera_subscriptions(self, camera: _Camera) -> list:
        """Image (raw or compressed, its decoder thread) and, with use_depth, depth and camera_info."""
        config, qos = camera.config, self._image_qos(camera.config)

        def bind(callback):
            return functools.partial(callback, camera)

        if config.transport == "compressed":
            camera.decoder = DecodeWorker(
                bind(self._decode),
                lambda: camera.pipeline.counters.add("frames_skipped_decoder_busy"),
                config.queue_depth,
                f"decode-{config.name}",
            )
            subscriptions = [self.create_subscription(CompressedImage, config.image_topic, camera.decoder.put, qos)]
        else:
            subscriptions = [self.create_subscription(Image, config.image_topic, bind(self._on_image), qos)]
        if self.use_depth and config.depth_topic:
            subscriptions.append(self.create_subscription(Image, config.depth_topic, bind(self._on_depth), qos))
            subscriptions.append(
                self.create_subscription(CameraInfo, config.camera_info_topic, bind(self._on_camera_info), 10)
            )
        return subscriptions

    @guarded
    def _on_image(self, camera: _Camera, msg: Image) -> None:
        try:
            rgb = ros_messages.rgb_from_image(msg)
        except ImageDecodeError as error:
            self._reject_frame(camera, msg.header, error.reason, str(error))
            return
        self._submit_frame(camera, msg.header, rgb)

    @guarded
    def _decode(self, camera: _Camera, msg: CompressedImage) -> None:
        """On the camera's decoder thread: the callback only queued the message."""
        try:
            rgb = decode_compressed(msg.format, msg.data)
        except ImageDecodeError as error:
            self._reject_frame(camera, msg.header, error.reason, str(error))
            return
        self._submit_frame(camera, msg.header, rgb)

    def _reject_frame(self, camera: _Camera, header, reason: str, text: str) -> None:
        camera.pipeline.counters.add("frames_received")
        source = header.frame_id or "(no frame_id)"
        camera.pipeline.problem(f"frames_rejected_{reason}", f"image from {source} dropped: {text}")

    def _submit_frame(self, camera: _Camera, header, rgb) -> None:
        """A decoded frame into its camera's pipeline; a malformed message is rejected before, by the codec."""
        if too_large := camera.config.too_large(*rgb.shape[:2]):
            self._reject_frame(camera, header, "too_large", too_large)
            return
        stamp = ros_messages.stamp_ns(header.stamp)
        camera.health.image_received(stamp, self._now_s())
        camera.pipeline.submit_frame(rgb, stamp, header.frame_id)

    @guarded
    def _on_camera_info(self, camera: _Camera, msg: CameraInfo) -> None:
        camera.intrinsics = CameraIntrinsics.from_camera_info(list(msg.k), msg.width, msg.height)

    @guarded
    def _on_depth(self, camera: _Camera, msg: Image) -> None:
        """Keep depth (registered to the colour camera) to give targets and tracks 3D positions."""
        if camera.intrinsics is None:
            camera.pipeline.problem("depth_dropped_no_camera_info", "depth image dropped: no camera_info received yet")
            return
        try:
            raw = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
            depth = DepthImage.from_raw(
                raw,
                msg.encoding,
                camera.intrinsics.scaled_to(msg.width, msg.height),
                ros_messages.stamp_ns(msg.header.stamp),
                self.depth_unit_divisor or None,
            )
        except ValueError as error:
            camera.pipeline.problem("depth_rejected", f"depth image dropped: {error}")
            return
        camera.depths.add(depth)

    @guarded
    def _on_command(self, msg: GroundingCommand) -> None:
        self._apply(ros_messages.request_from_msg(msg))

    @guarded
    def _on_command_text(self, msg: String) -> None:
        self._apply(CommandRequest("", msg.data, GroundingMode.TRACK))

    def _apply(self, request: CommandRequest):
        """Carry out a command request; log and publish every event; return the events.

        The cameras share one command book: the default camera's pipeline applies the request
        (and counts it), the others learn what changed.
        """
        now = self.get_clock().now().nanoseconds
        default, *others = self._pipelines()
        events = default.submit_command(request)
        for pipeline in others:
            pipeline.commands_changed(events)
        for event in events:
            text = f"command {event.id or '(no id)'} {event.state.name.lower()}: {event.query!r} {event.reason}"
            if event.state is CommandState.REJECTED:
                self.get_logger().warning(text.rstrip())
            else:
                self.get_logger().info(text.rstrip())
            self._status_pub.publish(ros_messages.status_msg(event, now))
        return events

    def _list_commands(self, request, response):
        running = self._commands.running() if self._commands else []
        response.ids = [c.id for c in running]
        response.queries = [c.query for c in running]
        response.modes = [int(c.mode) for c in running]
        response.cameras = [",".join(c.cameras) for c in running]
        return response

    def _stop_command(self, request, response):
        action = CommandAction.STOP if request.id else CommandAction.STOP_ALL
        events = self._apply(CommandRequest(request.id, "", action=action))
        response.success = all(e.state is CommandState.STOPPED for e in events)
        response.message = "; ".join(f"{e.id or 'all'}: {e.reason}" for e in events)
        return response

    def _execute_goal(self, goal_handle):
        """Run the goal's query as a command until the result is in, the goal times out or is cancelled."""
        from videomolmo_ros.action import Ground

        goal, result = goal_handle.request, Ground.Result()
        result.command_id = f"goal-{uuid.uuid4().hex[:8]}"
        watch = GoalWatch(GroundingMode(goal.mode) if goal.mode in (0, 1) else GroundingMode.POINT, goal.track_frames)
        self._watches[result.command_id] = watch
        try:
            [*_, event] = self._apply(CommandRequest(result.command_id, goal.query, goal.mode, camera=goal.camera))
            if event.state is CommandState.REJECTED:
                return self._finish(goal_handle.abort, result, event.reason)
            return self._wait_for_goal(goal_handle, goal, watch, result)
        finally:
            self._watches.pop(result.command_id, None)
            if self._commands is not None and any(c.id == result.command_id for c in self._commands.running()):
                self._apply(CommandRequest(result.command_id, "", action=CommandAction.STOP))

    def _wait_for_goal(self, goal_handle, goal, watch: GoalWatch, result):
        from videomolmo_ros.action import Ground

        timeout_s = goal.timeout.sec + goal.timeout.nanosec / 1e9
        deadline = time.monotonic() + timeout_s if timeout_s > 0 else float("inf")
        while True:
            for targets in watch.feedback():
                goal_handle.publish_feedback(Ground.Feedback(targets=ros_messages.targets_msg(targets)))
            if goal_handle.is_cancel_requested:
                return self._finish(goal_handle.canceled, result, "cancelled", watch)
            if watch.done():
                result.success = True
                return self._finish(goal_handle.succeed, result, "", watch)
            if time.monotonic() > deadline or self._commands is None:
                reason = f"no result within {timeout_s:.1f} s" if self._commands else "the node was deactivated"
                return self._finish(goal_handle.abort, result, reason, watch)
            time.sleep(_GOAL_POLL_S)

    @staticmethod
    def _finish(close, result, message: str, watch: GoalWatch | None = None):
        result.message = message
        if watch is not None:
            targets = watch.confident or watch.targets
            if targets is not None:
                result.targets = ros_messages.targets_msg(targets)
            if watch.tracks is not None:
                result.tracks = ros_messages.tracks_msg(watch.tracks)
        close()
        return result

    # ------------------------------------------------------------------ pipeline sink (worker threads)

    def publish_targets(self, output: TargetsOutput) -> None:
        camera = self._cameras[output.meta.camera]
        if (watch := self._watches.get(output.command_id)) is not None:
            watch.on_targets(output)
        msg = ros_messages.targets_msg(output)
        points = [(t.x, t.y, None) for t in output.targets]
        msg.position_frame_id = self._fill_positions(camera, output.meta, points, msg.targets)
        camera.last_targets[output.command_id] = output
        self._targets_pub.publish(msg)

    def publish_tracks(self, output: TracksOutput) -> None:
        camera = self._cameras[output.meta.camera]
        if (watch := self._watches.get(output.command_id)) is not None:
            watch.on_tracks(output)
        msg = ros_messages.tracks_msg(output)
        points = [(t.x, t.y, t.mask) for t in output.tracks]
        msg.position_frame_id = self._fill_positions(camera, output.meta, points, msg.tracks)
        camera.last_tracks[output.command_id] = output
        self._tracks_pub.publish(msg)
        camera.health.outputs_published(output.meta.stamp_ns, self._now_s())
        if self.debug_views and self._debug_markers_pub.get_subscription_count() > 0:
            self._debug_markers_pub.publish(self._markers(msg))

    def publish_masks(self, output: MasksOutput) -> None:
        camera = self._cameras[output.meta.camera]
        self._masks_pub.publish(ros_messages.masks_msg(output, self.mask_compression))
        if self.debug_views and camera.debug_image_pub.get_subscription_count() > 0:
            self._publish_debug_image(camera, output)

    def _fill_positions(self, camera: _Camera, meta, points: list, items: list) -> str:
        """3D positions from the depth image taken with the frame; every miss is counted by reason.

        Returns the frame the positions are in ("" when none was filled).
        """
        if not self.use_depth or not points or camera.pipeline is None:
            return ""
        counters = camera.pipeline.counters
        depth = camera.depths.find(meta.stamp_ns)
        shape = camera.pipeline.stream.frame_shape
        if depth is None or camera.intrinsics is None or shape is None:
            counters.add("positions_missing_no_depth", len(points))
            return ""
        localizer = Localizer((shape[1], shape[0]), camera.intrinsics, depth)
        for item, position in zip(items, localizer.locate_all(points), strict=True):
            if position.xyz is None:
                counters.add(f"positions_missing_{position.reason}")
                continue
            item.position = Point(x=position.xyz[0], y=position.xyz[1], z=position.xyz[2])
            item.has_position = True
        return self._to_target_frame(camera, meta.stamp_ns, meta.frame_id, items)

    def _transform_listener(self):
        """A tf2 buffer fed by a listener, or None (said once) where tf2_ros is not installed."""
        try:
            import tf2_ros
        except ImportError:
            self.get_logger().warning(
                f"target_frame {self.target_frame!r} is set but tf2_ros is not installed: positions stay in "
                "the camera's optical frame (position_frame_id says which)"
            )
            return None
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self)
        return buffer

    def _to_target_frame(self, camera: _Camera, stamp_ns: int, source_frame: str, items: list) -> str:
        """Move filled positions into target_frame when tf2 knows the transform; the frame they are in."""
        if self._tf_buffer is None:
            return source_frame
        from rclpy.time import Time

        try:
            transform = self._tf_buffer.lookup_transform(self.target_frame, source_frame, Time(nanoseconds=stamp_ns))
        except Exception as error:  # tf2's lookup errors have no common base class besides Exception
            camera.pipeline.problem("positions_untransformed", f"positions stay in {source_frame}: {error}")
            return source_frame
        t, r = transform.transform.translation, transform.transform.rotation
        for item in items:
            if item.has_position:
                p = item.position
                x, y, z = transform_point((p.x, p.y, p.z), (t.x, t.y, t.z), (r.x, r.y, r.z, r.w))
                item.position = Point(x=x, y=y, z=z)
        return self.target_frame

    def _publish_debug_image(self, camera: _Camera, output: MasksOutput) -> None:
        frame = camera.pipeline.stream.get(output.meta.seq) if camera.pipeline else None
        tracks = camera.last_tracks.get(output.command_id)
        if frame is None or tracks is None or tracks.meta != output.meta:
            return  # the frame left the ring already: nothing to draw on
        targets = camera.last_targets.get(output.command_id)
        image = draw_overlay(frame.image.cpu().numpy(), tracks.tracks, output, targets)
        height, width, step, data = encode_image(image, "rgb8")
        msg = Image(header=ros_messages.source_header(output.meta), height=height, width=width)
        msg.encoding, msg.step, msg.data = "rgb8", step, data
        camera.debug_image_pub.publish(msg)

    @staticmethod
    def _markers(msg: ObjectTracks) -> MarkerArray:
        """A sphere and a text label at each track's 3D position (tracks without one are skipped)."""
        markers = MarkerArray()
        for track in msg.tracks:
            if not track.has_position:
                continue
            r, g, b = (c / 255 for c in track_colour(track.id))
            for kind, offset in ((Marker.SPHERE, 0.0), (Marker.TEXT_VIEW_FACING, -0.08)):
                ns = f"{msg.camera}/{msg.command_id}/{kind}"
                marker = Marker(header=msg.header, ns=ns, id=track.id, type=kind)
                marker.pose.position = Point(x=track.position.x, y=track.position.y + offset, z=track.position.z)
                marker.pose.orientation.w = 1.0
                marker.scale.x = marker.scale.y = marker.scale.z = 0.05
                marker.color.r, marker.color.g, marker.color.b, marker.color.a = r, g, b, 0.9
                marker.text = f"{track.id}: {track.label}"
                marker.lifetime.nanosec = 500_000_000
                markers.markers.append(marker)
        return markers

    def _publish_diagnostics(self) -> None:
        """Each camera's statuses, named "<node>: <camera>: <status>"; the model's once."""
        gpu = torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else None
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for index, camera in enumerate(self._cameras.values()):
            pipeline = camera.pipeline
            if pipeline is None:
                continue
            budget = self._budget.per_camera[camera.name]
            statuses = camera.health.report(
                self._now_s(),
                pipeline.counters.snapshot(),
                (len(pipeline.stream), pipeline.stream.capacity),
                pipeline.last_grounding_s,
                "active",
                gpu,
                (pipeline.stream.nbytes + pipeline.context.nbytes, budget),
            )
            for status in statuses:
                if status.name == "model" and index > 0:
                    continue
                name = status.name if status.name == "model" else f"{camera.name}: {status.name}"
                array.status.append(self._diagnostic(name, status))
        self._diagnostics_pub.publish(array)

    def _diagnostic(self, name: str, status) -> DiagnosticStatus:
        return DiagnosticStatus(
            level=bytes([int(status.level)]),
            name=f"{self.get_name()}: {name}",
            message=status.message,
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=v) for k, v in status.values.items()],
        )

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Apply safe changes at once; refuse bad values and changes that need a reconfigure."""
        if not self._pipelines():
            return SetParametersResult(successful=True)  # before activation, configure reads them
        changes = {}
        for param in params:
            if param.name not in RUNTIME_PARAMETERS:
                return SetParametersResult(successful=False, reason=f"{param.name} needs a reconfigure")
            changes[param.name] = param.value
        try:
            for pipeline in self._pipelines():
                pipeline.reconfigure(**changes)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def problem(self, key: str, message: str) -> None:
        self._problems.report(key, message)

    def internal_error(self, text: str, camera: _Camera | None = None) -> None:
        """A bug in a callback: counted on its camera (else the default one) and logged."""
        pipelines = [camera.pipeline] if camera is not None and camera.pipeline else self._pipelines()
        pipelines[0].problem("internal_errors", text) if pipelines else self.problem("internal_errors", text)

    def _log_stats(self) -> None:
        for camera in self._cameras.values():
            counts = camera.pipeline.counters.snapshot() if camera.pipeline else {}
            if counts != self._last_stats.get(camera.name, {}):
                self._last_stats[camera.name] = counts
                text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                self.get_logger().info(f"counters of camera {camera.name}: {text}")


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = PerceptionNode()
    if node.autostart:
        configured = node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        if not configured or node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            node.destroy_node()
            rclpy.try_shutdown()
            return 1
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.release()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
