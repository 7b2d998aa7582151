"""replay_bag: play a recorded rosbag2 into a running perception_node and record what it answers.

Reads the bag with the pure-Python `rosbags` library (sqlite3 and MCAP), so it runs where ROS's
own bag tools (`rosbag2_py`, `ros2 bag`) are not installed. Camera frames (and optional depth and
camera_info) go to the node's topics with the bag's timing (`--rate 1.0`, `--clock` for sim time)
or in lockstep (`--rate 0`: the next frame once the node's tracks for the previous one arrived);
the commands stored in the bag and those given with `--command` are sent too. Every output of the
node is written to a new bag with its receive time: `read_outputs` reads it back for scoring.

Several cameras: each --camera NAME=TOPIC plays TOPIC into the node's camera NAME (give them in the
order of the node's cameras.names: the first plays into --node-image, the others into NAME/image),
with the depth and camera_info beside it in the bag (--camera-depth, --camera-info to name them),
every camera's frames in stamp order; lockstep waits for each frame's tracks from its camera. Each
camera is scored against /NAME/ground_truth/masks (--camera-truth; the first camera else against
--truth-topic) into score_NAME.json, and summarised on its own.

Ground truth: when the bag holds a topic of videomolmo_ros/msg/ObjectMasks named --truth-topic
(default /ground_truth/masks), the replay is scored against it (scoring: J, F, J&F, ID
switches, pointing P/R/F1, counts, latency) into --report (default <output>/score.json), with a
table at the end. One message per annotated frame: header stamp = that camera frame's stamp, the
label image (mask_codec) holding the true objects, ids = their ids (command_id is not read, camera
only to refuse another --camera's); the objects with a non-empty mask are the true count. Annotate
any subset of the frames; the topic is never played to the node.

Frames over --max-width x --max-height, or whose data does not match the size they declare, are
not sent (counted and named). The node's losses during the replay (frames never received or
rejected, outputs dropped) are read from its /diagnostics and printed. Exit status: 0 every frame
sent and none lost; 3 the replay ran but frames were not sent or lost (outputs written); 1 an
error (a damaged bag, no node: nothing written, the commands it started stopped); 130 interrupted.

    replay_bag recording/ -o replay_out --rate 0 --command "the red mug"
    replay_bag two_cams/ -o out --rate 0 --camera head=/head/image_raw --camera wrist=/wrist/image_raw/compressed
"""

import argparse
import dataclasses
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader
from tqdm import tqdm

from videomolmo_ros.evaluation.bag_files import (
    ACTION_ADD,
    ACTION_STOP,
    COMMAND_TYPE,
    DEFAULT_TRUTH_TOPIC,
    FRAME_TYPES,
    MODES,
    STATUS_ACCEPTED,
    BagWriter,
    ReplayError,
    ReplaySummary,
    Stream,
    TopicChoice,
    bag_messages,
    camera_images,
    decode_message,
    frame_problem,
    make_typestore,
    new_bag,
    node_counts_grown,
    open_bag,
    read_camera_truths,
    select_streams,
    stamp_ns,
    write_report,
)
from videomolmo_ros.tools.replay_node import ReplayNode
from videomolmo_ros.tools.ros_spin import SpunNode
from videomolmo_ros.tools.tool_main import named, run_tool

# The largest frame played unless --max-width / --max-height say otherwise: 4K UHD (24 MiB in rgb8).
MAX_WIDTH, MAX_HEIGHT = 3840, 2160
EXIT_INCOMPLETE = 3  # the replay ran, but frames of the bag were not sent or the node lost some
COUNTS_WAIT_S = 3.0  # the node reports its counters on /diagnostics once a second
STOP_WAIT_S = 5.0  # on the way out of a failed replay, for the node to stop the commands it started


