"""Each camera's inputs: image (raw, or compressed on a decoder thread), depth and camera_info into its pipeline.

A callback converts and hands over; it never runs a model. A message it cannot use is
rejected with its reason and counted on the camera; a bug in a callback is counted and logged
(`internal_errors`), never the end of the node, also when it comes while the camera has no
pipeline (NodeCamera.problem). Sizes are checked against the camera's
max_width x max_height from what the message claims, before anything is decoded or copied.
What the middleware reports lost on a subscription is counted too (`frames_lost`, `depth_lost`,
`camera_info_lost`): Fast DDS reports a frame it lost in transit (too large, fragments lost) once
a later one arrives, not one its keep-last queue overwrote.

The subscriptions live from activate to deactivate, as a lifecycle node's work does: an inactive
node takes in no frames (a callback still in flight at deactivate drops its message).
"""

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from videomolmo_ros.io.depth_projection import CameraIntrinsics, DepthImage, DepthSync
from videomolmo_ros.io.image_codec import ImageDecodeError, decode_compressed, decode_image
from videomolmo_ros.io.text import clip
from videomolmo_ros.node import messages
from videomolmo_ros.node.guarded import guarded
from videomolmo_ros.node.parameters import NodeSettings
from videomolmo_ros.pipeline.cameras import CameraConfig
from videomolmo_ros.pipeline.counters import Counters
from videomolmo_ros.pipeline.decode_worker import DecodeWorker
from videomolmo_ros.pipeline.health import LOSS_HELP, HealthMonitor
from videomolmo_ros.pipeline.outputs import TargetsOutput, TracksOutput
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline


def _while_active(callback: Callable, camera: "NodeCamera") -> Callable:
    """`callback`, dropping what arrives while the camera has no pipeline (the node is inactive)."""

    def run(msg) -> None:
        if camera.pipeline is not None:
            callback(msg)

    run.__name__ = callback.func.__name__  # guarded names it in bug reports
    return run


RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


@dataclass
class NodeCamera:
    """One camera's share of the node: settings, pipeline, depth, health, debug view.

    `report(key, message)` logs a problem (rate-limited); `counters` keep the problems counted while
    the camera has no pipeline (inactive), for the diagnostics of the next activation.
    """

    config: CameraConfig
    debug_image_pub: object
    depths: DepthSync
    report: Callable[[str, str], None]
    health: HealthMonitor = field(default_factory=HealthMonitor)
    counters: Counters = field(default_factory=Counters)
    intrinsics: CameraIntrinsics | None = None
    pipeline: PerceptionPipeline | None = None
    decoder: DecodeWorker | None = None
    subscriptions: list = field(default_factory=list)
    last_tracks: dict[str, TracksOutput] = field(default_factory=dict)
    last_targets: dict[str, TargetsOutput] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def problem(self, key: str, message: str, amount: int = 1) -> None:
        """Count `amount` problems under `key` and log it: on the pipeline, or on the camera while it has none."""
        pipeline = self.pipeline  # once: deactivate may take it meanwhile
        if pipeline is not None:
            pipeline.problem(key, message, amount)
            return
        self.counters.add(key, amount)
        self.report(key, f"camera {self.name}: {message}")

    def count(self, key: str) -> None:
        """Count on the pipeline, or on the camera while it has none (a callback that deactivate overtook)."""
        pipeline = self.pipeline
        (pipeline.counters if pipeline is not None else self.counters).add(key)

    def counts(self) -> dict[str, int]:
        """The pipeline's counters plus those counted while the camera had no pipeline."""
        counts = Counter(self.counters.snapshot())
        if (pipeline := self.pipeline) is not None:
            counts.update(pipeline.counters.snapshot())
        return dict(counts)


def image_qos(camera: CameraConfig) -> QoSProfile:
    """SensorDataQoS with the camera's reliability and queue depth."""
    return QoSProfile(
        history=qos_profile_sensor_data.history,
        depth=camera.queue_depth,
        reliability=RELIABILITY[camera.reliability],
        durability=qos_profile_sensor_data.durability,
    )


