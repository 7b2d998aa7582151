"""The package's architecture, as its folders promise it: ROS only in the shell, no layer importing upward."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

# The source folder: the rules are about the code written here (an installed copy also holds the
# generated message modules).
PACKAGE = Path(__file__).resolve().parents[1] / "videomolmo_ros"
# Modules that are the ROS side: the node and the bag replay's publishers and subscriptions.
ROS_MODULES = ("videomolmo_ros.node", "videomolmo_ros.tools.bag_replay")
# Top-level packages of ROS 2 (Python client, generated interfaces) that the core never needs.
ROS_PACKAGES = {
    "rclpy",
    "rosidl_runtime_py",
    "rosidl_parser",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "action_msgs",
    "rosgraph_msgs",
    "tf2_ros",
    "vision_msgs",
}
# What each layer may import from the others (a layer may always import itself).
ALLOWED = {
    "io": set(),
    "pipeline": {"io", "backends"},  # backends: the interfaces the workers call
    "backends": {"io", "pipeline"},  # pipeline: the frame and command types a backend is given
    "tools": {"io", "pipeline", "backends"},
    "node": {"io", "pipeline", "backends"},
}

_IMPORT_WITHOUT_ROS = """
import importlib, importlib.abc, json, sys
blocked, generated = set(sys.argv[1].split()), ("videomolmo_ros.msg", "videomolmo_ros.srv", "videomolmo_ros.action")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked or name.startswith(generated):
            raise ImportError(f"{name} is ROS")
sys.meta_path.insert(0, Block())
failed = {}
for module in sys.argv[2:]:
    try:
        importlib.import_module(module)
    except Exception as error:
        failed[module] = repr(error)
print(json.dumps(failed))
"""


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_every_module_outside_the_ros_shell_imports_without_ros():
    core = [m for m in _modules() if not m.startswith(ROS_MODULES)]
    assert "videomolmo_ros.pipeline.pipeline" in core and "videomolmo_ros.tools.bag_files" in core
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT_ROS, " ".join(sorted(ROS_PACKAGES)), *core],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


def test_no_layer_imports_a_layer_above_it():
    wrong = []
    for module in _modules():
        layer = _layer(module)
        if layer is None:
            continue
        path = PACKAGE.parent.joinpath(*module.split("."))
        source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
        for node in ast.walk(ast.parse(source.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                other = _layer(name) if name.startswith("videomolmo_ros.") else None
                if other is not None and other != layer and other not in ALLOWED[layer]:
                    wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_modules_and_classes_stay_small_enough_to_read():
    """~400 lines a module, ~300 a class; a model definition is one cohesive thing and may be longer."""
    cohesive = {"videomolmo_ros.backends.videomolmo.model"}
    too_big = []
    for module in _modules():
        path = PACKAGE.parent.joinpath(*module.split("."))
        source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
        text = source.read_text()
        if module not in cohesive and text.count("\n") > 420:
            too_big.append(f"{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 300:
                too_big.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_big == []


def test_a_module_path_of_the_previous_release_imports_the_moved_module(monkeypatch):
    from videomolmo_ros.io import mask_codec

    monkeypatch.delitem(sys.modules, "videomolmo_ros.mask_codec", raising=False)
    with pytest.warns(FutureWarning, match="videomolmo_ros.mask_codec moved to videomolmo_ros.io.mask_codec"):
        from videomolmo_ros.mask_codec import decode_masks
    assert decode_masks is mask_codec.decode_masks
