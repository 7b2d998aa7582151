"""The launch file: built by ROS's `launch` where installed, checked statically everywhere."""

import ast
import importlib.util
import os
from pathlib import Path

import pytest
import yaml
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from polling import wait_for
from rclpy.node import NodeNameNonExistentError
from ros_harness import DOUBLES

SHARE = Path(get_package_share_directory("videomolmo_ros"))
LAUNCH_FILE = SHARE / "launch" / "perception.launch.py"


RVIZ_FILE = SHARE / "config" / "perception.rviz"
# What each RViz display class shows, as the ROS type of its topic.
RVIZ_TYPES = {
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
}


def _node_call(package: str = "videomolmo_ros") -> dict[str, ast.expr]:
    """The keyword arguments of the launch file's Node(...) action of `package`."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    nodes = [{k.arg: k.value for k in call.keywords} for call in calls]
    [node] = [n for n in nodes if ast.literal_eval(n["package"]) == package]
    return node


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


def test_rviz_true_starts_rviz2_with_the_shipped_config_in_the_nodes_namespace():
    rviz = _node_call("rviz2")
    assert ast.literal_eval(rviz["executable"]) == "rviz2"
    assert ast.unparse(rviz["condition"]) == "IfCondition(arg('rviz'))", "only with rviz:=true"
    assert ast.unparse(rviz["namespace"]) == ast.unparse(_node_call()["namespace"])
    arguments = ast.unparse(rviz["arguments"])
    assert "'-d'" in arguments and "'perception.rviz'" in arguments and "'--fixed-frame'" in arguments
    tree = ast.parse(LAUNCH_FILE.read_text())
    [table] = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGUMENTS"]
    [default] = [v.elts[0] for k, v in zip(table.keys, table.values, strict=True) if ast.literal_eval(k) == "rviz"]
    assert ast.literal_eval(default) == "false", "rviz2 only when asked for"
    assert RVIZ_FILE.is_file(), "the rviz config is installed"


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