class CameraInputs:
    """Subscribes each camera's topics at activate and feeds what arrives into the camera's pipeline."""

    def __init__(self, node: Node, settings: NodeSettings):
        self._node = node
        self._settings = settings

    def start(self, camera: NodeCamera) -> None:
        """Subscribe image (raw or compressed, with its decoder thread) and, with use_depth, depth and camera_info."""
        config, subscribe = camera.config, functools.partial(self._subscribe, camera)
        image_type, on_image = (
            (CompressedImage, self._queue) if config.transport == "compressed" else (Image, self._on_image)
        )
        subscriptions = [subscribe(image_type, config.image_topic, on_image, "frames_lost")]
        if self._settings.use_depth and config.depth_topic:
            subscriptions.append(subscribe(Image, config.depth_topic, self._on_depth, "depth_lost"))
            # the camera's QoS too: drivers publish camera_info like the image
            info_topic = config.camera_info_topic
            subscriptions.append(subscribe(CameraInfo, info_topic, self._on_camera_info, "camera_info_lost"))
        camera.subscriptions = subscriptions
        if config.transport == "compressed":
            camera.decoder = DecodeWorker(
                guarded(functools.partial(self._decode, camera), self._reporter(camera)),
                functools.partial(camera.count, "frames_skipped_decoder_busy"),
                config.queue_depth,
                f"decode-{camera.name}",
            )

    def _subscribe(self, camera: NodeCamera, msg_type, topic: str, callback, lost_key: str):
        """A subscription with the camera's QoS; what the middleware reports lost on it is counted under `lost_key`."""
        report, qos = self._reporter(camera), image_qos(camera.config)
        lost = functools.partial(self._on_lost, camera, lost_key, self._node.resolve_topic_name(topic))
        events = SubscriptionEventCallbacks(message_lost=guarded(lost, report))
        on_message = guarded(_while_active(functools.partial(callback, camera), camera), report)
        return self._node.create_subscription(msg_type, topic, on_message, qos, event_callbacks=events)

    def stop(self, camera: NodeCamera) -> None:
        """Unsubscribe (deactivate) and stop the decoder thread."""
        for subscription in camera.subscriptions:
            self._node.destroy_subscription(subscription)
        camera.subscriptions = []
        if camera.decoder is not None:
            camera.decoder.close()
            camera.decoder = None

    @staticmethod
    def _on_lost(camera: NodeCamera, key: str, topic: str, info) -> None:
        """DDS says messages of `topic` were lost before they reached the node: count them (`key`) and say so."""
        camera.problem(
            key,
            f"{info.total_count_change} message(s) on {topic} lost before they reached the node "
            f"({info.total_count} in all): the middleware reports them lost (too large for its transport, "
            f"fragments lost, or its queue overran; {LOSS_HELP})",
            info.total_count_change,
        )

    @staticmethod
    def _reporter(camera: NodeCamera) -> Callable[[str], None]:
        """Where a bug in one of the camera's callbacks is counted and logged (`internal_errors`), pipeline or not."""
        return functools.partial(camera.problem, "internal_errors")

    def _on_image(self, camera: NodeCamera, msg: Image) -> None:
        if self._bad_header(camera, msg):
            return
        try:
            rgb = messages.rgb_from_image(msg)
        except ImageDecodeError as error:
            self._reject_frame(camera, msg.header, error.reason, str(error))
            return
        self._submit_frame(camera, msg.header, rgb)

    @staticmethod
    def _queue(camera: NodeCamera, msg: CompressedImage) -> None:
        if camera.decoder is not None:
            camera.decoder.put(msg)

    def _decode(self, camera: NodeCamera, msg: CompressedImage) -> None:
        """On the camera's decoder thread: the callback only queued the message."""
        if self._bad_header(camera, msg):
            return
        try:
            rgb = decode_compressed(msg.format, msg.data, camera.config.too_large)
        except ImageDecodeError as error:
            self._reject_frame(camera, msg.header, error.reason, str(error))
            return
        self._submit_frame(camera, msg.header, rgb)

    def _bad_header(self, camera: NodeCamera, msg) -> bool:
        """Reject (and count) a frame whose stamp is malformed or whose claimed size is over the camera's max."""
        if msg.header.stamp.nanosec >= 1_000_000_000:
            text = f"stamp nanosec {msg.header.stamp.nanosec} is not below 1e9 (outputs keep the input stamp exactly)"
            self._reject_frame(camera, msg.header, "bad_stamp", text)
            return True
        if isinstance(msg, Image) and (too_large := camera.config.too_large(msg.height, msg.width)):
            self._reject_frame(camera, msg.header, "too_large", too_large)
            return True
        return False

    @staticmethod
    def _reject_frame(camera: NodeCamera, header, reason: str, text: str) -> None:
        camera.count("frames_received")
        source = clip(header.frame_id) or "(no frame_id)"
        camera.problem(f"frames_rejected_{reason}", f"image from {source} dropped: {text}")

    def _submit_frame(self, camera: NodeCamera, header, rgb) -> None:
        """A decoded frame into its camera's pipeline; a malformed or too large message was rejected before."""
        stamp = messages.stamp_ns(header.stamp)
        camera.health.image_received(stamp, self._node.get_clock().now().nanoseconds / 1e9)
        pipeline = camera.pipeline  # once: deactivate (another executor thread) may take it meanwhile
        if pipeline is None:
            camera.count("frames_skipped_inactive")
            return
        pipeline.submit_frame(rgb, stamp, header.frame_id)

    @staticmethod
    def _on_camera_info(camera: NodeCamera, msg: CameraInfo) -> None:
        """Take valid intrinsics and lens distortion (model and D); invalid ones (NaN, inf, an all-zero K, a
        lens model the node cannot undistort) are counted, the last valid kept."""
        try:
            camera.intrinsics = CameraIntrinsics.from_camera_info(
                list(msg.k), msg.width, msg.height, msg.distortion_model, msg.d
            )
        except ValueError as error:
            kept = "the last valid one stays in use" if camera.intrinsics else "no positions until a valid one arrives"
            camera.problem("camera_info_rejected_invalid", f"camera_info dropped ({kept}): {error}")

    def _on_depth(self, camera: NodeCamera, msg: Image) -> None:
        """Keep depth (registered to the colour camera) to give targets and tracks 3D positions."""
        if camera.intrinsics is None:
            camera.problem("depth_dropped_no_camera_info", "depth image dropped: no camera_info received yet")
            return
        if too_large := camera.config.too_large(msg.height, msg.width):
            camera.problem("depth_rejected", f"depth image dropped: {too_large}")
            return
        try:
            raw = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
            depth = DepthImage.from_raw(
                raw,
                msg.encoding,
                camera.intrinsics.scaled_to(msg.width, msg.height),
                messages.stamp_ns(msg.header.stamp),
                self._settings.depth_unit_divisor or None,
            )
        except ValueError as error:
            camera.problem("depth_rejected", f"depth image dropped: {error}")
            return
        camera.depths.add(depth)
