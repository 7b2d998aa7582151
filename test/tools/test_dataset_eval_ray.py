"""evaluate_dataset --ray: the same per-expression results as in-process, from Ray actors on a local Ray.

One local Ray (2 CPUs) for the module: starting one takes seconds. Its workers import the tests'
doubles through PYTHONPATH, which they inherit from this process.
"""

import json
import os
import sys
from pathlib import Path

import pytest
from eval_datasets import make_davis_layout
from real_footage import davis_root

from videomolmo_ros.tools.dataset_eval import main

ray = pytest.importorskip("ray", reason="ray is installed by ./scripts/setup (requirements.txt)")

ORACLE = ["--pointer", "oracle_doubles:ColorOraclePointerDouble", "--param", "ColorOraclePointerDouble.delay_s=0.05"]
ORACLE += ["--propagator", "oracle_doubles:ColorOraclePropagatorDouble", "--device", "cpu"]
TRUTH = ["--pointer", "truth_doubles:TruthPointerDouble", "--propagator", "truth_doubles:TruthPropagatorDouble"]
TIMED = ("tracking_latency", "grounding_latency", "latency_samples")  # measured: not the same in two runs


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    support = str(Path(__file__).parents[1] / "support")
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([support, *sys.path])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if previous is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = previous


def per_expression(out: Path) -> dict[str, dict]:
    """Each expression's results line, without what is measured rather than computed."""
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()[1:]]
    return {d["name"]: {k: v for k, v in d["result"].items() if k not in TIMED} for d in lines}


def workers_of(out: Path) -> set[str]:
    return {json.loads(line).get("worker") for line in (out / "results.jsonl").read_text().splitlines()[1:]}


def both_ways(args: list[str], tmp_path: Path) -> tuple[Path, Path]:
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main([*args, "-o", str(local)]) == 0
    assert main([*args, "-o", str(on_ray), "--ray", "--cpus-per-worker", "1"]) == 0
    return local, on_ray


def test_the_synthetic_set_scores_the_same_on_two_ray_workers(tmp_path):
    root = make_davis_layout(tmp_path / "set", ("alpha", "beta", "gamma"))
    local, on_ray = both_ways([str(root), *ORACLE], tmp_path)
    assert per_expression(on_ray) == per_expression(local)
    assert len(per_expression(on_ray)) == 6
    assert len(workers_of(on_ray)) == 2, "two actors of one CPU each on a Ray of two"
    assert json.loads((on_ray / "report.json").read_text())["overall"]["jf"] > 0.89


def test_davis_scores_the_same_on_ray(tmp_path):
    root = str(davis_root())
    args = [root, *TRUTH, "--query", "blackswan=the swan", "--videos", "blackswan", "--fps", "24", "--device", "cpu"]
    for double in ("TruthPointerDouble", "TruthPropagatorDouble"):
        args += ["--param", f"{double}.davis_root={root}", "--param", f"{double}.sequences=blackswan"]
    local, on_ray = both_ways(args, tmp_path)
    assert per_expression(on_ray) == per_expression(local)
    assert list(per_expression(on_ray)) == ["blackswan__0"]


def test_a_worker_that_dies_costs_only_its_video_tried_again_on_a_new_worker(tmp_path):
    root = make_davis_layout(tmp_path / "set", ("alpha", "beta"))
    marker = tmp_path / "died"
    args = [str(root), "-o", str(tmp_path / "out"), "--propagator", "oracle_doubles:ColorOraclePropagatorDouble"]
    args += ["--device", "cpu", "--ray", "--cpus-per-worker", "1"]
    args += ["--pointer", "oracle_doubles:DyingPointerDouble", "--param", "DyingPointerDouble.die_on=the blue ball"]
    args += ["--param", f"DyingPointerDouble.marker={marker}"]
    assert main(args) == 0
    assert marker.exists(), "a worker died"
    assert sorted(per_expression(tmp_path / "out")) == ["alpha__0", "alpha__1", "beta__0", "beta__1"]
    assert len(workers_of(tmp_path / "out")) >= 2


def test_a_worker_that_cannot_load_its_models_stops_the_pass_with_the_reason(tmp_path, capsys):
    root = make_davis_layout(tmp_path / "set")
    args = [str(root), "-o", str(tmp_path / "out"), *ORACLE, "--propagator", "sam2", "--ray"]
    assert main(args) == 1
    assert "a Ray worker could not load its models" in capsys.readouterr().err
