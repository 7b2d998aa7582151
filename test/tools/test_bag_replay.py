"""replay_bag against perception_node (oracle doubles) over DDS, with bags written here by rosbags."""

import io
import json
import re
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PilImage
from ros_harness import DOUBLES, RELIABLE_CAMERA, START_S, NodeProcess, installed_executable
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from synthetic_video import default_scene, render

from videomolmo_ros.evaluation.bag_files import (
    CAMERA_INFO_TYPE,
    COMMAND_TYPE,
    COMPRESSED_TYPE,
    TRUTH_TYPE,
    ReplayError,
    Stream,
    TopicChoice,
    make_typestore,
    read_outputs,
    select_streams,
)
from videomolmo_ros.io.mask_codec import decode_masks, encode_masks
from videomolmo_ros.tools.bag_replay import main

FPS = 15.0
FRAMES = 20
IMAGE_TOPIC = "/camera/image_raw"
IMAGE_TYPE = "sensor_msgs/msg/Image"
TRUTH_TOPIC = "/ground_truth/masks"


@pytest.fixture(scope="module")
def perception_node(tmp_path_factory):
    """One node for the module: starting one costs seconds; each replay stops its commands at the end.
    Its camera is reliable with a deep queue: a timed replay on a busy machine loses no frame to DDS (a
    best-effort camera would, and replay_bag would rightly exit 3)."""
    process = NodeProcess(tmp_path_factory.mktemp("node") / "node.log", {**DOUBLES, **RELIABLE_CAMERA})
    assert process.wait_for_log("ready on", 60), process.log()
    yield process
    process.stop()


def write_bag(
    path: Path,
    storage: StoragePlugin,
    start_s: float,
    query: str | None,
    *,
    depth=False,
    truth=False,
    frames=FRAMES,
    as_png=False,
    odd_frames: dict[int, dict] | None = None,
) -> list[int]:
    """A bag of synthetic frames, raw or as PNG CompressedImage (plus one command before them;
    depth, ground truth of the two discs (red = 1, blue = 2) beside them); the frames' stamps.
    `odd_frames` {k: Image fields}: frame k (raw) declares these instead."""
    typestore = make_typestore()
    image_type = typestore.types["sensor_msgs/msg/Image"]
    command_type = typestore.types[COMMAND_TYPE]
    stamps = [round((start_s + k / FPS) * 1e9) for k in range(frames)]
    with Writer(path, version=9, storage_plugin=storage) as writer:
        frame_type = COMPRESSED_TYPE if as_png else image_type.__msgtype__
        images = writer.add_connection(IMAGE_TOPIC, frame_type, typestore=typestore)
        depths = writer.add_connection("/camera/depth/image_raw", image_type.__msgtype__, typestore=typestore)
        truths = writer.add_connection(TRUTH_TOPIC, TRUTH_TYPE, typestore=typestore) if truth else None
        if query is not None:
            commands = writer.add_connection("/perception/command", COMMAND_TYPE, typestore=typestore)
            command = command_type(id="", query=query, mode=command_type.MODE_TRACK, action=0, camera="")
            writer.write(commands, stamps[0] - 1, typestore.serialize_cdr(command, COMMAND_TYPE))
        for k, stamp in enumerate(stamps):
            image, discs = render(default_scene(), k / FPS)
            header = bag_header(typestore, stamp, "bag_camera")
            odd = (odd_frames or {}).get(k, {})
            writer.write(images, stamp, frame_message(typestore, header, image, as_png, odd))
            if depth:
                far = image_type(header, 240, 320, "16UC1", 0, 640, np.full(240 * 640, 7, np.uint8))
                writer.write(depths, stamp, typestore.serialize_cdr(far, image_type.__msgtype__))
            if truths:
                writer.write(truths, stamp, truth_message(typestore, header, discs, ""))
    return stamps


