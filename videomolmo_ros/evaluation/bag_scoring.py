"""A replay's ground truth (ObjectMasks in the played bag) and its score, without ROS: what replay_bag
writes into score.json, per camera with several."""

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from videomolmo_ros.evaluation.bag_files import (
    DEFAULT_TRUTH_TOPIC,
    STATUS_ACCEPTED,
    TRUTH_TYPE,
    ReplayError,
    ReplaySummary,
    bag_messages,
    camera_truth_topic,
    checked_type,
    decode_message,
    frame_problem,
    make_typestore,
    open_bag,
    read_outputs,
    stamp_ns,
)
from videomolmo_ros.evaluation.output_files import write_text
from videomolmo_ros.evaluation.scoring import MasksAnswer, OutputScores, TargetsAnswer, score_outputs
from videomolmo_ros.io.image_files import MAX_IMAGE_SIDE
from videomolmo_ros.io.mask_codec import decode_label_image, decode_masks


class LabelMasks(Mapping[int, np.ndarray]):
    """An ObjectMasks message's masks by id, decoded from its PNG when read: a long bag's stay PNG-sized."""

    def __init__(self, msg) -> None:
        self._ids = [int(i) for i in msg.ids]
        self._png, self._height, self._width = bytes(msg.data), msg.height, msg.width

    def __getitem__(self, object_id: int) -> np.ndarray:
        if object_id not in self._ids:
            raise KeyError(object_id)
        return decode_label_image(self._png, self._height, self._width) == self._ids.index(object_id) + 1

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def read_truth(path: Path, topic: str | None, camera: str = "") -> dict[int, LabelMasks] | None:
    """The bag's ground truth by frame stamp, checked before any frame is played; None when it has none.

    A topic named with --truth-topic must be in the bag; the default one may be absent. With `camera`,
    a message whose `camera` field names another camera is refused (a --camera given the wrong truth).
    """
    typestore = make_typestore()
    reader = open_bag(path)
    try:
        connections = [c for c in reader.connections if c.topic == (topic or DEFAULT_TRUTH_TOPIC)]
        if not connections:  # (rosbags reads every topic when given no connections)
            if topic:
                raise ReplayError(f"ground-truth topic {topic} is not in the bag")
            return None
        for connection in connections:
            checked_type(connection.topic, connection.msgtype, TRUTH_TYPE)
        truth: dict[int, LabelMasks] = {}
        for connection, _, data in bag_messages(reader, connections):
            msg = decode_message(typestore, data, TRUTH_TYPE, f"{path} on {connection.topic}")
            stamp = stamp_ns(msg.header)
            if camera and msg.camera and msg.camera != camera:
                raise ReplayError(
                    f"{path}: the ground truth on {connection.topic} is camera {msg.camera}'s, not {camera}'s: "
                    f"name its topic with --camera-truth {camera}=TOPIC"
                )
            if stamp in truth:
                raise ReplayError(f"{path}: two ground-truth messages for the frame stamped {stamp}: merge them")
            truth[stamp] = _checked_truth(msg, f"{path}: ground truth of the frame stamped {stamp}")
        return truth
    finally:
        reader.close()


def read_camera_truths(
    path: Path, truth_topic: str | None, cameras: Sequence[str], named: Mapping[str, str]
) -> dict[str, tuple[str, dict[int, LabelMasks]]]:
    """Each --camera's ground truth (its topic, masks by stamp); cameras without any are left out.

    Camera NAME's is on the topic `named` gives it (--camera-truth: must be in the bag), else on
    camera_truth_topic(NAME) (video_to_bag's name), else, for the first camera only, on `truth_topic`
    (the one camera's, as read_truth finds it).
    """
    reader = open_bag(path)
    in_bag = {c.topic for c in reader.connections}
    reader.close()
    truths = {}
    for index, camera in enumerate(cameras):
        own = camera_truth_topic(camera) if camera else ""
        topic = named.get(camera) or (own if own in in_bag else None)
        if topic is None and index > 0:
            continue
        if (truth := read_truth(path, topic or truth_topic, camera)) is not None:
            truths[camera] = (topic or truth_topic or DEFAULT_TRUTH_TOPIC, truth)
    return truths


def _checked_truth(msg, where: str) -> LabelMasks:
    """A ground-truth message that decodes (its PNG's header checked first), with an id per object."""
    if len(set(msg.ids)) < len(msg.ids):
        raise ReplayError(f"{where} repeats ids: {list(msg.ids)}")
    if problem := frame_problem(msg, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE):
        raise ReplayError(f"{where}: {problem[1]}")
    try:
        decode_masks(bytes(msg.data), msg.height, msg.width, len(msg.ids))
    except ValueError as error:
        raise ReplayError(f"{where} does not decode: {error}") from error
    return LabelMasks(msg)


def score(summary: ReplaySummary, truth: Mapping[int, LabelMasks]) -> OutputScores:
    """Score the outputs recorded in the summary's bag (of its camera's frames, with several) against the
    ground truth."""
    outputs = read_outputs(summary.output_bag)

    def ours(msg) -> bool:
        return not summary.camera or msg.camera == summary.camera

    masks = [
        MasksAnswer(o.msg.command_id, stamp_ns(o.msg.header), o.receive_ns, LabelMasks(o.msg))
        for o in outputs["masks"]
        if ours(o.msg)
    ]
    targets = [
        TargetsAnswer(o.msg.command_id, stamp_ns(o.msg.header), o.receive_ns, [(t.x, t.y) for t in o.msg.targets])
        for o in outputs["targets"]
        if ours(o.msg)
    ]
    queries = {
        o.msg.id: o.msg.query
        for o in outputs["command_status"]
        if o.msg.state == STATUS_ACCEPTED and (not summary.camera or summary.camera in o.msg.camera.split(","))
    }
    sent_ns = dict(zip(summary.frame_stamps, summary.frame_sent_ns, strict=True))
    try:
        return score_outputs(truth, masks, targets, sent_ns, queries)
    except ValueError as error:
        raise ReplayError(f"cannot score the replay (its outputs are in {summary.output_bag}): {error}") from error


def write_report(
    path: Path, bag: str, truth_topic: str, summary: ReplaySummary, truth: Mapping[int, LabelMasks]
) -> None:
    """Score the replay (of the summary's camera), write the JSON report to `path` and print the table."""
    result = score(summary, truth)
    camera = {"camera": summary.camera} if summary.camera else {}
    report = {"bag": bag, **camera, "truth_topic": truth_topic, **result.report()}
    write_text(path, json.dumps(report, indent=2) + "\n")
    of = f" of camera {summary.camera}" if summary.camera else ""
    print(f"score{of} against {truth_topic} -> {path}\n{result.table()}")
