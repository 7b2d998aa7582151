"""Fixtures of the tests that talk to perception_node over DDS (loaded by conftest.py)."""

import pytest
import rclpy
from ros_harness import NodeProcess, Planner


@pytest.fixture(scope="session")
def ros_context():
    rclpy.init()
    yield
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