class Replay:
    """One run: connect, send the commands, play the bag, drain the outputs, stop the commands."""

    def __init__(
        self, args: argparse.Namespace, reader: Reader, streams: list[Stream], ros: ReplayNode, out: BagWriter
    ) -> None:
        self.args, self.reader, self.streams, self.ros, self.out = args, reader, streams, ros, out
        self.images = camera_images(streams)  # by camera: "" for the one camera, else each --camera's NAME
        self.summaries = {camera: ReplaySummary(Path(args.output), camera=camera) for camera in self.images}
        self._by_topic = {s.bag_topic: s for s in streams}
        self._commands_sent = 0
        self._sent: set[str] = set()  # ids (or, without one, queries) of the commands sent
        self._own_ids: set[str] = set()  # the ids this replay gave its --command commands
        self._clock_ns: int | None = None  # the last /clock published (--clock)

    def drain(self) -> None:
        self.ros.record(self.out)

    def run(self) -> list[ReplaySummary]:
        """The replay, a summary per camera; whatever ends it early (an error, Ctrl-C), the commands it
        started are stopped."""
        try:
            self._connect()
            before = self._node_counts({}, self.reader.start_time - round(COUNTS_WAIT_S * 1e9))  # any report so far
            self._check_camera_names()
            for query in self.args.command:
                self._send_command(self._cli_command(query), wait=True)
                self._commands_sent += 1
            self._play()
            self._finish()
        except BaseException as error:
            if not self.args.keep_commands:
                self._stop_on_the_way_out(error)
            raise
        seen = {camera: len(reports) for camera, reports in self.ros.camera_counts.items()}
        after = self._node_counts(seen, self._clock_ns)  # reports made after the replay
        written = Counter(self.out.counts)
        for camera, summary in self.summaries.items():
            if camera in before and camera in after:
                summary.node_counts = node_counts_grown(before[camera], after[camera])
            summary.commands_sent = self._commands_sent
            # A camera's own outputs; the command answers are every camera's.
            answers = Counter(command_status=written["command_status"])
            summary.outputs = self.ros.camera_outputs[camera] + answers if camera else written
        return list(self.summaries.values())

    def _connect(self) -> None:
        """Wait until the node subscribes to every camera's images and the commands and publishes tracks;
        else it is not running (or has no such camera).

        Depth and camera_info are not waited for: a node without `use_depth` never subscribes to them.
        """
        images = [self.ros.publishers[s.node_topic] for s in self.images.values()]
        publishers = [p for p in (*images, self.ros.command_pub) if p is not None]
        tracks = self.ros.output_topics()["tracks"]
        connected = self.ros.wait(
            lambda: all(p.get_subscription_count() > 0 for p in publishers) and self.ros.node.count_publishers(tracks),
            self.args.wait,
            self.drain,
        )
        if not connected:
            topics = [s.node_topic for s in self.images.values()]
            unheard = next((t for t in topics if not self.ros.node.count_subscribers(t)), topics[0])
            name = self.ros.node.resolve_topic_name(unheard)
            raise ReplayError(
                f"perception_node never answered: nothing subscribed to {name} within {self.args.wait:g} s"
            )
        time.sleep(0.3)  # matching is not symmetric in time: let the node's side match our publishers too

    def _check_camera_names(self) -> None:
        """A --camera playing into a node camera of another name would be scored on none of its outputs."""
        with self.ros.lock:
            reported = dict(self.ros.reported_names)
        for camera, stream in self.images.items():
            if camera and reported.get(camera, camera) != camera:
                topic = self.ros.node.resolve_topic_name(stream.node_topic)
                raise ReplayError(
                    f"--camera {camera}: the node's camera on {topic} is {reported[camera]}: give --camera in the "
                    "order of the node's cameras.names, named as there"
                )

    def _node_counts(self, seen: dict[str, int], clock_ns: int | None) -> dict[str, dict[str, int]]:
        """The counters of each of the node's cameras in its newest report after the first `seen[camera]`
        ones (a camera without one within COUNTS_WAIT_S is left out).

        Under --clock the node's timers run on the bag's clock: it runs on from `clock_ns` meanwhile,
        before the first frame or after the node went quiet, so a report comes.
        """
        start = time.monotonic()

        def tick() -> None:
            if self.ros.clock_pub is not None and clock_ns is not None:
                self.ros.publish_clock(clock_ns + round((time.monotonic() - start) * 1e9))
            self.drain()

        def new() -> dict[str, dict[str, int]]:
            return {c: r[-1] for c, r in self.ros.camera_counts.items() if len(r) > seen.get(c, 0)}

        self.ros.wait(lambda: len(new()) == len(self.ros.camera_counts), COUNTS_WAIT_S, tick)
        with self.ros.lock:
            return new()

    def _cli_command(self, query: str):
        from videomolmo_ros.msg import GroundingCommand

        command_id = f"replay_bag-{uuid.uuid4().hex[:8]}"  # known before any answer: stoppable on Ctrl-C
        self._own_ids.add(command_id)
        cameras = ",".join(camera for camera, _ in self.args.camera)  # every --camera; else the node's first
        return GroundingCommand(
            id=command_id, query=query, mode=MODES[self.args.mode], action=ACTION_ADD, camera=cameras
        )

    def _send_command(self, msg, wait: bool) -> None:
        """Publish a command (a message or the bag's bytes); with `wait`, until the node answers."""
        answered = len(self.ros.statuses)
        self.ros.command_pub.publish(msg)
        sent = self.ros.typestore.deserialize_cdr(msg, COMMAND_TYPE) if isinstance(msg, bytes) else msg
        self._sent.add(sent.id or sent.query)
        if wait and not self.ros.wait(lambda: len(self.ros.statuses) > answered, self.args.timeout, self.drain):
            raise ReplayError(f"perception_node never answered a command within {self.args.timeout:g} s")

    def _events(self) -> Iterator[tuple[Connection, int, memoryview]]:
        connections = [c for c in self.reader.connections if c.topic in self._by_topic]
        return bag_messages(self.reader, connections)

    def _play(self) -> None:
        image_topics = {s.bag_topic for s in self.images.values()}
        frames = sum(c.msgcount for c in self.reader.connections if c.topic in image_topics)
        start_wall, start_bag = time.monotonic(), None
        with tqdm(total=frames, unit="frame", desc="replay", disable=None) as bar:
            for connection, bag_ns, data in self._events():
                start_bag = bag_ns if start_bag is None else start_bag
                if self.args.rate > 0:
                    self._sleep_until(start_wall + (bag_ns - start_bag) / 1e9 / self.args.rate)
                if self.ros.clock_pub is not None:
                    self.ros.publish_clock(bag_ns)
                    self._clock_ns = bag_ns
                self._send(self._by_topic[connection.topic], bag_ns, data)
                bar.update(connection.topic in image_topics)

    def _sleep_until(self, wall: float) -> None:
        while (remaining := wall - time.monotonic()) > 0:
            self.drain()
            time.sleep(min(remaining, 0.01))

    def _send(self, stream: Stream, bag_ns: int, data: memoryview) -> None:
        """Publish one message of the bag; a frame only if the sizes it declares pass (counted if not)."""
        where = f"{self.args.bag}: {stream.bag_topic} at {bag_ns / 1e9:.3f} s"
        if stream.msgtype == COMMAND_TYPE:
            self._send_command(bytes(data), wait=self.args.rate == 0)  # rclpy publishes serialized data as bytes
            self._commands_sent += 1
            return
        summary = self.summaries[stream.camera]
        msg = decode_message(self.ros.typestore, data, stream.msgtype, where) if stream.msgtype in FRAME_TYPES else None
        if msg is not None and (problem := frame_problem(msg, self.args.max_width, self.args.max_height)):
            summary.frames_refused[problem[0]] += 1
            summary.refused_example = summary.refused_example or f"{where}: {problem[1]}"
            return
        if stream is not self.images[stream.camera]:
            self.ros.publishers[stream.node_topic].publish(bytes(data))
            return
        stamp = stamp_ns(msg.header)
        with self.ros.lock:
            seen = len(self.ros.tracks_of(stream.camera))
        summary.frame_sent_ns.append(self.ros.node.get_clock().now().nanoseconds)
        self.ros.publishers[stream.node_topic].publish(bytes(data))
        summary.frames_sent += 1
        summary.frame_stamps.append(stamp)
        if self.args.rate == 0 and not self._wait_for_tracks(stream.camera, seen, stamp):
            summary.frames_timed_out += 1
        self.drain()

    def _wait_for_tracks(self, camera: str, seen: int, stamp: int) -> bool:
        """Lockstep: until tracks of this frame (or a later one) of its camera arrive; nothing to wait for
        when no command runs on it."""
        return self.ros.wait(
            lambda: not self.ros.running_on(camera) or any(s >= stamp for s in self.ros.tracks_of(camera)[seen:]),
            self.args.timeout,
            self.drain,
        )

    def _finish(self) -> None:
        """Collect the last outputs until the node is quiet, then stop the commands this replay started."""
        for camera, summary in self.summaries.items():
            if summary.frame_stamps and self.args.rate > 0:
                last = summary.frame_stamps[-1]
                self.ros.wait(
                    lambda c=camera, s=last: not self.ros.running_on(c) or s in self.ros.tracks_of(c),
                    self.args.timeout,
                    self.drain,
                )
        self._until_quiet()
        if not self.args.keep_commands:
            for command_id in self._started():
                self._stop(command_id)
            self._until_quiet()
        accepted = any(s.state == STATUS_ACCEPTED for s in self.ros.statuses)
        if any(s.frames_sent for s in self.summaries.values()) and accepted and not self.ros.track_stamps:
            raise ReplayError("perception_node never answered: commands were accepted but no tracks arrived")

    def _started(self) -> list[str]:
        """The running commands this replay started (other clients' commands are left alone)."""
        with self.ros.lock:
            accepted = {s.id for s in self.ros.statuses if s.state == STATUS_ACCEPTED and {s.id, s.query} & self._sent}
            return sorted(accepted & self.ros.running)

    def _stop(self, command_id: str) -> None:
        from videomolmo_ros.msg import GroundingCommand

        self._send_command(GroundingCommand(id=command_id, action=ACTION_STOP), wait=True)

    def _stop_on_the_way_out(self, error: BaseException) -> None:
        """Stop what this replay started (its commands running, and its own not yet answered) and note on
        `error` what became of them; the output bag is dropped, so what arrives now is not recorded."""
        from videomolmo_ros.msg import GroundingCommand

        with self.ros.lock:
            answered = {s.id for s in self.ros.statuses}
        ids = sorted(set(self._started()) | (self._own_ids - answered))
        if not ids:
            return
        try:
            for command_id in ids:
                self.ros.command_pub.publish(GroundingCommand(id=command_id, action=ACTION_STOP))
            running = lambda: set(ids) & self.ros.running  # noqa: E731
            self.ros.wait(lambda: not running(), STOP_WAIT_S, lambda: None)
            left = sorted(running())
        except Exception as stop_error:  # the way out must not hide why the replay stopped
            left = [f"{', '.join(ids)} ({stop_error})"]
        if left:
            error.add_note(f"command(s) {', '.join(left)} may still run in the node: stop them (list_commands)")
        else:
            error.add_note(f"stopped the command(s) it started ({', '.join(ids)})")

    def _until_quiet(self) -> None:
        """Write outputs until none arrived for --drain seconds (late fused masks, status answers)."""
        while True:
            before = self.ros.received.qsize() + sum(self.out.counts.values())
            time.sleep(self.args.drain)
            self.drain()
            if self.ros.received.qsize() + sum(self.out.counts.values()) == before:
                return


