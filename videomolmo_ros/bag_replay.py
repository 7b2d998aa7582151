"""replay_bag: play a recorded rosbag2 into a running perception_node and record what it answers.

Reads the bag with the pure-Python `rosbags` library (sqlite3 and MCAP), so it runs where ROS's
own bag tools (`rosbag2_py`, `ros2 bag`) are not installed. Camera frames (and optional depth and
camera_info) go to the node's topics with the bag's timing (`--rate 1.0`, `--clock` for sim time)
or in lockstep (`--rate 0`: the next frame once the node's tracks for the previous one arrived);
the commands stored in the bag and those given with `--command` are sent too. Every output of the
node is written to a new bag with its receive time: `read_outputs` reads it back for scoring.

Ground truth: when the bag holds a topic of videomolmo_ros/msg/ObjectMasks named --truth-topic
(default /ground_truth/masks), the replay is scored against it (scoring: J, F, J&F, ID
switches, pointing P/R/F1, counts, latency) into --report (default <output>/score.json), with a
table at the end. One message per annotated frame: header stamp = that camera frame's stamp, the
label image (mask_codec) holding the true objects, ids = their ids (command_id and camera are not
read); the objects with a non-empty mask are the true count. Annotate any subset of the frames;
the topic is never played to the node.

    replay_bag recording/ -o replay_out --rate 0 --command "the red mug"
"""

import argparse
import json
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore
from tqdm import tqdm

from videomolmo_ros.mask_codec import decode_label_image, decode_masks
from videomolmo_ros.scoring import MasksAnswer, OutputScores, TargetsAnswer, score_outputs

PACKAGE = "videomolmo_ros"
COMMAND_TYPE = f"{PACKAGE}/msg/GroundingCommand"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"  # played into a node camera with transport: compressed
# The node's outputs (node-relative names) and their types.
OUTPUTS = {
    "targets": f"{PACKAGE}/msg/PointedTargets",
    "tracks": f"{PACKAGE}/msg/ObjectTracks",
    "masks": f"{PACKAGE}/msg/ObjectMasks",
    "command_status": f"{PACKAGE}/msg/CommandStatus",
}
TRUTH_TYPE = OUTPUTS["masks"]
DEFAULT_TRUTH_TOPIC = "/ground_truth/masks"
STATUS_ACCEPTED, STATUS_STOPPED = 0, 2
MODES = {"point": 0, "track": 1}
ACTION_ADD, ACTION_STOP = 0, 2
# Reliable, deep enough that a burst of masks is not lost while the replay is busy.
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class ReplayError(Exception):
    """A reason the replay cannot go on, worded for the user (printed, exit status 1)."""


@dataclass(frozen=True)
class Stream:
    """One bag topic played into one node topic."""

    bag_topic: str
    node_topic: str
    msgtype: str


@dataclass
class ReplaySummary:
    """What a replay did; with the output bag, what a scorer needs."""

    output_bag: Path
    frames_sent: int = 0
    frames_timed_out: int = 0
    commands_sent: int = 0
    outputs: Counter = field(default_factory=Counter)
    frame_stamps: list[int] = field(default_factory=list)  # header stamps of the frames sent, in order
    frame_sent_ns: list[int] = field(default_factory=list)  # when each was sent, on the receive times' clock

    def text(self) -> str:
        recorded = ", ".join(f"{topic} {self.outputs[topic]}" for topic in OUTPUTS)
        late = f" ({self.frames_timed_out} without tracks in time)" if self.frames_timed_out else ""
        return (
            f"frames sent: {self.frames_sent}{late}; commands sent: {self.commands_sent}\n"
            f"outputs recorded: {recorded} -> {self.output_bag}"
        )


@dataclass(frozen=True)
class RecordedOutput:
    """One output of the node as the replay received it (msg: a rosbags message dataclass)."""

    topic: str
    receive_ns: int
    msg: object


# ---------------------------------------------------------------------------- types and bags