def bag_header(typestore, stamp: int, frame_id: str):
    time = typestore.types["builtin_interfaces/msg/Time"](*divmod(stamp, 1_000_000_000))
    return typestore.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def frame_message(typestore, header, image: np.ndarray, as_png: bool, odd: dict | None = None) -> bytes:
    """A serialized Image (rgb8, declaring `odd`'s fields instead where given) or PNG CompressedImage."""
    if as_png:
        encoded = io.BytesIO()
        PilImage.fromarray(image).save(encoded, "PNG")
        msg = typestore.types[COMPRESSED_TYPE](header, "png", np.frombuffer(encoded.getvalue(), np.uint8))
        return typestore.serialize_cdr(msg, COMPRESSED_TYPE)
    height, width = image.shape[:2]
    fields = {"height": height, "width": width, "encoding": "rgb8", "step": 3 * width, "data": image.reshape(-1)}
    msg = typestore.types["sensor_msgs/msg/Image"](header=header, is_bigendian=0, **{**fields, **(odd or {})})
    return typestore.serialize_cdr(msg, "sensor_msgs/msg/Image")


def truth_message(typestore, header, discs: dict[str, np.ndarray], camera: str) -> bytes:
    """The discs as ground truth: red = 1, blue = 2."""
    height, width, png = encode_masks([discs["red"], discs["blue"]])
    ids, data = np.array([1, 2], np.uint32), np.frombuffer(png, np.uint8)
    gt = typestore.types[TRUTH_TYPE](header, "", camera, ids, height, width, "png", data)
    return typestore.serialize_cdr(gt, TRUTH_TYPE)


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
    assert not (out / "score.json").exists(), "no ground truth, no score"


def test_a_compressed_camera_bag_plays_into_a_compressed_camera(tmp_path, capsys):
    # A namespace of its own: the module's node may still run in this DDS domain, and it would answer
    # the bag's command too and report diagnostics for a camera of the same name.
    overrides = {**DOUBLES, "cameras.main.transport": "compressed"}
    node = NodeProcess(tmp_path / "node.log", overrides, namespace="/compressed")
    try:
        assert node.wait_for_log("main <- image (compressed)", 60), node.log()
        stamps = write_bag(tmp_path / "bag", StoragePlugin.MCAP, START_S, "the red ball", as_png=True)
        out = tmp_path / "out"
        args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "0", "--drain", "0.3", "--namespace", "/compressed"]
        assert main(args) == 0, node.log()
        check_outputs(out, stamps, lockstep=True)
        assert f"frames sent: {FRAMES};" in capsys.readouterr().out
    finally:
        node.stop()


