"""Start perception_node.

ros2 launch videomolmo_ros perception.launch.py image:=/camera/color/image_raw
ros2 launch videomolmo_ros perception.launch.py params_file:=/path/to/my.yaml use_sim_time:=true
ros2 launch videomolmo_ros perception.launch.py rviz:=true rviz_fixed_frame:=camera_color_optical_frame
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

SHARE = Path(get_package_share_directory("videomolmo_ros"))
ARGUMENTS = {
    "params_file": (
        str(SHARE / "config" / "perception.yaml"),
        "parameters of perception_node (backends and their options live here)",
    ),
    "image": ("image", "camera image topic (sensor_msgs/Image)"),
    "depth": ("depth", "depth image registered to the camera (16UC1 mm or 32FC1 m)"),
    "camera_info": ("camera_info", "the colour camera's sensor_msgs/CameraInfo"),
    "use_depth": ("false", "3D positions for targets and tracks from depth"),
    "namespace": ("", "namespace of the node and its topics"),
    "device": ("auto", "auto, cpu, cuda or cuda:N"),
    "pointer": ("molmo2", "grounding backend: molmo2, videomolmo or package.module:Class"),
    "propagator": ("sam2", "mask propagator backend: sam2, empty for none, or package.module:Class"),
    "debug": ("true", "offer the debug_image and debug_markers topics"),
    "use_sim_time": ("false", "true when replaying a bag with `ros2 bag play --clock`"),
    "rviz": ("false", "also start rviz2 with config/perception.rviz (debug image, 3D markers, TF)"),
    "rviz_fixed_frame": (
        "camera_color_optical_frame",
        "rviz2's fixed frame (optical frame or target_frame)",
    ),
}


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    node = Node(
        package="videomolmo_ros",
        executable="perception_node",
        name="perception_node",
        namespace=arg("namespace"),
        output="screen",
        parameters=[
            arg("params_file"),
            {
                "device": ParameterValue(arg("device"), value_type=str),
                "pointer_backend": ParameterValue(arg("pointer"), value_type=str),
                "propagator_backend": ParameterValue(arg("propagator"), value_type=str),
                "use_depth": ParameterValue(arg("use_depth"), value_type=bool),
                "debug_views": ParameterValue(arg("debug"), value_type=bool),
                "use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool),
            },
        ],
        remappings=[("image", arg("image")), ("depth", arg("depth")), ("camera_info", arg("camera_info"))],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=arg("namespace"),  # the .rviz file names the node's topics relative to it
        arguments=["-d", str(SHARE / "config" / "perception.rviz"), "--fixed-frame", arg("rviz_fixed_frame")],
        parameters=[{"use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool)}],
        condition=IfCondition(arg("rviz")),
    )
    declared = [DeclareLaunchArgument(name, default_value=v, description=text) for name, (v, text) in ARGUMENTS.items()]
    return LaunchDescription([*declared, node, rviz])
