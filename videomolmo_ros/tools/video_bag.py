"""video_to_bag: a video file or image folder as a rosbag2 of camera frames, for replay_bag. No ROS needed.

Frames become sensor_msgs/Image (rgb8) or, with --compressed, CompressedImage (JPEG) at the
video's rate (an image folder's: --fps), stamped from --start. Optionally, beside them:

- ground truth from an annotation folder (DAVIS: one PNG per frame, named like the frame, or the
  k-th PNG for the k-th frame of a video file): grayscale 0/255 is one object (id 1), a palette
  or grey PNG of other values holds an object per value (its id); each as one
  videomolmo_ros/msg/ObjectMasks on /ground_truth/masks stamped like its frame, which replay_bag
  scores the replay against;
- GroundingCommands (--command "the dog", at --command-at seconds from the start, or before the
  first frame), which replay_bag sends as it plays.

Several cameras: each --camera NAME=VIDEO adds one, its frames on /NAME/image_raw (with
--compressed /NAME/image_raw/compressed) with frame_id NAME, and with --camera-truth NAME=FOLDER
its ground truth on /NAME/ground_truth/masks (camera field NAME); every camera's frames are
written in stamp order, each at its own rate from --start.

    video_to_bag ~/data/davis2016/JPEGImages/480p/dog --fps 24 -o dog_bag \\
        --truth ~/data/davis2016/Annotations/480p/dog --command "the dog"
    replay_bag dog_bag -o dog_out --rate 0      # then dog_out/score.json
"""

import argparse
import heapq
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from videomolmo_ros.evaluation.bag_files import (
    ACTION_ADD,
    COMMAND_TYPE,
    COMPRESSED_TYPE,
    DEFAULT_TRUTH_TOPIC,
    IMAGE_TYPE,
    MODES,
    TRUTH_TYPE,
    ReplayError,
    camera_truth_topic,
    make_typestore,
    new_bag,
)
from videomolmo_ros.io.image_codec import JPEG_FORMAT, encode_jpeg
from videomolmo_ros.io.image_files import image_file
from videomolmo_ros.io.mask_codec import encode_masks
from videomolmo_ros.io.video_source import VideoSource
from videomolmo_ros.tools.tool_main import named, run_tool


class TruthFolder:
    """Annotation PNGs for the frames of a source: by frame name for an image folder, else in order."""

    def __init__(self, folder: Path, frame_names: list[str] | None):
        if not folder.is_dir():
            raise ReplayError(f"no annotation folder {folder}")
        pngs = sorted(folder.glob("*.png"))
        if not pngs:
            raise ReplayError(f"{folder} holds no PNG annotations")
        by_name = {p.stem: p for p in pngs}
        self.paths = [by_name.get(name) for name in frame_names] if frame_names else pngs
        if frame_names and not any(self.paths):
            raise ReplayError(f"no annotation in {folder} is named like a frame ({frame_names[0]}.png, ...)")

    def objects(self, index: int, shape: tuple[int, int]) -> tuple[list[int], list[np.ndarray]] | None:
        """(ids, masks) annotated on frame `index` (of `shape`); None when it has no annotation."""
        path = self.paths[index] if index < len(self.paths) else None
        if path is None:
            return None
        with image_file(path) as png:
            if png.mode not in ("P", "L"):
                raise ReplayError(f"{path} is a {png.mode} image: annotations are palette or grayscale PNGs")
            if png.size[::-1] != shape:
                raise ReplayError(f"{path} is {png.width}x{png.height}, its frame {shape[1]}x{shape[0]}")
            labels, grey = np.asarray(png), png.mode == "L"
        values = [int(v) for v in np.unique(labels) if v]
        if grey and values == [255]:  # DAVIS 2016: 0 / 255, the one object
            return [1], [labels == 255]
        return values, [labels == v for v in values]


@dataclass(frozen=True)
class Camera:
    """One camera of the bag: its frames, their ground truth, and the topics and frame_id they go on."""

    name: str  # the ground truth's `camera` field ("" for the one camera of a one-camera bag)
    video: str
    source: VideoSource
    truth: TruthFolder | None
    image_topic: str
    truth_topic: str
    frame_id: str


