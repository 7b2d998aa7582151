"""videomolmo_demo: the main job in one command, on a video, a webcam or a synthetic scene of its own.

Starts perception_node (the shipped parameters, real backends; --params-file to change them),
publishes the video through video_publisher's code, sends the query as a track command, records
every output of the node into <output>/outputs (a rosbag2), and writes <output>/overlay.mp4 (every
frame with the masks, ids, labels and targets drawn by the node's debug overlay), tracks.csv and
summary.json, then prints the summary (frames, tracks, latency, rates). Without a video it plays
a 6-second synthetic tabletop and asks for "the red ball". Missing weights are downloaded on
first use where there is internet; offline (or with HF_HUB_OFFLINE=1) it stops at once saying
what to download.

    videomolmo_demo                                   # the synthetic tabletop, "the red ball"
    videomolmo_demo clip.mp4 --query "the red cup"
    videomolmo_demo --camera 0 --query "my phone" --max-frames 300
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rclpy.utilities import remove_ros_args

from videomolmo_ros.evaluation.bag_files import (
    ACTION_ADD,
    ACTION_STOP,
    COMMAND_TYPE,
    MODES,
    STATUS_ACCEPTED,
    BagWriter,
    Stream,
    make_typestore,
    new_bag,
    read_outputs,
)
from videomolmo_ros.evaluation.demo_report import DemoSummary, SentFrame, summarize, write_files
from videomolmo_ros.evaluation.demo_scene import TabletopScene
from videomolmo_ros.io.child_process import stop_child
from videomolmo_ros.io.dds_profile import large_data_environment
from videomolmo_ros.io.image_codec import encode_jpeg
from videomolmo_ros.io.package_share import share_path
from videomolmo_ros.io.video_source import VideoSource
from videomolmo_ros.tools.demo_weights import missing_weights, node_parameters
from videomolmo_ros.tools.frame_publisher import FramePublisher, add_source_arguments, play
from videomolmo_ros.tools.replay_node import ReplayNode
from videomolmo_ros.tools.ros_spin import SpunNode
from videomolmo_ros.tools.tool_main import run_tool

NAMESPACE = "/videomolmo_demo"
SYNTHETIC_QUERY = "the red ball"
CAMERA_FRAMES = 300  # a webcam run stops after this many frames unless --max-frames says otherwise
WRITTEN = ("outputs", "overlay.mp4", "tracks.csv", "summary.json", "node.log", "demo_params.yaml")


class DemoError(RuntimeError):
    """Why the demo stopped, worded for the user."""


class NodeProcess:
    """perception_node for the demo: its own process and log, in the demo's namespace."""

    def __init__(self, params_files: list[Path], log: Path):
        executable = shutil.which("perception_node")
        if executable is None:
            raise DemoError("perception_node is not on the PATH (source the workspace's setup or scripts/env.sh)")
        args = [executable, "--ros-args", "-r", f"__ns:={NAMESPACE}"]
        args += [a for f in params_files for a in ("--params-file", str(f))]
        self.log_path = log
        self._log = log.open("w")
        env = {**large_data_environment(os.environ), "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def failure(self) -> str | None:
        """The node's last words if it exited."""
        if self.process.poll() is None:
            return None
        lines = self.log_path.read_text().splitlines()
        fatal = [line for line in lines if "FATAL" in line or "ERROR" in line] or lines[-5:]
        return f"perception_node exited ({self.process.returncode}):\n" + "\n".join(fatal)

    def stop(self) -> None:
        stop_child(self.process, lambda: self.process.send_signal(signal.SIGINT), 30)
        self._log.close()


class DemoRun:
    """One run: wait for the node, send the query, publish the frames, record every output."""

    def __init__(self, args: argparse.Namespace, source, node: NodeProcess, spun: SpunNode, out: Path):
        self.args, self.source, self.node, self.out = args, source, node, out
        self.typestore = make_typestore()
        self.ros = ReplayNode(spun, [Stream("", "command", COMMAND_TYPE)], self.typestore, clock=False)
        self.publisher = FramePublisher(spun.node, args, None)
        self.bag: BagWriter | None = None  # while run() records
        self.frames: list[SentFrame] = []
        self.command_id = ""
        spun.spin()  # the callbacks of everything above

    def drain(self) -> None:
        self.ros.record(self.bag)

    def wait(self, predicate, timeout_s: float) -> bool:
        """Wait for `predicate`, recording outputs meanwhile; the node dying ends the wait with its words."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if (failure := self.node.failure()) is not None:
                raise DemoError(failure)
            if time.monotonic() > deadline:
                return False
            self.ros.wait(predicate, 0.2, self.drain)
        return True

    def run(self) -> float:
        """Everything up to the last output (recorded in the bag, there once complete); the rate the frames
        went out at."""
        with new_bag(self.out / "outputs", "mcap", self.typestore, self.ros.output_topics()) as self.bag:
            return self._run()

    def _run(self) -> float:
        ready = lambda: self.publisher.subscribers > 0 and self.ros.command_pub.get_subscription_count() > 0  # noqa: E731
        if not self.wait(ready, self.args.wait):
            raise DemoError(f"perception_node did not come up within {self.args.wait:g} s (see {self.node.log_path})")
        time.sleep(0.5)  # matching is not symmetric in time: let the node's side match ours too
        self._command()
        stats = play(
            self.source, self.publisher.publish, self.args.rate or self.source.fps, False, self._limit(), self._sent
        )
        if not self.frames:
            raise DemoError(f"{self.source.name} gave no frame")
        last = self.frames[-1].stamp_ns
        self.wait(lambda: any(s >= last for s in self.ros.track_stamps), self.args.timeout)
        self._until_quiet()
        from videomolmo_ros.msg import GroundingCommand

        self.ros.command_pub.publish(GroundingCommand(id=self.command_id, action=ACTION_STOP))
        self._until_quiet()
        return stats.frames / stats.seconds if stats.seconds > 0 else 0.0

    def _command(self) -> None:
        from videomolmo_ros.msg import GroundingCommand

        self.ros.command_pub.publish(GroundingCommand(query=self.args.query, mode=MODES["track"], action=ACTION_ADD))
        if not self.wait(lambda: self.ros.statuses, self.args.timeout):
            raise DemoError(f"perception_node never answered the command (see {self.node.log_path})")
        status = self.ros.statuses[0]
        if status.state != STATUS_ACCEPTED:
            raise DemoError(f"perception_node rejected {self.args.query!r}: {status.reason}")
        self.command_id = status.id

    def _limit(self) -> int:
        camera = self.args.camera is not None
        return self.args.max_frames or (CAMERA_FRAMES if camera else 0)

    def _sent(self, index: int, stamp_ns: int, rgb) -> None:
        self.frames.append(SentFrame(index, stamp_ns, encode_jpeg(rgb, 90)))
        self.drain()

    def _until_quiet(self, quiet_s: float = 1.0) -> None:
        while True:
            before = sum(self.bag.counts.values()) + self.ros.received.qsize()
            self.wait(lambda: False, quiet_s)
            self.drain()
            if sum(self.bag.counts.values()) + self.ros.received.qsize() == before:
                return


def prepare(args: argparse.Namespace, out: Path) -> dict[str, object]:
    """The output folder (files of an earlier demo replaced) and the node's parameters: the shipped
    ones, then --params-file's, then the camera's transport."""
    out.mkdir(parents=True, exist_ok=True)
    for name in WRITTEN:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    params = node_parameters([share_path("config/perception.yaml"), *(Path(p) for p in args.params_file)])
    if args.compressed:
        params |= {"cameras.main.transport": "compressed", "cameras.main.image_topic": "image/compressed"}
    return params


def run(args: argparse.Namespace) -> DemoSummary:
    out = Path(args.output)
    source = (  # first: a video that cannot be read is said before anything else is done
        TabletopScene()
        if args.video is None and args.camera is None
        else VideoSource(args.camera if args.camera is not None else args.video, args.fps)
    )
    params = prepare(args, out)
    if missing := missing_weights(params):
        raise DemoError("the models are not on this machine:\n- " + "\n- ".join(missing))
    # One file, keyed by the node's full name: a params file's `perception_node:` does not reach a namespaced node.
    files = [out / "demo_params.yaml"]
    files[0].write_text(yaml.safe_dump({f"{NAMESPACE}/perception_node": {"ros__parameters": params}}))
    summary = DemoSummary(
        args.video or (f"camera {args.camera}" if args.camera is not None else source.name),
        args.query,
        0,
        0.0,
        source.width,
        source.height,
    )
    node = NodeProcess(files, out / "node.log")
    try:
        with source, SpunNode("videomolmo_demo", namespace=NAMESPACE) as spun:
            demo = DemoRun(args, source, node, spun, out)
            summary.publish_rate_hz = demo.run()
    finally:
        node.stop()
    summary.frames_published = len(demo.frames)
    outputs = read_outputs(out / "outputs")
    summarize(summary, demo.frames, outputs)
    write_files(out, summary, demo.frames, outputs)
    return summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    description, epilog = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(
        prog="videomolmo_demo", description=description, epilog=epilog, formatter_class=argparse.RawTextHelpFormatter
    )
    add_source_arguments(parser, video_required=False)
    parser.add_argument("--query", help=f'what to find and track (default without a video: "{SYNTHETIC_QUERY}")')
    parser.add_argument("-o", "--output", default="demo_out", help="folder for overlay.mp4, tracks.csv, ...")
    parser.add_argument("--params-file", action="append", default=[], help="node parameters over the shipped ones")
    parser.add_argument("--max-frames", type=int, default=0, help=f"stop after N frames (camera: {CAMERA_FRAMES})")
    parser.add_argument("--compressed", action="store_true", help="send JPEG CompressedImage instead of raw rgb8")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds for the node to load its models")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer of the node")
    args = parser.parse_args(argv)
    if args.video is not None and args.camera is not None:
        parser.error("give a VIDEO or --camera N, not both")
    if args.query is None and (args.video is not None or args.camera is not None):
        parser.error("--query: say what to find in your video")
    args.query = args.query or SYNTHETIC_QUERY
    # What FramePublisher reads: the node's image topic, raw rgb8 or JPEG, SensorDataQoS.
    args.topic, args.encoding, args.jpeg_quality, args.frame_id, args.reliable = None, "rgb8", 90, "camera", False
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(remove_ros_args(["videomolmo_demo", *argv])[1:])

    def demo() -> int:
        print(run(args).text(Path(args.output)))
        return 0

    return run_tool("videomolmo_demo", demo, (DemoError,))


if __name__ == "__main__":
    sys.exit(main())
