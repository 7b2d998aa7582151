"""video_publisher: any video file, image folder or V4L2 camera as a ROS 2 camera.

Like ROS's image_publisher, but video-aware: frames go out at the file's rate (or --rate), once
or looping, as sensor_msgs/Image (rgb8 / bgr8) or, with --compressed, CompressedImage (JPEG, on
<topic>/compressed as image_transport names it), each stamped from the node clock (/clock under
use_sim_time) with --frame-id, on SensorDataQoS (best effort, keep last 5; --reliable for a
reliable one). A CameraInfo goes out beside every frame when a calibration is given (--fx ...,
or a camera_info YAML). Large frames need the DDS profile this process puts in effect (README,
"Large images over DDS").

    video_publisher clip.mp4 --loop
    video_publisher ~/data/davis2016/JPEGImages/480p/dog --fps 24 --compressed
    video_publisher --camera 0 --fx 600 --ros-args -r image:=/camera/color/image_raw
"""

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rclpy.duration import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tqdm import tqdm

from videomolmo_ros.io.image_codec import JPEG_FORMAT, encode_image, encode_jpeg
from videomolmo_ros.tools.camera_calibration import Calibration, CalibrationError, from_intrinsics, read_calibration
from videomolmo_ros.tools.ros_spin import SpunNode
from videomolmo_ros.tools.video_source import VideoSource, VideoSourceError

ACK_WAIT_S = 10.0  # at exit, for reliable subscribers to acknowledge the last frames
RELIABLE = QoSProfile(depth=qos_profile_sensor_data.depth, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class PlayStats:
    """What a run published."""

    frames: int = 0
    seconds: float = 0.0

    def text(self, topic: str) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return f"published {self.frames} frames in {self.seconds:.1f} s ({rate:.1f} Hz) on {topic}"


class FramePublisher:
    """Publishes one frame (and its CameraInfo) at a time, stamped from the node's clock."""

    def __init__(self, node, args: argparse.Namespace, calibration: Calibration | None):
        self.node = node
        self.compressed = args.compressed
        self.encoding, self.quality, self.frame_id = args.encoding, args.jpeg_quality, args.frame_id
        qos = RELIABLE if args.reliable else qos_profile_sensor_data
        self.topic = args.topic or ("image/compressed" if args.compressed else "image")
        self._image_pub = node.create_publisher(CompressedImage if args.compressed else Image, self.topic, qos)
        self._info = _camera_info(calibration) if calibration else None
        self._info_pub = node.create_publisher(CameraInfo, args.camera_info_topic, qos) if calibration else None

    @property
    def subscribers(self) -> int:
        return self._image_pub.get_subscription_count()

    def flush(self, timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until every reliable subscriber acknowledged every frame sent: a
        reliable writer destroyed at exit stops resending, so the last frames would be lost to a slow reader."""
        publishers = [p for p in (self._image_pub, self._info_pub) if p is not None]
        return all(p.wait_for_all_acked(Duration(seconds=timeout_s)) for p in publishers)

    def publish(self, rgb: np.ndarray) -> int:
        """Publish `rgb` (H x W x 3 uint8) now; the stamp (ns) its header carries."""
        now = self.node.get_clock().now()
        if self.compressed:
            msg = CompressedImage(format=JPEG_FORMAT, data=encode_jpeg(rgb, self.quality))
        else:
            array = rgb if self.encoding == "rgb8" else np.ascontiguousarray(rgb[:, :, ::-1])
            height, width, step, data = encode_image(array, self.encoding)
            msg = Image(height=height, width=width, encoding=self.encoding, step=step, data=data)
        msg.header.stamp = now.to_msg()
        msg.header.frame_id = self.frame_id
        self._image_pub.publish(msg)
        if self._info is not None:
            self._info.header = msg.header
            self._info_pub.publish(self._info)
        return now.nanoseconds


def _camera_info(calibration: Calibration) -> CameraInfo:
    return CameraInfo(
        width=calibration.width,
        height=calibration.height,
        distortion_model=calibration.distortion_model,
        d=list(calibration.d),
        k=list(calibration.k),
        r=list(calibration.r),
        p=list(calibration.p),
    )


def play(
    source: VideoSource,
    publish: Callable[[np.ndarray], int],
    rate: float,
    loop: bool = False,
    max_frames: int = 0,
    on_frame: Callable[[int, int, np.ndarray], None] | None = None,
) -> PlayStats:
    """Publish the source's frames at `rate` Hz (never in a burst to catch up after a slow frame),
    until the end, `max_frames` (0: no limit) or Ctrl-C. `on_frame(index, stamp_ns, rgb)` sees every
    frame published.
    """
    stats, period = PlayStats(), 1.0 / rate
    start = due = time.monotonic()
    total = max_frames or (None if loop else source.frame_count)
    with tqdm(total=total, unit="frame", desc="publish", disable=None) as bar:
        try:
            for rgb in source.frames(loop):
                if max_frames and stats.frames >= max_frames:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                due = max(due + period, time.monotonic())  # late: the next frame a period from now
                stamp = publish(rgb)
                if on_frame is not None:
                    on_frame(stats.frames, stamp, rgb)
                stats.frames += 1
                bar.update()
        except KeyboardInterrupt:
            pass
    stats.seconds = time.monotonic() - start
    return stats


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


def add_source_arguments(parser: argparse.ArgumentParser, video_required: bool = True) -> None:
    """VIDEO or --camera N, and the rate options (shared with videomolmo_demo)."""
    parser.add_argument("video", nargs=None if video_required else "?", help="video file or folder of images")
    parser.add_argument("--camera", type=int, metavar="N", help="a V4L2 camera (/dev/videoN) instead of a file")
    parser.add_argument("--fps", type=float, default=0.0, help="the source's rate when it has none (image folder)")
    parser.add_argument("--rate", type=float, default=0.0, help="publish at this rate, Hz (default: the source's)")


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(remove_ros_args(["video_publisher", *argv])[1:])
    try:
        source = open_source(args)
        calibration = calibration_for(args, source)
    except (VideoSourceError, CalibrationError) as error:
        print(f"video_publisher: error: {error}", file=sys.stderr)
        return 1
    with source, SpunNode("video_publisher", args=["video_publisher", *argv]) as spun:
        spun.spin()  # the clock follows /clock under use_sim_time
        publisher = FramePublisher(spun.node, args, calibration)
        deadline = time.monotonic() + args.wait
        while publisher.subscribers < args.subscribers and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            stats = play(source, publisher.publish, args.rate or source.fps, args.loop, args.max_frames)
        except VideoSourceError as error:
            print(f"video_publisher: error: {error}", file=sys.stderr)
            return 1
        if not publisher.flush(ACK_WAIT_S):
            unacked = f"a subscriber did not acknowledge every frame within {ACK_WAIT_S:g} s"
            print(f"video_publisher: {unacked}", file=sys.stderr)
        print(stats.text(spun.node.resolve_topic_name(publisher.topic)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
