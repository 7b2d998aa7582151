"""The launch_testing tests (launch_test_*.py beside this file), each run by `launch_test` as a user would.

The suite runs them this way, so `./scripts/test` and `colcon test` (whose CMake hook runs the suite)
both do. They need ROS 2 launch: from apt, or installed by scripts/setup from ../shared/ros2-launch.
"""

import ast
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ros_harness import NODE_START_S

from videomolmo_ros.io.dds_profile import VARIABLES

LAUNCH_TESTS = sorted(Path(__file__).parent.glob("launch_test_*.py"))
NO_LAUNCH = "ROS 2 launch is not installed (scripts/setup installs it where ../shared/ros2-launch exists)"


def _test_names(path: Path) -> set[str]:
    """The test methods the file defines, active and post-shutdown."""
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


@pytest.mark.skipif(shutil.which("launch_test") is None, reason=NO_LAUNCH)
@pytest.mark.parametrize("path", LAUNCH_TESTS, ids=lambda path: path.stem)
def test_launch_test_runs_every_test_of_the_file_and_all_pass(path, tmp_path):
    report = tmp_path / "launch_test.xml"
    # Without a DDS profile of the caller's: the launch file's own is what is tested.
    env = {name: value for name, value in os.environ.items() if name not in VARIABLES}
    run = subprocess.run(
        ["launch_test", str(path), "--junit-xml", str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=2 * NODE_START_S + 60,
    )
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-8000:]
    cases = list(ET.parse(report).getroot().iter("testcase"))
    assert {case.get("name") for case in cases} == _test_names(path), "every test ran"
    assert not [case for case in cases if len(case)], "none failed, none skipped"
