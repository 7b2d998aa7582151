"""The node's own costs per frame, side by side with what they are compared to, in one run.

    ./bench/run bench_pipeline [--frames 60]

- mask encoding: bytes and encode time of a published ObjectMasks frame (PNG label image) at
  640x480 and 1920x1080 with 1 and 8 objects: OpenCV's default PNG (adaptive row filters, the
  encoding before) against other levels, strategies and filters, and the one used now (no row
  filter, zlib's run-length strategy); the raw mono8 size for scale; decode time.
- node work per frame, the model step excluded (a propagator double returns precomputed masks):
  the image callback (rgb8 message data -> RGB array -> submit_frame), the tracking thread (newest
  frame copy, masks, tracks, geometry, handing outputs on) and the publishing (label image + PNG,
  what the node's publisher does per frame besides ROS serialisation), at 640x480 and 1920x1080
  with 1 and 8 objects; before (outputs published on the tracking thread, `publish_queue: 0`, with
  OpenCV's default PNG) and now (a publisher worker), measured in the same run, frames fed in
  lockstep; also on the real 1280x720 clips of ../shared/data when present (decoded once, fed as
  bgr8 messages, one box object of a ninth of the frame); next to a SAM2 hiera-t step at 256 px on
  this CPU (random weights, through the shipped backend).
- the debug overlay (drawn while `debug_image` has a subscriber): masks, boxes, points and labels
  drawn on a frame copy, per frame at 640x480 and 1920x1080 with 1 and 8 objects, next to the same
  SAM2 step (the overlay runs on the publisher worker: it costs camera rate only when it is slower
  than the tracker).
- memory: process RSS and live Python objects after 100 and after 10,000 frames (must stay flat).
"""

import argparse
import gc
import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from support import default_scene, real_clips, render

from videomolmo_ros.contracts.frames import Frame, FrameMeta
from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingResult, ObjectMask
from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.io import mask_codec
from videomolmo_ros.io.image_codec import decode_image, encode_image, to_rgb8
from videomolmo_ros.io.mask_geometry import interior_point, mask_box
from videomolmo_ros.pipeline.commands import CommandRequest
from videomolmo_ros.pipeline.debug_overlay import draw_overlay
from videomolmo_ros.pipeline.outputs import MasksOutput, Target, TargetsOutput, TrackSnapshot
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig
from videomolmo_ros.pipeline.track_manager import TrackState

CPU = torch.device("cpu")
SIZES = [(640, 480), (1920, 1080)]
OBJECTS = (1, 8)


class FixedPointer(Pointer):
    """One point per object: grounding cost out of the measurement."""

    def __init__(self, points):
        super().__init__(None, CPU)
        self.points = points

    def ground(self, window, query, mode):
        return GroundingResult(tuple(GroundedPoint(len(window) - 1, x, y, "disc") for x, y in self.points))


class DiscPropagator(MaskPropagator):
    """A precomputed mask per object: the model step costs nothing, what is left is the node's."""

    def __init__(self, masks):
        super().__init__(None, CPU)
        self.masks, self.ids = [torch.from_numpy(m) for m in masks], []

    def add_prompts(self, frame, prompts):
        self.ids += [i for i in prompts if i not in self.ids]

    def step(self, frame, object_ids=None):
        return {i: ObjectMask(self.masks[k % len(self.masks)]) for k, i in enumerate(self.ids)}

    def remove(self, ids):
        self.ids = [i for i in self.ids if i not in ids]

    def reset(self):
        self.ids.clear()


