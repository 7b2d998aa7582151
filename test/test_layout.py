"""The package's architecture as its folders promise it: ROS only in the shell, no import upward or in a cycle."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

# The source folder: the rules are about the code written here (an installed copy also holds the
# generated message modules).
PACKAGE = Path(__file__).resolve().parents[1] / "videomolmo_ros"
# Modules that are the ROS side: the node, and the tools' publishers and subscriptions (bag replay,
# video publisher, demo, and the frame publisher, replay node and spun node they share).
ROS_MODULES = (
    "videomolmo_ros.node",
    "videomolmo_ros.tools.bag_replay",
    "videomolmo_ros.tools.bag_player",
    "videomolmo_ros.tools.video_publisher",
    "videomolmo_ros.tools.demo",
    "videomolmo_ros.tools.frame_publisher",
    "videomolmo_ros.tools.replay_node",
    "videomolmo_ros.tools.ros_spin",
)
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
# The layers, bottom up, and what each may import from the others (a layer may always import
# itself). Together they are acyclic, and test_no_layer_imports_one_above_it keeps the code to them.
ALLOWED = {
    "contracts": set(),  # the types every layer speaks and the two backend interfaces
    "io": {"contracts"},
    "pipeline": {"contracts", "io"},
    "backends": {"contracts", "io"},
    "evaluation": {"contracts", "io", "pipeline"},
    "node": {"contracts", "io", "pipeline", "backends"},
    "tools": {"contracts", "io", "pipeline", "backends", "evaluation"},
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


def _modules(package: Path = PACKAGE) -> list[str]:
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def _source(package: Path, module: str) -> Path:
    path = package.parent.joinpath(*module.split("."))
    return (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")


def layer_imports(package: Path = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """(layer, other layer) -> the imports that make the first depend on the second."""
    found: dict[tuple[str, str], list[str]] = {}
    for module in _modules(package):
        layer = _layer(module)
        if layer is None:
            continue
        for node in ast.walk(ast.parse(_source(package, module).read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                other = _layer(name) if name.startswith("videomolmo_ros.") else None
                if other is not None and other != layer:
                    found.setdefault((layer, other), []).append(f"{module} imports {name}")
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every simple cycle, once, from its alphabetically first layer."""
    found = []

    def visit(path: list[str]) -> None:
        for step in sorted(graph.get(path[-1], ())):
            if step == path[0]:
                found.append([*path, step])
            elif step not in path and step > path[0]:
                visit([*path, step])

    for start in sorted(graph):
        visit([start])
    return found


def layering_problems(imports: dict[tuple[str, str], list[str]]) -> list[str]:
    """Every cycle between layers, and every import the layer picture (ALLOWED) does not allow."""
    graph: dict[str, set[str]] = {}
    for layer, other in imports:
        graph.setdefault(layer, set()).add(other)
    problems = [f"cycle {' -> '.join(c)} ({imports[(c[-2], c[-1])][0]})" for c in _cycles(graph)]
    for (layer, other), witnesses in sorted(imports.items()):
        if other not in ALLOWED.get(layer, set()):
            problems.append(f"{layer} may not import {other}: {witnesses[0]}")
    return problems


def test_every_module_outside_the_ros_shell_imports_without_ros():
    core = [m for m in _modules() if not m.startswith(ROS_MODULES)]
    assert "videomolmo_ros.pipeline.pipeline" in core and "videomolmo_ros.evaluation.bag_files" in core
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT_ROS, " ".join(sorted(ROS_PACKAGES)), *core],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


def test_the_layer_picture_itself_has_no_cycle():
    assert (
        layering_problems({(layer, other): ["allowed"] for layer, others in ALLOWED.items() for other in others}) == []
    )


def test_no_layer_imports_one_above_it_and_no_layers_form_a_cycle():
    assert layering_problems(layer_imports()) == []


def test_an_import_that_closes_a_cycle_between_layers_fails_the_check(tmp_path):
    """The check on a copy of the package where contracts/ imports the pipeline (which imports contracts/)."""
    copy = tmp_path / "videomolmo_ros"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    frames = copy / "contracts" / "frames.py"
    frames.write_text(frames.read_text() + "\nfrom videomolmo_ros.pipeline import frame_buffer  # noqa\n")
    problems = layering_problems(layer_imports(copy))
    assert any(p.startswith("cycle contracts -> pipeline -> contracts") for p in problems), problems
    assert (
        "contracts may not import pipeline: videomolmo_ros.contracts.frames imports videomolmo_ros.pipeline" in problems
    )


def test_modules_and_classes_stay_small_enough_to_read():
    """~400 lines a module, ~300 a class; a model definition is one cohesive thing and may be longer."""
    cohesive = {"videomolmo_ros.backends.videomolmo.model"}
    too_big = []
    for module in _modules():
        text = _source(PACKAGE, module).read_text()
        if module not in cohesive and text.count("\n") > 420:
            too_big.append(f"{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 300:
                too_big.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_big == []
