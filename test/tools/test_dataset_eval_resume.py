"""A pass that loses nothing: results.jsonl streamed per expression, --resume, failed videos retried once
then reported, the report rebuilt from results.jsonl alone."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from eval_datasets import FPS, RaisingEvaluatorDouble, make_davis_layout
from oracle_doubles import ColorOraclePointerDouble, ColorOraclePropagatorDouble, OracleOptions
from polling import wait_for

from videomolmo_ros.contracts.interfaces import NoOptions
from videomolmo_ros.evaluation.dataset_evaluation import ExpressionEvaluator, LocalWorkers, evaluate, rebuild_report
from videomolmo_ros.evaluation.lockstep_run import EvalConfig
from videomolmo_ros.evaluation.video_dataset import VideoDataset
from videomolmo_ros.tools.dataset_eval import main

CPU = torch.device("cpu")
VIDEOS = ("alpha", "beta", "gamma")
# A slow pointer: a pass of six expressions takes seconds, so it can be killed half-way.
ORACLE = ["--pointer", "oracle_doubles:ColorOraclePointerDouble", "--param", "ColorOraclePointerDouble.delay_s=0.2"]
ORACLE += ["--propagator", "oracle_doubles:ColorOraclePropagatorDouble", "--device", "cpu"]
TIMED = ("tracking_latency", "grounding_latency")  # measured: not the same in two runs


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_davis_layout(tmp_path_factory.mktemp("three_videos"), VIDEOS)


def scores(out: Path) -> dict[str, dict]:
    """Each sequence of report.json without its measured latencies."""
    report = json.loads((out / "report.json").read_text())
    return {s["name"]: {k: v for k, v in s.items() if k not in TIMED} for s in report["sequences"]}


def results_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def done_lines(out: Path) -> int:
    path = out / "results.jsonl"
    return path.exists() and path.read_text().count('"kind": "done"')


@pytest.fixture(scope="module")
def uninterrupted(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main([str(root), "-o", str(out), *ORACLE]) == 0
    return out


def test_each_expression_is_a_results_line_with_its_time(uninterrupted):
    config, *done = results_lines(uninterrupted)
    assert config["kind"] == "config" and config["config"]["pointer"] == "oracle_doubles:ColorOraclePointerDouble"
    assert [d["name"] for d in done] == [f"{v}__{i}" for v in VIDEOS for i in "01"]
    assert all(d["kind"] == "done" and d["seconds"] > 0 and d["worker"] == "in-process" for d in done)
    timings = json.loads((uninterrupted / "report.json").read_text())["timings"]
    assert set(timings) == set(VIDEOS) and all(t["expressions"] == 2 and t["seconds"] > 0 for t in timings.values())


def test_a_pass_killed_half_way_and_resumed_reports_as_an_uninterrupted_one(root, uninterrupted, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "support"), *sys.path])}
    command = [sys.executable, "-m", "videomolmo_ros.tools.dataset_eval", str(root), "-o", str(out), *ORACLE]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: done_lines(out) >= 1 or process.poll() is not None, 120), "no expression finished"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    finished = done_lines(out)
    assert 1 <= finished < 2 * len(VIDEOS), f"killed after {finished} expression(s): not half-way"
    with (out / "results.jsonl").open("a") as file:
        file.write('{"kind": "done", "name": "gam')  # as a kill while writing a line leaves it
    assert main([str(root), "-o", str(out), "--resume", *ORACLE]) == 0
    names = [d["name"] for d in results_lines(out)[1:]]
    assert len(names) == len(set(names)) == 2 * len(VIDEOS), "each expression run once, none twice"
    assert scores(out) == scores(uninterrupted)
    assert (out / "table.md").read_text().count("\n") == (uninterrupted / "table.md").read_text().count("\n")


def test_resume_refuses_other_settings_and_a_new_pass_refuses_an_old_results_file(root, uninterrupted, capsys):
    assert main([str(root), "-o", str(uninterrupted), *ORACLE]) == 1
    assert "results.jsonl exists: --resume to continue that pass" in capsys.readouterr().err
    assert main([str(root), "-o", str(uninterrupted), "--resume", *ORACLE, "--fps", "5"]) == 1
    assert "made with other settings (fps): cannot resume it" in capsys.readouterr().err


def test_the_report_is_rebuilt_from_results_jsonl_alone(uninterrupted, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    (out / "results.jsonl").write_bytes((uninterrupted / "results.jsonl").read_bytes())
    report = rebuild_report(out)
    assert (out / "report.json").read_text() == (uninterrupted / "report.json").read_text()
    assert (out / "table.md").read_text() == (uninterrupted / "table.md").read_text()
    assert (out / "plots.png").is_file() and len(report.sequences) == 2 * len(VIDEOS)


def evaluator(root):
    config = EvalConfig(fps=FPS, frame_timeout_s=10.0)
    pointer = ColorOraclePointerDouble(OracleOptions(), CPU)
    propagator = ColorOraclePropagatorDouble(NoOptions(), CPU)
    return ExpressionEvaluator(VideoDataset(root), pointer, propagator, CPU, config), config


def test_a_video_that_raises_is_retried_once_then_reported_while_the_others_finish(root, tmp_path):
    inner, config = evaluator(root)
    raising = RaisingEvaluatorDouble(inner, {"alpha": 1, "beta": 5})  # alpha recovers on its retry, beta never
    refs = VideoDataset(root).expressions()
    report = evaluate(refs, LocalWorkers(raising), config, tmp_path)
    assert [s.name for s in report.sequences] == ["alpha__0", "alpha__1", "gamma__0", "gamma__1"]
    [failed] = report.failed
    assert (failed.video, failed.names, failed.attempts) == ("beta", ["beta__0", "beta__1"], 2)
    assert failed.error == "MemoryError: out of memory on beta__0"
    assert raising.calls.count("beta__0") == 2 and "beta__1" not in raising.calls
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["failed_videos"] == 1 and written["failed"][0]["error"] == failed.error
    assert "**1 video(s) failed** (2 expression(s) not scored)" in (tmp_path / "table.md").read_text()
    # Resumed once what failed it is gone: only beta runs, and the report has every video.
    again = RaisingEvaluatorDouble(inner, {})
    report = evaluate(refs, LocalWorkers(again), config, tmp_path, resume=True)
    assert again.calls == ["beta__0", "beta__1"]
    assert not report.failed and len(report.sequences) == 6
