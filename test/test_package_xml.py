"""package.xml declares what the code imports, so `rosdep install` gives a node that starts."""

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_XML = ET.parse(ROOT / "package.xml").getroot()

# Every third-party module the package, its launch file or its tests import -> its rosdep key
# (a ROS package name, or a key of ros/rosdistro's rosdep/python.yaml), or None where rosdep
# has no key and pip installs it (docs/setup.md's apt section says how).
ROSDEP_KEYS: dict[str, str | None] = {
    # ROS
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
    "rosgraph_msgs": "rosgraph_msgs",
    "builtin_interfaces": "builtin_interfaces",
    "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs",
    "geometry_msgs": "geometry_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "visualization_msgs": "visualization_msgs",
    "lifecycle_msgs": "lifecycle_msgs",
    "ament_index_python": "ament_index_python",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "launch_testing": "launch_testing",
    "tf2_ros": "tf2_ros",
    "vision_msgs": "vision_msgs",
    # Python
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "cv2": "python3-opencv",
    "PIL": "python3-pil",
    "yaml": "python3-yaml",
    "torch": "python3-torch",
    "transformers": "python3-transformers-pip",
    "tokenizers": "python3-transformers-pip",  # comes with transformers
    "huggingface_hub": "python3-huggingface-hub-pip",
    "hydra": "python3-hydra-core-pip",
    "omegaconf": "python3-hydra-core-pip",  # comes with hydra-core (it is hydra's config library)
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "rosbags": "python3-rosbags-pip",
    "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis",
    # No rosdep key: pip
    "sam2": None,
    "llguidance": None,
    "safetensors": None,
    "iopath": None,
    "ray": None,  # evaluate_dataset --ray
    "bitsandbytes": None,  # optional, GPU quantization only
    "motmetrics": None,  # tests only: the reference the CLEAR-MOT scores are checked against
    "pycocotools": None,  # tests only: the reference of the COCO RLE codec
}
OPTIONAL = {"bitsandbytes"}  # imported only when a user asks for it; not pinned
DEPEND_TAGS = ("depend", "exec_depend", "build_export_depend")


def _declared(*tags: str) -> set[str]:
    return {element.text.strip() for tag in tags for element in PACKAGE_XML.iter(tag)}


def _third_party_imports(*folders: str) -> dict[str, str]:
    """Top-level module -> one file importing it, for imports that are neither stdlib nor this repo's."""
    local = {path.stem for path in (ROOT / "test").rglob("*.py")} | {"videomolmo_ros"}
    found = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_package_xml_is_format_3_with_the_apache_licence_shipped():
    assert PACKAGE_XML.get("format") == "3"
    assert _declared("license") == {"Apache-2.0"}
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()


@pytest.mark.parametrize(
    ("folders", "tags"), [(("videomolmo_ros", "launch"), DEPEND_TAGS), (("test",), ("test_depend",))]
)
def test_every_third_party_import_has_a_declared_dependency(folders, tags):
    imports = _third_party_imports(*folders)
    unmapped = {module: path for module, path in imports.items() if module not in ROSDEP_KEYS}
    assert unmapped == {}, "add these imports to ROSDEP_KEYS (and package.xml)"
    declared = _declared(*tags, *DEPEND_TAGS)
    missing = {m: ROSDEP_KEYS[m] for m in imports if ROSDEP_KEYS[m] is not None and ROSDEP_KEYS[m] not in declared}
    assert missing == {}, f"imported but not declared in package.xml ({', '.join(tags)})"


def test_imports_without_a_rosdep_key_are_pinned_and_the_setup_page_says_how_they_install():
    pinned = "".join(path.read_text() for path in ROOT.glob("*.txt")).lower()
    apt_section = (ROOT / "docs" / "setup.md").read_text().split("## With ROS 2 from apt")[1].split("\n## ")[0]
    for module, key in ROSDEP_KEYS.items():
        if key is not None:
            continue
        assert module in OPTIONAL or re.search(rf"^{module}==", pinned, re.MULTILINE), f"{module} is not pinned"
        assert module in apt_section, f"docs/setup.md's apt section does not say how {module} gets installed"
