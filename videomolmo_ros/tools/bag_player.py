"""replay_bag's run over ROS: connect to the node, send the commands, play the bag's frames (every
camera's, in stamp order; timed or in lockstep), record the outputs, stop the commands it started.

The command line (options, exit status, scoring) is bag_replay.py; the publishers and subscriptions
replay_node.py.
"""

import argparse
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
    FRAME_TYPES,
    MODES,
    STATUS_ACCEPTED,
    BagWriter,
    ReplayError,
    ReplaySummary,
    Stream,
    bag_messages,
    camera_images,
    decode_message,
    frame_problem,
    node_counts_grown,
    stamp_ns,
)
from videomolmo_ros.tools.replay_node import ReplayNode

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