def write_bag(args: argparse.Namespace, cameras: Sequence[Camera]) -> dict[str, int]:
    """Write the bag, every camera's frames in stamp order; how many messages of each topic went in."""
    typestore = make_typestore()
    image_type = COMPRESSED_TYPE if args.compressed else IMAGE_TYPE
    types = {c.image_topic: image_type for c in cameras} | {c.truth_topic: TRUTH_TYPE for c in cameras if c.truth}
    topics = {topic: topic for topic in types}
    if args.command:
        topics["command"], types["command"] = args.command_topic, COMMAND_TYPE
    header, stamp_type = typestore.types["std_msgs/msg/Header"], typestore.types["builtin_interfaces/msg/Time"]
    start_ns = round(args.start * 1e9)

    def serialize(msgtype: str, **fields) -> bytes:
        return typestore.serialize_cdr(typestore.types[msgtype](**fields), msgtype)

    with new_bag(Path(args.output), args.storage, typestore, topics, types) as writer:
        for query, at_s in zip(args.command, commands_times(args), strict=True):
            command = {"id": "", "query": query, "mode": MODES[args.mode], "action": ACTION_ADD, "camera": ""}
            writer.write("command", start_ns + round(at_s * 1e9), serialize(COMMAND_TYPE, **command))
        streams = [_stamped_frames(c, k, start_ns, args.max_frames) for k, c in enumerate(cameras)]
        totals = [min(filter(None, (c.source.frame_count, args.max_frames)), default=None) for c in cameras]
        total = None if None in totals else sum(totals)
        for stamp, k, index, rgb in tqdm(heapq.merge(*streams), total=total, unit="frame", desc="bag", disable=None):
            camera = cameras[k]
            head = header(stamp=stamp_type(*divmod(stamp, 1_000_000_000)), frame_id=camera.frame_id)
            writer.write(camera.image_topic, stamp, serialize(image_type, header=head, **_image_fields(rgb, args)))
            annotated = camera.truth.objects(index, rgb.shape[:2]) if camera.truth else None
            if annotated is not None:
                height, width, png = encode_masks(annotated[1], rgb.shape[:2])
                fields = {"ids": np.array(annotated[0], np.uint32), "height": height, "width": width}
                fields |= {
                    "format": "png",
                    "data": np.frombuffer(png, np.uint8),
                    "command_id": "",
                    "camera": camera.name,
                }
                writer.write(camera.truth_topic, stamp, serialize(TRUTH_TYPE, header=head, **fields))
        for camera in cameras:
            if not writer.counts[camera.image_topic]:
                raise ReplayError(f"{camera.video}: no frame could be read")
    return dict(writer.counts)


def _stamped_frames(
    camera: Camera, k: int, start_ns: int, max_frames: int
) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """(stamp, camera number, frame index, RGB) of the camera's frames at its rate: merged by stamp
    (then camera number) with the others', so the frame itself is never compared."""
    for index, rgb in enumerate(camera.source.frames()):
        if max_frames and index >= max_frames:
            return
        yield start_ns + round(index * 1e9 / camera.source.fps), k, index, rgb


def _image_fields(rgb: np.ndarray, args: argparse.Namespace) -> dict:
    if args.compressed:
        return {"format": JPEG_FORMAT, "data": np.frombuffer(encode_jpeg(rgb, args.jpeg_quality), np.uint8)}
    height, width = rgb.shape[:2]
    return {
        "height": height,
        "width": width,
        "encoding": "rgb8",
        "is_bigendian": 0,
        "step": width * 3,
        "data": np.ascontiguousarray(rgb).reshape(-1),
    }


