"""video_publisher over DDS: the real cups clip into perception_node, raw and compressed; CameraInfo; errors."""

import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_inputs import png_claiming
from polling import wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from real_footage import clip
from ros_harness import DOUBLES, RELIABLE_CAMERA, DiagnosticsRecorder, installed_executable, stamp_ns
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from synthetic_video import default_scene, render

from videomolmo_ros.io.mask_codec import decode_masks
from videomolmo_ros.pipeline.health import FrameGaps

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
FRAMES = 40
RATE_HZ = 10.0


def executable() -> str:
    return str(installed_executable("video_publisher"))


def publish(args: list[str], timeout_s: float = 180.0) -> subprocess.CompletedProcess:
    return subprocess.run([executable(), *args], capture_output=True, text=True, timeout=timeout_s)


class Recorder:
    """Headers of every message a test-side subscription receives on one topic."""

    def __init__(self, node, msg_type, topic):
        self.lock = threading.Lock()
        self.headers: list = []
        self.messages: list = []
        node.create_subscription(msg_type, topic, self._record, RELIABLE)

    def _record(self, msg) -> None:
        with self.lock:
            self.headers.append((stamp_ns(msg.header), msg.header.frame_id))
            self.messages.append(msg)

    def stamps(self) -> list[int]:
        with self.lock:
            return [stamp for stamp, _ in self.headers]


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_the_cups_clip_reaches_the_node_and_its_outputs_carry_the_published_headers(node, planner, compressed):
    cups = clip("02_cups.mp4")
    topic = "image/compressed" if compressed else "image"
    camera = {"cameras.main.transport": "compressed", "cameras.main.image_topic": topic} if compressed else {}
    process = node({**DOUBLES, **RELIABLE_CAMERA, **camera})
    sent = Recorder(planner.node, CompressedImage if compressed else Image, topic)
    diagnostics = DiagnosticsRecorder(planner.node)
    assert wait_for(lambda: planner.command_pub.get_subscription_count() > 0, 60), process.log()
    planner.send_command("the red cups", id="cups")
    assert wait_for(lambda: planner.get("command_status"), 30), process.log()
    args = [str(cups), "--max-frames", str(FRAMES), "--rate", str(RATE_HZ), "--frame-id", "cups_camera"]
    args += ["--reliable", "--wait", "30", "--subscribers", "2", *(["--compressed"] if compressed else [])]
    result = publish(args)
    assert result.returncode == 0, result.stderr
    assert f"published {FRAMES} frames" in result.stdout and f"on /{topic}" in result.stdout

    arrived = wait_for(lambda: len(sent.stamps()) == FRAMES, 30)
    assert arrived, f"{len(sent.stamps())} of {FRAMES} frames reached the test's reader\n{result.stderr}"
    received = lambda: diagnostics.values("main: camera input").get("frames_received")  # noqa: E731
    assert wait_for(lambda: received() == str(FRAMES), 30), f"{received()} of {FRAMES}\n{process.log()}"
    stamps = set(sent.stamps())
    assert {frame_id for _, frame_id in sent.headers} == {"cups_camera"}
    assert wait_for(lambda: any(m.ids for m in planner.get("masks")), 30), process.log()
    tracks, masks = planner.get("tracks"), [m for m in planner.get("masks") if m.ids]
    assert tracks and all(stamp_ns(m.header) in stamps and m.header.frame_id == "cups_camera" for m in tracks)
    assert all(stamp_ns(m.header) in stamps and m.header.frame_id == "cups_camera" for m in masks)
    decoded = decode_masks(bytes(masks[-1].data), masks[-1].height, masks[-1].width, len(masks[-1].ids))
    assert (masks[-1].width, masks[-1].height) == (1280, 720)
    assert max(m.sum() for m in decoded) > 10_000, "a red cup (about 25,000 px) is segmented"

    camera_status = diagnostics.values("main: camera input")
    # Every frame arrived: the only frames suspected missing are the publisher's own stalls on a busy
    # machine (a late frame is stamped late), exactly the gaps in the stamps it sent.
    gaps = FrameGaps()
    stalls = sum(gaps.add(stamp) for stamp in sent.stamps())
    assert camera_status["frames_missing_suspected"] == str(stalls)
    assert 0 < float(camera_status["camera_rate_hz"]) <= RATE_HZ * 1.1, "the stamps' rate: the publisher's"
    # Any report while the node published: the rate is over the last seconds and falls to 0 once
    # the outputs stop, which on a slow machine can come before this line.
    outputs = lambda: diagnostics.history("main: outputs")  # noqa: E731
    assert wait_for(lambda: any(float(v.get("rate_hz", 0)) > 0 for v in outputs()), 10), outputs()[-3:]
    assert "frames_rejected" not in str(diagnostics.values("main: drops"))


def test_camera_info_goes_out_with_every_frame_stamped_alike(planner, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(5):
        cv2.imwrite(str(folder / f"{k:03d}.png"), render(default_scene(), k / 10)[0][:, :, ::-1])
    images = Recorder(planner.node, Image, "/calibrated/image")
    infos = Recorder(planner.node, CameraInfo, "/calibrated/camera_info")
    args = [str(folder), "--rate", "20", "--fx", "400", "--encoding", "bgr8", "--reliable", "--wait", "30"]
    args += ["--topic", "/calibrated/image", "--camera-info-topic", "/calibrated/camera_info", "--frame-id", "opt"]
    result = publish(args)
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: len(images.stamps()) == 5 and len(infos.stamps()) == 5, 20)
    assert images.headers == infos.headers, "each CameraInfo carries its frame's header"
    info = infos.messages[0]
    assert (info.width, info.height) == (320, 240) and list(info.k) == [400, 0, 159.5, 0, 400, 119.5, 0, 0, 1]
    image = images.messages[2]
    assert image.encoding == "bgr8"
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(240, 320, 3)[:, :, ::-1]
    assert np.array_equal(pixels, render(default_scene(), 0.2)[0])
    assert sorted(images.stamps()) == images.stamps(), "stamps from the node clock, in order"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/clip.mp4"], "no video, image folder or camera at /no/such/clip.mp4"),
        ([str(Path(__file__))], "cannot open"),
        (["--camera", "97"], "cannot open camera 97"),
    ],
)
def test_a_source_it_cannot_read_exits_1_with_the_reason(args, message):
    result = publish(args, timeout_s=60)
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_a_calibration_for_another_size_exits_1(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.zeros((48, 64, 3), np.uint8))
    calibration = tmp_path / "c.yaml"
    k = {"rows": 3, "cols": 3, "data": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    p = {"rows": 3, "cols": 4, "data": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]}
    calibration.write_text(
        f"image_width: 640\nimage_height: 480\ncamera_matrix: {k}\nrectification_matrix: {k}\nprojection_matrix: {p}\n"
    )
    result = publish([str(folder), "--calibration", str(calibration)], timeout_s=60)
    assert result.returncode == 1 and "calibration is for 640x480 images" in result.stderr, result.stderr


def test_an_image_claiming_a_huge_size_is_refused_before_it_is_decoded(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0.png").write_bytes(png_claiming(12_000, 12_000))  # 432 MB of RGB if decoded
    result = publish([str(folder)], timeout_s=60)
    expected = f"video_publisher: error: {folder / '0.png'}: 12000x12000 pixels, more than 8192 a side"
    assert result.returncode == 1 and result.stderr.strip() == expected, result.stderr