class EncodingSink:
    """Does what the node's publisher does per frame besides ROS serialisation: encode the masks
    (with OpenCV's default PNG options when `before`, as the node did before)."""

    def __init__(self, before: bool = False):
        self.before = before
        self.frames = 0
        self.seconds: list[float] = []
        self.done = threading.Condition()

    def publish_targets(self, output):
        pass

    def publish_tracks(self, output):
        pass

    def publish_masks(self, output):
        start = time.perf_counter()
        if self.before:
            cv2.imencode(".png", mask_codec.label_image(output.masks, output.shape), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        else:
            mask_codec.encode_masks(output.masks, output.shape)
        self.seconds.append(time.perf_counter() - start)
        with self.done:
            self.frames += 1
            self.done.notify_all()

    def problem(self, key, message):
        pass


def discs(width: int, height: int, count: int) -> tuple[np.ndarray, list[np.ndarray], list[tuple[float, float]]]:
    """A frame and `count` disc masks spread over it (the scene's red disc, shifted), with their centres."""
    scene = default_scene(width, height)
    image, masks = render(scene, 0.0, width, height)
    step = width // (count + 1)
    shifts = [step * (k + 1) - round(scene[0].centre(0.0)[0]) for k in range(count)]
    centres = [(scene[0].centre(0.0)[0] + s, scene[0].centre(0.0)[1]) for s in shifts]
    return image, [np.roll(masks["red"], s, axis=1) for s in shifts], centres


def png_table() -> None:
    """Bytes and encode time of one frame's label image, by PNG options."""
    options = [
        ("OpenCV default, level 1 (before)", [cv2.IMWRITE_PNG_COMPRESSION, 1]),
        ("default filters, level 6", [cv2.IMWRITE_PNG_COMPRESSION, 6]),
        ("no filter, level 1", mask_codec.png_parameters(1, cv2.IMWRITE_PNG_STRATEGY_DEFAULT)),
        ("no filter, RLE, level 6", mask_codec.png_parameters(6)),
        ("Up filter, RLE, level 1", mask_codec.png_parameters(1, row_filter=cv2.IMWRITE_PNG_FILTER_UP)),
        ("no filter, RLE, level 1 (now)", mask_codec.png_parameters(1)),
    ]
    print("mask frame as published: PNG label image, by encoder options (bytes, encode ms: median of 20)")
    header = " ".join(f"{f'{w}x{h} {n} obj':>20}" for w, h in SIZES for n in OBJECTS)
    print(f"{'':<32} {header}")
    labels = {(w, h, n): mask_codec.label_image(discs(w, h, n)[1]) for w, h in SIZES for n in OBJECTS}
    for name, params in options:
        cells = []
        for image in labels.values():
            size = len(cv2.imencode(".png", image, params)[1])
            seconds = median_time(lambda image=image, params=params: cv2.imencode(".png", image, params), 20)
            cells.append(f"{size:>9d} B {seconds * 1e3:6.2f} ms")
        print(f"{name:<32} {' '.join(cells)}")
    raw = " ".join(f"{w * h:>9d} B {'':>9}" for w, h in SIZES for _ in OBJECTS)
    print(f"{'raw mono8, for scale':<32} {raw}")
    decode = []
    for (w, h, n), image in labels.items():
        _, _, data = mask_codec.encode_masks([image == k for k in range(1, n + 1)], (h, w))
        seconds = median_time(lambda d=data, w=w, h=h, n=n: mask_codec.decode_masks(d, h, w, n), 20)
        decode.append(f"{'':>12}{seconds * 1e3:6.2f} ms")
    print(f"{'decode (now)':<32} {' '.join(decode)}")


def median_time(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class TimedTracking:
    """Times what the tracking thread does per frame besides waiting: the newest frame copy and the stage's step."""

    def __init__(self, pipeline: PerceptionPipeline):
        self.seconds: list[float] = []
        stage, stream = pipeline._stage, pipeline.stream
        track, latest = stage.track, stream.latest
        self._copy = 0.0

        def timed_latest():
            start = time.perf_counter()
            frame = latest()
            self._copy = time.perf_counter() - start
            return frame

        def timed_track(frame):
            start = time.perf_counter()
            track(frame)
            self.seconds.append(self._copy + time.perf_counter() - start)

        stream.latest, stage.track = timed_latest, timed_track


def clip_scene(images: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[float, float]]]:
    """A real clip's frames with one box object of a ninth of the frame (its masks are the model's, not measured)."""
    height, width = images[0].shape[:2]
    box = np.zeros((height, width), bool)
    box[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = True
    return images, [box], [(width / 2, height / 2)]


def node_work(
    width: int, height: int, objects: int, publish_queue: int, frames: int, clip: list[np.ndarray] | None = None
) -> tuple[float, float, float]:
    """Median ms per frame: image callback, tracking thread (model step excluded), publishing.
    Frames are the disc scene, or cycle through a real `clip` as bgr8 messages."""
    if clip is None:
        image, masks, centres = discs(width, height, objects)
        images, encoding = [image], "rgb8"
    else:
        images, masks, centres = clip_scene(clip)
        images, encoding = [np.ascontiguousarray(i[:, :, ::-1]) for i in images], "bgr8"
    sink = EncodingSink(before=not publish_queue)
    config = PipelineConfig(publish_queue=publish_queue)
    pipeline = PerceptionPipeline(config, CPU, FixedPointer(centres), DiscPropagator(masks), sink)
    tracking = TimedTracking(pipeline)
    pipeline.start()
    pipeline.submit_command(CommandRequest("c", "disc"))
    messages = [encode_image(image, encoding) for image in images]
    callback = []
    try:
        for k in range(frames + 1):
            h, w, step, data = messages[k % len(messages)]
            start = time.perf_counter()
            pipeline.submit_frame(to_rgb8(decode_image(encoding, h, w, step, data), encoding), k * 33_000_000, "cam")
            callback.append(time.perf_counter() - start)
            with sink.done:  # lockstep: the next frame once this one is published
                if not sink.done.wait_for(lambda k=k: sink.frames > k, 30):
                    raise RuntimeError(f"frame {k} was not published: {pipeline.counters.snapshot()}")
            if k == 0:
                time.sleep(0.3)  # the grounding lands: every later frame has its objects
                sink.seconds.clear()
                tracking.seconds.clear()
                callback.clear()
    finally:
        pipeline.close()
    publish = statistics.median(sink.seconds)
    track = statistics.median(tracking.seconds) - (publish if not publish_queue else 0.0)
    return statistics.median(callback), track, publish


def sam2_step_s(width: int, height: int) -> float:
    """One SAM2 hiera-t step at 256 px (random weights saved as a checkpoint, loaded by the backend)."""
    from sam2.build_sam import build_sam2_video_predictor

    from videomolmo_ros.backends.registry import create
    from videomolmo_ros.backends.sam2.loading import Sam2Options, config_name, hydra_overrides

    options = Sam2Options(image_size=256)
    overrides = hydra_overrides(options)
    model = build_sam2_video_predictor(config_name(options.config), None, device="cpu", hydra_overrides_extra=overrides)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "sam2.1_hiera_tiny_random.pt"
        torch.save({"model": model.state_dict()}, checkpoint)
        propagator = create("sam2", MaskPropagator, CPU, {"checkpoint": str(checkpoint), "image_size": 256})
    image, _, centres = discs(width, height, 1)
    frames = [Frame(FrameMeta(k, k * 33_000_000, "cam"), torch.from_numpy(image)) for k in range(5)]
    propagator.add_prompts(frames[0], {1: centres})
    propagator.step(frames[1])
    start = time.perf_counter()
    for frame in frames[2:]:
        propagator.step(frame)
    return (time.perf_counter() - start) / 3


def node_table(frames: int) -> None:
    print(f"\nnode work per frame, model step excluded (medians of {frames} frames fed in lockstep), ms:")
    print("callback = image callback; tracking = the tracking thread, which paces the camera rate once the")
    print("model is fast; publish = label image + PNG of the frame's masks (before: on the tracking thread, with")
    print("OpenCV's default PNG; now: the publisher worker, no row filter + RLE); critical = callback + tracking")
    print("(+ publish before), the work in line. Both run today's frame copy, geometry and image conversion.")
    before = f"{'before: track':>14} {'publish':>8} {'critical':>9}"
    head = f"{before} | {'now: callback':>14} {'tracking':>9} {'publish':>8} {'critical':>9}"
    print(f"{'size':>10} {'objs':>4} {'callback':>9} {head} {'crit. now/before':>17}")
    rows = [(f"{w}x{h:<5}", w, h, n, None) for w, h in SIZES for n in OBJECTS]
    rows += [(f"{Path(name).stem:>10}", *clip[0].shape[1::-1], 1, clip) for name, clip in real_clips().items()]
    for label, width, height, objects, clip in rows:
        cb0, track0, pub0 = node_work(width, height, objects, 0, frames, clip)
        cb1, track1, pub1 = node_work(width, height, objects, 32, frames, clip)
        before, now = cb0 + track0 + pub0, cb1 + track1
        print(
            f"{label} {objects:>4} {cb0 * 1e3:9.2f} {track0 * 1e3:14.2f} {pub0 * 1e3:8.2f} "
            f"{before * 1e3:9.2f} | {cb1 * 1e3:14.2f} {track1 * 1e3:9.2f} {pub1 * 1e3:8.2f} {now * 1e3:9.2f} "
            f"{now / before:17.2f}" + ("  (real clip)" if clip is not None else "")
        )
    step = sam2_step_s(640, 480)
    print(f"for scale: a SAM2 hiera-t step at 256 px, one object, on this CPU: {step * 1e3:.1f} ms")
    overlay_table(step)


def overlay_s(width: int, height: int, objects: int) -> float:
    """Median seconds of one debug overlay: `objects` discs with masks, boxes, points and long labels."""
    image, masks, _ = discs(width, height, objects)
    meta = FrameMeta(1, 0, "cam")
    tracks = []
    for k, mask in enumerate(masks, 1):
        box = mask_box(mask)
        x, y = interior_point(mask, box)
        tracks.append(TrackSnapshot(k, "the person in the green shirt", TrackState.TRACKED, 0.9, x, y, box, 0))
    ids = tuple(t.id for t in tracks)
    output = MasksOutput(meta, "c", ids, tuple(masks), (height, width))
    targets = TargetsOutput(meta, "c", "q", tuple(Target(t.id, "p", t.x, t.y) for t in tracks))
    return median_time(lambda: draw_overlay(image, tracks, output, targets), 15)


def overlay_table(step_s: float) -> None:
    print(
        "\ndebug overlay per frame (publisher worker, while debug_image is subscribed), median of 15, vs that SAM2 step"
    )
    print(f"{'size':>10} {'objs':>4} {'overlay ms':>11} {'overlay/step':>13}")
    for width, height in SIZES:
        for objects in OBJECTS:
            seconds = overlay_s(width, height, objects)
            print(f"{width}x{height:<5} {objects:>4} {seconds * 1e3:11.2f} {seconds / step_s:13.3f}")


def settled(pipeline: PerceptionPipeline) -> None:
    """Wait until the workers have caught up with a burst (no counter moved for a second)."""
    last = None
    while (now := pipeline.counters.snapshot()) != last:
        last = now
        time.sleep(1.0)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_after(counts: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(frames, process RSS, live Python objects) after each count of frames through one pipeline."""
    image, masks, centres = discs(320, 240, 1)
    config = PipelineConfig(publish_queue=32)
    pipeline = PerceptionPipeline(config, CPU, FixedPointer(centres), DiscPropagator(masks), EncodingSink())
    pipeline.start()
    pipeline.submit_command(CommandRequest("c", "disc"))
    sent, readings = 0, []
    for count in counts:
        while sent < count:
            pipeline.submit_frame(image, sent * 33_000_000, "cam")
            sent += 1
        settled(pipeline)
        gc.collect()
        readings.append((count, rss_bytes(), len(gc.get_objects())))
    pipeline.close()
    return readings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames timed per row of the node table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    png_table()
    node_table(args.frames)
    (_, rss_100, objects_100), (_, rss_10k, objects_10k) = memory_after((100, 10_000))
    print("\nmemory through one running pipeline (must stay flat)")
    print(f"{'':>14} {'100 frames':>11} {'10,000 frames':>14} {'ratio':>6}")
    print(f"{'RSS MB':>14} {rss_100 / 2**20:11.1f} {rss_10k / 2**20:14.1f} {rss_10k / rss_100:6.3f}")
    print(f"{'live objects':>14} {objects_100:11d} {objects_10k:14d} {objects_10k / objects_100:6.3f}")


if __name__ == "__main__":
    main()
