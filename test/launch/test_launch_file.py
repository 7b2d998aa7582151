"""perception.launch.py: its arguments (README table, `--show-args`), what a failed launch leaves, the rviz config.

The launch file running a node end to end is launch_test_perception.py's (run by test_launch_tests.py).
"""

import ast
import importlib.util
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch_arguments import arguments_table, launch_module
from polling import wait_for
from rclpy.node import NodeNameNonExistentError
from ros_harness import DOUBLES, SUPPORT_DIR

SHARE = Path(get_package_share_directory("videomolmo_ros"))
LAUNCH_FILE = SHARE / "launch" / "perception.launch.py"
README = Path(__file__).resolve().parents[2] / "README.md"
TABLE = re.compile(r"<!-- launch arguments: .*? -->\n(.*?)<!-- end of launch arguments -->", re.DOTALL)
# ROS 2 launch, from apt or installed by scripts/setup (`launch` itself: test/launch/ would pass for it).
HAS_LAUNCH = importlib.util.find_spec("launch_ros") is not None and shutil.which("ros2") is not None
NO_LAUNCH = "ROS 2 launch is not installed (scripts/setup installs it where ../shared/ros2-launch exists)"
needs_launch = pytest.mark.skipif(not HAS_LAUNCH, reason=NO_LAUNCH)

RVIZ_FILE = SHARE / "config" / "perception.rviz"
# What each RViz display class shows, as the ROS type of its topic.
RVIZ_TYPES = {
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
    "rviz_default_plugins/PointCloud2": "sensor_msgs/msg/PointCloud2",
}


def test_launch_file_starts_the_installed_executable_of_this_package():
    calls = [n for n in ast.walk(ast.parse(LAUNCH_FILE.read_text())) if isinstance(n, ast.Call)]
    nodes = [
        {k.arg: ast.literal_eval(k.value) for k in c.keywords if k.arg in ("package", "executable")} for c in calls
    ]
    [node] = [n for n in nodes if n.get("package") == "videomolmo_ros"]
    executable = Path(get_package_prefix("videomolmo_ros")) / "lib" / "videomolmo_ros" / node["executable"]
    assert executable.is_file() and os.access(executable, os.X_OK), f"{executable} is what `ros2 run` would start"


@needs_launch
def test_the_readmes_table_of_launch_arguments_is_the_files():
    [table] = TABLE.findall(README.read_text())
    assert table == arguments_table(), "the README's, as `python test/support/launch_arguments.py` prints them"


@needs_launch
def test_show_args_lists_every_argument_with_its_help():
    run = subprocess.run(
        ["ros2", "launch", "videomolmo_ros", "perception.launch.py", "--show-args"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    declared = launch_module().ARGUMENTS
    shown = dict(re.findall(r"'(\w+)':\n\s+(.+)\n", run.stdout))
    assert shown == {name: text for name, (_, text) in declared.items()}, run.stdout


def _context(**arguments: str):
    """A launch context with `arguments` given and every other argument at its default."""
    from launch import LaunchContext

    context = LaunchContext()
    defaults = {name: default for name, (default, _) in launch_module().ARGUMENTS.items()}
    context.launch_configurations.update({**defaults, **arguments})
    return context


@needs_launch
def test_only_the_arguments_given_set_node_parameters():
    module = launch_module()
    assert module.given(_context()) == {}, "nothing given: the params file's values stand"
    context = _context(pointer="none", use_depth="true")
    given = {name: value.evaluate(context) for name, value in module.given(context).items()}
    assert given == {"pointer_backend": "none", "use_depth": True}


@needs_launch
@pytest.mark.parametrize(
    ("argument", "in_file", "expected"),
    [("", True, True), ("", None, False), ("false", True, False), ("true", None, True)],
)
def test_rviz2_runs_on_sim_time_as_the_node_does(argument, in_file, expected, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"perception_node": {"ros__parameters": {"use_sim_time": in_file}}}))
    context = _context(use_sim_time=argument, params_file=str(params))
    value = launch_module().rviz_sim_time(context)
    assert (value if isinstance(value, bool) else value.evaluate(context)) is expected