def topic_choice(args: argparse.Namespace) -> TopicChoice:
    return TopicChoice(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TopicChoice)})


def replay(args: argparse.Namespace) -> list[ReplaySummary]:
    """Play the bag into the node; the summaries, one per camera (and the output bag, there only once
    complete), are what a scorer reads."""
    typestore = make_typestore()
    reader = open_bag(Path(args.bag))
    spun = None
    try:
        streams = select_streams(reader, topic_choice(args))
        if args.command and not any(s.msgtype == COMMAND_TYPE for s in streams):
            streams.append(Stream("", args.node_command, COMMAND_TYPE))
        spun = SpunNode("replay_bag", args.namespace)
        ros = ReplayNode(spun, streams, typestore, args.clock)
        spun.spin()
        with new_bag(Path(args.output), args.storage, typestore, ros.output_topics()) as out:
            return Replay(args, reader, streams, ros, out).run()
    finally:
        if spun is not None:
            spun.close()  # joins the spin thread: a live one at exit aborts the process
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
    parser.add_argument(
        "--camera",
        type=named("TOPIC"),
        action="append",
        default=[],
        metavar="NAME=TOPIC",
        help="play TOPIC (Image or CompressedImage) into the node's camera NAME (repeat; in the order of its "
        "cameras.names: the first into --node-image, others into NAME/image), depth and camera_info from the "
        "topics beside it (TOPIC's parent/depth/image_raw, parent/camera_info) when there, and score it against "
        "/NAME/ground_truth/masks (the first camera: else --truth-topic); --command runs on every camera",
    )
    for option, what in (("depth", "depth images"), ("info", "CameraInfo"), ("truth", "ground-truth ObjectMasks")):
        parser.add_argument(
            f"--camera-{option}",
            type=named("TOPIC"),
            action="append",
            default=[],
            metavar="NAME=TOPIC",
            help=f"camera NAME's {what}",
        )
    parser.add_argument("--truth-topic", help=f"bag topic of ground-truth ObjectMasks (default {DEFAULT_TRUTH_TOPIC})")
    parser.add_argument(
        "--report",
        help="where to write the score as JSON (default <output>/score.json; with --camera, score_NAME.json there)",
    )
    parser.add_argument("--node-image", default="image", help="the node's image topic")
    parser.add_argument("--node-depth", default="depth", help="the node's depth topic")
    parser.add_argument("--node-camera-info", default="camera_info", help="the node's camera_info topic")
    parser.add_argument("--node-command", default="command", help="the node's command topic")
    parser.add_argument("--namespace", default="/", help="the node's namespace (relative topic names resolve in it)")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the node to connect")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer to a frame/command")
    parser.add_argument("--drain", type=float, default=1.0, help="quiet seconds that end the recording")
    parser.add_argument("--max-width", type=int, default=MAX_WIDTH, help="wider frames are not sent (counted)")
    parser.add_argument("--max-height", type=int, default=MAX_HEIGHT, help="taller frames are not sent (counted)")
    args = parser.parse_args(argv)
    if args.rate < 0 or args.max_width < 1 or args.max_height < 1:
        parser.error("--rate must be >= 0, --max-width and --max-height >= 1")
    _check_cameras(parser, args)
    return args


