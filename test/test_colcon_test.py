"""`colcon test`: CMake's BUILD_TESTING block registers the pytest suite with CTest, and CTest runs it green.

colcon test runs `ctest` in the package's build folder; this configures the package with
BUILD_TESTING on in a temporary folder (seconds: no build) and runs that CTest test on a small
selection of the suite (PYTEST_ADDOPTS), against the installed package, then reads the results
as `colcon test-result` does. The selection holds the launch_testing tests: colcon test runs them
(and does not skip them where ROS 2 launch is installed).
"""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TESTS = "test_launch_test_runs_every_test_of_the_file_and_all_pass"
IGNORED = "--ignore-glob=*/node/* --ignore-glob=*/backends/* --ignore-glob=*/tools/*"
SELECTION = f"-k 'test_lens_distortion or {LAUNCH_TESTS}' {IGNORED}"


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ctest") is None, reason="needs cmake and ctest")
def test_ctest_runs_the_pytest_suite_and_colcon_test_result_reads_it(tmp_path):
    build = tmp_path / "build"
    options = ["-DBUILD_TESTING=ON", f"-DPython3_EXECUTABLE={sys.executable}", "-Wno-dev"]
    configure = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    listed = subprocess.run(["ctest", "-N"], cwd=build, capture_output=True, text=True, timeout=60).stdout
    assert "pytest" in listed and "Total Tests: 1" in listed, listed

    env = dict(os.environ, PYTEST_ADDOPTS=SELECTION)
    run = subprocess.run(
        ["ctest", "--output-on-failure"], cwd=build, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-5000:]
    [result] = (build / "test_results" / "videomolmo_ros").glob("pytest.xunit.xml")
    suite = ET.parse(result).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert int(suite.get("tests")) >= 5 and int(suite.get("failures")) == int(suite.get("errors")) == 0
    launch_cases = [case for case in suite.iter("testcase") if case.get("name").startswith(LAUNCH_TESTS)]
    assert launch_cases, "the launch_testing tests are part of colcon test"
    if shutil.which("launch_test") is not None:
        assert not [case for case in launch_cases if case.find("skipped") is not None], "and they ran"

    colcon = shutil.which("colcon")
    if colcon is not None:
        summary = subprocess.run(
            [colcon, "test-result", "--test-result-base", str(build)], capture_output=True, text=True, timeout=120
        )
        assert summary.returncode == 0 and "0 errors, 0 failures" in summary.stdout, summary.stdout
