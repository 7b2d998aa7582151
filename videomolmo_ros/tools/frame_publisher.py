"""Frames of a video source published as a ROS 2 camera: image and CameraInfo, stamped from the node's clock.

Shared by video_publisher and videomolmo_demo.
"""

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rclpy.duration import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tqdm import tqdm

from videomolmo_ros.io.camera_calibration import Calibration
from videomolmo_ros.io.image_codec import JPEG_FORMAT, encode_image, encode_jpeg
from videomolmo_ros.io.video_source import VideoSource

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


def add_source_arguments(parser: argparse.ArgumentParser, video_required: bool = True) -> None:
    """VIDEO or --camera N, and the rate options (shared with videomolmo_demo)."""
    parser.add_argument("video", nargs=None if video_required else "?", help="video file or folder of images")
    parser.add_argument("--camera", type=int, metavar="N", help="a V4L2 camera (/dev/videoN) instead of a file")
    parser.add_argument("--fps", type=float, default=0.0, help="the source's rate when it has none (image folder)")
    parser.add_argument("--rate", type=float, default=0.0, help="publish at this rate, Hz (default: the source's)")
