"""The node's own costs, side by side with what they are compared to, in one run.

    . scripts/env.sh && python bench/bench_pipeline.py

- mask encoding: bytes of a published ObjectMasks frame (PNG label image) against a raw mono8
  image of the same size, and encode / decode times;
- pipeline overhead per frame (image conversion, buffering, tracks, masks, encoding: everything
  but the model) at 640x480 and 1920x1080, against the model step it wraps (a SAM2 hiera-t
  step at 256 px with random weights, through the shipped backend: the cheapest real mask step);
- memory: process RSS and live Python objects after 100 and after 10,000 frames (must stay flat).
"""

import gc
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "support"))
from synthetic_video import default_scene, render

from videomolmo_ros.backends.interfaces import GroundedPoint, GroundingResult, MaskPropagator, ObjectMask, Pointer
from videomolmo_ros.io import mask_codec
from videomolmo_ros.io.image_codec import decode_image, encode_image, to_rgb8
from videomolmo_ros.pipeline.commands import CommandRequest
from videomolmo_ros.pipeline.frame_buffer import Frame, FrameMeta
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig

CPU = torch.device("cpu")


class FixedPointer(Pointer):
    """One point on the first disc: grounding cost out of the measurement."""

    def __init__(self, xy):
        super().__init__(None, CPU)
        self.xy = xy

    def ground(self, window, query, mode):
        return GroundingResult((GroundedPoint(len(window) - 1, *self.xy, "disc"),))


class DiscPropagator(MaskPropagator):
    """A precomputed mask per object: the model step costs nothing, what is left is the node's."""

    def __init__(self, mask):
        super().__init__(None, CPU)
        self.mask, self.ids = torch.from_numpy(mask), set()

    def add_prompts(self, frame, prompts):
        self.ids |= set(prompts)

    def step(self, frame):
        return {i: ObjectMask(self.mask) for i in self.ids}

    def remove(self, ids):
        self.ids -= set(ids)

    def reset(self):
        self.ids.clear()


class EncodingSink:
    """Does what the node's sink does per frame: encode the masks."""

    def __init__(self):
        self.frames = 0
        self.done = threading.Event()

    def publish_targets(self, output):
        pass

    def publish_tracks(self, output):
        pass

    def publish_masks(self, output):
        mask_codec.encode_masks(output.masks, output.shape)
        self.frames += 1

    def problem(self, key, message):
        pass


def scene(width: int, height: int):
    discs = default_scene(width, height)
    image, masks = render(discs, 0.0, width, height)
    return image, masks["red"], discs[0].centre(0.0)


def mask_encoding(width: int, height: int) -> tuple[float, float, float]:
    _, red, _ = scene(width, height)
    _, _, data = mask_codec.encode_masks([red])
    start = time.perf_counter()
    for _ in range(20):
        mask_codec.encode_masks([red])
    encode_s = (time.perf_counter() - start) / 20
    start = time.perf_counter()
    for _ in range(20):
        mask_codec.decode_masks(data, height, width, 1)
    decode_s = (time.perf_counter() - start) / 20
    return len(data) / (width * height), encode_s, decode_s


def pipeline_overhead(width: int, height: int, frames: int = 60) -> float:
    """Seconds per frame for conversion + buffering + tracking bookkeeping + mask encoding."""
    image, red, centre = scene(width, height)
    sink = EncodingSink()
    pipeline = PerceptionPipeline(PipelineConfig(), CPU, FixedPointer(centre), DiscPropagator(red), sink)
    pipeline.start()
    pipeline.submit_command(CommandRequest("c", "disc"))
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    h, w, step, data = encode_image(bgr, "bgr8")
    pipeline.submit_frame(to_rgb8(decode_image("bgr8", h, w, step, data), "bgr8"), 0, "cam")
    time.sleep(0.5)  # the first grounding lands
    start, sent = time.perf_counter(), 0
    for k in range(1, frames + 1):
        target = sink.frames + 1  # before submitting: the worker may finish before the next line
        pipeline.submit_frame(to_rgb8(decode_image("bgr8", h, w, step, data), "bgr8"), k * 33_000_000, "cam")
        sent += 1
        while sink.frames < target:
            time.sleep(0.0002)
    elapsed = (time.perf_counter() - start) / sent
    pipeline.close()
    return elapsed


def sam2_step_s(width: int, height: int) -> float:
    """One SAM2 hiera-t step at 256 px (random weights saved as a checkpoint, loaded by the backend)."""
    from sam2.build_sam import build_sam2_video_predictor

    from videomolmo_ros.backends.registry import create
    from videomolmo_ros.backends.sam2.loading import Sam2Options, hydra_overrides

    options = Sam2Options(image_size=256)
    overrides = hydra_overrides(options)
    model = build_sam2_video_predictor(options.config, None, device="cpu", hydra_overrides_extra=overrides)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "sam2.1_hiera_tiny_random.pt"
        torch.save({"model": model.state_dict()}, checkpoint)
        propagator = create("sam2", MaskPropagator, CPU, {"checkpoint": str(checkpoint), "image_size": 256})
    image, _, centre = scene(width, height)
    frames = [Frame(FrameMeta(k, k * 33_000_000, "cam"), torch.from_numpy(image)) for k in range(5)]
    propagator.add_prompts(frames[0], {1: [centre]})
    propagator.step(frames[1])
    start = time.perf_counter()
    for frame in frames[2:]:
        propagator.step(frame)
    return (time.perf_counter() - start) / 3


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
    image, red, centre = scene(320, 240)
    pipeline = PerceptionPipeline(PipelineConfig(), CPU, FixedPointer(centre), DiscPropagator(red), EncodingSink())
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
    torch.set_num_threads(1)
    print("mask frame (one object) as published: PNG label image vs raw mono8")
    print(f"{'size':>10} {'bytes/raw':>10} {'encode ms':>10} {'decode ms':>10}")
    for width, height in [(640, 480), (1920, 1080)]:
        ratio, encode_s, decode_s = mask_encoding(width, height)
        print(f"{width}x{height:<5} {ratio:10.4f} {encode_s * 1e3:10.2f} {decode_s * 1e3:10.2f}")
    print("\nnode overhead per frame (everything but the model step) vs a SAM2 hiera-t step at 256 px, 1 object")
    print(f"{'size':>10} {'overhead ms':>12} {'SAM2 step ms':>13} {'overhead/step':>14}")
    for width, height in [(640, 480), (1920, 1080)]:
        overhead, step = pipeline_overhead(width, height), sam2_step_s(width, height)
        print(f"{width}x{height:<5} {overhead * 1e3:12.2f} {step * 1e3:13.1f} {overhead / step:14.3f}")
    (_, rss_100, objects_100), (_, rss_10k, objects_10k) = memory_after((100, 10_000))
    print("\nmemory through one running pipeline (must stay flat)")
    print(f"{'':>14} {'100 frames':>11} {'10,000 frames':>14} {'ratio':>6}")
    print(f"{'RSS MB':>14} {rss_100 / 2**20:11.1f} {rss_10k / 2**20:14.1f} {rss_10k / rss_100:6.3f}")
    print(f"{'live objects':>14} {objects_100:11d} {objects_10k:14d} {objects_10k / objects_100:6.3f}")


if __name__ == "__main__":
    main()
