"""perception_node: the ROS 2 shell around the perception pipeline.

It converts messages, hands them to the ROS-free pipeline and publishes what the pipeline
produces, stamped with the source image's header. Everything else lives in the core modules.

    perception_node --ros-args --params-file config/perception.yaml
"""

import functools
import sys
import traceback

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from videomolmo_ros import backend_registry, ros_messages
from videomolmo_ros.commands import CommandRequest, CommandState, GroundingMode
from videomolmo_ros.counters import ProblemLog
from videomolmo_ros.device import resolve_device
from videomolmo_ros.image_codec import ImageDecodeError
from videomolmo_ros.interfaces import MaskPropagator, Pointer
from videomolmo_ros.msg import CommandStatus, GroundingCommand, ObjectMasks, ObjectTracks, PointedTargets
from videomolmo_ros.pipeline import MasksOutput, PerceptionPipeline, PipelineConfig, TargetsOutput, TracksOutput
from videomolmo_ros.track_manager import TrackerConfig

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


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


class PerceptionNode(Node):
    def __init__(self) -> None:
        super().__init__("perception_node")
        self.pipeline: PerceptionPipeline | None = None  # rclpy may destroy a node whose set-up failed
        self._problems = ProblemLog(self.get_logger().warning)
        self.device = resolve_device(self._param("device", "auto", "auto, cpu, cuda or cuda:N"))
        config = self._pipeline_config()
        pointer = self._backend("pointer", Pointer)
        propagator = self._backend("propagator", MaskPropagator)
        self.mask_compression = self._param("mask_png_compression", 1, "PNG level of ObjectMasks data", (0, 9))
        self.pipeline = PerceptionPipeline(config, self.device, pointer, propagator, self)
        self._make_topics()
        period = self._param("stats_period_s", 10.0, "how often counters are logged (0 = never)", (0.0, 3600.0))
        self._last_stats: dict[str, int] = {}
        if period > 0:
            self.create_timer(period, self._log_stats)
        self.pipeline.start()
        self.get_logger().info(
            f"ready on {self.device}: pointer {type(pointer).__name__ if pointer else 'none'}, "
            f"propagator {type(propagator).__name__ if propagator else 'none'}; "
            f"subscribed to {self._image_sub.topic_name} and {self._command_sub.topic_name}"
        )
        if pointer is None:
            self.get_logger().warning("no pointer_backend set: commands will be rejected")

    # ------------------------------------------------------------------ parameters

    def _param(self, name: str, default, description: str, bounds: tuple | None = None):
        descriptor = ParameterDescriptor(description=description)
        if bounds is not None and isinstance(default, int) and not isinstance(default, bool):
            descriptor.integer_range = [IntegerRange(from_value=bounds[0], to_value=bounds[1], step=1)]
        elif bounds is not None and isinstance(default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=bounds[0], to_value=bounds[1])]
        value = self.declare_parameter(name, default, descriptor).value
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

    # ------------------------------------------------------------------ topics

    def _make_topics(self) -> None:
        reliability = self._param("image_reliability", "best_effort", "best_effort or reliable")
        if reliability not in RELIABILITY:
            raise ConfigError(f"parameter image_reliability = {reliability!r}: use best_effort or reliable")
        depth = self._param("image_queue_depth", 5, "image subscription keep-last depth", (1, 100))
        image_qos = QoSProfile(
            history=qos_profile_sensor_data.history,
            depth=depth,
            reliability=RELIABILITY[reliability],
            durability=qos_profile_sensor_data.durability,
        )
        self._image_sub = self.create_subscription(Image, "image", self._on_image, image_qos)
        self._command_sub = self.create_subscription(GroundingCommand, "command", self._on_command, 10)
        self.create_subscription(String, "command_text", self._on_command_text, 10)
        self._status_pub = self.create_publisher(CommandStatus, "command_status", 20)
        self._targets_pub = self.create_publisher(PointedTargets, "targets", 10)
        self._tracks_pub = self.create_publisher(ObjectTracks, "tracks", 10)
        self._masks_pub = self.create_publisher(ObjectMasks, "masks", 10)

    @guarded
    def _on_image(self, msg: Image) -> None:
        try:
            rgb = ros_messages.rgb_from_image(msg)
        except ImageDecodeError as error:
            self.pipeline.counters.add("frames_received")
            source = msg.header.frame_id or "(no frame_id)"
            self.pipeline.problem(f"frames_rejected_{error.reason}", f"image from {source} dropped: {error}")
            return
        self.pipeline.submit_frame(rgb, ros_messages.stamp_ns(msg.header.stamp), msg.header.frame_id)

    @guarded
    def _on_command(self, msg: GroundingCommand) -> None:
        self._apply(ros_messages.request_from_msg(msg))

    @guarded
    def _on_command_text(self, msg: String) -> None:
        self._apply(CommandRequest("", msg.data, GroundingMode.TRACK))

    def _apply(self, request: CommandRequest) -> None:
        now = self.get_clock().now().nanoseconds
        for event in self.pipeline.submit_command(request):
            text = f"command {event.id or '(no id)'} {event.state.name.lower()}: {event.query!r} {event.reason}"
            if event.state is CommandState.REJECTED:
                self.get_logger().warning(text.rstrip())
            else:
                self.get_logger().info(text.rstrip())
            self._status_pub.publish(ros_messages.status_msg(event, now))

    # ------------------------------------------------------------------ pipeline sink (worker threads)

    def publish_targets(self, output: TargetsOutput) -> None:
        self._targets_pub.publish(ros_messages.targets_msg(output))

    def publish_tracks(self, output: TracksOutput) -> None:
        self._tracks_pub.publish(ros_messages.tracks_msg(output))

    def publish_masks(self, output: MasksOutput) -> None:
        self._masks_pub.publish(ros_messages.masks_msg(output, self.mask_compression))

    def problem(self, key: str, message: str) -> None:
        self._problems.report(key, message)

    def _log_stats(self) -> None:
        counts = self.pipeline.counters.snapshot()
        if counts != self._last_stats:
            self._last_stats = counts
            self.get_logger().info("counters: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    def destroy_node(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = PerceptionNode()
    except (ConfigError, backend_registry.BackendError, ValueError) as error:
        rclpy.logging.get_logger("perception_node").fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
