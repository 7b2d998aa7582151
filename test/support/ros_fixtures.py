"""Fixtures of the tests that talk to perception_node over DDS (loaded by conftest.py)."""

from pathlib import Path

import pytest
import rclpy
import yaml
from ros_harness import NodeProcess, Planner, activate, reactivate

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


class SharedNodes:
    """The perception_node a module's tests share: one process at a time (two would both answer the
    topics and services), kept while tests ask for the same overrides. It starts with `autostart: false`
    (lifecycle services offered) and is driven to active, so that each later test can reactivate it."""

    def __init__(self, folder: Path):
        self._folder = folder
        self._started = 0
        self._running: dict[str, NodeProcess] = {}
        self.exit_codes: list[int] = []

    def get(self, planner, overrides: dict[str, object]) -> NodeProcess:
        key = yaml.safe_dump(overrides, sort_keys=True)
        if key in self._running:
            reactivate(planner, self._running[key])
            return self._running[key]
        self.stop()
        self._started += 1
        process = NodeProcess(self._folder / f"node{self._started}.log", {**overrides, "autostart": False})
        self._running[key] = process
        activate(planner, process)
        return process

    def stop(self) -> None:
        self.exit_codes += [process.stop() for process in self._running.values()]
        self._running.clear()


@pytest.fixture(scope="module")
def module_nodes(tmp_path_factory):
    """The module's SharedNodes; each must have exited 0 on Ctrl-C at the end."""
    nodes = SharedNodes(tmp_path_factory.mktemp("shared-nodes"))
    yield nodes
    nodes.stop()
    assert set(nodes.exit_codes) <= {0}, f"Ctrl-C did not shut a shared node down cleanly: {nodes.exit_codes}"


@pytest.fixture
def shared_node(module_nodes):
    """`shared_node(planner, overrides)`: the module's node with these overrides, started by the first
    test that asks, reactivated (see ros_harness.reactivate) for each later one, its log from then on.

    Starting a node costs seconds. Tests that need a process of their own use `node`: start-up,
    shutdown, crashes, parameters left changed, and what outlives an activation (the last
    camera_info, the problem log's once-per-5-s limit, the health window).
    """
    return module_nodes.get


@pytest.fixture
def node(tmp_path, module_nodes):
    """Start perception_node processes (`node(overrides, **NodeProcess options)`); all are stopped after the test.

    The module's shared node, if any, is stopped first: only the test's own nodes answer it.
    """
    module_nodes.stop()
    started = []

    def start(overrides=None, **options):
        started.append(NodeProcess(tmp_path / f"node{len(started)}.log", overrides, **options))
        return started[-1]

    yield start
    for process in started:
        process.stop()
