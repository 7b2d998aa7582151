"""What the node cannot deliver is counted and said, never skipped silently: debug images whose frame left
the ring before it could be drawn, frames the middleware lost on the way."""

import os
import subprocess

import cv2
import numpy as np
from polling import wait_for
from ros_harness import DOUBLES, NO_BACKENDS, DiagnosticsRecorder, installed_executable, play
from sensor_msgs.msg import Image
from test_node_robot_integration import subscribe
from test_node_robustness import counters

SLOW_TRACKING = {
    **DOUBLES,
    "propagator_backend": "oracle_doubles:SlowPropagatorDouble",
    "SlowPropagatorDouble.step_s": 0.6,  # the 4-frame stream ring holds 0.27 s of the 15 Hz video
    "stats_period_s": 0.5,
}
SENT_8K = 12  # 7680x4320 rgb8 frames


def skipped_debug_images(process) -> int:
    log = process.log()
    return counters(log).get("debug_images_skipped", 0) if "counters of camera main" in log else 0


def test_a_debug_image_whose_frame_left_the_ring_is_counted_and_said(node, planner):
    process = node(SLOW_TRACKING)
    planner.wait_connected()
    subscribe(planner, Image, "debug_image")  # drawn only while someone subscribes
    planner.send_command("red", id="r")
    play(planner, 60.0, until=lambda: skipped_debug_images(process) > 0)
    assert wait_for(lambda: skipped_debug_images(process) > 0, 30), process.log()[-3000:]
    assert "debug image of r on the frame stamped" in process.log()
    assert "left the 4-frame ring (stream_frames) before it could be drawn" in process.log()


def test_8k_frames_the_middleware_loses_are_counted(node, planner, tmp_path):
    """Without the large-data profile in the publisher, Fast DDS sends a 99.5 MB 8K frame as UDP fragments
    and almost none arrive. Fast DDS reports each frame it lost once a later one shows the gap (all but
    the last one or two): the node counts them (`frames_lost`) and says so."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(2):
        image = np.zeros((4320, 7680, 3), np.uint8)
        cv2.circle(image, (1000 + 3000 * k, 2000), 400, (0, 0, 255), -1)
        cv2.imwrite(str(folder / f"{k}.png"), image)
    process = node(NO_BACKENDS)
    diagnostics = DiagnosticsRecorder(planner.node)
    assert process.wait_for_log("ready on"), process.log()
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE="")  # an empty profile: Fast DDS's defaults
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    publisher = [str(installed_executable("video_publisher")), str(folder), "--loop", "--fps", "5"]
    publisher += ["--max-frames", str(SENT_8K), "--wait", "30"]
    result = subprocess.run(publisher, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr

    def counts() -> tuple[int, int]:
        drops, camera = diagnostics.values("main: drops"), diagnostics.values("main: camera input")
        return int(drops.get("frames_lost", 0)), int(camera.get("frames_received", 0))

    wait_for(lambda: sum(counts()) >= SENT_8K - 2, 30)
    lost, received = counts()
    assert SENT_8K - 2 <= lost + received <= SENT_8K, f"{lost} counted lost, {received} received of {SENT_8K} sent"
    assert lost > 0 and "message(s) on /image lost before they reached the node" in process.log()