def message_folder() -> Path:
    """The package's msg/ folder: installed (ament index) first, else the source tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE)) / "msg"
        if installed.is_dir():
            return installed
    except (ImportError, PackageNotFoundError):
        pass
    source = Path(__file__).resolve().parent.parent / "msg"
    if not source.is_dir():
        raise ReplayError(f"cannot find {PACKAGE}'s msg/ folder (not installed, no source tree)")
    return source


def make_typestore() -> Typestore:
    """ROS 2 Kilted's standard types plus this package's messages, read from its .msg files."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(message_folder().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def open_bag(path: Path) -> Reader:
    if not path.exists():
        raise ReplayError(f"no bag at {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # rosbags raises several unrelated error types for unreadable bags
        raise ReplayError(f"cannot read the bag {path}: {error}") from error
    return reader


def select_streams(reader: Reader, args: argparse.Namespace) -> list[Stream]:
    """The bag topics to play: the image always, depth / camera_info / commands when present.

    A topic named on the command line must be in the bag; a default name may be absent.
    """
    in_bag = {c.topic: c.msgtype for c in reader.connections}
    listing = ", ".join(f"{t} ({m})" for t, m in sorted(in_bag.items())) or "none"
    streams = []
    for option, node_topic, default, msgtype in [
        ("image_topic", args.node_image, "/camera/image_raw", (IMAGE_TYPE, COMPRESSED_TYPE)),
        ("depth_topic", args.node_depth, "/camera/depth/image_raw", IMAGE_TYPE),
        ("camera_info_topic", args.node_camera_info, "/camera/camera_info", "sensor_msgs/msg/CameraInfo"),
    ]:
        topic = getattr(args, option) or default
        if topic in in_bag:
            streams.append(Stream(topic, node_topic, _checked_type(topic, in_bag[topic], msgtype)))
        elif getattr(args, option) or option == "image_topic":
            raise ReplayError(f"topic {topic} is not in the bag; its topics: {listing}")
    if args.command_topic:
        if args.command_topic not in in_bag:
            raise ReplayError(f"topic {args.command_topic} is not in the bag; its topics: {listing}")
        _checked_type(args.command_topic, in_bag[args.command_topic], COMMAND_TYPE)
    if not args.ignore_bag_commands:
        wanted = [args.command_topic] if args.command_topic else [t for t, m in in_bag.items() if m == COMMAND_TYPE]
        streams += [Stream(t, args.node_command, COMMAND_TYPE) for t in wanted]
    return streams


def _checked_type(topic: str, found: str, expected: str | tuple[str, ...]) -> str:
    allowed = (expected,) if isinstance(expected, str) else expected
    if found not in allowed:
        raise ReplayError(f"topic {topic} holds {found}, not {' or '.join(allowed)}")
    return found


class OutputBag:
    """The new bag holding the node's outputs; written only from the replay's main thread."""

    def __init__(self, path: Path, storage: str, typestore: Typestore, topics: dict[str, str]):
        if path.exists():
            raise ReplayError(f"{path} exists already: choose another --output")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections = {
            name: self._writer.add_connection(topic, OUTPUTS[name], typestore=typestore)
            for name, topic in topics.items()
        }
        self.counts: Counter = Counter()

    def write(self, name: str, receive_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[name], receive_ns, data)
        self.counts[name] += 1

    def close(self) -> None:
        self._writer.close()


def read_outputs(path: Path) -> dict[str, list[RecordedOutput]]:
    """The scorer's hook: a replay's output bag as {output name: messages in receive order}."""
    typestore = make_typestore()
    names = {msgtype: name for name, msgtype in OUTPUTS.items()}
    outputs: dict[str, list[RecordedOutput]] = {name: [] for name in OUTPUTS}
    with Reader(path) as reader:
        for connection, receive_ns, data in reader.messages():
            msg = typestore.deserialize_cdr(data, connection.msgtype)
            outputs[names[connection.msgtype]].append(RecordedOutput(connection.topic, receive_ns, msg))
    return outputs


# ---------------------------------------------------------------------------- ground truth and scoring


class LabelMasks(Mapping[int, np.ndarray]):
    """An ObjectMasks message's masks by id, decoded from its PNG when read: a long bag's stay PNG-sized."""

    def __init__(self, msg) -> None:
        self._ids = [int(i) for i in msg.ids]
        self._png, self._height, self._width = bytes(msg.data), msg.height, msg.width

    def __getitem__(self, object_id: int) -> np.ndarray:
        if object_id not in self._ids:
            raise KeyError(object_id)
        return decode_label_image(self._png, self._height, self._width) == self._ids.index(object_id) + 1

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def read_truth(path: Path, topic: str | None) -> dict[int, LabelMasks] | None:
    """The bag's ground truth by frame stamp, checked before any frame is played; None when it has none.

    A topic named with --truth-topic must be in the bag; the default one may be absent.
    """
    typestore = make_typestore()
    reader = open_bag(path)
    try:
        connections = [c for c in reader.connections if c.topic == (topic or DEFAULT_TRUTH_TOPIC)]
        if not connections:  # (rosbags reads every topic when given no connections)
            if topic:
                raise ReplayError(f"ground-truth topic {topic} is not in the bag")
            return None
        for connection in connections:
            _checked_type(connection.topic, connection.msgtype, TRUTH_TYPE)
        truth: dict[int, LabelMasks] = {}
        for _, _, data in reader.messages(connections=connections):
            msg = typestore.deserialize_cdr(data, TRUTH_TYPE)
            stamp = stamp_ns(msg.header)
            if stamp in truth:
                raise ReplayError(f"two ground-truth messages for the frame stamped {stamp}: merge them")
            truth[stamp] = _checked_truth(msg, stamp)
        return truth
    finally:
        reader.close()


def _checked_truth(msg, stamp: int) -> LabelMasks:
    """A ground-truth message that decodes, with an id per object."""
    if len(set(msg.ids)) < len(msg.ids):
        raise ReplayError(f"ground truth of the frame stamped {stamp} repeats ids: {list(msg.ids)}")
    try:
        decode_masks(bytes(msg.data), msg.height, msg.width, len(msg.ids))
    except ValueError as error:
        raise ReplayError(f"ground truth of the frame stamped {stamp} does not decode: {error}") from error
    return LabelMasks(msg)


def score(summary: ReplaySummary, truth: Mapping[int, LabelMasks]) -> OutputScores:
    """Score the outputs recorded in the summary's bag against the ground truth."""
    outputs = read_outputs(summary.output_bag)
    masks = [
        MasksAnswer(o.msg.command_id, stamp_ns(o.msg.header), o.receive_ns, LabelMasks(o.msg)) for o in outputs["masks"]
    ]
    targets = [
        TargetsAnswer(o.msg.command_id, stamp_ns(o.msg.header), o.receive_ns, [(t.x, t.y) for t in o.msg.targets])
        for o in outputs["targets"]
    ]
    queries = {o.msg.id: o.msg.query for o in outputs["command_status"] if o.msg.state == STATUS_ACCEPTED}
    sent_ns = dict(zip(summary.frame_stamps, summary.frame_sent_ns, strict=True))
    try:
        return score_outputs(truth, masks, targets, sent_ns, queries)
    except ValueError as error:
        raise ReplayError(f"cannot score the replay (its outputs are in {summary.output_bag}): {error}") from error


def write_report(args: argparse.Namespace, summary: ReplaySummary, truth: Mapping[int, LabelMasks]) -> None:
    """Score the replay, write the JSON report and print the table."""
    result = score(summary, truth)
    path = Path(args.report or Path(args.output) / "score.json")
    topic = args.truth_topic or DEFAULT_TRUTH_TOPIC
    try:
        path.write_text(json.dumps({"bag": args.bag, "truth_topic": topic, **result.report()}, indent=2) + "\n")
    except OSError as error:
        raise ReplayError(f"cannot write the score report {path}: {error}") from error
    print(f"score against {topic} -> {path}\n{result.table()}")


# ---------------------------------------------------------------------------- ROS side


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class ReplayNode:
    """The rclpy side: publishers into the node, raw subscriptions to its outputs.

    Callbacks run on a background executor and only queue what they receive (the bag writer is
    not thread-safe) and note what lockstep waits for: track stamps, command answers.
    """

    def __init__(self, context, namespace: str, streams: list[Stream], typestore: Typestore, clock: bool):
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from videomolmo_ros.msg import CommandStatus, GroundingCommand, ObjectMasks, ObjectTracks, PointedTargets

        self.node = rclpy.create_node("replay_bag", namespace=namespace, context=context)
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
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

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

    def close(self) -> None:
        self._executor.shutdown()
        self.node.destroy_node()


# ---------------------------------------------------------------------------- the replay


class Replay:
    """One run: connect, send the commands, play the bag, drain the outputs, stop the commands."""

    def __init__(
        self, args: argparse.Namespace, reader: Reader, streams: list[Stream], ros: ReplayNode, out: OutputBag
    ) -> None:
        self.args, self.reader, self.streams, self.ros, self.out = args, reader, streams, ros, out
        self.image = streams[0]  # select_streams puts the image stream first
        self.summary = ReplaySummary(Path(args.output))
        self._by_topic = {s.bag_topic: s for s in streams}
        self._sent: set[str] = set()  # ids (or, without one, queries) of the commands sent

    def drain(self) -> None:
        while True:
            try:
                name, receive_ns, data = self.ros.received.get_nowait()
            except queue.Empty:
                return
            self.out.write(name, receive_ns, data)

    def run(self) -> ReplaySummary:
        self._connect()
        for query in self.args.command:
            self._send_command(self._cli_command(query), wait=True)
            self.summary.commands_sent += 1
        self._play()
        self._finish()
        self.summary.outputs = Counter(self.out.counts)
        return self.summary

    def _connect(self) -> None:
        """Wait until the node subscribes to images and commands and publishes tracks; else it is not running.

        Depth and camera_info are not waited for: a node without `use_depth` never subscribes to them.
        """
        image_topic = self.image.node_topic
        publishers = [p for p in (self.ros.publishers[image_topic], self.ros.command_pub) if p is not None]
        tracks = self.ros.output_topics()["tracks"]
        connected = self.ros.wait(
            lambda: all(p.get_subscription_count() > 0 for p in publishers) and self.ros.node.count_publishers(tracks),
            self.args.wait,
            self.drain,
        )
        if not connected:
            name = self.ros.node.resolve_topic_name(image_topic)
            raise ReplayError(
                f"perception_node never answered: nothing subscribed to {name} within {self.args.wait:g} s"
            )
        time.sleep(0.3)  # matching is not symmetric in time: let the node's side match our publishers too

    def _cli_command(self, query: str):
        from videomolmo_ros.msg import GroundingCommand

        return GroundingCommand(query=query, mode=MODES[self.args.mode], action=ACTION_ADD)

    def _send_command(self, msg, wait: bool) -> None:
        """Publish a command (a message or the bag's bytes); with `wait`, until the node answers."""
        answered = len(self.ros.statuses)
        self.ros.command_pub.publish(msg)
        sent = self.ros.typestore.deserialize_cdr(msg, COMMAND_TYPE) if isinstance(msg, bytes) else msg
        self._sent.add(sent.id or sent.query)
        if wait and not self.ros.wait(lambda: len(self.ros.statuses) > answered, self.args.timeout, self.drain):
            raise ReplayError(f"perception_node never answered a command within {self.args.timeout:g} s")

    def _events(self) -> Iterator[tuple[Connection, int, bytes]]:
        connections = [c for c in self.reader.connections if c.topic in self._by_topic]
        for connection, bag_ns, data in self.reader.messages(connections=connections):
            yield connection, bag_ns, bytes(data)  # rclpy publishes serialized data only as bytes

    def _play(self) -> None:
        frames = sum(c.msgcount for c in self.reader.connections if c.topic == self.image.bag_topic)
        start_wall, start_bag = time.monotonic(), None
        with tqdm(total=frames, unit="frame", desc="replay", disable=None) as bar:
            for connection, bag_ns, data in self._events():
                start_bag = bag_ns if start_bag is None else start_bag
                if self.args.rate > 0:
                    self._sleep_until(start_wall + (bag_ns - start_bag) / 1e9 / self.args.rate)
                if self.ros.clock_pub is not None:
                    self.ros.publish_clock(bag_ns)
                self._send(self._by_topic[connection.topic], data)
                bar.update(connection.topic == self.image.bag_topic)

    def _sleep_until(self, wall: float) -> None:
        while (remaining := wall - time.monotonic()) > 0:
            self.drain()
            time.sleep(min(remaining, 0.01))

    def _send(self, stream: Stream, data: bytes) -> None:
        if stream.msgtype == COMMAND_TYPE:
            self._send_command(data, wait=self.args.rate == 0)
            self.summary.commands_sent += 1
            return
        if stream is not self.image:
            self.ros.publishers[stream.node_topic].publish(data)
            return
        stamp = stamp_ns(self.ros.typestore.deserialize_cdr(data, stream.msgtype).header)
        seen = len(self.ros.track_stamps)
        self.summary.frame_sent_ns.append(self.ros.node.get_clock().now().nanoseconds)
        self.ros.publishers[stream.node_topic].publish(data)
        self.summary.frames_sent += 1
        self.summary.frame_stamps.append(stamp)
        if self.args.rate == 0 and not self._wait_for_tracks(seen, stamp):
            self.summary.frames_timed_out += 1
        self.drain()

    def _wait_for_tracks(self, seen: int, stamp: int) -> bool:
        """Lockstep: until tracks of this frame (or a later one) arrive; nothing to wait for when idle."""
        return self.ros.wait(
            lambda: not self.ros.running or any(s >= stamp for s in self.ros.track_stamps[seen:]),
            self.args.timeout,
            self.drain,
        )

    def _finish(self) -> None:
        """Collect the last outputs until the node is quiet, then stop the commands this replay started."""
        if self.summary.frame_stamps and self.args.rate > 0:
            last = self.summary.frame_stamps[-1]
            self.ros.wait(lambda: not self.ros.running or last in self.ros.track_stamps, self.args.timeout, self.drain)
        self._until_quiet()
        if not self.args.keep_commands:
            for command_id in self._started():
                self._stop(command_id)
            self._until_quiet()
        accepted = any(s.state == STATUS_ACCEPTED for s in self.ros.statuses)
        if self.summary.frames_sent and accepted and not self.ros.track_stamps:
            raise ReplayError("perception_node never answered: commands were accepted but no tracks arrived")

    def _started(self) -> list[str]:
        """The running commands this replay started (other clients' commands are left alone)."""
        with self.ros.lock:
            accepted = {s.id for s in self.ros.statuses if s.state == STATUS_ACCEPTED and {s.id, s.query} & self._sent}
            return sorted(accepted & self.ros.running)

    def _stop(self, command_id: str) -> None:
        from videomolmo_ros.msg import GroundingCommand

        self._send_command(GroundingCommand(id=command_id, action=ACTION_STOP), wait=True)

    def _until_quiet(self) -> None:
        """Write outputs until none arrived for --drain seconds (late fused masks, status answers)."""
        while True:
            before = self.ros.received.qsize() + sum(self.out.counts.values())
            time.sleep(self.args.drain)
            self.drain()
            if self.ros.received.qsize() + sum(self.out.counts.values()) == before:
                return


def replay(args: argparse.Namespace) -> ReplaySummary:
    """Play the bag into the node; the summary (and the output bag) is what a scorer reads."""
    typestore = make_typestore()
    reader = open_bag(Path(args.bag))
    context = rclpy.Context()
    ros = out = None
    try:
        streams = select_streams(reader, args)
        if args.command and not any(s.msgtype == COMMAND_TYPE for s in streams):
            streams.append(Stream("", args.node_command, COMMAND_TYPE))
        rclpy.init(context=context)
        ros = ReplayNode(context, args.namespace, streams, typestore, args.clock)
        out = OutputBag(Path(args.output), args.storage, typestore, ros.output_topics())
        return Replay(args, reader, streams, ros, out).run()
    finally:
        if out is not None:
            out.close()
        if ros is not None:
            ros.close()
        context.try_shutdown()
        reader.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    description, epilog = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(
        prog="replay_bag", description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bag", help="rosbag2 folder (sqlite3 or MCAP) holding the camera stream")
    parser.add_argument("-o", "--output", required=True, help="new bag to record the node's outputs into")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag format")
    parser.add_argument("--rate", type=float, default=1.0, help="bag time speed-up; 0: lockstep with the node")
    parser.add_argument("--clock", action="store_true", help="publish /clock from the bag (node use_sim_time)")
    parser.add_argument("--command", action="append", default=[], help="query to send before the frames (repeat)")
    parser.add_argument("--mode", choices=tuple(MODES), default="track", help="mode of the --command queries")
    parser.add_argument("--ignore-bag-commands", action="store_true", help="do not send the bag's GroundingCommands")
    parser.add_argument("--keep-commands", action="store_true", help="leave the started commands running at the end")
    parser.add_argument(
        "--image-topic",
        help="bag topic of the camera images, Image or CompressedImage (default /camera/image_raw); play "
        "CompressedImage into a node camera with transport: compressed",
    )
    parser.add_argument("--depth-topic", help="bag topic of depth images (default /camera/depth/image_raw, if there)")
    parser.add_argument("--camera-info-topic", help="bag topic of CameraInfo (default /camera/camera_info, if there)")
    parser.add_argument("--command-topic", help="bag topic of GroundingCommands (default: every one of that type)")
    parser.add_argument("--truth-topic", help=f"bag topic of ground-truth ObjectMasks (default {DEFAULT_TRUTH_TOPIC})")
    parser.add_argument("--report", help="where to write the score as JSON (default <output>/score.json)")
    parser.add_argument("--node-image", default="image", help="the node's image topic")
    parser.add_argument("--node-depth", default="depth", help="the node's depth topic")
    parser.add_argument("--node-camera-info", default="camera_info", help="the node's camera_info topic")
    parser.add_argument("--node-command", default="command", help="the node's command topic")
    parser.add_argument("--namespace", default="/", help="the node's namespace (relative topic names resolve in it)")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the node to connect")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer to a frame/command")
    parser.add_argument("--drain", type=float, default=1.0, help="quiet seconds that end the recording")
    args = parser.parse_args(argv)
    if args.rate < 0:
        parser.error("--rate must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        truth = read_truth(Path(args.bag), args.truth_topic)
        if truth is None and args.report:
            raise ReplayError(f"--report: the bag holds no ground truth on {DEFAULT_TRUTH_TOPIC} to score")
        summary = replay(args)
        print(summary.text())
        if truth is not None:
            write_report(args, summary, truth)
    except ReplayError as error:
        print(f"replay_bag: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