def test_a_bag_with_ground_truth_is_scored(perception_node, tmp_path, capsys):
    # Two commands: the bag's names both discs, the command line's only the red one. Stamped before
    # every other test's bag, so the node restarts on the first frame (as for a looping bag) and no
    # context window mixes in another test's frames: J&F does not depend on the order of the tests.
    frames = 2 * FRAMES  # the frames before the first grounding (a few) weigh less
    stamps = write_bag(
        tmp_path / "bag", StoragePlugin.MCAP, 10.0, "the red and the blue ball", truth=True, frames=frames
    )
    out = tmp_path / "out"
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "0", "--command", "the red ball", "--drain", "0.3"]
    assert main(args) == 0, perception_node.log()
    report = json.loads((out / "score.json").read_text())
    assert (report["truth_topic"], report["frames_annotated"], report["annotations_not_played"]) == (
        TRUTH_TOPIC,
        frames,
        [],
    )
    commands = {c["query"]: c for c in report["commands"]}
    both, red = commands["the red and the blue ball"], commands["the red ball"]
    masks = read_outputs(out)["masks"]
    segmented = {}  # per command, the frames whose masks hold its objects
    assert both["idf1"] >= 0.9, "each ball under its one id (the red ball's command leaves the blue one out)"
    for command in (both, red):
        assert (command["frames_scored"], command["frames_without_masks"]) == (frames, []), "lockstep"
        assert command["id_switches"] == 0
        assert 0 < command["masks_latency"]["p50_ms"] < 5000
        first = {}  # the scorer takes a frame's first answer
        for m in masks:
            if m.msg.command_id == command["command_id"]:
                first.setdefault(stamp_ns(m.msg.header), m.msg)
        segmented[command["query"]] = {stamp for stamp, msg in first.items() if len(msg.ids)}
        share = len(segmented[command["query"]]) / frames
        assert share >= 0.5, "the oracle grounds the discs within the first frames"
        # Its masks are the discs exactly: J = F = 1 from the first grounding on, 0 before.
        assert command["objects"]["1"] == pytest.approx({"j": share, "f": share, "jf": share})
    assert both["objects"]["2"] == both["objects"]["1"] == both["masks"]
    assert red["objects"]["2"] == {"j": 0.0, "f": 0.0, "jf": 0.0}, "the blue disc is not asked for"
    # Union J of the red-only command: the red disc's share of both discs' area where it is segmented.
    discs = [render(default_scene(), k / FPS)[1] for k in range(frames)]
    red_share = [d["red"].sum() / (d["red"] | d["blue"]).sum() for d in discs]
    in_red = [s in segmented["the red ball"] for s in stamps]
    assert red["union"]["j"] == pytest.approx(np.mean(np.where(in_red, red_share, 0.0)))
    # The oracle points at each named disc's centroid, always on it: every point is a hit.
    assert both["pointing"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert both["frame_counts"]["exact"] == 1.0
    # One point per frame for two discs: recall 1/2, F1 2/3; one short of two is still "close".
    assert red["pointing"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3})
    assert red["frame_counts"] == {"exact": 0.0, "close": 1.0}
    printed = capsys.readouterr().out
    assert f"score against {TRUTH_TOPIC} -> {out / 'score.json'}" in printed
    assert "J&F" in printed and "the red ball" in printed


def test_a_report_without_ground_truth_exits_non_zero(tmp_path, capsys):
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, START_S, None)
    assert main([str(tmp_path / "bag"), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "s.json")]) == 1
    assert f"the bag holds no ground truth on {TRUTH_TOPIC}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing was replayed"


def test_a_truth_topic_of_another_type_exits_non_zero(tmp_path, capsys):
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, START_S, None)
    assert main([str(tmp_path / "bag"), "-o", str(tmp_path / "out"), "--truth-topic", IMAGE_TOPIC]) == 1
    assert f"topic {IMAGE_TOPIC} holds sensor_msgs/msg/Image, not {TRUTH_TYPE}" in capsys.readouterr().err


def test_the_help_tells_the_ground_truth_convention(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "header stamp = that camera frame's stamp" in " ".join(capsys.readouterr().out.split())


def test_timed_replay_with_a_command_line_query_and_clock(perception_node, tmp_path, capsys):
    # Depth under the default topic name is played too; the node (no use_depth) does not subscribe.
    stamps = write_bag(tmp_path / "bag", StoragePlugin.MCAP, START_S + 500, None, depth=True)
    out = tmp_path / "out"
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "2", "--clock", "--command", "red", "--drain", "0.3"]
    assert main(args) == 0, perception_node.log()
    check_outputs(out, stamps, lockstep=False)
    assert "commands sent: 1" in capsys.readouterr().out


