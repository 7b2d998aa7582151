"""replay_bag against perception_node (oracle doubles) over DDS, with bags written here by rosbags."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ros_harness import DOUBLES, START_S, NodeProcess
from rosbags.rosbag2 import StoragePlugin, Writer
from synthetic_video import default_scene, render

from videomolmo_ros.bag_replay import COMMAND_TYPE, main, make_typestore, read_outputs
from videomolmo_ros.mask_codec import decode_masks

FPS = 15.0
FRAMES = 20
IMAGE_TOPIC = "/camera/image_raw"


@pytest.fixture(scope="module")
def perception_node(tmp_path_factory):
    """One node for the module: starting one costs seconds; each replay stops its commands at the end."""
    process = NodeProcess(tmp_path_factory.mktemp("node") / "node.log", DOUBLES)
    assert process.wait_for_log("ready on", 60), process.log()
    yield process
    process.stop()


def write_bag(path: Path, storage: StoragePlugin, start_s: float, query: str | None, depth: bool = False) -> list[int]:
    """A bag of FRAMES synthetic frames (plus one command before them, depth beside them); the frames' stamps."""
    typestore = make_typestore()
    image_type = typestore.types["sensor_msgs/msg/Image"]
    header_type, time_type = typestore.types["std_msgs/msg/Header"], typestore.types["builtin_interfaces/msg/Time"]
    command_type = typestore.types[COMMAND_TYPE]
    stamps = [round((start_s + k / FPS) * 1e9) for k in range(FRAMES)]
    with Writer(path, version=9, storage_plugin=storage) as writer:
        images = writer.add_connection(IMAGE_TOPIC, image_type.__msgtype__, typestore=typestore)
        depths = writer.add_connection("/camera/depth/image_raw", image_type.__msgtype__, typestore=typestore)
        if query is not None:
            commands = writer.add_connection("/perception/command", COMMAND_TYPE, typestore=typestore)
            command = command_type(id="", query=query, mode=command_type.MODE_TRACK, action=0)
            writer.write(commands, stamps[0] - 1, typestore.serialize_cdr(command, COMMAND_TYPE))
        for k, stamp in enumerate(stamps):
            image, _ = render(default_scene(), k / FPS)
            header = header_type(stamp=time_type(*divmod(stamp, 1_000_000_000)), frame_id="bag_camera")
            msg = image_type(header, 240, 320, "rgb8", 0, 960, image.reshape(-1))
            writer.write(images, stamp, typestore.serialize_cdr(msg, image_type.__msgtype__))
            if depth:
                far = image_type(header, 240, 320, "16UC1", 0, 640, np.full(240 * 640, 7, np.uint8))
                writer.write(depths, stamp, typestore.serialize_cdr(far, image_type.__msgtype__))
    return stamps


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def check_outputs(out: Path, stamps: list[int], lockstep: bool) -> dict:
    outputs = read_outputs(out)
    [accepted, *_] = outputs["command_status"]
    assert accepted.msg.state == 0 and accepted.msg.query, outputs["command_status"]
    tracks, masks = outputs["tracks"], outputs["masks"]
    assert {stamp_ns(m.msg.header) for m in tracks} <= set(stamps)
    assert all(m.msg.header.frame_id == "bag_camera" for m in tracks + masks)
    if lockstep:  # the next frame only after the previous frame's tracks: none skipped
        assert sorted(stamp_ns(m.msg.header) for m in tracks) == stamps
    with_ids = [m.msg for m in masks if len(m.msg.ids)]
    assert with_ids, "the red disc is segmented"
    assert {stamp_ns(m.header) for m in with_ids} <= set(stamps)
    [mask] = decode_masks(bytes(with_ids[-1].data), with_ids[-1].height, with_ids[-1].width, 1)
    assert mask.sum() > 100
    assert [m.receive_ns for m in tracks] == sorted(m.receive_ns for m in tracks)
    return outputs


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP], ids=["sqlite3", "mcap"])
def test_lockstep_replay_records_outputs_stamped_with_the_bag_frames(perception_node, tmp_path, capsys, storage):
    start = START_S + 100 * storage.value  # stamps never go back between tests sharing the node
    stamps = write_bag(tmp_path / "bag", storage, start, "the red ball")
    out_storage = "sqlite3" if storage is StoragePlugin.MCAP else "mcap"  # each reader and writer once
    out = tmp_path / "out"
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "0", "--storage", out_storage, "--drain", "0.3"]
    assert main([*args, "--command-topic", "/perception/command"]) == 0, perception_node.log()
    outputs = check_outputs(out, stamps, lockstep=True)
    summary = capsys.readouterr().out
    assert f"frames sent: {FRAMES};" in summary
    for topic in ("tracks", "masks", "targets", "command_status"):
        assert f"{topic} {len(outputs[topic])}" in summary, summary
    assert outputs["command_status"][-1].msg.state == 2, "the replay stops the command it started"


def test_timed_replay_with_a_command_line_query_and_clock(perception_node, tmp_path, capsys):
    # Depth under the default topic name is played too; the node (no use_depth) does not subscribe.
    stamps = write_bag(tmp_path / "bag", StoragePlugin.MCAP, START_S + 500, None, depth=True)
    out = tmp_path / "out"
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "2", "--clock", "--command", "red", "--drain", "0.3"]
    assert main(args) == 0, perception_node.log()
    check_outputs(out, stamps, lockstep=False)
    assert "commands sent: 1" in capsys.readouterr().out


def test_a_missing_bag_exits_non_zero_with_the_reason(tmp_path):
    executable = shutil.which("replay_bag")
    assert executable, "replay_bag is not on PATH: source scripts/env.sh after scripts/setup"
    result = subprocess.run(
        [executable, str(tmp_path / "nope"), "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"no bag at {tmp_path / 'nope'}" in result.stderr


def test_an_unknown_topic_exits_non_zero_listing_the_bag_topics(tmp_path, capsys):
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, START_S, None)
    assert main([str(tmp_path / "bag"), "-o", str(tmp_path / "out"), "--image-topic", "/nope"]) == 1
    error = capsys.readouterr().err
    assert "topic /nope is not in the bag" in error and IMAGE_TOPIC in error


def test_no_node_exits_non_zero_saying_it_never_answered(tmp_path, capsys):
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, START_S, None)
    args = [str(tmp_path / "bag"), "-o", str(tmp_path / "out"), "--namespace", "/nobody", "--wait", "1"]
    assert main(args) == 1
    assert "perception_node never answered: nothing subscribed to /nobody/image" in capsys.readouterr().err