def _check_cameras(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--camera options that cannot make a replay: a camera or a topic twice, settings of no camera."""
    names, topics = [name for name, _ in args.camera], [topic for _, topic in args.camera]
    if len(set(names)) < len(names):
        parser.error(f"each --camera needs a name of its own: {', '.join(names)}")
    if len(set(topics)) < len(topics):
        parser.error(f"two --camera play one topic: {', '.join(topics)}")
    for option in ("camera_depth", "camera_info", "camera_truth"):
        if unknown := sorted({name for name, _ in getattr(args, option)} - set(names)):
            parser.error(f"--{option.replace('_', '-')} for no --camera: {', '.join(unknown)}")
    if names and (single := [o for o in ("image_topic", "depth_topic", "camera_info_topic") if getattr(args, o)]):
        parser.error(f"--{single[0].replace('_', '-')} plays one camera: with --camera give --camera-depth, -info")


def run(args: argparse.Namespace) -> int:
    """Check the ground truth, replay, print the summaries, score each camera; EXIT_INCOMPLETE if frames
    went missing."""
    cameras = [name for name, _ in args.camera] or [""]
    truths = read_camera_truths(Path(args.bag), args.truth_topic, cameras, dict(args.camera_truth))
    if not truths and args.report:
        where = "of any --camera" if args.camera else f"on {DEFAULT_TRUTH_TOPIC}"
        raise ReplayError(f"--report: the bag holds no ground truth {where} to score")
    summaries = replay(args)
    print("\n".join(summary.text() for summary in summaries))
    for summary in summaries:
        if summary.camera in truths:
            topic, truth = truths[summary.camera]
            write_report(report_path(args, summary.camera), args.bag, topic, summary, truth)
    if all(summary.complete for summary in summaries):
        return 0
    refused = sum(sum(summary.frames_refused.values()) for summary in summaries)
    lost = sum(summary.node_lost for summary in summaries)
    print(
        f"replay_bag: incomplete: {refused} frame(s) of the bag not sent, {lost} lost by the node "
        f"(see above; outputs in {args.output})",
        file=sys.stderr,
    )
    return EXIT_INCOMPLETE


def report_path(args: argparse.Namespace, camera: str) -> Path:
    """--report (default <output>/score.json); a camera's of several beside it: score_NAME.json."""
    path = Path(args.report or Path(args.output) / "score.json")
    return path.with_name(f"{path.stem}_{camera}{path.suffix}") if camera else path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool("replay_bag", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
