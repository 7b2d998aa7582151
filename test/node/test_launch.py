"""The launch file: built by ROS's `launch` where installed, checked statically everywhere."""

import ast
import importlib.util
import os
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_prefix, get_package_share_directory

SHARE = Path(get_package_share_directory("videomolmo_ros"))
LAUNCH_FILE = SHARE / "launch" / "perception.launch.py"


def _node_call() -> dict[str, ast.expr]:
    """The keyword arguments of the launch file's Node(...) action."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    assert len(calls) == 1, "one node in the launch file"
    return {k.arg: k.value for k in calls[0].keywords}


def test_launch_file_starts_the_installed_executable_of_this_package():
    node = _node_call()
    assert ast.literal_eval(node["package"]) == "videomolmo_ros"
    lib = Path(get_package_prefix("videomolmo_ros")) / "lib" / "videomolmo_ros"
    executable = lib / ast.literal_eval(node["executable"])
    assert executable.is_file() and os.access(executable, os.X_OK), f"{executable} is what `ros2 run` would start"


def test_launch_file_arguments_cover_topics_params_device_and_sim_time():
    tree = ast.parse(LAUNCH_FILE.read_text())
    [table] = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS"]
    names = {ast.literal_eval(key) for key in table.keys}
    assert {"params_file", "image", "depth", "camera_info", "use_depth", "namespace", "device"} <= names
    assert {"pointer", "propagator", "debug", "use_sim_time"} <= names
    assert (SHARE / "config" / "perception.yaml").is_file(), "the default params_file is installed"
    remapped = ast.unparse(_node_call()["remappings"])
    assert all(f"'{topic}'" in remapped for topic in ("image", "depth", "camera_info"))
    overridden = ast.unparse(_node_call()["parameters"])
    for parameter in ("device", "pointer_backend", "propagator_backend", "use_depth", "debug_views", "use_sim_time"):
        assert f"'{parameter}'" in overridden, f"launch argument for {parameter} reaches the node"


def test_launch_description_builds_with_ros_launch():
    pytest.importorskip("launch", reason="ROS 2 `launch` is not installable from PyPI; checked statically above")
    pytest.importorskip("launch_ros", reason="ROS 2 `launch_ros` is not installable from PyPI")
    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.name for a in description.get_launch_arguments()}
    assert {"params_file", "image", "depth", "camera_info", "use_depth", "pointer", "use_sim_time"} <= declared
