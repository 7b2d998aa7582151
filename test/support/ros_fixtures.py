"""Fixtures of the tests that talk to perception_node over DDS (loaded by conftest.py)."""

import pytest
import rclpy
from ros_harness import NodeProcess, Planner

from videomolmo_ros.io.dds_profile import use_large_data_profile


@pytest.fixture(scope="session")
def ros_context():
    """rclpy for the whole session, with one DDS participant that lives as long.

    The participant goes when the context's last node goes. Fast DDS 3.2 (the wheels here) can then
    livelock: `set_listener(nullptr)` with no timeout busy-waits, holding the listener's mutex, for
    a discovery callback that needs that mutex to finish (eProsima/Fast-DDS#6513), and rclpy holds
    the GIL meanwhile, so nothing in this process runs again. Each test's planner node coming and
    going while nodes under test start and stop hit it once in about twenty runs of the suite; an
    anchor node keeps the participant until the end, when no node under test is left.
    """
    use_large_data_profile()  # raw frames above 512 KB published from here arrive (and from the nodes started)
    rclpy.init()
    anchor = rclpy.create_node("test_session_anchor")
    yield
    anchor.destroy_node()
    rclpy.shutdown()


@pytest.fixture
def planner(ros_context):
    """A planner-side node in this process: publishes frames and commands, records outputs."""
    p = Planner()
    yield p
    p.close()


@pytest.fixture
def reliable_planner(ros_context):
    """A planner whose camera publishes reliably with a deep queue (for a node with RELIABLE_CAMERA)."""
    p = Planner(reliable_images=True)
    yield p
    p.close()


@pytest.fixture
def node(tmp_path):
    """Start perception_node processes (`node(overrides, **NodeProcess options)`); all are stopped after the test."""
    started = []

    def start(overrides=None, **options):
        started.append(NodeProcess(tmp_path / f"node{len(started)}.log", overrides, **options))
        return started[-1]

    yield start
    for process in started:
        process.stop()
