"""DDS settings for camera-sized messages, in effect in the node and the processes the tools are or start. No ROS.

Fast DDS loses raw frames above its default 512 KB shared-memory segment at camera rate unless the
PUBLISHING process runs with a profile of larger segments (config/fastdds_large_data.xml;
docs/large-images.md). perception_node (its debug image is frame-sized) and the tools that
publish frames (video_publisher, replay_bag, the demo) put it in effect before their first DDS
participant exists, unless the user chose a profile of their own: a variable already set, even to
an empty value, is kept.
"""

import os
from collections.abc import Mapping
from pathlib import Path

from videomolmo_ros.io.package_share import share_path

PROFILE = "config/fastdds_large_data.xml"
# Fast DDS 3 (Kilted on) reads the first and, deprecated, the second (both set: the file loads twice,
# with errors); Fast DDS 2 (Humble, Jazzy) only the second.
VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")


def profile_path() -> Path:
    return share_path(PROFILE)


def large_data_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """`environment` with the profile set for its ROS distro, unless either variable is set already."""
    if any(name in environment for name in VARIABLES):
        return dict(environment)
    variable = VARIABLES[1] if environment.get("ROS_DISTRO", "") in FAST_DDS_2_DISTROS else VARIABLES[0]
    return {**environment, variable: str(profile_path())}


def use_large_data_profile() -> None:
    """Put the profile in effect in this process: call before rclpy.init creates its participant."""
    os.environ.update(large_data_environment(os.environ))
