"""The planner side of a replay over ROS: publishers into perception_node, raw subscriptions to its outputs.

Shared by replay_bag (a recorded bag) and videomolmo_demo (a live video); what it records is
written and scored without ROS (videomolmo_ros.evaluation.bag_files).
"""

import queue
import threading
import time

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.typesys.store import Typestore

from videomolmo_ros.evaluation.bag_files import (
    COMMAND_TYPE,
    COMPRESSED_TYPE,
    FRAME_TYPES,
    IMAGE_TYPE,
    OUTPUTS,
    STATUS_ACCEPTED,
    STATUS_STOPPED,
    BagWriter,
    Stream,
    stamp_ns,
)
from videomolmo_ros.pipeline.health import DROP_COUNTERS
from videomolmo_ros.tools.ros_spin import SpunNode

# Reliable, deep enough that a burst of masks is not lost while the replay is busy.
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class ReplayNode:
    """The rclpy side: publishers into the node, raw subscriptions to its outputs.

    Callbacks run on the node's spin thread and only queue what they receive (the bag writer is
    not thread-safe) and note what lockstep waits for: track stamps, command answers.
    """

    def __init__(self, spun: SpunNode, streams: list[Stream], typestore: Typestore, clock: bool):
        from diagnostic_msgs.msg import DiagnosticArray
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from videomolmo_ros.msg import CommandStatus, GroundingCommand, ObjectMasks, ObjectTracks, PointedTargets

        self.node = spun.node
        self.typestore = typestore
        ros_types = {
            IMAGE_TYPE: Image,
            COMPRESSED_TYPE: CompressedImage,
            "sensor_msgs/msg/CameraInfo": CameraInfo,
            COMMAND_TYPE: GroundingCommand,
            **dict(zip(OUTPUTS.values(), [PointedTargets, ObjectTracks, ObjectMasks, CommandStatus], strict=True)),
        }
        self.publishers = {
            s.node_topic: self.node.create_publisher(ros_types[s.msgtype], s.node_topic, 10) for s in streams
        }
        self.command_pub = self.publishers.get(next((s.node_topic for s in streams if s.msgtype == COMMAND_TYPE), ""))
        self._clock = Clock
        self.clock_pub = self.node.create_publisher(Clock, "/clock", 10) if clock else None
        self.received: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Condition()
        self.track_stamps: list[int] = []
        self.statuses: list = []
        self.running: set[str] = set()
        for name, msgtype in OUTPUTS.items():
            self.node.create_subscription(
                ros_types[msgtype], name, lambda data, n=name: self._on_output(n, data), RELIABLE, raw=True
            )
        # The counters of the node's camera that our frames go to: its statuses name the image topic.
        cameras = [self.node.resolve_topic_name(s.node_topic) for s in streams if s.msgtype in FRAME_TYPES]
        self.camera_counts: list[dict[str, int]] = []  # every /diagnostics report of that camera, in order
        if cameras:
            self._camera_topic = cameras[0]
            self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def output_topics(self) -> dict[str, str]:
        """The fully resolved names of the node's outputs, as the output bag records them."""
        return {name: self.node.resolve_topic_name(name) for name in OUTPUTS}

    def _on_output(self, name: str, data: bytes) -> None:
        self.received.put((name, self.node.get_clock().now().nanoseconds, data))
        if name not in ("tracks", "command_status"):
            return
        msg = self.typestore.deserialize_cdr(data, OUTPUTS[name])
        with self.lock:
            if name == "tracks":
                self.track_stamps.append(stamp_ns(msg.header))
            else:
                self._on_status(msg)
            self.lock.notify_all()

    def _on_status(self, msg) -> None:
        self.statuses.append(msg)
        if msg.state == STATUS_ACCEPTED:
            self.running.add(msg.id)
        elif msg.state == STATUS_STOPPED:
            self.running.discard(msg.id)

    def _on_diagnostics(self, msg) -> None:
        """The camera's frames_received and drop counters (pipeline.health) as its statuses report them."""
        counts = {
            kv.key: int(kv.value)
            for status in msg.status
            if status.hardware_id == self._camera_topic and status.name.endswith((": camera input", ": drops"))
            for kv in status.values
            if _is_counter(kv.key) and kv.value.isdigit()
        }
        if "frames_received" in counts:
            with self.lock:
                self.camera_counts.append(counts)
                self.lock.notify_all()

    def record(self, bag: BagWriter) -> None:
        """Write the outputs received so far into `bag` (from the one thread that writes it)."""
        while True:
            try:
                name, receive_ns, data = self.received.get_nowait()
            except queue.Empty:
                return
            bag.write(name, receive_ns, data)

    def wait(self, predicate, timeout_s: float, drain) -> bool:
        """Wait for `predicate` (checked under the lock), writing received outputs meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            drain()
            with self.lock:
                if predicate():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.lock.wait(min(remaining, 0.05))

    def publish_clock(self, bag_ns: int) -> None:
        msg = self._clock()
        msg.clock.sec, msg.clock.nanosec = divmod(bag_ns, 1_000_000_000)
        self.clock_pub.publish(msg)


def _is_counter(key: str) -> bool:
    """frames_received or a drop counter's total (not its "_new": since the node's last report)."""
    return key == "frames_received" or (key.startswith(DROP_COUNTERS) and not key.endswith("_new"))
