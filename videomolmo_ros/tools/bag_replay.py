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

Frames over --max-width x --max-height, or whose data does not match the size they declare, are
not sent (counted and named). The node's losses during the replay (frames never received or
rejected, outputs dropped) are read from its /diagnostics and printed. Exit status: 0 every frame
sent and none lost; 3 the replay ran but frames were not sent or lost (outputs written); 1 an
error (a damaged bag, no node: nothing written, the commands it started stopped); 130 interrupted.

    replay_bag recording/ -o replay_out --rate 0 --command "the red mug"
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
    decode_message,
    frame_problem,
    make_typestore,
    new_bag,
    node_counts_grown,
    open_bag,
    read_truth,
    select_streams,
    stamp_ns,
    write_report,
)
from videomolmo_ros.tools.replay_node import ReplayNode
from videomolmo_ros.tools.ros_spin import SpunNode
from videomolmo_ros.tools.tool_main import run_tool

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
        self.image = streams[0]  # select_streams puts the image stream first
        self.summary = ReplaySummary(Path(args.output))
        self._by_topic = {s.bag_topic: s for s in streams}
        self._sent: set[str] = set()  # ids (or, without one, queries) of the commands sent
        self._own_ids: set[str] = set()  # the ids this replay gave its --command commands
        self._clock_ns: int | None = None  # the last /clock published (--clock)

    def drain(self) -> None:
        self.ros.record(self.out)

    def run(self) -> ReplaySummary:
        """The replay; whatever ends it early (an error, Ctrl-C), the commands it started are stopped."""
        try:
            self._connect()
            before = self._node_counts(0, self.reader.start_time - round(COUNTS_WAIT_S * 1e9))  # any report so far
            for query in self.args.command:
                self._send_command(self._cli_command(query), wait=True)
                self.summary.commands_sent += 1
            self._play()
            self._finish()
        except BaseException as error:
            if not self.args.keep_commands:
                self._stop_on_the_way_out(error)
            raise
        after = self._node_counts(len(self.ros.camera_counts), self._clock_ns)  # a report made after the replay
        self.summary.node_counts = None if before is None or after is None else node_counts_grown(before, after)
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

    def _node_counts(self, seen: int, clock_ns: int | None) -> dict[str, int] | None:
        """The counters of the node's camera in its newest report after the first `seen` ones (None if none
        came within COUNTS_WAIT_S).

        Under --clock the node's timers run on the bag's clock: it runs on from `clock_ns` meanwhile,
        before the first frame or after the node went quiet, so a report comes.
        """
        start = time.monotonic()

        def tick() -> None:
            if self.ros.clock_pub is not None and clock_ns is not None:
                self.ros.publish_clock(clock_ns + round((time.monotonic() - start) * 1e9))
            self.drain()

        if not self.ros.wait(lambda: len(self.ros.camera_counts) > seen, COUNTS_WAIT_S, tick):
            return None
        with self.ros.lock:
            return self.ros.camera_counts[-1]

    def _cli_command(self, query: str):
        from videomolmo_ros.msg import GroundingCommand

        command_id = f"replay_bag-{uuid.uuid4().hex[:8]}"  # known before any answer: stoppable on Ctrl-C
        self._own_ids.add(command_id)
        return GroundingCommand(id=command_id, query=query, mode=MODES[self.args.mode], action=ACTION_ADD)

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
        frames = sum(c.msgcount for c in self.reader.connections if c.topic == self.image.bag_topic)
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
                bar.update(connection.topic == self.image.bag_topic)

    def _sleep_until(self, wall: float) -> None:
        while (remaining := wall - time.monotonic()) > 0:
            self.drain()
            time.sleep(min(remaining, 0.01))

    def _send(self, stream: Stream, bag_ns: int, data: memoryview) -> None:
        """Publish one message of the bag; a frame only if the sizes it declares pass (counted if not)."""
        where = f"{self.args.bag}: {stream.bag_topic} at {bag_ns / 1e9:.3f} s"
        if stream.msgtype == COMMAND_TYPE:
            self._send_command(bytes(data), wait=self.args.rate == 0)  # rclpy publishes serialized data as bytes
            self.summary.commands_sent += 1
            return
        msg = decode_message(self.ros.typestore, data, stream.msgtype, where) if stream.msgtype in FRAME_TYPES else None
        if msg is not None and (problem := frame_problem(msg, self.args.max_width, self.args.max_height)):
            self.summary.frames_refused[problem[0]] += 1
            self.summary.refused_example = self.summary.refused_example or f"{where}: {problem[1]}"
            return
        if stream is not self.image:
            self.ros.publishers[stream.node_topic].publish(bytes(data))
            return
        stamp = stamp_ns(msg.header)
        seen = len(self.ros.track_stamps)
        self.summary.frame_sent_ns.append(self.ros.node.get_clock().now().nanoseconds)
        self.ros.publishers[stream.node_topic].publish(bytes(data))
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


def replay(args: argparse.Namespace) -> ReplaySummary:
    """Play the bag into the node; the summary (and the output bag, there only once complete) is what a
    scorer reads."""
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
    parser.add_argument("--max-width", type=int, default=MAX_WIDTH, help="wider frames are not sent (counted)")
    parser.add_argument("--max-height", type=int, default=MAX_HEIGHT, help="taller frames are not sent (counted)")
    args = parser.parse_args(argv)
    if args.rate < 0 or args.max_width < 1 or args.max_height < 1:
        parser.error("--rate must be >= 0, --max-width and --max-height >= 1")
    return args


def run(args: argparse.Namespace) -> int:
    """Check the ground truth, replay, print the summary, score; EXIT_INCOMPLETE if frames went missing."""
    truth = read_truth(Path(args.bag), args.truth_topic)
    if truth is None and args.report:
        raise ReplayError(f"--report: the bag holds no ground truth on {DEFAULT_TRUTH_TOPIC} to score")
    summary = replay(args)
    print(summary.text())
    if truth is not None:
        write_report(Path(args.report or Path(args.output) / "score.json"), args.bag, args.truth_topic, summary, truth)
    if summary.complete:
        return 0
    refused, lost = sum(summary.frames_refused.values()), summary.node_lost
    print(
        f"replay_bag: incomplete: {refused} frame(s) of the bag not sent, {lost} lost by the node "
        f"(see above; outputs in {args.output})",
        file=sys.stderr,
    )
    return EXIT_INCOMPLETE


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool("replay_bag", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