def test_a_missing_bag_exits_non_zero_with_the_reason(tmp_path):
    executable = installed_executable("replay_bag")
    result = subprocess.run(
        [str(executable), str(tmp_path / "nope"), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
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


def test_replay_bag_as_a_process_exits_0_after_every_complete_replay(perception_node, tmp_path):
    """Its spin thread is joined before exit: a live one aborts the process (exit 134) after the replay."""
    executable = str(installed_executable("replay_bag"))
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, START_S + 700, None, frames=5)
    for run in range(4):
        out = tmp_path / f"out{run}"
        args = [executable, str(tmp_path / "bag"), "-o", str(out), "--rate", "0", "--command", "red", "--drain", "0.2"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"run {run}: exit {result.returncode}\n{result.stderr[-2000:]}"
        assert "frames sent: 5;" in result.stdout


# ---------------------------------------------------------------- bad bags, lost frames, interruptions


def corrupt_pages_midway(bag: Path, pages: int = 3) -> None:
    """Overwrite a few pages in the middle of the bag's sqlite database with 0xFF, as a failing disk leaves them."""
    [database] = bag.glob("*.db3")
    data = bytearray(database.read_bytes())
    page = int.from_bytes(data[16:18], "big")  # the page size, from the database header
    start = len(data) // page // 2 * page
    data[start : start + pages * page] = b"\xff" * (pages * page)
    database.write_bytes(data)


def test_a_bag_damaged_midway_ends_in_one_line_no_output_and_the_command_stopped(perception_node, tmp_path, capsys):
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, START_S + 1000, None)
    corrupt_pages_midway(tmp_path / "bag")
    out = tmp_path / "out"
    perception_node.forget_log()
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "0", "--command", "the red ball", "--drain", "0.3"]
    assert main(args) == 1, perception_node.log()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"replay_bag: error: {tmp_path / 'bag'}: damaged after "), err
    [command_id] = re.findall(r"stopped the command\(s\) it started \((replay_bag-[0-9a-f]+)\)", err)
    assert err.strip().endswith(f"{out} not written (its partial output was removed)")
    assert perception_node.wait_for_log(f"command {command_id} stopped", 30), perception_node.log()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"], "no output bag, no partial one"


def test_frames_over_the_size_limit_are_not_sent_and_the_nodes_losses_are_reported(perception_node, tmp_path, capsys):
    # Frame 2 claims 10,000 x 10,000 pixels (its data is 16 bytes): never sent. Frame 4 has an encoding
    # the node does not decode: sent, and the node rejects it, which its diagnostics count.
    odd = {2: {"height": 10_000, "width": 10_000, "step": 30_000, "data": np.zeros(16, np.uint8)}}
    odd[4] = {"encoding": "no_such_encoding"}
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, START_S + 1100, "the red ball", frames=8, odd_frames=odd)
    out = tmp_path / "out"
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "0", "--timeout", "1", "--drain", "0.3"]
    assert main(args) == 3, perception_node.log()
    captured = capsys.readouterr()
    assert "frames sent: 7 (1 without tracks in time)" in captured.out, captured.out
    assert "frames of the bag NOT sent: 1 too_large" in captured.out
    assert "/camera/image_raw at 2100.133 s: 10000x10000, larger than 3840x2160" in captured.out
    assert "node: received 7 of 7 frames; " in captured.out and "frames_rejected_unsupported_encoding 1" in captured.out
    assert "LOST 1 frame(s) or output(s)" in captured.out
    assert captured.err.strip() == (
        f"replay_bag: incomplete: 1 frame(s) of the bag not sent, 1 lost by the node (see above; outputs in {out})"
    )
    assert len(read_outputs(out)["tracks"]) >= 6, "the output bag is complete and readable"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_replay_stops_its_command_and_leaves_no_output(perception_node, tmp_path, signum):
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, START_S + 1200 + 100 * (signum == signal.SIGTERM), None)
    out = tmp_path / "out"
    perception_node.forget_log()
    # At 0.01 of the bag's speed its 1.3 s last over two minutes: the signal comes mid-replay however
    # late the accepted line shows on a loaded machine (at 0.2 the replay once ended first, exit 0).
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "0.01", "--command", "the red ball"]
    # As from a terminal: a suite started in the background (CI, nohup) ignores SIGINT, and a child
    # inherits "ignored" (a tool keeps it, as a background job should); a handler is reset at exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen([str(installed_executable("replay_bag")), *args], stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert perception_node.wait_for_log("accepted: 'the red ball'"), perception_node.log()
        [command_id] = re.findall(r"command (replay_bag-[0-9a-f]+) accepted", perception_node.log())
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err.strip().splitlines() == [
        f"replay_bag: interrupted; stopped the command(s) it started ({command_id}); "
        f"{out} not written (its partial output was removed)"
    ]
    assert perception_node.wait_for_log(f"command {command_id} stopped", 30), perception_node.log()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"], "no output bag, no partial one"


