"""Catch-up: J&F of a fast object against grounding latency, with and without catch-up, side by side in one run.

    ./bench/run bench_catch_up [--latencies 0 0.5 1 2] [--seconds 5]

The ROS-free pipeline on the tests' fast scene (a red disc of radius 10 px moving 3 px a frame at
15 Hz, 320x240), fed in real time, with the tests' doubles: a colour pointer that answers after
the given latency and a *local* propagator that only finds the object within 25 px of where it
last saw it (as SAM2 follows an object from its last position). The context window samples at
the camera rate, so a grounding's frame is the newest one when the query starts and the latency
is the pointer's. Each row runs the same stream twice, catch-up off (`catch_up_s: 0`, as before)
and on (the defaults), and scores every frame from half a second after the first answer could
arrive: J&F of the published mask against the true disc (no mask = empty).
"""

import argparse
import time

import numpy as np
import torch
from support import (
    ColorOraclePointerDouble,
    ListSinkDouble,
    LocalOptions,
    LocalPropagatorDouble,
    OracleOptions,
    fast_scene,
    render,
)

from videomolmo_ros.evaluation.mask_metrics import mask_scores, mean_mask_scores
from videomolmo_ros.pipeline.commands import CommandRequest
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig

CPU = torch.device("cpu")
FPS = 15.0
SEARCH_RADIUS = 25.0


def run(latency_s: float, catch_up_s: float, seconds: float) -> tuple[float, dict[str, int]]:
    """J&F over the scored frames of one stream, and the pipeline's counters."""
    config = PipelineConfig(context_frames=2, context_fps=FPS, catch_up_s=catch_up_s, max_result_age_s=10.0)
    pointer = ColorOraclePointerDouble(OracleOptions(delay_s=latency_s), CPU)
    propagator = LocalPropagatorDouble(LocalOptions(SEARCH_RADIUS), CPU)
    sink = ListSinkDouble()
    pipeline = PerceptionPipeline(config, CPU, pointer, propagator, sink)
    pipeline.start()
    scene, truth = fast_scene(3.0, FPS), {}
    pipeline.submit_command(CommandRequest("disc", "the red disc"))
    tick = time.perf_counter()
    try:
        for k in range(round((latency_s + seconds) * FPS)):
            image, masks = render(scene, k / FPS)
            truth[k * 10**9 // round(FPS)] = masks["red"]
            pipeline.submit_frame(image, k * 10**9 // round(FPS), "cam")
            tick += 1 / FPS
            time.sleep(max(0.0, tick - time.perf_counter()))
        time.sleep(0.5)  # the last frames' outputs
    finally:
        pipeline.close()
    scored_from = (latency_s + 0.5) * 1e9
    empty = np.zeros((240, 320), bool)
    scores = [
        mask_scores(output.masks[0] if output.masks else empty, truth[output.meta.stamp_ns])
        for output in sink.masks
        if output.meta.stamp_ns >= scored_from
    ]
    return mean_mask_scores(scores).jf, pipeline.counters.snapshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0], help="seconds")
    parser.add_argument("--seconds", type=float, default=5.0, help="stream length after the latency")
    args = parser.parse_args()
    torch.set_num_threads(1)
    defaults = PipelineConfig()
    print(
        f"fast disc (3 px a frame at {FPS:g} Hz), local tracker (finds within {SEARCH_RADIUS:g} px); catch-up on: "
        f"catch_up_s {defaults.catch_up_s:g}, catch_up_max_frames_per_step {defaults.catch_up_max_frames_per_step}"
    )
    print(f"{'latency s':>9} {'J&F off':>8} {'J&F on':>7} {'on - off':>9} {'frames':>7} {'skipped':>8} {'tracked':>8}")
    for latency in args.latencies:
        off, _ = run(latency, 0.0, args.seconds)
        on, counts = run(latency, defaults.catch_up_s, args.seconds)
        print(
            f"{latency:9.1f} {off:8.3f} {on:7.3f} {on - off:9.3f} {counts.get('catch_up_frames', 0):7d} "
            f"{counts.get('catch_up_skipped', 0):8d} {counts.get('frames_tracked', 0):8d}"
        )
    print("frames / skipped: catch-up frames stepped / skipped over the bound (catch-up on); tracked: live steps")


if __name__ == "__main__":
    main()
