"""Start perception_node.

ros2 launch videomolmo_ros perception.launch.py image:=/camera/color/image_raw
ros2 launch videomolmo_ros perception.launch.py params_file:=/path/to/my.yaml use_sim_time:=true
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

ARGUMENTS = {
    "params_file": (
        str(Path(get_package_share_directory("videomolmo_ros")) / "config" / "perception.yaml"),
        "parameters of perception_node (backends and their options live here)",
    ),
    "image": ("image", "camera image topic (sensor_msgs/Image)"),
    "namespace": ("", "namespace of the node and its topics"),
    "device": ("auto", "auto, cpu, cuda or cuda:N"),
    "use_sim_time": ("false", "true when replaying a bag with `ros2 bag play --clock`"),
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
                "use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool),
            },
        ],
        remappings=[("image", arg("image"))],
    )
    declared = [DeclareLaunchArgument(name, default_value=v, description=text) for name, (v, text) in ARGUMENTS.items()]
    return LaunchDescription([*declared, node])