@needs_launch
@pytest.mark.parametrize("pushed", [False, True], ids=["namespace-argument", "pushed-namespace"])
def test_in_a_namespace_the_node_gets_the_params_files_section_keyed_to_reach_it(pushed, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"perception_node": {"ros__parameters": {"device": "cpu"}}}))
    module = launch_module()
    assert module.in_namespace(str(params), _context()) == str(params), "no namespace: the file as it is"
    context = _context(namespace="" if pushed else "robot1")
    if pushed:
        context.launch_configurations["ros_namespace"] = "/outer"
    copy = yaml.safe_load(Path(module.in_namespace(str(params), context)).read_text())
    assert copy == {"/**/perception_node": {"ros__parameters": {"device": "cpu"}}}


def _processes_in(namespace: str) -> list[int]:
    """The processes started in `namespace` (their command line names it), by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"__ns:={namespace}".encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # it ended meanwhile
            continue
    return found


def _rviz2_installed() -> bool:
    try:
        return bool(get_package_share_directory("rviz2"))
    except PackageNotFoundError:
        return False


@needs_launch
@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        pytest.param(["rviz:=true"], "rviz2 is not installed (sudo apt install ros-", id="rviz2-missing"),
        pytest.param(["params_file:=/no/such/params.yaml"], "params_file /no/such/params.yaml", id="no-params-file"),
    ],
)
def test_a_launch_that_cannot_start_everything_fails_saying_why_and_leaves_nothing_running(arguments, says, tmp_path):
    if "rviz:=true" in arguments and _rviz2_installed():
        pytest.skip("rviz2 is installed here")
    params = tmp_path / "doubles.yaml"
    params.write_text(yaml.safe_dump({"perception_node": {"ros__parameters": {**DOUBLES, "device": "cpu"}}}))
    namespace = f"/failed_launch_{os.getpid()}"
    command = ["ros2", "launch", "videomolmo_ros", "perception.launch.py", f"namespace:={namespace}"]
    env = {**os.environ, "PYTHONPATH": f"{SUPPORT_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        run = subprocess.run(
            [*command, f"params_file:={params}", *arguments], env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode != 0 and says in run.stdout + run.stderr, run.stdout + run.stderr
        assert _processes_in(namespace) == [], "nothing the failed launch started is left running"
    finally:
        for pid in _processes_in(namespace):
            os.kill(pid, signal.SIGKILL)


def test_the_node_takes_none_for_no_backend_as_a_command_line_can_give_it(node):
    """`pointer:=none` / `propagator:=none` (ros2 launch refuses an empty value): the node runs without them."""
    process = node({"pointer_backend": "none", "propagator_backend": "None"})
    assert process.wait_for_log("ready on"), process.log()
    assert "pointer none, propagator none" in process.log()


def _rviz_displays() -> list[dict]:
    return yaml.safe_load(RVIZ_FILE.read_text())["Visualization Manager"]["Displays"]


def test_the_rviz_config_shows_the_debug_image_the_markers_and_tf():
    classes = [d["Class"] for d in _rviz_displays()]
    assert {"rviz_default_plugins/Image", "rviz_default_plugins/MarkerArray", "rviz_default_plugins/TF"} <= set(classes)
    assert all(d["Enabled"] for d in _rviz_displays())


def test_the_rviz_config_names_exactly_the_debug_topics_the_node_publishes(node, planner):
    """Every topic in the .rviz is one the running node publishes, with the type the display reads, and vice versa."""
    shown = {d["Topic"]["Value"]: RVIZ_TYPES[d["Class"]] for d in _rviz_displays() if "Topic" in d}
    process = node(DOUBLES)
    assert process.wait_for_log("ready on"), process.log()

    def published():
        try:
            names = planner.node.get_publisher_names_and_types_by_node("perception_node", "/")
        except NodeNameNonExistentError:  # not discovered yet
            return {}
        return {name.lstrip("/"): types[0] for name, types in names}

    assert wait_for(lambda: set(shown) <= set(published()), 20), (shown, published())
    assert shown == {name: kind for name, kind in published().items() if kind in RVIZ_TYPES.values()}