# ---------------------------------------------------------------- several cameras in one bag

# name: (image topic, frames a second, first stamp after the bag's start, (width, height), PNG CompressedImage)
CAMERAS = {
    "head": ("/head/image_raw", 15.0, 0.0, (320, 240), False),
    "wrist": ("/wrist/image_raw/compressed", 10.0, 0.02, (256, 192), True),  # its outputs told apart by size too
}
TWO_CAMERAS = [arg for name, (topic, *_) in CAMERAS.items() for arg in ("--camera", f"{name}={topic}")]


def write_two_camera_bag(path: Path, start_s: float, frames: tuple[int, int] = (9, 6)) -> dict[str, list[int]]:
    """The CAMERAS' frames of the discs, their stamps interleaved, each with the discs as ground truth on
    /NAME/ground_truth/masks (camera NAME) and frame_id NAME_optical. The stamps of each camera's frames."""
    typestore = make_typestore()
    stamps, events = {}, []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for (name, (topic, fps, offset, _, as_png)), count in zip(CAMERAS.items(), frames, strict=True):
            images = writer.add_connection(topic, COMPRESSED_TYPE if as_png else IMAGE_TYPE, typestore=typestore)
            truths = writer.add_connection(f"/{name}{TRUTH_TOPIC}", TRUTH_TYPE, typestore=typestore)
            stamps[name] = [round((start_s + offset + k / fps) * 1e9) for k in range(count)]
            events += [(stamp, k, name, images, truths) for k, stamp in enumerate(stamps[name])]
        for stamp, k, name, images, truths in sorted(events, key=lambda event: event[:3]):
            _, fps, _, size, as_png = CAMERAS[name]
            image, discs = render(default_scene(*size), k / fps, *size)
            header = bag_header(typestore, stamp, f"{name}_optical")
            writer.write(images, stamp, frame_message(typestore, header, image, as_png))
            writer.write(truths, stamp, truth_message(typestore, header, discs, name))
    return stamps


@pytest.fixture(scope="module")
def two_camera_node(tmp_path_factory):
    """A node with cameras head (raw) and wrist (compressed), in a namespace of its own: the module's
    node in this DDS domain answers commands on /command and reports a camera on /image."""
    overrides = {**DOUBLES, "cameras.names": ["head", "wrist"], "cameras.wrist.transport": "compressed"}
    process = NodeProcess(tmp_path_factory.mktemp("cams") / "node.log", overrides, namespace="/cams")
    assert process.wait_for_log("wrist <- wrist/image (compressed)", 60), process.log()
    yield process
    process.stop()


def by_camera(outputs: list, camera: str) -> list:
    return [o.msg for o in outputs if o.msg.camera == camera]


