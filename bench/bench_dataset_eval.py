"""A pass of evaluate_dataset in-process and over a local Ray with 1 and 2 workers, side by side in one run.

    ./bench/run bench_dataset_eval [--videos 6]

The tests' synthetic set (two discs, 10 frames of 320x240 a video, two expressions each) evaluated
with the tests' colour oracle doubles, one torch thread per process, twice: the doubles' own CPU
work, and with the pointer taking 0.2 s a grounding without the CPU (as a model on a GPU does).
Printed: expressions per second of each pass and the ratio 2 workers / 1 worker (this machine
has 2 cores: close to 2 when nothing else runs on them), and what Ray adds per video against
in-process with one worker (its start-up, ray.init and the actors loading their models, apart).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
from support import make_davis_layout

from videomolmo_ros.evaluation.dataset_evaluation import LocalWorkers, evaluate
from videomolmo_ros.evaluation.lockstep_run import EvalConfig
from videomolmo_ros.evaluation.ray_workers import RayWorkers
from videomolmo_ros.evaluation.video_dataset import VideoDataset
from videomolmo_ros.tools.dataset_eval import EvaluatorSpec

POINTER = "oracle_doubles:ColorOraclePointerDouble"
PROPAGATOR = "oracle_doubles:ColorOraclePropagatorDouble"


def timed_pass(workers, refs, config, out: Path) -> float:
    start = time.perf_counter()
    evaluate(refs, workers, config, out)
    return time.perf_counter() - start


def passes(root: Path, work: Path, delay_s: float) -> tuple[int, float, dict[int, float], dict[int, float]]:
    """(expressions, in-process seconds, Ray seconds by workers, Ray actors' start-up by workers)."""
    refs = VideoDataset(root).expressions()
    config = EvalConfig(fps=10.0, frame_timeout_s=60.0)
    values = {"ColorOraclePointerDouble.delay_s": delay_s}
    spec = EvaluatorSpec(str(root), {}, POINTER, PROPAGATOR, values, "cpu", config)
    local = timed_pass(LocalWorkers(spec.build()), refs, config, work / f"local-{delay_s}")
    on_ray, actors_ready = {}, {}
    for count in (1, 2):
        start = time.perf_counter()
        with RayWorkers(spec.build, workers=count, cpus=1.0) as workers:
            actors_ready[count] = time.perf_counter() - start
            on_ray[count] = timed_pass(workers, refs, config, work / f"ray{count}-{delay_s}")
    return len(refs), local, on_ray, actors_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=6, help="videos in the synthetic set (two expressions each)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dataset-eval-"))
    root = make_davis_layout(work / "set", [f"video{k}" for k in range(args.videos)])
    load = os.getloadavg()[0]  # other work on the cores halves what 2 workers can gain
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_init = time.perf_counter() - start
    for delay_s, what in (
        (0.0, "CPU-bound (the doubles' own work)"),
        (0.2, "a 0.2 s grounding off the CPU, as a GPU's"),
    ):
        expressions, local, on_ray, actors_ready = passes(root, work, delay_s)
        print(f"== {args.videos} videos, {expressions} expressions; {what}")
        print(f"{'pass':<22}{'seconds':>9}{'expr/s':>9}")
        for name, seconds in (("in-process", local), ("Ray, 1 worker", on_ray[1]), ("Ray, 2 workers", on_ray[2])):
            print(f"{name:<22}{seconds:>9.2f}{expressions / seconds:>9.2f}")
        print(f"throughput 2 workers / 1 worker: {on_ray[1] / on_ray[2]:.2f}x")
        per_video = (on_ray[1] - local) / args.videos
        print(
            f"Ray per video (1 worker - in-process): {per_video * 1000:+.1f} ms ({on_ray[1] / local:.3f} of in-process)"
        )
        print(f"actors ready (models loaded) {actors_ready[1]:.2f} / {actors_ready[2]:.2f} s (1 / 2 workers)")
    print(f"Ray start-up, once a pass: ray.init {ray_init:.2f} s")
    end = os.getloadavg()[0]
    print(f"load average (1 min) at the start / the end: {load:.1f} / {end:.1f} on {os.cpu_count()} cores")
    ray.shutdown()


if __name__ == "__main__":
    main()
