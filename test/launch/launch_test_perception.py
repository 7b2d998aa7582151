"""launch_testing: perception.launch.py run for real, as a robot's bring-up includes it, on the test doubles.

Run with `launch_test test/launch/launch_test_perception.py`; the suite (and so `colcon test`) runs it
through test/launch/test_launch_tests.py. One launch serves every check: a params file chooses the
propagator and the device (no argument given for them), names `none` as the pointer, which the
`pointer` argument overrides, and configures two cameras; the node runs in a namespace, its image
topic remapped. While it runs: it reaches active with both cameras and answers, a frame on the
remapped topic comes back as tracks and masks with its header, and it runs with the large-data DDS
profile. After launch's shutdown (SIGINT to everything it
started): exit code 0, within the time the README promises.
"""

import os
import re
import sys
import tempfile
import time
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
import rclpy
import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription, RegisterEventHandler, SetEnvironmentVariable
from launch.event_handlers import OnProcessExit, OnProcessStart, OnShutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource

SUPPORT = Path(__file__).resolve().parents[1] / "support"
sys.path.insert(0, str(SUPPORT))

from polling import wait_for  # noqa: E402 - from test/support, put on the path above
from ros_harness import DOUBLES, NODE_START_S, Planner, play, stamp_ns  # noqa: E402
from videomolmo_ros.msg import GroundingCommand  # noqa: E402
from videomolmo_ros.srv import ListCommands  # noqa: E402

from videomolmo_ros.io.dds_profile import VARIABLES, large_data_environment  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
SHARE = Path(get_package_share_directory("videomolmo_ros"))
NAMESPACE = "/launch_test"
IMAGE_TOPIC = "/launch_test_camera/image_raw"
WRIST_TOPIC = "/launch_test_wrist/image_raw"
# The backends: the propagator and the device from the params file, the pointer from the argument.
# Two cameras, as docs/cameras.md configures them: the first on the remapped `image`, the wrist's by name.
PARAMS = {
    "device": "cpu",
    "pointer_backend": "none",
    "propagator_backend": DOUBLES["propagator_backend"],
    "cameras.names": ["main", "wrist"],
    "cameras.wrist.image_topic": WRIST_TOPIC,
    **{
        f"cameras.{camera}.{side}": size
        for camera in ("main", "wrist")
        for side, size in (("max_width", 320), ("max_height", 240))
    },
}
ARGUMENTS = {"namespace": NAMESPACE, "image": IMAGE_TOPIC, "pointer": DOUBLES["pointer_backend"]}
# When perception_node started (pid) and exited, and when launch began its shutdown (monotonic s).
EVENTS: dict[str, float | int] = {}


def exit_claim_s() -> float:
    """What the README promises of Ctrl-C on `ros2 launch`: "... within N s"."""
    claim = re.search(r"Ctrl-C stops everything it started, exit code 0, within ([0-9.]+) s", README.read_text())
    assert claim, "the README's launch section states how soon Ctrl-C ends the launch"
    return float(claim.group(1))


def _record(name: str, value: float | int, event=None) -> None:
    """Note `value` under `name` (for perception_node's events; the first only)."""
    if event is None or event.process_name.startswith("perception_node"):
        EVENTS.setdefault(name, value)


@pytest.mark.launch_test
def generate_test_description():
    params_file = Path(tempfile.mkdtemp(prefix="launch-test-")) / "doubles.yaml"
    params_file.write_text(yaml.safe_dump({"perception_node": {"ros__parameters": PARAMS}}))
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(SHARE / "launch" / "perception.launch.py")),
        launch_arguments={**ARGUMENTS, "params_file": str(params_file)}.items(),
    )
    return LaunchDescription(
        [
            # The doubles are importable in the node (as a user's own backend classes would be).
            SetEnvironmentVariable("PYTHONPATH", os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])),
            SetEnvironmentVariable("PYTHONUNBUFFERED", "1"),
            RegisterEventHandler(OnProcessStart(on_start=lambda event, _: _record("pid", event.pid, event))),
            RegisterEventHandler(OnProcessExit(on_exit=lambda event, _: _record("exited", time.monotonic(), event))),
            RegisterEventHandler(OnShutdown(on_shutdown=lambda *_: _record("shutdown", time.monotonic()))),
            perception,
            launch_testing.actions.ReadyToTest(),
        ]
    )


