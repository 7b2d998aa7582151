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
from pathlib import Path

from videomolmo_ros.evaluation.bag_files import (
    COMMAND_TYPE,
    DEFAULT_TRUTH_TOPIC,
    MODES,
    ReplayError,
    ReplaySummary,
    Stream,
    TopicChoice,
    make_typestore,
    new_bag,
    open_bag,
    select_streams,
)
from videomolmo_ros.evaluation.bag_scoring import read_camera_truths, write_report
from videomolmo_ros.tools.bag_player import Replay
from videomolmo_ros.tools.replay_node import ReplayNode
from videomolmo_ros.tools.ros_spin import SpunNode
from videomolmo_ros.tools.tool_main import named, run_tool

# The largest frame played unless --max-width / --max-height say otherwise: 4K UHD (24 MiB in rgb8).
MAX_WIDTH, MAX_HEIGHT = 3840, 2160
EXIT_INCOMPLETE = 3  # the replay ran, but frames of the bag were not sent or the node lost some


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
