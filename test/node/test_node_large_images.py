"""Raw camera frames of real resolutions over DDS: all arrive with the large-data profile; loss without it is seen.

Fast DDS sends a message above its default 512 KB shared-memory segment as UDP fragments, which
are lost at camera rate; the node never sees those frames. With config/fastdds_large_data.xml in
the publishing process (as here: ros_fixtures puts it in effect) every frame arrives. Without it,
the node suspects the missing frames from the gaps in the stamps and warns once.
"""

import os
import subprocess
import time

import cv2
import pytest
from polling import wait_for
from ros_harness import NO_BACKENDS, RELIABLE_CAMERA, DiagnosticsRecorder, installed_executable
from synthetic_video import default_scene, render

RATE_HZ = 30.0
FRAMES = 90  # 3 s at 30 Hz per size


def send_at_rate(planner, frames, start_ns: int) -> None:
    """Raw rgb8 frames at RATE_HZ, stamped as a 30 Hz camera would stamp them."""
    due = time.monotonic()
    for k in range(FRAMES):
        time.sleep(max(0.0, due - time.monotonic()))
        due += 1 / RATE_HZ
        planner.send_image(frames[k % len(frames)], "rgb8", start_ns + round(k * 1e9 / RATE_HZ))


def test_raw_720p_and_1080p_at_30_hz_all_arrive_with_the_profile(node, reliable_planner):
    process = node({**NO_BACKENDS, **RELIABLE_CAMERA})
    diagnostics = DiagnosticsRecorder(reliable_planner.node)
    reliable_planner.wait_connected()
    received = lambda: diagnostics.values("main: camera input").get("frames_received")  # noqa: E731
    for index, (width, height) in enumerate([(1280, 720), (1920, 1080)]):
        frames = [render(default_scene(width, height), t, width, height)[0] for t in (0.0, 0.5, 1.0)]
        send_at_rate(reliable_planner, frames, round((1000 + index * FRAMES / RATE_HZ) * 1e9))  # one stream
        expected = str(FRAMES * (index + 1))
        assert wait_for(lambda e=expected: received() == e, 60), f"{received()} of {expected}:\n{process.log()}"
    camera = diagnostics.values("main: camera input")
    assert camera["frames_missing_suspected"] == "0"
    assert float(camera["camera_rate_hz"]) == pytest.approx(RATE_HZ, rel=0.01), "measured from the stamps"
    assert "never arrived" not in process.log()


def test_without_the_profile_lost_frames_are_counted_and_warned_about(node, planner, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(10):
        cv2.imwrite(str(folder / f"{k:02d}.png"), render(default_scene(1280, 720), k / 10, 1280, 720)[0])
    process = node(NO_BACKENDS)  # the SensorDataQoS camera a robot would run
    diagnostics = DiagnosticsRecorder(planner.node)
    assert process.wait_for_log("ready on"), process.log()
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE="")  # an empty profile: Fast DDS's defaults
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    publisher = [
        str(installed_executable("video_publisher")),
        str(folder),
        "--loop",
        "--max-frames",
        "150",
        "--wait",
        "30",
    ]
    result = subprocess.run(publisher, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # Two witnesses, either may speak first: Fast DDS reports the frames it lost (frames_lost), and the
    # gaps in the stamps of the frames that arrived show frames that never did (a few arrivals, as on a
    # loaded machine, are too few to measure the camera's period from).
    warned = lambda: "lost before they reached the node" in process.log() or "never arrived" in process.log()  # noqa: E731
    assert wait_for(warned, 30), process.log()
    assert "see docs/large-images.md" in process.log()
    lost = lambda: int(diagnostics.values("main: drops").get("frames_lost", 0))  # noqa: E731
    missing = lambda: int(diagnostics.values("main: camera input").get("frames_missing_suspected", 0))  # noqa: E731
    assert wait_for(lambda: lost() + missing() > 0, 10)
    received = int(diagnostics.values("main: camera input")["frames_received"])
    assert received + lost() <= 150, "never more counted lost than were sent"
