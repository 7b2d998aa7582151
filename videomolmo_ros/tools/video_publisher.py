"""video_publisher: any video file, image folder or V4L2 camera as a ROS 2 camera.

Like ROS's image_publisher, but video-aware: frames go out at the file's rate (or --rate), once
or looping, as sensor_msgs/Image (rgb8 / bgr8) or, with --compressed, CompressedImage (JPEG, on
<topic>/compressed as image_transport names it), each stamped from the node clock (/clock under
use_sim_time) with --frame-id, on SensorDataQoS (best effort, keep last 5; --reliable for a
reliable one). A CameraInfo goes out beside every frame when a calibration is given (--fx ...,
or a camera_info YAML). Large frames need the DDS profile this process puts in effect (docs/large-images.md).

    video_publisher clip.mp4 --loop
    video_publisher ~/data/davis2016/JPEGImages/480p/dog --fps 24 --compressed
    video_publisher --camera 0 --fx 600 --ros-args -r image:=/camera/color/image_raw
"""

import argparse
import sys
import time

from rclpy.utilities import remove_ros_args

from videomolmo_ros.io.camera_calibration import Calibration, from_intrinsics, read_calibration
from videomolmo_ros.io.video_source import VideoSource, VideoSourceError
from videomolmo_ros.tools.frame_publisher import ACK_WAIT_S, FramePublisher, add_source_arguments, play
from videomolmo_ros.tools.ros_spin import SpunNode
from videomolmo_ros.tools.tool_main import run_tool


def open_source(args: argparse.Namespace) -> VideoSource:
    return VideoSource(args.camera if args.camera is not None else args.video, args.fps)


def calibration_for(args: argparse.Namespace, source: VideoSource) -> Calibration | None:
    """The calibration the options give, checked against the source's size; None without one."""
    if args.calibration:
        calibration = read_calibration(args.calibration)
    elif args.fx is not None:
        calibration = from_intrinsics(source.width, source.height, args.fx, args.fy, args.cx, args.cy)
    else:
        return None
    calibration.check_size(source.width, source.height, source.name)
    return calibration


def parse_args(argv: list[str]) -> argparse.Namespace:
    description, epilog = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(
        prog="video_publisher", description=description, epilog=epilog, formatter_class=argparse.RawTextHelpFormatter
    )
    add_source_arguments(parser, video_required=False)
    parser.add_argument("--loop", action="store_true", help="start again at the end (files and folders)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: no limit)")
    parser.add_argument("--topic", help="image topic (default: image, or image/compressed with --compressed)")
    parser.add_argument("--compressed", action="store_true", help="publish CompressedImage (JPEG)")
    parser.add_argument("--encoding", choices=("rgb8", "bgr8"), default="rgb8", help="raw Image encoding")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1-100 with --compressed")
    parser.add_argument("--frame-id", default="camera", help="header frame_id")
    parser.add_argument("--reliable", action="store_true", help="reliable QoS instead of SensorDataQoS")
    parser.add_argument("--camera-info-topic", default="camera_info", help="CameraInfo topic")
    parser.add_argument("--calibration", help="camera_info YAML (ROS camera_calibration format)")
    for name in ("fx", "fy", "cx", "cy"):
        parser.add_argument(f"--{name}", type=float, help=f"pinhole {name} in pixels (no distortion)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for subscribers first (0: none)")
    parser.add_argument("--subscribers", type=int, default=1, help="how many subscribers --wait waits for")
    args = parser.parse_args(argv)
    if (args.video is None) == (args.camera is None):
        parser.error("give a VIDEO (file or image folder) or --camera N")
    if args.rate < 0 or args.fps < 0 or args.max_frames < 0 or not 1 <= args.jpeg_quality <= 100:
        parser.error("--rate, --fps and --max-frames must be >= 0, --jpeg-quality 1-100")
    if args.calibration and args.fx is not None:
        parser.error("give --calibration or --fx/--fy/--cx/--cy, not both")
    return args


def run(args: argparse.Namespace, argv: list[str]) -> int:
    with open_source(args) as source:
        calibration = calibration_for(args, source)  # checked before DDS starts
        with SpunNode("video_publisher", args=["video_publisher", *argv]) as spun:
            spun.spin()  # the clock follows /clock under use_sim_time
            publisher = FramePublisher(spun.node, args, calibration)
            deadline = time.monotonic() + args.wait
            while publisher.subscribers < args.subscribers and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = play(source, publisher.publish, args.rate or source.fps, args.loop, args.max_frames)
            if not stats.frames:
                raise VideoSourceError(f"{source.name}: no frame could be read")
            if not publisher.flush(ACK_WAIT_S):
                unacked = f"a subscriber did not acknowledge every frame within {ACK_WAIT_S:g} s"
                print(f"video_publisher: {unacked}", file=sys.stderr)
            print(stats.text(spun.node.resolve_topic_name(publisher.topic)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(remove_ros_args(["video_publisher", *argv])[1:])
    return run_tool("video_publisher", lambda: run(args, argv))


if __name__ == "__main__":
    sys.exit(main())