def test_two_cameras_play_in_stamp_order_each_answered_and_scored_on_its_own(two_camera_node, tmp_path, capsys):
    stamps = write_two_camera_bag(tmp_path / "bag", START_S)
    out = tmp_path / "out"
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "0", "--drain", "0.3", "--namespace", "/cams"]
    assert main([*args, *TWO_CAMERAS, "--command", "the red ball"]) == 0, two_camera_node.log()
    outputs = read_outputs(out)
    [accepted, *_] = outputs["command_status"]
    assert accepted.msg.camera == "head,wrist", "a --command runs on every --camera"
    for camera, (_, _, _, (width, height), _) in CAMERAS.items():
        tracks, masks = by_camera(outputs["tracks"], camera), by_camera(outputs["masks"], camera)
        assert sorted({stamp_ns(m.header) for m in tracks}) == stamps[camera], "lockstep: each of its frames"
        assert {m.header.frame_id for m in tracks + masks} == {f"{camera}_optical"}
        assert {(m.width, m.height) for m in masks} == {(width, height)}
    # Lockstep in stamp order across cameras: each frame's tracks came before the next frame was sent.
    answered = list(dict.fromkeys((m.msg.camera, stamp_ns(m.msg.header)) for m in outputs["tracks"]))
    assert answered == sorted(((c, s) for c, ss in stamps.items() for s in ss), key=lambda frame: frame[1])
    printed = capsys.readouterr().out
    for camera, sent in stamps.items():
        assert f"camera {camera}: frames sent: {len(sent)}; commands sent: 1" in printed, printed
        assert f"camera {camera}: node: received {len(sent)} of {len(sent)} frames; " in printed, printed
        count = len(by_camera(outputs["tracks"], camera))
        assert re.search(rf"camera {camera}: outputs recorded: targets \d+, tracks {count}, masks \d+", printed)
        report = json.loads((out / f"score_{camera}.json").read_text())
        assert (report["camera"], report["truth_topic"]) == (camera, f"/{camera}{TRUTH_TOPIC}")
        assert report["frames_annotated"] == len(sent)
        [command] = report["commands"]
        assert (command["frames_scored"], command["frames_without_masks"]) == (len(sent), [])
        assert command["objects"]["1"]["j"] > 0, "the red disc of that camera's frames"
        assert f"score of camera {camera} against /{camera}{TRUTH_TOPIC} -> {out / f'score_{camera}.json'}" in printed
    assert not (out / "score.json").exists()


