"""Start perception_node (and rviz2 with rviz:=true).

ros2 launch videomolmo_ros perception.launch.py image:=/camera/color/image_raw
ros2 launch videomolmo_ros perception.launch.py params_file:=/path/to/my.yaml use_sim_time:=true
ros2 launch videomolmo_ros perception.launch.py pointer:=videomolmo propagator:=none
ros2 launch videomolmo_ros perception.launch.py rviz:=true rviz_fixed_frame:=camera_color_optical_frame

The params file sets the node's parameters; an argument left out leaves the file's value alone, an
argument given wins over it. Everything it starts runs with the Fast DDS profile for camera-sized
messages (config/fastdds_large_data.xml), unless the environment names a profile already. The
launch ends when perception_node exits; Ctrl-C stops everything it started.
"""

import os
import tempfile
from pathlib import Path

import yaml
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from videomolmo_ros.io.dds_profile import large_data_environment
from videomolmo_ros.node.params_files import values_in

SHARE = Path(get_package_share_directory("videomolmo_ros"))
FROM_FILE = "not given: the params file's"
# name -> (default, help). An empty default is "not given": the params file's value stands.
ARGUMENTS = {
    "params_file": (
        str(SHARE / "config" / "perception.yaml"),
        "parameters of perception_node: backends and their options, cameras, thresholds (docs/parameters.md)",
    ),
    "image": ("image", "camera image topic (sensor_msgs/Image)"),
    "depth": ("depth", "depth image registered to the camera (16UC1 mm or 32FC1 m)"),
    "camera_info": ("camera_info", "the colour camera's sensor_msgs/CameraInfo"),
    "namespace": ("", "namespace of the node and its topics (empty: none)"),
    "device": ("", f"auto, cpu, cuda or cuda:N ({FROM_FILE})"),
    "pointer": ("", f"grounding backend: molmo2, videomolmo, none or package.module:Class ({FROM_FILE})"),
    "propagator": ("", f"mask propagator backend: sam2, none or package.module:Class ({FROM_FILE})"),
    "use_depth": ("", f"true: 3D positions for targets and tracks from depth ({FROM_FILE})"),
    "debug": ("", f"true: offer the debug_image and debug_markers topics ({FROM_FILE})"),
    "use_sim_time": ("", f"true when replaying a bag with `ros2 bag play --clock`, for rviz2 too ({FROM_FILE})"),
    "rviz": ("false", "true: also start rviz2 with config/perception.rviz (debug image, 3D markers, TF)"),
    "rviz_fixed_frame": ("camera_color_optical_frame", "rviz2's fixed frame (optical frame or target_frame)"),
}
# Arguments that set a node parameter when given: argument -> (parameter, type).
OVERRIDES = {
    "device": ("device", str),
    "pointer": ("pointer_backend", str),
    "propagator": ("propagator_backend", str),
    "use_depth": ("use_depth", bool),
    "debug": ("debug_views", bool),
    "use_sim_time": ("use_sim_time", bool),
}


def given(context: LaunchContext) -> dict[str, ParameterValue]:
    """The node parameters set by the arguments given on the command line (or by an including launch file)."""
    arg = LaunchConfiguration
    return {
        parameter: ParameterValue(arg(name), value_type=kind)  # typed by launch_ros: "true" -> True
        for name, (parameter, kind) in OVERRIDES.items()
        if arg(name).perform(context)
    }


def rviz_sim_time(context: LaunchContext) -> ParameterValue | bool:
    """use_sim_time for rviz2: the argument if given, else what the params file gives the node."""
    argument = LaunchConfiguration("use_sim_time")
    if argument.perform(context):
        return ParameterValue(argument, value_type=bool)
    return values_in(LaunchConfiguration("params_file").perform(context)).get("use_sim_time") is True


def check_rviz2() -> None:
    """Fail the launch before anything starts when rviz2 is asked for but not installed."""
    try:
        get_package_share_directory("rviz2")
    except PackageNotFoundError:
        distro = os.environ.get("ROS_DISTRO", "<distro>")
        raise RuntimeError(
            f"rviz:=true, but rviz2 is not installed (sudo apt install ros-{distro}-rviz2); nothing was started"
        ) from None


def in_namespace(params_file: str, context: LaunchContext) -> str:
    """`params_file`, or for a node in a namespace a copy whose `perception_node` section reaches it.

    rcl gives a section to the node of that full name or a wildcard matching it: `perception_node:`
    means `/perception_node`, and would silently not reach /robot1/perception_node; `/**/perception_node` does.
    The namespace: the `namespace` argument, or one an including launch file pushed.
    """
    namespaces = (LaunchConfiguration("namespace").perform(context), context.launch_configurations.get("ros_namespace"))
    with open(params_file) as file:
        document = yaml.safe_load(file)
    if not any((namespace or "").strip("/") for namespace in namespaces) or not isinstance(document, dict):
        return params_file
    keyed = {("/**/perception_node" if str(k).strip("/") == "perception_node" else k): v for k, v in document.items()}
    if keyed == document:
        return params_file
    with tempfile.NamedTemporaryFile("w", prefix="perception_params_", suffix=".yaml", delete=False) as copy:
        yaml.safe_dump(keyed, copy)
    return copy.name


def nodes(context: LaunchContext) -> list[Node]:
    """perception_node, and rviz2 with rviz:=true (checked first: a failed launch leaves nothing running)."""
    arg = LaunchConfiguration
    params_file = arg("params_file").perform(context)
    if not Path(params_file).is_file():  # launch_ros would start the node without it
        raise RuntimeError(f"params_file {params_file} is not a file; nothing was started")
    with_rviz = IfCondition(arg("rviz")).evaluate(context)
    if with_rviz:
        check_rviz2()
    node = Node(
        package="videomolmo_ros",
        executable="perception_node",
        name="perception_node",
        namespace=arg("namespace"),
        output="screen",
        parameters=[in_namespace(params_file, context), given(context)],
        remappings=[("image", arg("image")), ("depth", arg("depth")), ("camera_info", arg("camera_info"))],
        on_exit=Shutdown(reason="perception_node exited"),
    )
    if not with_rviz:
        return [node]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=arg("namespace"),  # the .rviz file names the node's topics relative to it
        arguments=["-d", str(SHARE / "config" / "perception.rviz"), "--fixed-frame", arg("rviz_fixed_frame")],
        parameters=[{"use_sim_time": rviz_sim_time(context)}],
    )
    return [node, rviz]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=v, description=text) for name, (v, text) in ARGUMENTS.items()]
    profile = large_data_environment(os.environ).items() - os.environ.items()
    environment = [SetEnvironmentVariable(name, value) for name, value in sorted(profile)]
    return LaunchDescription([*declared, *environment, OpaqueFunction(function=nodes)])
