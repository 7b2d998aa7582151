"""videomolmo_demo end to end: the shipped backends on tiny random weights (a test params file), every file written."""

import csv
import json
import os
import subprocess

import cv2
import pytest
import yaml
from ros_harness import installed_executable
from tiny_molmo2 import write_tiny_molmo2
from tiny_sam2 import tiny_options, write_tiny_sam2

from videomolmo_ros.evaluation.bag_files import read_outputs, stamp_ns
from videomolmo_ros.evaluation.demo_scene import TabletopScene

FRAMES = 30


def demo(args: list[str], timeout_s: float = 600.0, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(installed_executable("videomolmo_demo")), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory):
    """The real Molmo2 and SAM2 backends, with tiny random weights written here, on the CPU."""
    folder = tmp_path_factory.mktemp("tiny")
    params = {
        "device": "cpu",
        "molmo2.model": str(write_tiny_molmo2(folder / "molmo2")),
        "molmo2.max_new_tokens": 48,
        **{f"sam2.{k}": v for k, v in tiny_options(write_tiny_sam2(folder)).items()},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({"perception_node": {"ros__parameters": params}}))
    return path


def test_the_synthetic_scene_runs_end_to_end_and_every_file_agrees_with_the_recorded_outputs(tiny_params, tmp_path):
    out = tmp_path / "demo_out"
    # 30 of the scene's 90 frames: 3 s of video at 10 Hz, several groundings and every file as from the whole scene.
    result = demo(["--params-file", str(tiny_params), "-o", str(out), "--rate", "10", "--max-frames", str(FRAMES)])
    assert result.returncode == 0, f"{result.stderr[-3000:]}\n{(out / 'node.log').read_text()[-3000:]}"
    assert {"overlay.mp4", "tracks.csv", "summary.json", "outputs", "node.log"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    scene = TabletopScene()
    assert summary["frames_published"] == FRAMES and summary["query"] == "the red ball"

    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    frames = 0
    while (frame := video.read())[0]:
        frames += 1
        assert frame[1].shape == (scene.height, scene.width, 3)
    assert frames == FRAMES, "every published frame is in the overlay"

    outputs = read_outputs(out / "outputs")
    assert summary["messages"] == {topic: len(messages) for topic, messages in outputs.items()}
    assert outputs["tracks"] and outputs["masks"], "the node answered"
    assert [s.msg.state for s in outputs["command_status"]][-1] == 2, "the demo stopped its command"
    tracked = {stamp_ns(o.msg.header) for o in outputs["tracks"]}
    assert summary["frames_tracked"] == len(tracked) <= FRAMES
    assert summary["groundings"] == len(outputs["targets"])
    assert summary["tracks"] == sorted({t.id for o in outputs["tracks"] for t in o.msg.tracks})
    with (out / "tracks.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == sum(len(o.msg.tracks) for o in outputs["tracks"])
    assert {int(r["stamp_ns"]) for r in rows} <= tracked
    printed = result.stdout
    assert f"frames: {FRAMES} published" in printed and f"{len(tracked)} tracked" in printed
    assert "latency, frame stamp -> masks received: p50" in printed
    assert f"tracks {len(outputs['tracks'])}" in printed


def test_offline_without_weights_it_stops_before_starting_a_node_naming_what_to_download(tmp_path):
    out = tmp_path / "demo_out"
    result = demo(["-o", str(out)], timeout_s=120, HF_HUB_OFFLINE="1", HOME=str(tmp_path))
    assert result.returncode == 1
    assert "hf download allenai/Molmo2-4B" in result.stderr
    assert "sam2.1_hiera_tiny.pt" in result.stderr and "sam2.checkpoint" in result.stderr
    assert not (out / "node.log").exists(), "no node was started"


def test_a_video_without_a_query_is_refused(tmp_path):
    result = demo(["clip.mp4", "-o", str(tmp_path)], timeout_s=60)
    assert result.returncode == 2 and "--query" in result.stderr


def test_a_video_it_cannot_read_is_named_before_anything_is_started_or_written(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    out = tmp_path / "demo_out"
    args = [str(tmp_path / "clip.mp4"), "--query", "the cup", "-o", str(out)]
    result = demo(args, timeout_s=120, HF_HUB_OFFLINE="1", HOME=str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    expected = f"videomolmo_demo: error: cannot open {tmp_path / 'clip.mp4'} (OpenCV could not read it)"
    assert result.stderr.strip().splitlines()[-1] == expected, result.stderr
    assert not out.exists(), "no output folder, no node"
