"""perception_node: the ROS 2 shell around the perception pipeline, as a managed (lifecycle) node.

It converts messages, hands them to the ROS-free pipeline and publishes what the pipeline
produces, stamped with the source image's header. Everything else lives in the core modules.

- configure: reads and validates the parameters, loads the models;
- activate: subscribes, starts the workers, offers the Ground action and the command services;
- deactivate: stops work and frees the GPU memory the buffers held (models stay loaded);
- cleanup / shutdown: releases the models too.

By default it drives itself to active (`autostart`), so `ros2 run` and launch just work;
`autostart: false` waits for a lifecycle manager.

    perception_node --ros-args --params-file config/perception.yaml
"""

import functools
import gc
import sys
import time
import traceback
import uuid

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
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from videomolmo_ros import backend_registry, ros_messages
from videomolmo_ros.commands import CommandAction, CommandRequest, CommandState, GroundingMode
from videomolmo_ros.counters import ProblemLog
from videomolmo_ros.debug_overlay import draw_overlay, track_colour
from videomolmo_ros.depth_projection import CameraIntrinsics, DepthImage, DepthSync, Localizer, transform_point
from videomolmo_ros.device import resolve_device
from videomolmo_ros.goal_watch import GoalWatch
from videomolmo_ros.health import HealthMonitor
from videomolmo_ros.image_codec import ImageDecodeError, decode_image, encode_image
from videomolmo_ros.interfaces import MaskPropagator, Pointer
from videomolmo_ros.msg import CommandStatus, GroundingCommand, ObjectMasks, ObjectTracks, PointedTargets
from videomolmo_ros.pipeline import MasksOutput, PerceptionPipeline, PipelineConfig, TargetsOutput, TracksOutput
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
    """A subscription callback that reports its own bugs instead of taking the node down."""

    @functools.wraps(callback)
    def run(self, msg) -> None:
        try:
            callback(self, msg)
        except Exception as error:
            self.pipeline.problem("internal_errors", f"{callback.__name__}: {error!r}\n{traceback.format_exc()}")

    return run


class PerceptionNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("perception_node")
        self.pipeline: PerceptionPipeline | None = None
        self._backends: tuple = (None, None)
        self._live: list = []  # subscriptions, services, action server, timer: made at activate
        self._watches: dict[str, GoalWatch] = {}
        self._problems = ProblemLog(self.get_logger().warning)
        self._last_stats: dict[str, int] = {}
        self._health = HealthMonitor()
        self._depths = DepthSync()
        self._intrinsics: CameraIntrinsics | None = None
        self._tf_buffer = None
        self._last_tracks: dict[str, TracksOutput] = {}
        self._last_targets: dict[str, TargetsOutput] = {}
        self.autostart = self._param("autostart", True, "configure and activate at start-up")
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ------------------------------------------------------------------ lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.device = resolve_device(self._param("device", "auto", "auto, cpu, cuda or cuda:N"))
            self.config = self._pipeline_config()
            self.image_qos = self._image_qos()
            self.mask_compression = self._param("mask_png_compression", 1, "PNG level of ObjectMasks data", (0, 9))
            self.stats_period_s = self._param("stats_period_s", 10.0, "counters log period (0 = never)", (0.0, 3600.0))
            self.use_depth = self._param("use_depth", False, "3D positions from the depth and camera_info topics")
            self.depth_unit_divisor = self._param(
                "depth_unit_divisor", 0.0, "raw depth per metre (0: 1000 for 16UC1, 1 for 32FC1)", (0.0, 1e9)
            )
            self._depths = DepthSync(self._param("depth_sync_tolerance_s", 0.02, "depth-colour stamp gap", (0.0, 1.0)))
            self.target_frame = self._param("target_frame", "", "frame to express positions in (needs tf2)")
            self.debug_views = self._param("debug_views", True, "offer debug_image and debug_markers")
            self._backends = (self._backend("pointer", Pointer), self._backend("propagator", MaskPropagator))
        except (ConfigError, backend_registry.BackendError, ValueError) as error:
            self.get_logger().fatal(f"cannot configure: {error}")
            return TransitionCallbackReturn.FAILURE
        self._status_pub = self.create_lifecycle_publisher(CommandStatus, "command_status", 20)
        self._targets_pub = self.create_lifecycle_publisher(PointedTargets, "targets", 10)
        self._tracks_pub = self.create_lifecycle_publisher(ObjectTracks, "tracks", 10)
        self._masks_pub = self.create_lifecycle_publisher(ObjectMasks, "masks", 10)
        self._debug_image_pub = self.create_lifecycle_publisher(Image, "debug_image", 2)
        self._debug_markers_pub = self.create_lifecycle_publisher(MarkerArray, "debug_markers", 2)
        self._diagnostics_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf_buffer = self._transform_listener() if self.target_frame else None
        names = ", ".join(type(b).__name__ if b else "none" for b in self._backends)
        self.get_logger().info(f"configured on {self.device}: pointer, propagator = {names}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        pointer, propagator = self._backends
        try:
            self.pipeline = PerceptionPipeline(self.config, self.device, pointer, propagator, self)
        except ValueError as error:
            self.get_logger().fatal(f"cannot activate: {error}")
            return TransitionCallbackReturn.FAILURE
        self.pipeline.start()
        self._make_interfaces()
        self.get_logger().info(
            f"ready on {self.device}: pointer {type(pointer).__name__ if pointer else 'none'}, "
            f"propagator {type(propagator).__name__ if propagator else 'none'}; "
            f"subscribed to {self._image_sub.topic_name} and {self._command_sub.topic_name}"
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

    def _stop_work(self) -> None:
        """Stop subscriptions, services and workers; free what the buffers held on the GPU."""
        for entity in self._live:
            entity.destroy() if isinstance(entity, ActionServer) else self._destroy(entity)
        self._live = []
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
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

    def _image_qos(self) -> QoSProfile:
        reliability = self._param("image_reliability", "best_effort", "best_effort or reliable")
        if reliability not in RELIABILITY:
            raise ConfigError(f"parameter image_reliability = {reliability!r}: use best_effort or reliable")
        return QoSProfile(
            history=qos_profile_sensor_data.history,
            depth=self._param("image_queue_depth", 5, "image subscription keep-last depth", (1, 100)),
            reliability=RELIABILITY[reliability],
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
        self._image_sub = self.create_subscription(Image, "image", self._on_image, self.image_qos)
        self._command_sub = self.create_subscription(GroundingCommand, "command", self._on_command, 10)
        self._live = [
            self._image_sub,
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
        if self.use_depth:
            self._live.append(self.create_subscription(Image, "depth", self._on_depth, self.image_qos))
            self._live.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, 10))

    @guarded
    def _on_image(self, msg: Image) -> None:
        try:
            rgb = ros_messages.rgb_from_image(msg)
        except ImageDecodeError as error:
            self.pipeline.counters.add("frames_received")
            source = msg.header.frame_id or "(no frame_id)"
            self.pipeline.problem(f"frames_rejected_{error.reason}", f"image from {source} dropped: {error}")
            return
        stamp = ros_messages.stamp_ns(msg.header.stamp)
        self._health.image_received(stamp, self._now_s())
        self.pipeline.submit_frame(rgb, stamp, msg.header.frame_id)

    @guarded
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._intrinsics = CameraIntrinsics.from_camera_info(list(msg.k), msg.width, msg.height)

    @guarded
    def _on_depth(self, msg: Image) -> None:
        """Keep depth (registered to the colour camera) to give targets and tracks 3D positions."""
        if self._intrinsics is None:
            self.pipeline.problem("depth_dropped_no_camera_info", "depth image dropped: no camera_info received yet")
            return
        try:
            raw = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
            depth = DepthImage.from_raw(
                raw,
                msg.encoding,
                self._intrinsics.scaled_to(msg.width, msg.height),
                ros_messages.stamp_ns(msg.header.stamp),
                self.depth_unit_divisor or None,
            )
        except ValueError as error:
            self.pipeline.problem("depth_rejected", f"depth image dropped: {error}")
            return
        self._depths.add(depth)

    @guarded
    def _on_command(self, msg: GroundingCommand) -> None:
        self._apply(ros_messages.request_from_msg(msg))

    @guarded
    def _on_command_text(self, msg: String) -> None:
        self._apply(CommandRequest("", msg.data, GroundingMode.TRACK))

    def _apply(self, request: CommandRequest):
        """Carry out a command request; log and publish every event; return the events."""
        now = self.get_clock().now().nanoseconds
        events = self.pipeline.submit_command(request)
        for event in events:
            text = f"command {event.id or '(no id)'} {event.state.name.lower()}: {event.query!r} {event.reason}"
            if event.state is CommandState.REJECTED:
                self.get_logger().warning(text.rstrip())
            else:
                self.get_logger().info(text.rstrip())
            self._status_pub.publish(ros_messages.status_msg(event, now))
        return events

    def _list_commands(self, request, response):
        running = self.pipeline.commands.running() if self.pipeline else []
        response.ids = [c.id for c in running]
        response.queries = [c.query for c in running]
        response.modes = [int(c.mode) for c in running]
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
        if goal.camera:
            return self._finish(goal_handle.abort, result, "camera selection is not supported yet: leave it empty")
        watch = GoalWatch(GroundingMode(goal.mode) if goal.mode in (0, 1) else GroundingMode.POINT, goal.track_frames)
        self._watches[result.command_id] = watch
        try:
            [*_, event] = self._apply(CommandRequest(result.command_id, goal.query, goal.mode))
            if event.state is CommandState.REJECTED:
                return self._finish(goal_handle.abort, result, event.reason)
            return self._wait_for_goal(goal_handle, goal, watch, result)
        finally:
            self._watches.pop(result.command_id, None)
            if self.pipeline is not None and any(c.id == result.command_id for c in self.pipeline.commands.running()):
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
            if time.monotonic() > deadline or self.pipeline is None:
                reason = f"no result within {timeout_s:.1f} s" if self.pipeline else "the node was deactivated"
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
        if (watch := self._watches.get(output.command_id)) is not None:
            watch.on_targets(output)
        msg = ros_messages.targets_msg(output)
        points = [(t.x, t.y, None) for t in output.targets]
        msg.position_frame_id = self._fill_positions(output.meta, points, msg.targets)
        self._last_targets[output.command_id] = output
        self._targets_pub.publish(msg)

    def publish_tracks(self, output: TracksOutput) -> None:
        if (watch := self._watches.get(output.command_id)) is not None:
            watch.on_tracks(output)
        msg = ros_messages.tracks_msg(output)
        points = [(t.x, t.y, t.mask) for t in output.tracks]
        msg.position_frame_id = self._fill_positions(output.meta, points, msg.tracks)
        self._last_tracks[output.command_id] = output
        self._tracks_pub.publish(msg)
        self._health.outputs_published(output.meta.stamp_ns, self._now_s())
        if self.debug_views and self._debug_markers_pub.get_subscription_count() > 0:
            self._debug_markers_pub.publish(self._markers(msg))

    def publish_masks(self, output: MasksOutput) -> None:
        self._masks_pub.publish(ros_messages.masks_msg(output, self.mask_compression))
        if self.debug_views and self._debug_image_pub.get_subscription_count() > 0:
            self._publish_debug_image(output)

    def _fill_positions(self, meta, points: list, items: list) -> str:
        """3D positions from the depth image taken with the frame; every miss is counted by reason.

        Returns the frame the positions are in ("" when none was filled).
        """
        if not self.use_depth or not points:
            return ""
        depth = self._depths.find(meta.stamp_ns)
        shape = self.pipeline.stream.frame_shape if self.pipeline else None
        if depth is None or self._intrinsics is None or shape is None:
            self.pipeline.counters.add("positions_missing_no_depth", len(points))
            return ""
        localizer = Localizer((shape[1], shape[0]), self._intrinsics, depth)
        for item, position in zip(items, localizer.locate_all(points), strict=True):
            if position.xyz is None:
                self.pipeline.counters.add(f"positions_missing_{position.reason}")
                continue
            item.position = Point(x=position.xyz[0], y=position.xyz[1], z=position.xyz[2])
            item.has_position = True
        return self._to_target_frame(meta.stamp_ns, meta.frame_id, items)

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

    def _to_target_frame(self, stamp_ns: int, source_frame: str, items: list) -> str:
        """Move filled positions into target_frame when tf2 knows the transform; the frame they are in."""
        if self._tf_buffer is None:
            return source_frame
        from rclpy.time import Time

        try:
            transform = self._tf_buffer.lookup_transform(self.target_frame, source_frame, Time(nanoseconds=stamp_ns))
        except Exception as error:  # tf2's lookup errors have no common base class besides Exception
            self.pipeline.problem("positions_untransformed", f"positions stay in {source_frame}: {error}")
            return source_frame
        t, r = transform.transform.translation, transform.transform.rotation
        for item in items:
            if item.has_position:
                p = item.position
                x, y, z = transform_point((p.x, p.y, p.z), (t.x, t.y, t.z), (r.x, r.y, r.z, r.w))
                item.position = Point(x=x, y=y, z=z)
        return self.target_frame

    def _publish_debug_image(self, output: MasksOutput) -> None:
        frame = self.pipeline.stream.get(output.meta.seq) if self.pipeline else None
        tracks = self._last_tracks.get(output.command_id)
        if frame is None or tracks is None or tracks.meta != output.meta:
            return  # the frame left the ring already: nothing to draw on
        targets = self._last_targets.get(output.command_id)
        image = draw_overlay(frame.image.cpu().numpy(), tracks.tracks, output, targets)
        height, width, step, data = encode_image(image, "rgb8")
        msg = Image(header=ros_messages.source_header(output.meta), height=height, width=width)
        msg.encoding, msg.step, msg.data = "rgb8", step, data
        self._debug_image_pub.publish(msg)

    @staticmethod
    def _markers(msg: ObjectTracks) -> MarkerArray:
        """A sphere and a text label at each track's 3D position (tracks without one are skipped)."""
        markers = MarkerArray()
        for track in msg.tracks:
            if not track.has_position:
                continue
            r, g, b = (c / 255 for c in track_colour(track.id))
            for kind, offset in ((Marker.SPHERE, 0.0), (Marker.TEXT_VIEW_FACING, -0.08)):
                marker = Marker(header=msg.header, ns=f"{msg.command_id}/{kind}", id=track.id, type=kind)
                marker.pose.position = Point(x=track.position.x, y=track.position.y + offset, z=track.position.z)
                marker.pose.orientation.w = 1.0
                marker.scale.x = marker.scale.y = marker.scale.z = 0.05
                marker.color.r, marker.color.g, marker.color.b, marker.color.a = r, g, b, 0.9
                marker.text = f"{track.id}: {track.label}"
                marker.lifetime.nanosec = 500_000_000
                markers.markers.append(marker)
        return markers

    def _publish_diagnostics(self) -> None:
        if self.pipeline is None:
            return
        gpu = torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else None
        statuses = self._health.report(
            self._now_s(),
            self.pipeline.counters.snapshot(),
            (len(self.pipeline.stream), self.pipeline.stream.capacity),
            self.pipeline.last_grounding_s,
            "active",
            gpu,
        )
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for status in statuses:
            array.status.append(
                DiagnosticStatus(
                    level=bytes([int(status.level)]),
                    name=f"{self.get_name()}: {status.name}",
                    message=status.message,
                    hardware_id=self.get_fully_qualified_name(),
                    values=[KeyValue(key=k, value=v) for k, v in status.values.items()],
                )
            )
        self._diagnostics_pub.publish(array)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Apply safe changes at once; refuse bad values and changes that need a reconfigure."""
        if self.pipeline is None:
            return SetParametersResult(successful=True)  # before activation, configure reads them
        changes = {}
        for param in params:
            if param.name not in RUNTIME_PARAMETERS:
                return SetParametersResult(successful=False, reason=f"{param.name} needs a reconfigure")
            changes[param.name] = param.value
        try:
            self.pipeline.reconfigure(**changes)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def problem(self, key: str, message: str) -> None:
        self._problems.report(key, message)

    def _log_stats(self) -> None:
        counts = self.pipeline.counters.snapshot() if self.pipeline else {}
        if counts != self._last_stats:
            self._last_stats = counts
            self.get_logger().info("counters: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


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
