"""Bad input over DDS degrades one output, never the node: invalid intrinsics, oversized claims, bad stamps,
megabyte ids, invisible queries. Each is rejected, counted and logged once, with the input clipped."""

import time

import numpy as np
from polling import wait_for
from ros_harness import DOUBLES, FPS, START_S, image_msg
from sensor_msgs.msg import CameraInfo, Image
from synthetic_video import default_scene, render
from test_node_robot_integration import CX, CY, FX, FY, play_with_depth
from test_node_robustness import counters
from videomolmo_ros.msg import CommandStatus, GroundingCommand

MAX_W, MAX_H = 640, 480


def camera_info(k) -> CameraInfo:
    return CameraInfo(width=320, height=240, k=[float(v) for v in k])


def play_without_camera_info(planner, seconds: float, start_s: float) -> None:
    """Colour and full-resolution depth (discs at 0.8 m), no camera_info: the last valid one must serve."""
    depth_pub, _ = planner.depth_pubs
    for k in range(int(seconds * FPS)):
        t = start_s - START_S + k / FPS
        image, masks = render(default_scene(), t)
        stamp = round((START_S + t) * 1e9)
        depth = np.where(np.logical_or.reduce(list(masks.values())), 800, 2000).astype(np.uint16)
        depth_pub.publish(image_msg(depth, "16UC1", stamp))
        planner.send_image(image, "rgb8", stamp)
        time.sleep(1 / FPS)


def test_bad_input_costs_only_itself(node, planner):
    stats = {"stats_period_s": 0.5, "cameras.main.max_width": MAX_W, "cameras.main.max_height": MAX_H}
    process = node({**DOUBLES, **stats, "use_depth": True})
    planner.wait_connected()
    planner.send_command("red", id="r")
    play_with_depth(planner, 2.0)
    assert wait_for(lambda: any(t.has_position for m in planner.get("tracks") for t in m.tracks), 20), process.log()

    # Invalid intrinsics (NaN, inf, an uncalibrated all-zero K) are rejected; the last valid K stays in use.
    _, info_pub = planner.depth_pubs
    for k in ([np.nan, 0, CX, 0, FY, CY, 0, 0, 1], [FX, 0, np.inf, 0, FY, CY, 0, 0, 1], [0] * 9):
        info_pub.publish(camera_info(k))
    assert wait_for(lambda: counters(process.log()).get("camera_info_rejected_invalid", 0) == 3, 20), process.log()
    before = len(planner.get("tracks"))
    play_without_camera_info(planner, 2.0, START_S + 10.0)
    later = planner.get("tracks")[before:]
    assert any(t.has_position for m in later for t in m.tracks), "tracks and their positions kept coming"

    # Claimed sizes over the camera's max are refused before decoding, colour and depth alike; so are bad stamps.
    huge = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=bytes(10))
    planner.image_pub.publish(huge)
    planner.depth_pubs[0].publish(Image(height=100_000, width=100_000, encoding="16UC1", step=200_000, data=bytes(8)))
    bad_stamp = image_msg(render(default_scene(), 0.0)[0], "rgb8", round((START_S + 20) * 1e9))
    bad_stamp.header.stamp.nanosec = 1_500_000_000
    planner.image_pub.publish(bad_stamp)
    wanted = {"frames_rejected_too_large": 1, "depth_rejected": 1, "frames_rejected_bad_stamp": 1}
    assert wait_for(lambda: all(counters(process.log()).get(k, 0) >= n for k, n in wanted.items()), 20), counters(
        process.log()
    )

    # Echoed input is clipped; a query of invisible characters only is empty.
    planner.command_pub.publish(GroundingCommand(id="x" * 1_000_000, action=GroundingCommand.ACTION_STOP))
    planner.send_command("\u200b\u202e\u2066\u0085\u00ad", id="invisible")
    assert wait_for(lambda: len([s for s in planner.get("command_status") if s.state == CommandStatus.REJECTED]) >= 2)
    rejected = [s for s in planner.get("command_status") if s.state == CommandStatus.REJECTED]
    assert all(len(s.reason) < 300 and len(s.id) <= 67 for s in rejected), [len(s.reason) for s in rejected]
    assert any(s.id == "invisible" and "empty" in s.reason for s in rejected), rejected

    counts = counters(process.log())
    assert counts.get("internal_errors", 0) == 0, process.log()[-5000:]
    assert max(len(line) for line in process.log().splitlines()) < 2000, "a log line echoed a megabyte"
    assert process.process.poll() is None