def commands_times(args: argparse.Namespace) -> list[float]:
    """Each command's time from the start: --command-at in order, else 1 ns before the first frame."""
    return [*args.command_at, *[-1e-9] * (len(args.command) - len(args.command_at))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    description, epilog = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(
        prog="video_to_bag", description=description, epilog=epilog, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("video", help="video file or folder of images")
    parser.add_argument("-o", "--output", required=True, help="the new bag (a folder)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag format")
    parser.add_argument("--fps", type=float, default=0.0, help="the source's rate when it has none (image folder)")
    parser.add_argument("--start", type=float, default=0.0, help="stamp of the first frame, seconds")
    parser.add_argument("--max-frames", type=int, default=0, help="at most N frames (0: all)")
    parser.add_argument("--compressed", action="store_true", help="CompressedImage (JPEG) instead of raw rgb8")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1-100 with --compressed")
    parser.add_argument("--image-topic", default="/camera/image_raw", help="topic of the frames")
    parser.add_argument("--frame-id", default="camera", help="header frame_id of frames and ground truth")
    parser.add_argument("--truth", help="folder of annotation PNGs (DAVIS layout) to store as ground truth")
    parser.add_argument("--truth-topic", default=DEFAULT_TRUTH_TOPIC, help="topic of the ground truth")
    parser.add_argument("--command", action="append", default=[], help="a query to store as a command (repeat)")
    parser.add_argument(
        "--command-at", type=float, action="append", default=[], help="seconds from the start of each --command"
    )
    parser.add_argument("--command-topic", default="/command", help="topic of the commands")
    parser.add_argument("--mode", choices=tuple(MODES), default="track", help="mode of the commands")
    parser.add_argument(
        "--camera",
        type=named("PATH"),
        action="append",
        default=[],
        metavar="NAME=VIDEO",
        help="another camera: its frames on /NAME/image_raw, stamped from --start at its own rate (repeat)",
    )
    parser.add_argument(
        "--camera-truth",
        type=named("PATH"),
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="that camera's annotation PNGs, as ObjectMasks on /NAME/ground_truth/masks (camera: NAME)",
    )
    parser.add_argument("--camera-name", default="", help="the video's camera name (its ground truth's camera field)")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.camera]
    if len(set(names)) < len(names) or args.camera_name in names:
        parser.error("each --camera needs a name of its own")
    if unknown := sorted({name for name, _ in args.camera_truth} - set(names)):
        parser.error(f"--camera-truth for no --camera: {', '.join(unknown)}")
    if len(args.command_at) > len(args.command):
        parser.error("more --command-at than --command")
    if args.fps < 0 or args.max_frames < 0 or not 1 <= args.jpeg_quality <= 100:
        parser.error("--fps and --max-frames must be >= 0, --jpeg-quality 1-100")
    return args


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:

        def opened(video: str, truth: str | None) -> tuple[VideoSource, TruthFolder | None]:
            source = stack.enter_context(VideoSource(video, args.fps))
            return source, TruthFolder(Path(truth), source.frame_names) if truth else None

        first = opened(args.video, args.truth)
        cameras = [Camera(args.camera_name, args.video, *first, args.image_topic, args.truth_topic, args.frame_id)]
        truths = dict(args.camera_truth)
        for name, video in args.camera:  # /NAME/image_raw[/compressed], /NAME/ground_truth/masks, frame_id NAME
            image_topic = f"/{name}/image_raw" + ("/compressed" if args.compressed else "")
            truth_topic = camera_truth_topic(name)
            cameras.append(Camera(name, video, *opened(video, truths.get(name)), image_topic, truth_topic, name))
        topics = [t for c in cameras for t in (c.image_topic, c.truth_topic)]
        if len(set(topics)) < len(topics):
            raise ReplayError(f"two cameras on one topic: {', '.join(sorted(topics))}; rename a --camera")
        counts = write_bag(args, cameras)
    print(
        "; ".join(
            f"{c.name + ': ' if len(cameras) > 1 else ''}{counts.get(c.image_topic, 0)} frames at {c.source.fps:g} Hz, "
            f"{counts.get(c.truth_topic, 0) if c.truth else 0} ground-truth masks"
            for c in cameras
        )
        + f", {counts.get('command', 0)} commands -> {args.output}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool("video_to_bag", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
