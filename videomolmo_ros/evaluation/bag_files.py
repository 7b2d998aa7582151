"""Rosbag2 files without ROS (the `rosbags` library): this package's message types, bags to play and
which of their topics go where, output bags.

The ROS side of the replay (publishing into the node, recording its answers) is tools/bag_player.py;
its ground truth and scoring, bag_scoring.py.
"""

import io
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image as PilImage
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from videomolmo_ros.evaluation.output_files import output_path
from videomolmo_ros.io.package_share import PACKAGE, share_path

COMMAND_TYPE = f"{PACKAGE}/msg/GroundingCommand"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"  # played into a node camera with transport: compressed
FRAME_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
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


class ReplayError(Exception):
    """A reason the replay cannot go on, worded for the user (printed, exit status 1)."""


@dataclass(frozen=True)
class Stream:
    """One bag topic played into one node topic (of the node's camera `camera`; "" for the one camera)."""

    bag_topic: str
    node_topic: str
    msgtype: str
    camera: str = ""


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
    frames_refused: Counter = field(default_factory=Counter)  # bag frames not played, by reason
    refused_example: str = ""  # the first one's reason, in words
    node_counts: dict[str, int] | None = None  # the node's counters that grew during the replay; None: unread
    camera: str = ""  # the node's camera these frames went to (--camera); "" for the one camera of a replay

    def text(self) -> str:
        """The summary; with several cameras, each line names the camera it is about."""
        recorded = ", ".join(f"{topic} {self.outputs[topic]}" for topic in OUTPUTS)
        late = f" ({self.frames_timed_out} without tracks in time)" if self.frames_timed_out else ""
        lines = [
            f"frames sent: {self.frames_sent}{late}; commands sent: {self.commands_sent}",
            f"outputs recorded: {recorded} -> {self.output_bag}",
        ]
        if self.frames_refused:
            refused = ", ".join(f"{count} {reason}" for reason, count in sorted(self.frames_refused.items()))
            lines.append(f"frames of the bag NOT sent: {refused} (the first: {self.refused_example})")
        prefix = f"camera {self.camera}: " if self.camera else ""
        return "\n".join(prefix + line for line in [*lines, self._node_text()])

    def _node_text(self) -> str:
        if self.node_counts is None:
            return "node counters: not read (no /diagnostics of its camera arrived), its losses unknown"
        received = self.node_counts.get("frames_received", 0)
        counted = ", ".join(f"{name} {n}" for name, n in sorted(self.node_counts.items()) if name != "frames_received")
        text = f"node: received {received} of {self.frames_sent} frames; " + (counted or "dropped nothing")
        return text + (f"; LOST {self.node_lost} frame(s) or output(s)" if self.node_lost else "")

    @property
    def node_lost(self) -> int:
        """Frames the node never received or rejected, and outputs it dropped, during the replay."""
        if self.node_counts is None:
            return 0
        unreceived = max(self.frames_sent - self.node_counts.get("frames_received", 0), 0)
        return unreceived + sum(n for name, n in self.node_counts.items() if name.startswith(LOST_COUNTERS))

    @property
    def complete(self) -> bool:
        """Every frame of the bag was sent, and none was lost by the node as far as its counters tell."""
        return not self.frames_refused and not self.node_lost


# The node's counters (pipeline.health) that mean a frame or an output of the replay was lost, not the
# designed degradation of a node slower than the bag (frames skipped while tracking is busy).
LOST_COUNTERS = ("frames_rejected_", "outputs_dropped_")


