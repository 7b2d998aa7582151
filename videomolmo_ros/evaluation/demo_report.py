"""What videomolmo_demo leaves behind: overlay.mp4, tracks.csv, summary.json and the printed summary. No ROS.

Made after the run from the frames it published (kept as JPEG) and the node's outputs as
recorded in the demo's output bag (bag_files.read_outputs), so the files show what a subscriber
received. Each frame of the video carries the newest outputs at or before its stamp, drawn with
the node's own debug overlay (a frame the node skipped shows the previous frame's tracks).
"""

import csv
import json
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from videomolmo_ros.contracts.frames import FrameMeta
from videomolmo_ros.evaluation.bag_files import RecordedOutput, stamp_ns
from videomolmo_ros.evaluation.metrics import latency_stats
from videomolmo_ros.evaluation.output_files import output_path, write_text
from videomolmo_ros.io.mask_codec import decode_masks
from videomolmo_ros.pipeline.debug_overlay import draw_overlay
from videomolmo_ros.pipeline.outputs import MasksOutput, Target, TargetsOutput, TrackSnapshot

CSV_COLUMNS = (
    "stamp_ns",
    "frame",
    "command_id",
    "track_id",
    "label",
    "state",
    "x",
    "y",
    "x0",
    "y0",
    "x1",
    "y1",
    "score",
)


@dataclass(frozen=True)
class SentFrame:
    """A frame the demo published: its index, its header stamp and the frame as JPEG."""

    index: int
    stamp_ns: int
    jpeg: bytes


@dataclass
class DemoSummary:
    """The numbers printed at the end, also written as summary.json."""

    source: str
    query: str
    frames_published: int
    publish_rate_hz: float
    width: int
    height: int
    frames_tracked: int = 0  # published frames with a tracks message
    tracks: list[int] = field(default_factory=list)  # track ids seen
    messages: dict[str, int] = field(default_factory=dict)  # recorded outputs per topic
    groundings: int = 0  # targets messages
    masks_latency_ms: dict[str, float] | None = None  # stamp -> masks received: p50, p90, max
    output_rate_hz: float = 0.0  # tracked frames per second of the run

    def text(self, out: Path) -> str:
        latency = self.masks_latency_ms
        late = f"p50 {latency['p50_ms']:.0f} ms, p90 {latency['p90_ms']:.0f} ms" if latency else "none arrived"
        return "\n".join(
            [
                f"source: {self.source}, {self.width}x{self.height}",
                f"frames: {self.frames_published} published at {self.publish_rate_hz:.1f} Hz, "
                f"{self.frames_tracked} tracked ({self.output_rate_hz:.1f} Hz)",
                f"query {self.query!r}: {self.groundings} groundings, {len(self.tracks)} track(s) "
                f"{self.tracks if self.tracks else ''}".rstrip(),
                f"latency, frame stamp -> masks received: {late}",
                "recorded: " + ", ".join(f"{topic} {count}" for topic, count in self.messages.items()),
                f"written: {out / 'overlay.mp4'}, {out / 'tracks.csv'}, {out / 'summary.json'}, {out / 'outputs'}",
            ]
        )


def summarize(summary: DemoSummary, frames: Sequence[SentFrame], outputs: dict[str, list[RecordedOutput]]) -> None:
    """Fill the summary's counts from the recorded outputs of the frames sent."""
    sent = {f.stamp_ns for f in frames}
    tracks = [o for o in outputs["tracks"] if stamp_ns(o.msg.header) in sent]
    summary.frames_tracked = len({stamp_ns(o.msg.header) for o in tracks})
    summary.tracks = sorted({t.id for o in tracks for t in o.msg.tracks})
    summary.messages = {topic: len(messages) for topic, messages in outputs.items()}
    summary.groundings = len(outputs["targets"])
    samples = [(stamp_ns(o.msg.header), o.receive_ns) for o in outputs["masks"] if stamp_ns(o.msg.header) in sent]
    summary.masks_latency_ms = asdict(latency_stats(samples)) if samples else None  # p50_ms, p90_ms, ...
    if len(frames) > 1 and summary.frames_tracked:
        span_s = (frames[-1].stamp_ns - frames[0].stamp_ns) / 1e9
        summary.output_rate_hz = summary.frames_tracked / span_s if span_s > 0 else 0.0


