"""Point the ROS 2 wheels' exported CMake files at this interpreter's include folders.

The PyPI ROS 2 wheels were built on a manylinux image, and their exported CMake targets name
that machine's Python and numpy include folders, which CMake refuses when they do not exist.
Rewriting them to this interpreter's folders is what makes `rosidl_generate_interfaces` work
in a virtual environment. Idempotent: a second run changes nothing.
"""

import re
import sys
import sysconfig
from pathlib import Path

import numpy

_BUILD_PYTHON = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
_BUILD_NUMPY = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")


def rewrite(prefix: Path) -> int:
    """Rewrite every *.cmake file under prefix/share; return how many changed."""
    python_inc = sysconfig.get_paths()["include"]
    numpy_inc = numpy.get_include()
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text()
        new = _BUILD_NUMPY.sub(numpy_inc, _BUILD_PYTHON.sub(python_inc, text))
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    print(f"ros_wheel_cmake_paths: rewrote {rewrite(Path(sys.prefix))} CMake files")