def node_counts_grown(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The counters that grew from `before` to `after` (the node's camera counters), by how much."""
    grown = {name: count - before.get(name, 0) for name, count in after.items()}
    return {name: n for name, n in grown.items() if n > 0}


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
        return share_path("msg")
    except FileNotFoundError as error:
        raise ReplayError(str(error)) from None


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


@dataclass(frozen=True)
class TopicChoice:
    """Which bag topics are played into which node topics (replay_bag's topic options).

    An empty bag topic means its default name, which may be absent from the bag; a named one must be there.
    `camera` ((NAME, bag image topic) per --camera) plays several cameras, each with its depth and
    camera_info (`camera_depth`, `camera_info`: (NAME, bag topic) overrides; else sibling_topics).
    """

    node_image: str
    node_depth: str
    node_camera_info: str
    node_command: str
    image_topic: str = ""
    depth_topic: str = ""
    camera_info_topic: str = ""
    command_topic: str = ""
    ignore_bag_commands: bool = False
    camera: Sequence[tuple[str, str]] = ()
    camera_depth: Sequence[tuple[str, str]] = ()
    camera_info: Sequence[tuple[str, str]] = ()


def sibling_topics(image_topic: str) -> tuple[str, str]:
    """(depth, camera_info) bag topics beside a camera's image topic, as a driver names them:
    /NAME/image_raw[/compressed] -> /NAME/depth/image_raw, /NAME/camera_info."""
    parent = image_topic.removesuffix("/compressed").rsplit("/", 1)[0]
    return f"{parent}/depth/image_raw", f"{parent}/camera_info"


def camera_truth_topic(camera: str) -> str:
    """Camera NAME's ground-truth topic, where video_to_bag writes it and replay_bag looks for it."""
    return f"/{camera}{DEFAULT_TRUTH_TOPIC}"


def select_streams(reader: Reader, args: TopicChoice) -> list[Stream]:
    """The bag topics to play: each camera's image (first among its streams), its depth / camera_info and
    the commands when present. The first camera plays into the node's node_* topics, another camera NAME
    into NAME/image, NAME/depth, NAME/camera_info (the node's defaults for its cameras.names in that order)."""
    in_bag = {c.topic: c.msgtype for c in reader.connections}
    streams = []
    first = (args.node_image, args.node_depth, args.node_camera_info)
    if not args.camera:
        bag = (args.image_topic, args.depth_topic, args.camera_info_topic)
        streams += _camera_streams(in_bag, "", bag, ("/camera/image_raw", *sibling_topics("/camera/image_raw")), first)
    depths, infos = dict(args.camera_depth), dict(args.camera_info)
    for index, (name, image_topic) in enumerate(args.camera):
        bag = (image_topic, depths.get(name, ""), infos.get(name, ""))
        node = first if index == 0 else tuple(f"{name}/{leaf}" for leaf in ("image", "depth", "camera_info"))
        streams += _camera_streams(in_bag, name, bag, (image_topic, *sibling_topics(image_topic)), node)
    if args.command_topic:
        checked_type(args.command_topic, _in_bag(args.command_topic, in_bag), COMMAND_TYPE)
    if not args.ignore_bag_commands:
        wanted = [args.command_topic] if args.command_topic else [t for t, m in in_bag.items() if m == COMMAND_TYPE]
        streams += [Stream(t, args.node_command, COMMAND_TYPE) for t in wanted]
    return streams


def _camera_streams(
    in_bag: Mapping[str, str], camera: str, named: Sequence[str], defaults: Sequence[str], node: Sequence[str]
) -> list[Stream]:
    """One camera's (image, depth, camera_info) streams: each the bag topic `named` (which must be in the bag)
    or its default (the image's must be there, depth's and camera_info's may be absent)."""
    streams = []
    for option, default, node_topic, msgtype in zip(
        named, defaults, node, (FRAME_TYPES, IMAGE_TYPE, CAMERA_INFO_TYPE), strict=True
    ):
        topic = option or default
        if topic in in_bag or option or msgtype is FRAME_TYPES:
            streams.append(Stream(topic, node_topic, checked_type(topic, _in_bag(topic, in_bag), msgtype), camera))
    return streams


def camera_images(streams: Sequence[Stream]) -> dict[str, Stream]:
    """Each camera's image stream (select_streams puts it first among the camera's streams), by camera."""
    images: dict[str, Stream] = {}
    for stream in streams:
        if stream.msgtype != COMMAND_TYPE:
            images.setdefault(stream.camera, stream)
    return images


def _in_bag(topic: str, in_bag: Mapping[str, str]) -> str:
    """The message type of `topic` in the bag; a ReplayError listing the bag's topics if it is not there."""
    if topic not in in_bag:
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(in_bag.items())) or "none"
        raise ReplayError(f"topic {topic} is not in the bag; its topics: {listing}")
    return in_bag[topic]


def checked_type(topic: str, found: str, expected: str | tuple[str, ...]) -> str:
    allowed = (expected,) if isinstance(expected, str) else expected
    if found not in allowed:
        raise ReplayError(f"topic {topic} holds {found}, not {' or '.join(allowed)}")
    return found


# The most bytes a pixel takes in any encoding the node decodes (rgba8, 32FC1); a larger frame is refused.
MAX_BYTES_PER_PIXEL = 4


def frame_problem(msg, max_width: int, max_height: int) -> tuple[str, str] | None:
    """(reason, words) why a bag's Image or CompressedImage is not played, from the sizes it declares
    (nothing decoded or copied, a JPEG / PNG header read); None when it may be."""
    if hasattr(msg, "format"):
        try:
            with PilImage.open(io.BytesIO(msg.data)) as image:  # the header only
                width, height = image.size
        except (OSError, SyntaxError, ValueError, PilImage.DecompressionBombError) as error:
            return "malformed", f"{msg.format or 'compressed'} payload of {len(msg.data)} bytes: {error}"
    else:
        width, height = msg.width, msg.height
    if width > max_width or height > max_height:
        return "too_large", f"{width}x{height}, larger than {max_width}x{max_height}"
    if not hasattr(msg, "format"):
        declared, held = msg.step * msg.height, len(msg.data)
        if held < declared or held > MAX_BYTES_PER_PIXEL * max_width * max_height:
            return "malformed", f"{width}x{height} {msg.encoding} declares step*height {declared} bytes, holds {held}"
    return None


class BagWriter:
    """A bag being written: one connection per name (`topics`: name -> topic, `types`: name -> message type;
    the node's outputs by default); written from one thread only. Made by `new_bag`."""

    def __init__(
        self,
        path: Path,
        storage: str,
        typestore: Typestore,
        topics: Mapping[str, str],
        types: Mapping[str, str] = OUTPUTS,
    ):
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections = {
            name: self._writer.add_connection(topic, types[name], typestore=typestore) for name, topic in topics.items()
        }
        self.counts: Counter = Counter()

    def write(self, name: str, time_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[name], time_ns, data)
        self.counts[name] += 1

    def close(self) -> None:
        self._writer.close()


@contextmanager
def new_bag(
    path: Path, storage: str, typestore: Typestore, topics: Mapping[str, str], types: Mapping[str, str] = OUTPUTS
) -> Iterator[BagWriter]:
    """A BagWriter for a new bag at `path`, which appears there complete when the body ends without error;
    otherwise nothing is left there and the error notes it (output_files)."""
    if path.exists():
        raise ReplayError(f"{path} exists already: choose another --output")
    with output_path(path) as partial:
        writer = BagWriter(partial, storage, typestore, topics, types)
        try:
            yield writer
        except BaseException:
            with suppress(Exception):  # the error that stopped the writing is the one to report
                writer.close()
            raise
        writer.close()


def bag_messages(reader: Reader, connections: list[Connection]) -> Iterator[tuple[Connection, int, memoryview]]:
    """The bag's messages on `connections` in time order; a damaged bag (a corrupt page of its database, a
    truncated MCAP chunk) ends them with a ReplayError naming the bag and how far it was read."""
    read = 0
    try:
        for connection, time_ns, data in reader.messages(connections=connections):
            yield connection, time_ns, memoryview(data)
            read += 1
    except Exception as error:  # rosbags and its storage libraries raise many unrelated types
        raise ReplayError(f"{reader.path}: damaged after {read} message(s): {type(error).__name__}: {error}") from None


def read_outputs(path: Path) -> dict[str, list[RecordedOutput]]:
    """The scorer's hook: a replay's output bag as {output name: messages in receive order}."""
    typestore = make_typestore()
    names = {msgtype: name for name, msgtype in OUTPUTS.items()}
    outputs: dict[str, list[RecordedOutput]] = {name: [] for name in OUTPUTS}
    with Reader(path) as reader:
        for connection, receive_ns, data in bag_messages(reader, reader.connections):
            msg = decode_message(typestore, data, connection.msgtype, f"{path} on {connection.topic}")
            outputs[names[connection.msgtype]].append(RecordedOutput(connection.topic, receive_ns, msg))
    return outputs


def decode_message(typestore: Typestore, data: bytes | memoryview, msgtype: str, where: str) -> object:
    """A message of the bag; one that does not deserialize is a ReplayError saying `where` it is."""
    try:
        return typestore.deserialize_cdr(data, msgtype)
    except Exception as error:  # rosbags' SerdeError, or what a damaged message makes its generated code raise
        raise ReplayError(f"{where}: a {msgtype} that does not deserialize: {error}") from None


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
