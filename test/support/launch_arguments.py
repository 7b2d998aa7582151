"""The README's table of perception.launch.py's arguments, made from the file's declarations.

`python test/support/launch_arguments.py` prints it (needs ROS 2 launch); test/launch/test_launch_file.py
keeps the README's equal to it.
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from ament_index_python.packages import get_package_share_directory

SHARE = Path(get_package_share_directory("videomolmo_ros"))
LAUNCH_FILE = SHARE / "launch" / "perception.launch.py"


def launch_module() -> ModuleType:
    """The installed launch file as a module (its ARGUMENTS and generate_launch_description)."""
    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def arguments_table() -> str:
    """One row per declared argument: its name, default (the installed share folder as `<share>`) and help."""
    rows = ["| argument | default | what |", "|---|---|---|"]
    for argument in launch_module().generate_launch_description().get_launch_arguments():
        default = "".join(part.text for part in argument.default_value or []).replace(str(SHARE), "<share>")
        rows.append(f"| `{argument.name}` | {f'`{default}`' if default else '(empty)'} | {argument.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(arguments_table(), end="")
