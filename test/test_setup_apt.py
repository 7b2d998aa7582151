"""scripts/setup-apt: the commands of the apt path, checked with --dry-run (no ROS apt repository here)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup-apt"


def _dry_run(tmp_path: Path, *args: str, distro: str | None = "jazzy") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ROS_DISTRO"} | ({"ROS_DISTRO": distro} if distro else {})
    return subprocess.run(
        [str(SCRIPT), "--dry-run", "--workspace", str(tmp_path / "ws"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def commands(tmp_path) -> list[str]:
    result = _dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def _index(commands: list[str], pattern: str) -> int:
    [index] = [i for i, command in enumerate(commands) if re.search(pattern, command)]
    return index


def test_the_venv_sees_ros_and_holds_the_pinned_dependencies(commands, tmp_path):
    venv = tmp_path / "ws" / "venv"
    make_venv = _index(commands, r"^python3 -m venv --system-site-packages ")
    assert commands[make_venv].endswith(str(venv))
    pinned = _index(commands, rf"^{venv}/bin/python -m pip install -r \S+/requirements.txt -c \S+/constraints.txt$")
    sam2 = _index(commands, rf"{venv}/bin/python -m pip install --no-deps .*--require-hashes -r \S+/requirements-sam2")
    assert make_venv < pinned < sam2
    assert "SAM2_BUILD_CUDA=0" in commands[sam2]
    system_pip = [c for c in commands if re.search(r"pip install", c) and str(venv) not in c]
    assert system_pip == [], "nothing is pip-installed into the system Python (PEP 668)"


def test_colcon_builds_with_the_venvs_interpreter_after_the_dependencies(commands, tmp_path):
    build = _index(commands, r"^colcon build ")
    assert f"-DPython3_EXECUTABLE={tmp_path / 'ws' / 'venv'}/bin/python" in commands[build]
    assert build > _index(commands, r"requirements-sam2.txt")
    assert commands[build - 1] == f"cd {tmp_path / 'ws'}", "built in the workspace"


def test_rosdep_installs_the_ros_keys_and_leaves_the_python_ones_to_the_venv(commands):
    rosdep = commands[_index(commands, r"^rosdep install ")]
    skipped = set(rosdep.split("--skip-keys ", 1)[1].split())
    declared = set(re.findall(r"<(?:exec_|test_)?depend>(python3-[^<]+)<", (ROOT / "package.xml").read_text()))
    assert "python3-opencv" in declared and "python3-torch" in declared
    assert skipped == declared, "every Python key of package.xml comes from the venv, none from apt"
    assert "--from-paths" in rosdep and "--rosdistro jazzy" in rosdep


def test_no_apt_opencv_or_numpy(commands):
    apt = [c for c in commands if "apt-get install" in c]
    assert apt and not any(re.search(r"python3-(opencv|numpy)\b", c) for c in apt)


def test_a_dry_run_changes_nothing(tmp_path):
    assert _dry_run(tmp_path).returncode == 0
    assert not (tmp_path / "ws").exists()


def test_without_a_sourced_ros_it_says_what_to_do(tmp_path):
    result = _dry_run(tmp_path, distro=None)
    assert result.returncode == 1 and "source /opt/ros/<distro>/setup.bash" in result.stderr
