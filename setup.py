"""pip install of the ROS-free core (grounding, parsing, buffering, tracking).

The ROS 2 node also needs the generated messages, so a robot install goes through
`colcon build` (CMakeLists.txt), which installs this same package and the entry
points of setup.cfg.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

_VERSION = re.search(r"<version>([^<]+)</version>", (Path(__file__).parent / "package.xml").read_text())[1]

setup(
    name="videomolmo_ros",
    version=_VERSION,
    packages=find_packages(include=("videomolmo_ros", "videomolmo_ros.*")),
    python_requires=">=3.10",
)