def _answers_list_commands(node) -> ListCommands.Response:
    """list_commands' answer, asked until the node (just started, or its service not matched yet) answers."""
    client = node.create_client(ListCommands, f"{NAMESPACE}/list_commands")
    deadline = time.monotonic() + NODE_START_S
    while time.monotonic() < deadline:
        if client.wait_for_service(timeout_sec=1.0):
            future = client.call_async(ListCommands.Request())
            if wait_for(future.done, 2.0):
                return future.result()
            client.remove_pending_request(future)
    raise AssertionError(f"{NAMESPACE}/list_commands did not answer within {NODE_START_S} s")


class TestWhileLaunched(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The planner lives in the node's namespace and publishes frames where the camera would.
        rclpy.init(args=["--ros-args", "-r", f"__ns:={NAMESPACE}", "-r", f"image:={IMAGE_TOPIC}"])
        cls.planner = Planner()

    @classmethod
    def tearDownClass(cls):
        cls.planner.close()
        rclpy.shutdown()

    def test_the_node_is_active_with_the_params_files_backends_and_cameras_and_the_given_pointer(self, proc_output):
        proc_output.assertWaitFor(
            "ready on cpu: pointer ColorOraclePointerDouble, propagator ColorOraclePropagatorDouble",
            timeout=NODE_START_S,
        )
        proc_output.assertWaitFor(f"wrist <- {WRIST_TOPIC}", timeout=NODE_START_S)
        self.assertIsInstance(_answers_list_commands(self.planner.node), ListCommands.Response)
        self.assertTrue(wait_for(lambda: self.planner.node.count_subscribers(WRIST_TOPIC) == 1, NODE_START_S))

    def test_a_frame_on_the_remapped_topic_comes_back_as_tracks_and_masks_with_its_header(self):
        self.planner.wait_connected()
        self.planner.send_command("the red ball", id="red", mode=GroundingCommand.MODE_TRACK)
        truth = play(self.planner, 60.0, until=lambda: any(m.ids for m in self.planner.get("masks")))
        self.assertEqual(list(_answers_list_commands(self.planner.node).queries), ["the red ball"])
        masks = [m for m in self.planner.get("masks") if m.ids]
        tracks = [m for m in self.planner.get("tracks") if m.tracks]
        self.assertTrue(masks and tracks, "tracks and masks come back")
        for msg in masks + tracks:
            self.assertIn(stamp_ns(msg.header), truth, "the header of a frame sent")
            self.assertEqual((msg.header.frame_id, msg.command_id), ("test_camera", "red"))

    def test_the_node_runs_with_the_large_data_dds_profile(self):
        self.assertTrue(wait_for(lambda: "pid" in EVENTS, NODE_START_S))
        environ = Path(f"/proc/{EVENTS['pid']}/environ").read_bytes().decode().split("\0")
        profiles = {k: v for k, _, v in (e.partition("=") for e in environ) if k in VARIABLES}
        expected = {k: v for k, v in large_data_environment(os.environ).items() if k in VARIABLES}
        self.assertEqual(profiles, expected)
        if not any(name in os.environ for name in VARIABLES):  # the launch file set it
            self.assertEqual(set(profiles.values()), {str(SHARE / "config" / "fastdds_large_data.xml")})


@launch_testing.post_shutdown_test()
class TestAfterShutdown(unittest.TestCase):
    def test_sigint_ends_the_node_with_exit_code_0_within_the_readmes_time(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
        seconds = EVENTS["exited"] - EVENTS["shutdown"]
        print(f"perception_node exited {seconds:.2f} s after launch's SIGINT", flush=True)
        self.assertTrue(0 <= seconds <= exit_claim_s(), f"{seconds:.2f} s: it ran until SIGINT, then stopped in time")