def test_two_cameras_timed_each_answered_with_its_own_frames_and_losses_counted_per_camera(
    two_camera_node, tmp_path, capsys
):
    stamps = write_two_camera_bag(tmp_path / "bag", START_S + 100)
    out = tmp_path / "out"
    args = [str(tmp_path / "bag"), "-o", str(out), "--rate", "1", "--drain", "0.3", "--namespace", "/cams"]
    # At camera rate a loaded machine may lose frames in transit (best-effort cameras): counted, exit 3.
    status = main([*args, *TWO_CAMERAS, "--command", "the red ball"])
    outputs, printed = read_outputs(out), capsys.readouterr().out
    lost = 0
    for camera, sent in stamps.items():
        answered = {stamp_ns(m.header) for m in by_camera(outputs["tracks"], camera)}
        assert answered and answered <= set(sent), "its own frames"
        line = re.search(rf"camera {camera}: node: received (\d+) of {len(sent)} frames; .*", printed)
        assert line, printed
        reported = re.search(r"LOST (\d+) frame", line[0])
        assert (int(reported[1]) if reported else 0) >= len(sent) - int(line[1]), line[0]
        lost += int(reported[1]) if reported else 0
    assert status == (3 if lost else 0), two_camera_node.log()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--camera", "head=/a", "--camera", "head=/b"], "each --camera needs a name of its own: head, head"),
        (["--camera", "head=/a", "--camera", "wrist=/a"], "two --camera play one topic: /a, /a"),
        (["--camera", "head=/a", "--camera-truth", "wrist=/t"], "--camera-truth for no --camera: wrist"),
        (["--camera", "head=/a", "--image-topic", "/b"], "--image-topic plays one camera"),
        (["--camera", "two words=/a"], "use NAME=TOPIC"),
    ],
)
def test_camera_options_that_cannot_make_a_replay_are_refused(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "bag"), "-o", str(tmp_path / "out"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_camera_topic_not_in_the_bag_exits_non_zero_listing_the_bag_topics(tmp_path, capsys):
    write_two_camera_bag(tmp_path / "bag", START_S, frames=(1, 1))
    args = [str(tmp_path / "bag"), "-o", str(tmp_path / "out"), "--camera", "head=/head/image_raw"]
    assert main([*args, "--camera", "wrist=/wrist/image_raw"]) == 1
    error = capsys.readouterr().err
    assert "replay_bag: error: topic /wrist/image_raw is not in the bag; its topics: " in error
    assert "/wrist/image_raw/compressed (sensor_msgs/msg/CompressedImage)" in error
    assert not (tmp_path / "out").exists()


def test_a_camera_given_another_cameras_ground_truth_exits_non_zero(tmp_path, capsys):
    write_two_camera_bag(tmp_path / "bag", START_S, frames=(1, 1))
    args = [str(tmp_path / "bag"), "-o", str(tmp_path / "out"), *TWO_CAMERAS]
    assert main([*args, "--camera-truth", f"head=/wrist{TRUTH_TOPIC}"]) == 1
    error = capsys.readouterr().err
    assert f"the ground truth on /wrist{TRUTH_TOPIC} is camera wrist's, not head's" in error, error
    assert not (tmp_path / "out").exists()


def test_a_first_camera_the_node_names_otherwise_exits_non_zero_before_any_command(two_camera_node, tmp_path, capsys):
    write_two_camera_bag(tmp_path / "bag", START_S + 200, frames=(2, 2))
    two_camera_node.forget_log()
    args = [str(tmp_path / "bag"), "-o", str(tmp_path / "out"), "--namespace", "/cams", "--command", "red"]
    cameras = ["--camera", "main=/head/image_raw", "--camera", "wrist=/wrist/image_raw/compressed"]
    assert main([*args, *cameras]) == 1
    error = capsys.readouterr().err
    assert "--camera main: the node's camera on /cams/image is head: give --camera in the order" in error, error
    assert not re.search(r"command \S+ accepted", two_camera_node.log()), "stopped before sending its command"
    assert not (tmp_path / "out").exists()


def test_each_camera_plays_the_depth_and_camera_info_beside_its_images_or_those_named(tmp_path):
    typestore = make_typestore()
    topics = {
        "/head/color/image_raw": IMAGE_TYPE,
        "/head/color/camera_info": CAMERA_INFO_TYPE,
        "/head/aligned_depth_to_color/image_raw": IMAGE_TYPE,
        "/wrist/image_raw/compressed": COMPRESSED_TYPE,
        "/wrist/depth/image_raw": IMAGE_TYPE,
        "/wrist/camera_info": CAMERA_INFO_TYPE,
        "/other/camera_info": CAMERA_INFO_TYPE,
    }
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, msgtype in topics.items():
            writer.add_connection(topic, msgtype, typestore=typestore)
    cameras = [("head", "/head/color/image_raw"), ("wrist", "/wrist/image_raw/compressed")]
    choice = TopicChoice("image", "depth", "camera_info", "command", camera=cameras)
    with Reader(tmp_path / "bag") as reader:
        plain = select_streams(reader, choice)
        named = select_streams(
            reader,
            replace(
                choice,
                camera_depth=[("head", "/head/aligned_depth_to_color/image_raw")],
                camera_info=[("wrist", "/other/camera_info")],
            ),
        )
        with pytest.raises(ReplayError, match="topic /head/depth is not in the bag"):
            select_streams(reader, replace(choice, camera_depth=[("head", "/head/depth")]))
    # The first camera into the node's image / depth / camera_info, the other into wrist/...
    head = Stream("/head/color/image_raw", "image", IMAGE_TYPE, "head")
    head_depth = Stream("/head/aligned_depth_to_color/image_raw", "depth", IMAGE_TYPE, "head")
    head_info = Stream("/head/color/camera_info", "camera_info", CAMERA_INFO_TYPE, "head")
    wrist = Stream("/wrist/image_raw/compressed", "wrist/image", COMPRESSED_TYPE, "wrist")
    wrist_depth = Stream("/wrist/depth/image_raw", "wrist/depth", IMAGE_TYPE, "wrist")
    wrist_info = Stream("/wrist/camera_info", "wrist/camera_info", CAMERA_INFO_TYPE, "wrist")
    other_info = Stream("/other/camera_info", "wrist/camera_info", CAMERA_INFO_TYPE, "wrist")
    assert plain == [head, head_info, wrist, wrist_depth, wrist_info], "depth and camera_info beside the images"
    assert named == [head, head_depth, head_info, wrist, wrist_depth, other_info]
