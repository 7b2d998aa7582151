"""Start perception_node: ros2 launch videomolmo_ros perception.launch.py image:=/camera/image_raw"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = {
    "params_file": (
        str(Path(get_package_share_directory("videomolmo_ros")) / "config" / "perception.yaml"),
        "parameters of perception_node",
    ),
    "image": ("image", "camera image topic (sensor_msgs/Image)"),
    "namespace": ("", "namespace of the node and its topics"),
    "device": ("auto", "auto, cpu, cuda or cuda:N"),
    "pointer_backend": ("", "grounding model backend (registered name or package.module:Class)"),
    "propagator_backend": ("", "mask propagator backend (registered name or package.module:Class)"),
    "use_sim_time": ("false", "true when replaying a bag with --clock"),
}


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=v, description=text) for name, (v, text) in ARGUMENTS.items()]
        + [
            Node(
                package="videomolmo_ros",
                executable="perception_node",
                name="perception_node",
                namespace=arg("namespace"),
                output="screen",
                parameters=[
                    arg("params_file"),
                    {
                        "device": arg("device"),
                        "pointer_backend": arg("pointer_backend"),
                        "propagator_backend": arg("propagator_backend"),
                        "use_sim_time": arg("use_sim_time"),
                    },
                ],
                remappings=[("image", arg("image"))],
            )
        ]
    )
