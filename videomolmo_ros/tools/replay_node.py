"""The planner side of a replay over ROS: publishers into perception_node, raw subscriptions to its outputs.

Shared by replay_bag (a recorded bag) and videomolmo_demo (a live video); what it records is
written and scored without ROS (videomolmo_ros.evaluation.bag_files, bag_scoring).
"""

import queue
import threading
import time
from collections import Counter, defaultdict

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.typesys.store import Typestore

from videomolmo_ros.evaluation.bag_files import (
    CAMERA_INFO_TYPE,
    COMMAND_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    OUTPUTS,
    STATUS_ACCEPTED,
    STATUS_STOPPED,
    BagWriter,
    Stream,
    camera_images,
    stamp_ns,
)
from videomolmo_ros.pipeline.health import DROP_COUNTERS
from videomolmo_ros.tools.ros_spin import SpunNode

# Reliable, deep enough that a burst of masks is not lost while the replay is busy.
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class ReplayNode:
    """The rclpy side: publishers into the node, raw subscriptions to its outputs.

    Callbacks run on the node's spin thread and only queue what they receive (the bag writer is
    not thread-safe) and note what lockstep waits for: track stamps, command answers. With several
    cameras (streams of named cameras), the same by the camera the node says an output is from.
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
            CAMERA_INFO_TYPE: CameraInfo,
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
        self.camera_tracks: defaultdict[str, list[int]] = defaultdict(list)  # track stamps by the outputs' camera
        self.camera_outputs: defaultdict[str, Counter] = defaultdict(Counter)  # targets, tracks, masks by camera
        self.statuses: list = []
        self.running: set[str] = set()
        self._command_cameras: dict[str, set[str]] = {}  # the cameras each accepted command runs on
        for name, msgtype in OUTPUTS.items():
            self.node.create_subscription(
                ros_types[msgtype], name, lambda data, n=name: self._on_output(n, data), RELIABLE, raw=True
            )
        # The counters of the node's cameras that our frames go to: their statuses name the image topic.
        self._camera_topics = {self.node.resolve_topic_name(s.node_topic): c for c, s in camera_images(streams).items()}
        self.camera_counts: dict[str, list[dict[str, int]]] = {c: [] for c in self._camera_topics.values()}
        self.reported_names: dict[str, str] = {}  # the name the node reports each camera under
        self._by_camera = any(self._camera_topics.values())  # named cameras: their outputs are counted apart
        if self._camera_topics:
            self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def output_topics(self) -> dict[str, str]:
        """The fully resolved names of the node's outputs, as the output bag records them."""
        return {name: self.node.resolve_topic_name(name) for name in OUTPUTS}

    def _on_output(self, name: str, data: bytes) -> None:
        self.received.put((name, self.node.get_clock().now().nanoseconds, data))
        if name not in ("tracks", "command_status") and not self._by_camera:
            return  # one camera: its targets and masks are only recorded (the output bag counts them)
        msg = self.typestore.deserialize_cdr(data, OUTPUTS[name])
        with self.lock:
            if name == "command_status":
                self._on_status(msg)
            else:
                self.camera_outputs[msg.camera][name] += 1
            if name == "tracks":
                self.track_stamps.append(stamp_ns(msg.header))
                self.camera_tracks[msg.camera].append(self.track_stamps[-1])
            self.lock.notify_all()

    def _on_status(self, msg) -> None:
        self.statuses.append(msg)
        if msg.state == STATUS_ACCEPTED:
            self.running.add(msg.id)
            self._command_cameras[msg.id] = set(msg.camera.split(","))
        elif msg.state == STATUS_STOPPED:
            self.running.discard(msg.id)

    def tracks_of(self, camera: str) -> list[int]:
        """The stamps of the tracks from `camera` ("": from any), in arrival order (under the lock)."""
        return self.camera_tracks[camera] if camera else self.track_stamps

    def running_on(self, camera: str) -> bool:
        """Whether a command runs on `camera` ("": on any), so its frames get tracks (under the lock)."""
        return any(not camera or camera in self._command_cameras.get(i, ()) for i in self.running)

    def _on_diagnostics(self, msg) -> None:
        """Each camera's frames_received and drop counters (pipeline.health) as its statuses report them."""
        counts: dict[str, dict[str, int]] = {}
        names: dict[str, str] = {}
        for status in msg.status:
            camera = self._camera_topics.get(status.hardware_id)
            if camera is None or not status.name.endswith((": camera input", ": drops")):
                continue
            names[camera] = status.name.split(": ")[-2]  # "<node>: <camera>: camera input"
            counters = {kv.key: int(kv.value) for kv in status.values if _is_counter(kv.key) and kv.value.isdigit()}
            counts.setdefault(camera, {}).update(counters)
        with self.lock:
            self.reported_names.update(names)
            for camera, counters in counts.items():
                if "frames_received" in counters:
                    self.camera_counts[camera].append(counters)
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
