"""video_to_bag: video into rosbag2 with ground truth and commands; on DAVIS dog, replayed and scored by hand."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from bad_inputs import memory_ceiling, png_claiming, truncate
from PIL import Image
from real_footage import davis_root, davis_sequence
from ros_harness import NodeProcess
from rosbags.rosbag2 import Reader
from synthetic_video import default_scene, render
from truth_doubles import box_of

from videomolmo_ros.evaluation.bag_files import make_typestore, read_outputs
from videomolmo_ros.io.image_codec import decode_compressed
from videomolmo_ros.io.mask_codec import decode_masks
from videomolmo_ros.tools.bag_replay import main as replay_main
from videomolmo_ros.tools.video_bag import main

FRAMES = 6


def bag_messages(path: Path) -> dict[str, list]:
    typestore, messages = make_typestore(), {}
    with Reader(path) as reader:
        for connection, time_ns, data in reader.messages():
            msg = typestore.deserialize_cdr(data, connection.msgtype)
            messages.setdefault(connection.topic, []).append((time_ns, msg))
    return messages


def synthetic_dataset(root: Path) -> tuple[Path, Path]:
    """Frames and palette annotations (red disc = 1, blue = 2) named alike; frame 3 not annotated."""
    frames, annotations = root / "frames", root / "annotations"
    frames.mkdir()
    annotations.mkdir()
    for k in range(FRAMES):
        image, discs = render(default_scene(), k / 10)
        cv2.imwrite(str(frames / f"{k:05d}.png"), image[:, :, ::-1])
        if k != 3:
            labels = (discs["red"] * 1 + discs["blue"] * 2).astype(np.uint8)
            png = Image.frombytes("P", (320, 240), labels.tobytes())
            png.putpalette([0, 0, 0, 220, 30, 30, 30, 60, 220])
            png.save(annotations / f"{k:05d}.png")
    return frames, annotations


def test_frames_truth_and_commands_are_stamped_at_the_video_rate(tmp_path, capsys):
    frames, annotations = synthetic_dataset(tmp_path)
    out = tmp_path / "bag"
    args = [str(frames), "-o", str(out), "--fps", "10", "--start", "100", "--truth", str(annotations)]
    args += ["--command", "the red ball", "--command", "the blue ball", "--command-at", "0.25", "--frame-id", "cam"]
    assert main(args) == 0
    assert f"{FRAMES} frames at 10 Hz, {FRAMES - 1} ground-truth masks, 2 commands" in capsys.readouterr().out
    messages = bag_messages(out)
    stamps = [100_000_000_000 + k * 100_000_000 for k in range(FRAMES)]
    images = messages["/camera/image_raw"]
    assert [t for t, _ in images] == stamps
    assert all(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == t for t, m in images)
    assert np.array_equal(images[2][1].data.reshape(240, 320, 3), render(default_scene(), 0.2)[0])
    truth = messages["/ground_truth/masks"]
    assert [t for t, _ in truth] == [s for k, s in enumerate(stamps) if k != 3], "frame 3 has no annotation"
    _, gt = truth[-1]
    assert list(gt.ids) == [1, 2] and gt.header.frame_id == "cam"
    red, blue = decode_masks(bytes(gt.data), gt.height, gt.width, 2)
    discs = render(default_scene(), 0.5)[1]
    assert np.array_equal(red, discs["red"]) and np.array_equal(blue, discs["blue"])
    commands = messages["/command"]
    assert [(t, m.query, m.mode) for t, m in commands] == [
        (stamps[0] - 1, "the blue ball", 1),  # no --command-at: before the first frame
        (stamps[0] + 250_000_000, "the red ball", 1),
    ]


def test_two_videos_become_two_cameras_in_stamp_order(tmp_path, capsys):
    frames, annotations = synthetic_dataset(tmp_path)
    out = tmp_path / "bag"
    args = [str(frames), "-o", str(out), "--fps", "10", "--truth", str(annotations), "--camera-name", "head"]
    args += ["--camera", f"wrist={frames}", "--camera-truth", f"wrist={annotations}", "--max-frames", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "head: 4 frames at 10 Hz, 3 ground-truth masks; wrist: 4 frames at 10 Hz, 3 ground-truth masks" in printed
    with Reader(out) as reader:
        order = [(t, c.topic) for c, t, _ in reader.messages()]
    images = [(t, topic) for t, topic in order if topic.endswith("image_raw")]
    stamps = [k * 100_000_000 for k in range(4) for _ in range(2)]
    assert images == list(zip(stamps, ["/camera/image_raw", "/wrist/image_raw"] * 4, strict=True))
    messages = bag_messages(out)
    assert all(m.header.frame_id == "wrist" for _, m in messages["/wrist/image_raw"])
    for topic, camera in (("/ground_truth/masks", "head"), ("/wrist/ground_truth/masks", "wrist")):
        truth = messages[topic]
        assert [t for t, _ in truth] == [0, 100_000_000, 200_000_000], "frame 3 has no annotation"
        assert {m.camera for _, m in truth} == {camera}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--camera", "wrist=a", "--camera", "wrist=b"], "each --camera needs a name of its own"),
        (["--camera-truth", "wrist=a"], "--camera-truth for no --camera: wrist"),
        (["--camera", "two words=a"], "use NAME=PATH"),
    ],
)
def test_camera_options_that_cannot_make_a_bag_are_refused(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "-o", str(tmp_path / "bag"), *extra])
    assert message in capsys.readouterr().err


def test_two_davis_sequences_become_two_compressed_cameras(tmp_path):
    (dog, dog_truth), (swan, swan_truth) = davis_sequence("dog"), davis_sequence("blackswan")
    out = tmp_path / "bag"
    args = [str(dog), "-o", str(out), "--fps", "24", "--truth", str(dog_truth), "--compressed", "--max-frames", "3"]
    args += ["--image-topic", "/head/image_raw/compressed", "--truth-topic", "/head/ground_truth/masks"]
    args += ["--camera-name", "head", "--camera", f"wrist={swan}", "--camera-truth", f"wrist={swan_truth}"]
    assert main(args) == 0
    messages = bag_messages(out)
    for topic, frames in (("/head/image_raw/compressed", dog), ("/wrist/image_raw/compressed", swan)):
        [(_, first), *rest] = messages[topic]
        decoded = decode_compressed(first.format, bytes(first.data))
        original = np.asarray(Image.open(sorted(frames.glob("*.jpg"))[0]).convert("RGB"))
        assert len(rest) == 2 and np.abs(decoded.astype(int) - original).mean() < 4
    assert [m.camera for _, m in messages["/wrist/ground_truth/masks"]] == ["wrist"] * 3


def test_compressed_frames_decode_as_the_node_decodes_them(tmp_path):
    frames, _ = synthetic_dataset(tmp_path)
    assert main([str(frames), "-o", str(tmp_path / "bag"), "--compressed", "--storage", "sqlite3"]) == 0
    [(_, first), *_] = bag_messages(tmp_path / "bag")["/camera/image_raw"]
    decoded = decode_compressed(first.format, bytes(first.data))
    assert np.abs(decoded.astype(int) - render(default_scene(), 0.0)[0]).mean() < 3


def test_an_annotation_folder_naming_no_frame_is_refused(tmp_path, capsys):
    frames, annotations = synthetic_dataset(tmp_path)
    for png in annotations.glob("*.png"):
        png.rename(png.with_name(f"x{png.name}"))
    assert main([str(frames), "-o", str(tmp_path / "bag"), "--truth", str(annotations)]) == 1
    assert "no annotation in" in capsys.readouterr().err and not (tmp_path / "bag").exists()


def error_line(capsys) -> str:
    """The one line video_to_bag wrote to stderr (no traceback)."""
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize(
    ("name", "spoil", "problem"),
    [
        ("frames/00003.png", lambda p: p.write_bytes(b"not a png"), "not an image file"),
        ("frames/00004.png", lambda p: p.write_bytes(png_claiming(12_000, 12_000)), "12000x12000 pixels, more than"),
        ("annotations/00002.png", truncate, ""),
        ("annotations/00004.png", lambda p: p.write_bytes(png_claiming(12_000, 12_000)), "12000x12000 pixels"),
    ],
    ids=["frame-not-an-image", "frame-claiming-12000^2", "truncated-annotation", "annotation-claiming-12000^2"],
)
def test_a_damaged_frame_or_annotation_is_named_and_leaves_no_bag(tmp_path, capsys, name, spoil, problem):
    synthetic_dataset(tmp_path)
    spoil(tmp_path / name)
    out = tmp_path / "bag"
    with memory_ceiling():
        assert main([str(tmp_path / "frames"), "-o", str(out), "--truth", str(tmp_path / "annotations")]) == 1
    line = error_line(capsys)
    assert line.startswith(f"video_to_bag: error: {tmp_path / name}: ") and problem in line
    assert line.endswith(f"{out} not written (its partial output was removed)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations", "frames"], "no bag, no partial one"


def test_a_file_that_is_no_video_is_named_and_leaves_no_bag(tmp_path, capsys):
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    assert main([str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "bag")]) == 1
    assert f"cannot open {tmp_path / 'clip.mp4'}" in error_line(capsys)
    assert not (tmp_path / "bag").exists()


# ---------------------------------------------------------------- DAVIS dog: bag -> replay_bag -> score.json


def truth_node(tmp_path: Path, box: bool, sequences: str = "dog", cameras: tuple[str, ...] = ()) -> NodeProcess:
    """A node whose doubles answer with the truth of the DAVIS `sequences` (on `cameras`, default one)."""
    root = str(davis_root())
    overrides = {
        "pointer_backend": "truth_doubles:TruthPointerDouble",
        "propagator_backend": "truth_doubles:TruthPropagatorDouble",
        "TruthPointerDouble.davis_root": root,
        "TruthPointerDouble.sequences": sequences,
        "TruthPropagatorDouble.davis_root": root,
        "TruthPropagatorDouble.sequences": sequences,
        "TruthPropagatorDouble.box": box,
        **({"cameras.names": list(cameras)} if cameras else {}),
    }
    node = NodeProcess(tmp_path / f"node_box_{box}.log", overrides)
    assert node.wait_for_log("ready on", 60), node.log()
    return node


@pytest.fixture(scope="module")
def dog_bag(tmp_path_factory):
    frames, annotations = davis_sequence("dog")
    out = tmp_path_factory.mktemp("dog") / "bag"
    args = [str(frames), "-o", str(out), "--fps", "24", "--start", "50", "--truth", str(annotations)]
    assert main([*args, "--command", "the dog"]) == 0
    return out


def replay_and_score(bag: Path, node: NodeProcess, out: Path) -> dict:
    try:
        assert replay_main([str(bag), "-o", str(out), "--rate", "0", "--drain", "0.3", "--timeout", "30"]) == 0
    finally:
        assert node.stop() == 0, node.log()
    [command] = json.loads((out / "score.json").read_text())["commands"]
    return command


def test_replaying_davis_dog_scores_box_masks_as_a_hand_check_does(dog_bag, tmp_path):
    command = replay_and_score(dog_bag, truth_node(tmp_path, box=True), tmp_path / "out")
    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0 for p in sorted(davis_sequence("dog")[1].glob("*.png"))]
    stamps = [50_000_000_000 + round(k * 1e9 / 24) for k in range(len(masks))]
    assert command["query"] == "the dog" and command["frames_without_masks"] == []
    union = {int(stamp): scores for stamp, scores in command["union_frames"].items()}
    assert sorted(union) == stamps, "lockstep: every frame answered"
    hand = [m.sum() / box_of(m).sum() for m in masks]  # the true mask inside its box: IoU = area ratio
    # Frames tracked before the first grounding returned (lockstep waits for tracks, not groundings)
    # are answered without masks; every frame after it is scored exactly.
    first = next(k for k, s in enumerate(stamps) if union[s]["j"] > 0)
    assert all(union[s]["j"] == 0.0 for s in stamps[:first])
    for k in range(first, len(masks)):
        assert union[stamps[k]]["j"] == pytest.approx(hand[k], abs=1e-9), k
    assert command["objects"]["1"]["j"] == pytest.approx(np.mean([0.0] * first + hand[first:]), abs=1e-9)
    assert command["pointing"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}, "points lie on the dog"
    assert command["frame_counts"]["exact"] == 1.0 and command["id_switches"] == 0


def test_replaying_davis_dog_with_the_true_masks_scores_one_on_every_answered_frame(dog_bag, tmp_path):
    command = replay_and_score(dog_bag, truth_node(tmp_path, box=False), tmp_path / "out")
    scores = [command["union_frames"][stamp] for stamp in sorted(command["union_frames"], key=int)]
    first = next(k for k, s in enumerate(scores) if s["j"] > 0)  # the first frame after the first grounding
    assert len(scores) == 60 and all(s["j"] == 0.0 for s in scores[:first])
    assert all(s == {"j": 1.0, "f": 1.0, "jf": 1.0} for s in scores[first:]), "J&F = 1 from the first grounding on"
    assert command["masks"]["jf"] == pytest.approx((60 - first) / 60)
    outputs = read_outputs(tmp_path / "out")
    assert all(m.msg.header.frame_id == "camera" for m in outputs["masks"])


# ---------------------------------------------------------------- two DAVIS sequences as two cameras, scored per camera

TWO_CAMERA_FRAMES = 12
SEQUENCES = {"head": "dog", "wrist": "blackswan"}  # camera: the DAVIS sequence it films


def davis_bag(out: Path, sequence: str, start_s: float, *extra: str) -> None:
    frames, truth = davis_sequence(sequence)
    args = [str(frames), "-o", str(out), "--fps", "24", "--max-frames", str(TWO_CAMERA_FRAMES), "--truth", str(truth)]
    assert main([*args, "--start", str(start_s), *extra]) == 0


def test_a_two_camera_davis_bag_scores_each_camera_as_a_replay_of_its_sequence_alone(tmp_path):
    frames, truth = davis_sequence("blackswan")
    davis_bag(
        tmp_path / "two",
        "dog",
        50,
        "--camera-name",
        "head",
        "--camera",
        f"wrist={frames}",
        "--camera-truth",
        f"wrist={truth}",
    )
    for start, sequence in enumerate(SEQUENCES.values(), 2):  # each alone, stamped after the two-camera bag
        davis_bag(tmp_path / sequence, sequence, 50 * start)
    node = truth_node(tmp_path, box=True, sequences=",".join(SEQUENCES.values()), cameras=tuple(SEQUENCES))
    replay = ["--rate", "0", "--drain", "0.3", "--timeout", "30", "--command", "the animal"]
    # The bag's first camera (video_to_bag's /camera/image_raw, its truth on /ground_truth/masks) is head.
    cameras = ["--camera", "head=/camera/image_raw", "--camera", "wrist=/wrist/image_raw"]
    try:
        assert replay_main([str(tmp_path / "two"), "-o", str(tmp_path / "two_out"), *replay, *cameras]) == 0
        for sequence in SEQUENCES.values():  # each alone, into the node's first camera
            assert replay_main([str(tmp_path / sequence), "-o", str(tmp_path / f"{sequence}_out"), *replay]) == 0
    finally:
        assert node.stop() == 0, node.log()
    for camera, sequence in SEQUENCES.items():
        report = json.loads((tmp_path / "two_out" / f"score_{camera}.json").read_text())
        truth_topic = "/ground_truth/masks" if camera == "head" else "/wrist/ground_truth/masks"
        assert (report["camera"], report["truth_topic"]) == (camera, truth_topic)
        assert report["frames_annotated"] == TWO_CAMERA_FRAMES
        [both] = report["commands"]
        [alone] = json.loads((tmp_path / f"{sequence}_out" / "score.json").read_text())["commands"]
        scores = [[s[k] for k in sorted(s, key=int)] for s in (both["union_frames"], alone["union_frames"])]
        assert [len(s) for s in scores] == [TWO_CAMERA_FRAMES] * 2, "lockstep: every frame answered"
        # Frames tracked before the first grounding returned have no masks (J 0); every frame after it
        # is scored as in the replay of its sequence alone: the box of its own frame's true mask.
        segmented = [k for k in range(TWO_CAMERA_FRAMES) if scores[0][k]["j"] > 0 and scores[1][k]["j"] > 0]
        assert len(segmented) >= TWO_CAMERA_FRAMES // 3, (camera, scores)
        assert [scores[0][k] for k in segmented] == [pytest.approx(scores[1][k], abs=1e-9) for k in segmented]
        annotations = sorted(davis_sequence(sequence)[1].glob("*.png"))[:TWO_CAMERA_FRAMES]
        masks = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0 for path in annotations]
        hand = [m.sum() / box_of(m).sum() for m in masks]  # the true mask inside its box: IoU = area ratio
        assert [scores[0][k]["j"] for k in segmented] == pytest.approx([hand[k] for k in segmented], abs=1e-9)