def write_files(
    out: Path, summary: DemoSummary, frames: Sequence[SentFrame], outputs: dict[str, list[RecordedOutput]]
) -> None:
    """overlay.mp4 (every frame published), tracks.csv (every track of every tracks message), summary.json;
    each whole or not at all (output_files)."""
    with output_path(out / "overlay.mp4") as path:
        write_overlay(path, frames, outputs, summary.publish_rate_hz)
    with output_path(out / "tracks.csv") as path:
        write_tracks_csv(path, frames, outputs["tracks"])
    write_text(out / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")


def write_overlay(
    path: Path, frames: Sequence[SentFrame], outputs: dict[str, list[RecordedOutput]], fps: float
) -> None:
    first = cv2.imdecode(np.frombuffer(frames[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path} (no mp4v encoder)")
    newest = {name: _by_stamp(outputs[name]) for name in ("tracks", "masks", "targets")}
    try:
        for frame in frames:
            rgb = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
            tracks, masks, targets = (_at(newest[name], frame.stamp_ns) for name in ("tracks", "masks", "targets"))
            drawn = draw_overlay(
                rgb,
                _snapshots(tracks.msg) if tracks else (),
                _masks_output(masks.msg) if masks else None,
                _targets_output(targets.msg) if targets else None,
            )
            writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))
    finally:
        writer.release()


def write_tracks_csv(path: Path, frames: Sequence[SentFrame], tracks: list[RecordedOutput]) -> int:
    """One row per track per tracks message of a frame sent; the number of rows."""
    index = {f.stamp_ns: f.index for f in frames}
    rows = 0
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for output in tracks:
            stamp = stamp_ns(output.msg.header)
            if stamp not in index:
                continue
            for t in output.msg.tracks:
                row = [stamp, index[stamp], output.msg.command_id, t.id, t.label, t.state, t.x, t.y, *_box(t), t.score]
                writer.writerow(row)
                rows += 1
    return rows


def _by_stamp(outputs: list[RecordedOutput]) -> tuple[list[int], list[RecordedOutput]]:
    """Outputs sorted by source stamp (the first received of a stamp kept), for lookups by frame."""
    first: dict[int, RecordedOutput] = {}
    for output in outputs:
        first.setdefault(stamp_ns(output.msg.header), output)
    stamps = sorted(first)
    return stamps, [first[s] for s in stamps]


def _at(table: tuple[list[int], list[RecordedOutput]], stamp: int) -> RecordedOutput | None:
    """The newest output at or before `stamp`."""
    stamps, outputs = table
    position = bisect_right(stamps, stamp)
    return outputs[position - 1] if position else None


def _meta(msg) -> FrameMeta:
    return FrameMeta(0, stamp_ns(msg.header), msg.header.frame_id)


def _box(track) -> tuple[float, float, float, float]:
    return track.box_x_min, track.box_y_min, track.box_x_max, track.box_y_max


def _snapshots(msg) -> tuple[TrackSnapshot, ...]:
    return tuple(TrackSnapshot(t.id, t.label, t.state, t.score, t.x, t.y, _box(t), 0) for t in msg.tracks)


def _masks_output(msg) -> MasksOutput:
    masks = decode_masks(bytes(msg.data), msg.height, msg.width, len(msg.ids))
    return MasksOutput(
        _meta(msg), msg.command_id, tuple(int(i) for i in msg.ids), tuple(masks), (msg.height, msg.width)
    )


def _targets_output(msg) -> TargetsOutput:
    targets = tuple(Target(t.object_id, t.label, t.x, t.y) for t in msg.targets)
    return TargetsOutput(_meta(msg), msg.command_id, "", targets)
