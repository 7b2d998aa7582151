"""A pointer answering 1000 points a grounding, against the node tracking its 4 objects: the rate kept.

    ./bench/run bench_object_flood [--frames 30] [--fps 15]

The pipeline runs on a 640x480 scene of 4 coloured discs, the pointer answering on every grounding,
frames fed two ways: at camera rate (`--fps`, as a camera publishes: a busy tracker skips frames,
counted) and in lockstep (the next frame once the last is published: the pipeline's top speed).
Masks come from the tests' colour oracle (right objects, so the tracker behaves as with a good
model) and each step also runs the shipped SAM2 propagator on the same objects (the tests' tiny
random-weight model, 128 px), so the cost grows with the objects tracked as SAM2's does. Side by side in one run:

- "4 objects": one point per disc, the rate a 4-object command tracks at;
- "flood": the same 4 points then 996 on a grid ("all the grains of rice"), under the default caps
  (`max_objects_per_command` 8: up to four extra objects tried, the rest dropped and counted) and
  under `max_objects_per_command` 4 (the flood costs only matching).

The pointer answers at once, so groundings come as fast as the pipeline takes them: a worst case
for a flood (a real model grounds every second or so). A grid point on the background gets the
background's mask (as SAM2 segments the table under a stray point); that mask holds most of the
answer's points, so the tracker refuses it as a region between objects, not one (track_manager).
Printed: frames tracked per second, the ratio to the 4-object rate, tracks and points dropped
over the caps. Before the caps a flood made a track per point (1000 SAM2 objects a step); before
the region rule the background stayed tracked as a 5th object (0.66 / 0.81 of the 4-object rate).
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from bench_pipeline import EncodingSink, FixedPointer
from support import ColorOraclePropagatorDouble, MovingDisc, render, tiny_options, write_tiny_sam2

from videomolmo_ros.backends.sam2.loading import Sam2Options
from videomolmo_ros.backends.sam2.propagator import Sam2Propagator
from videomolmo_ros.pipeline.commands import CommandRequest
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig

CPU = torch.device("cpu")
WIDTH, HEIGHT, FLOOD = 640, 480, 1000
SCENE = [
    MovingDisc("red", 160, 120, 0.0, 1.0, 40),
    MovingDisc("green", 480, 120, 0.0, 1.0, 40),
    MovingDisc("blue", 160, 360, 0.0, 1.0, 40),
    MovingDisc("yellow", 480, 360, 0.0, 1.0, 40),
]


class Sam2CostedOracle(ColorOraclePropagatorDouble):
    """The colour oracle's masks, at the cost of a SAM2 step over the same objects."""

    def __init__(self, options: Sam2Options):
        super().__init__(None, CPU)
        self.sam2 = Sam2Propagator(options, CPU)

    def add_prompts(self, frame, prompts):
        self.sam2.add_prompts(frame, prompts)
        super().add_prompts(frame, prompts)

    def step(self, frame, object_ids=None):
        self.sam2.step(frame, object_ids)
        return super().step(frame, object_ids)

    def remove(self, object_ids):
        object_ids = list(object_ids)
        self.sam2.remove(object_ids)
        super().remove(object_ids)


def grid(count: int) -> list[tuple[float, float]]:
    columns = round((count * WIDTH / HEIGHT) ** 0.5)
    rows = -(-count // columns)
    return [((k % columns + 0.5) * WIDTH / columns, (k // columns + 0.5) * HEIGHT / rows) for k in range(count)]


def run(points: list[tuple[float, float]], config: PipelineConfig, options: Sam2Options, frames: int, fps: float):
    """Frames tracked per second after the first grounding (fed at `fps`, or in lockstep when 0), the
    tracks at the end, points dropped over the caps."""
    image = render(SCENE, 0.0, WIDTH, HEIGHT)[0]
    sink = EncodingSink()
    pipeline = PerceptionPipeline(config, CPU, FixedPointer(points), Sam2CostedOracle(options), sink)
    pipeline.start()
    pipeline.submit_command(CommandRequest("c", "disc"))
    try:
        publish(pipeline, sink, image, 0, 2)  # the first groundings land: the steady state is timed after
        start, first = time.perf_counter(), sink.frames
        if fps:
            for k in range(2, frames + 2):
                time.sleep(max(0.0, start + (k - 2) / fps - time.perf_counter()))
                pipeline.submit_frame(image, k * 33_000_000, "cam")
            publish(pipeline, sink, image, frames + 2, 1)  # a last frame in lockstep: all before it are done
        else:
            publish(pipeline, sink, image, 2, frames)
        rate = (sink.frames - first) / (time.perf_counter() - start)
        tracks = len(pipeline._stage.tracker.tracks("c"))
        dropped = pipeline.counters.snapshot().get("points_dropped_over_cap", 0)
    finally:
        pipeline.close()
    return rate, tracks, dropped


def publish(pipeline: PerceptionPipeline, sink: EncodingSink, image, first: int, count: int) -> None:
    """Feed frames `first`.. in lockstep: each once the last one was published (the newest is never skipped)."""
    for k in range(first, first + count):
        before = sink.frames
        pipeline.submit_frame(image, k * 33_000_000, "cam")
        with sink.done:
            if not sink.done.wait_for(lambda before=before: sink.frames > before, 120):
                raise RuntimeError(f"frame {k} was not published: {pipeline.counters.snapshot()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--fps", type=float, default=15.0, help="camera rate of the first table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    centres = [disc.centre(0.0) for disc in SCENE]
    flood = centres + grid(FLOOD - len(centres))
    with tempfile.TemporaryDirectory() as folder:
        options = Sam2Options(**tiny_options(write_tiny_sam2(Path(folder))))
        rows = [
            ("4 objects, a point each", centres, PipelineConfig()),
            ("flood, default caps (8 per command)", flood, PipelineConfig()),
            ("flood, max_objects_per_command 4", flood, PipelineConfig(max_objects_per_command=4)),
        ]
        print(f"{WIDTH}x{HEIGHT}, SAM2 tiny 128 px on CPU, one torch thread, {args.frames} frames")
        for fps, feed in ((args.fps, f"at {args.fps:g} frames/s, as a camera"), (0.0, "in lockstep")):
            print(f"\nfed {feed}:")
            print(f"{'':<38} {'tracked/s':>9} {'vs 4 objects':>13} {'tracks':>7} {'dropped over caps':>18}")
            base = None
            for name, points, config in rows:
                rate, tracks, dropped = run(points, config, options, args.frames, fps)
                base = base or rate
                print(f"{name:<38} {rate:9.2f} {rate / base:13.2f} {tracks:7d} {dropped:18d}")


if __name__ == "__main__":
    main()
