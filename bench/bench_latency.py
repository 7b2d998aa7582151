"""Latency a camera driver and a planner see, each side by side with what it is compared to, in one run.

    ./bench/run bench_latency [--samples 200] [--fps 30] [--queries 10]

- image callback: the time perception_node's image subscription callback takes (rgb8 message ->
  RGB array -> pipeline.submit_frame: what each driver message costs the node's executor thread),
  at 640x480 and 1920x1080 and on the real 1280x720 clips of ../shared/data (decoded once, when
  present). The node runs in this process (a fresh one per input), configured and
  activated with parameter overrides and spun as its main() does; the callback it registered is
  called at the camera rate with sensor_msgs/Image messages in received form, idle (no command)
  and while a grounding query is in flight: the grounding worker runs the shipped Molmo2 backend
  on a random-weight checkpoint (real preprocessing, prefill and constrained decoding on 8 frames,
  1-2 s of CPU per query; Molmo2WorkPointerDouble answers the red disc instead of the random
  model's answer) and the tracking worker steps the shipped SAM2 backend on the tests' tiny random
  checkpoint. Only calls that began and ended while a query ran count as in flight.
- the GIL or the CPU: the same callback while the same Molmo2 queries run without tracking, in a
  thread of the node's process (they share its GIL), in that thread with a 1 ms GIL switch interval
  instead of Python's 5 ms, and in a process of their own (`pointer_process`: only the CPU is
  shared); idle first, all in one run. If the separate process is much better than the thread,
  the GIL is what costs the callback, and a pointer process would pay.
- command to first target: perception_node as its own process over DDS with the test doubles
  (ros_harness.DOUBLES; the pointer sleeps `--delay` s, then thresholds colours), 320x240 frames
  at 15 Hz; the time from publishing a GroundingCommand to the arrival here of the first
  PointedTargets carrying its id, against the pointer's own ground() time: as the node timed each
  query (its /diagnostics grounding status) and, as a cross-check, the same pointer called directly
  here on a window of the same video (camera paused meanwhile). Node overhead = end to end - the
  in-node pointer time (p50): command transport, waking the worker, applying and publishing the result.
"""

import argparse
import contextlib
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
import torch
import transformers
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from support import (
    DOUBLES,
    FPS,
    START_S,
    ColorOraclePointerDouble,
    Molmo2WorkPointerDouble,
    NodeProcess,
    OracleOptions,
    Planner,
    default_scene,
    image_msg,
    installed_params_file,
    real_clips,
    render,
    tiny_options,
    write_tiny_molmo2,
    write_tiny_sam2,
)
from videomolmo_ros.msg import GroundingCommand

from videomolmo_ros.backends.molmo2.pointer import Molmo2Pointer
from videomolmo_ros.backends.sam2.propagator import Sam2Propagator
from videomolmo_ros.contracts.frames import Frame, FrameWindow
from videomolmo_ros.contracts.grounding import GroundingMode, GroundingResult, ObjectMask
from videomolmo_ros.node.perception_node import PerceptionNode
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer

SIZES = [(640, 480), (1920, 1080)]
QUERY = "the red disc"
# A random-weight Molmo2 sized so a query on 8 frames costs about 1.2 s of one CPU core.
MOLMO2_WORK = {"hidden": 384, "layers": 4, "image_size": 378}
MOLMO2_TOKENS = 64


class QueryWatch:
    """Watches the node's pointer (in-process or a PointerProcess): `in_flight` while a query runs,
    `times` each query's seconds, `windows` the (frames, height, width) it was given."""

    def __init__(self, pointer):
        self.in_flight = False
        self.times: list[float] = []
        self.windows: list[tuple[int, int, int]] = []
        ground = pointer.ground

        def watched(window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
            self.in_flight = True
            start = time.perf_counter()
            try:
                return ground(window, query, mode)
            finally:
                self.times.append(time.perf_counter() - start)
                self.windows.append(tuple(window.images.shape[:3]))
                self.in_flight = False

        pointer.ground = watched


class Sam2StepCountingDouble(Sam2Propagator):
    """The shipped SAM2 backend, counting the steps that had objects to carry (`steps`, per class)."""

    steps = 0

    def step(self, frame: Frame, object_ids=None) -> dict[int, ObjectMask]:
        masks = super().step(frame, object_ids)
        if masks:
            type(self).steps += 1
        return masks


def backend_spec(cls: type) -> str:
    """The `module:Class` name the node's backend registry imports (this script is __main__)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def percentiles(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def subscription_callback(node, msg_type: type, topic: str) -> Callable:
    """The callback the node registered for `topic`: what its executor calls for each message."""
    for subscription in node.subscriptions:
        if subscription.msg_type is msg_type and subscription.topic_name.rsplit("/", 1)[-1] == topic:
            return subscription.callback
    raise RuntimeError(f"perception_node has no {msg_type.__name__} subscription on {topic!r}")


def received(msg):
    """The message as a subscription hands it over: serialized and deserialized."""
    return deserialize_message(serialize_message(msg), type(msg))


class CameraDriver:
    """Calls the node's image callback at a camera's rate with increasing stamps; times each call."""

    def __init__(self, callback: Callable, fps: float):
        self.callback = callback
        self.period_s = 1.0 / fps
        self.stamp_ns = time.time_ns()
        self.calls = 0

    def _call(self, msg: Image) -> float:
        self.stamp_ns += round(self.period_s * 1e9)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(self.stamp_ns, 1_000_000_000)
        self.calls += 1
        start = time.perf_counter()
        self.callback(msg)
        return time.perf_counter() - start

    def stream(
        self,
        msgs: list[Image],
        until: Callable[[list[float]], bool],
        keep: Callable[[], bool] = lambda: True,
        timeout_s: float = 60.0,
    ) -> list[float]:
        """Frames at the camera rate until `until(kept)`; kept: the times of the calls that began
        and ended while `keep()` held."""
        kept: list[float] = []
        deadline = time.perf_counter() + timeout_s
        tick = time.perf_counter()
        while not until(kept):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"camera stream: condition not reached within {timeout_s:.0f} s")
            began = keep()
            elapsed = self._call(msgs[self.calls % len(msgs)])
            if began and keep():
                kept.append(elapsed)
            tick += self.period_s
            time.sleep(max(0.0, tick - time.perf_counter()))
        return kept


def ros_args(overrides: dict[str, object], folder: Path) -> list[str]:
    """rclpy.init arguments: the installed params file, then the overrides (as a user's second file)."""
    override_file = folder / "overrides.yaml"
    override_file.write_text(yaml.safe_dump({"perception_node": {"ros__parameters": overrides}}))
    files = [installed_params_file(), override_file]
    params = [a for f in files for a in ("--params-file", str(f))]
    return ["bench_latency", "--ros-args", *params, "--log-level", "perception_node:=warn"]


@contextlib.contextmanager
def active_node(args: list[str]):
    """perception_node in this process, configured, activated and spun as its main() does."""
    rclpy.init(args=args)
    node = PerceptionNode()
    executor = MultiThreadedExecutor(num_threads=4)
    try:
        for transition in (node.trigger_configure, node.trigger_activate):
            if transition() != TransitionCallbackReturn.SUCCESS:
                raise RuntimeError(f"perception_node: {transition.__name__} failed (its log says why)")
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        yield node
    finally:
        executor.shutdown()
        node.release()
        node.destroy_node()
        rclpy.try_shutdown()


def callback_latency(samples: int, fps: float) -> tuple[dict, dict]:
    """Per size: image callback seconds idle and with a query in flight, and what the workers did;
    and the callback's seconds with the queries in a thread or a process of their own (gil_or_cpu)."""
    results, gil = {}, {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        pointer, propagator = Molmo2WorkPointerDouble.__qualname__, Sam2StepCountingDouble.__qualname__
        model = str(write_tiny_molmo2(folder / "molmo2", **MOLMO2_WORK))
        overrides = {
            "device": "cpu",
            "pointer_backend": f"molmo2_work_double:{pointer}",  # by module path: a pointer process imports it too
            f"{pointer}.model": model,
            f"{pointer}.max_new_tokens": MOLMO2_TOKENS,
            "max_result_age_s": 60.0,  # slow CPU queries still prompt the tracker (its steps are part of the load)
            "propagator_backend": backend_spec(Sam2StepCountingDouble),
            **{f"{propagator}.{k}": v for k, v in tiny_options(write_tiny_sam2(folder)).items()},
        }
        inputs = {f"{w}x{h}": [render(default_scene(w, h), 0.0, w, h)[0]] for w, h in SIZES}
        inputs |= {Path(name).stem: frames for name, frames in real_clips().items()}
        for name, frames in inputs.items():
            msgs = [received(image_msg(frame, "rgb8", 0)) for frame in frames]
            for own_process in (False, True):
                Sam2StepCountingDouble.steps = 0
                args = ros_args({**overrides, "pointer_process": own_process}, folder)
                with active_node(args) as node:  # a fresh node per input: no resolution change mid-run
                    results[name, own_process] = _measure_callbacks(node, msgs, samples, fps)
        for size in SIZES:
            with active_node(ros_args(overrides, folder)) as node:
                gil[size] = gil_or_cpu(model, node, size, samples, fps)
    return results, gil


def _measure_callbacks(node: PerceptionNode, msgs: list[Image], samples: int, fps: float) -> dict:
    camera = CameraDriver(subscription_callback(node, Image, "image"), fps)
    on_command = subscription_callback(node, GroundingCommand, "command")
    pointer = QueryWatch(node._backends[0])
    warm = time.perf_counter() + 1.0
    camera.stream(msgs, lambda _: time.perf_counter() > warm)
    # The idle calls also fill the context window, so every query below sees all its frames.
    idle = camera.stream(msgs, lambda kept: len(kept) >= samples)
    on_command(GroundingCommand(id="latency", query=QUERY, mode=GroundingCommand.MODE_POINT))
    camera.stream(msgs, lambda _: pointer.in_flight)
    calls = camera.calls
    busy = camera.stream(msgs, lambda kept: len(kept) >= samples and pointer.times, keep=lambda: pointer.in_flight)
    return {
        "idle": idle,
        "in flight": busy,
        "overlap": samples / (camera.calls - calls),
        "query_s": percentiles(pointer.times),
        "queries": len(pointer.times),
        "windows": sorted(set(pointer.windows)),
        "steps_per_s": Sam2StepCountingDouble.steps / sum(pointer.times),
    }


def query_loop(model: str, size: tuple[int, int], running, stop) -> None:
    """Molmo2 queries on an 8-frame window, one after another until `stop` is set (in a thread or a process)."""
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    pointer = Molmo2Pointer(Molmo2Pointer.Options(model=model, max_new_tokens=MOLMO2_TOKENS), torch.device("cpu"))
    window = synthetic_window(size)
    while not stop.is_set():
        pointer.ground(window, QUERY, GroundingMode.POINT)
        running.set()  # one query done: the load is on


def synthetic_window(size: tuple[int, int]) -> FrameWindow:
    width, height = size
    buffer = FrameBuffer(8, "cpu")
    for k in range(8):
        buffer.push(render(default_scene(width, height), k / 2, width, height)[0], k * 500_000_000, "cam")
    return buffer.window(8)


def gil_or_cpu(model: str, node: PerceptionNode, size: tuple[int, int], samples: int, fps: float) -> dict:
    """Callback seconds idle, and while queries run in a thread (5 ms, 1 ms switch interval) or a process."""
    camera = CameraDriver(subscription_callback(node, Image, "image"), fps)
    width, height = size
    msgs = [received(image_msg(render(default_scene(width, height), 0.0, width, height)[0], "rgb8", 0))]
    results = {"idle": camera.stream(msgs, lambda kept: len(kept) >= samples)}
    interval = sys.getswitchinterval()
    for name, runner, switch_s in (
        ("thread", threading, interval),
        ("thread 1 ms", threading, 0.001),
        ("process", multiprocessing.get_context("spawn"), interval),
    ):
        running, stop = runner.Event(), runner.Event()
        worker = (runner.Thread if runner is threading else runner.Process)(
            target=query_loop, args=(model, size, running, stop), daemon=True
        )
        sys.setswitchinterval(switch_s)
        worker.start()
        try:
            camera.stream(msgs, lambda _, running=running: running.is_set(), timeout_s=300)
            results[name] = camera.stream(msgs, lambda kept: len(kept) >= samples)
        finally:
            stop.set()
            worker.join(60)
            sys.setswitchinterval(interval)
    return results


class TimedPlanner(Planner):
    """The harness planner, also noting when the first targets of each command arrive, and each
    query's ground() time as the node reports it on /diagnostics (grounding status, by query count)."""

    def __init__(self):
        self.first_targets: dict[str, float] = {}
        self.arrived = threading.Condition()
        self.ground_s: dict[tuple[str, str], float] = {}
        super().__init__()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _record(self, topic: str, msg) -> None:
        now = time.perf_counter()
        super()._record(topic, msg)
        if topic == "targets":
            with self.arrived:
                self.first_targets.setdefault(msg.command_id, now)
                self.arrived.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            with contextlib.suppress(KeyError, ValueError):
                self.ground_s[status.name, values["groundings"]] = float(values["last_latency_s"])


def context_window(config: dict) -> FrameWindow:
    """The window the node's grounding worker reads after 5 s of the harness video."""
    frames, fps = config["context_frames"], config["context_fps"]
    buffer = FrameBuffer(frames, "cpu", sample_period_s=1.0 / fps)
    scene = default_scene()
    for k in range(round(5 * FPS)):
        buffer.push(render(scene, k / FPS)[0], round((START_S + k / FPS) * 1e9), "test_camera")
    return buffer.window(frames)


class VideoStream:
    """The harness video (320x240) published at FPS from a thread, with continuing stamps; pausable."""

    def __init__(self, planner: Planner):
        self.planner = planner
        self.running, self.paused = threading.Event(), threading.Event()
        self.running.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        scene, k, tick = default_scene(), 0, time.perf_counter()
        while self.running.is_set():
            if not self.paused.is_set():
                t = k / FPS
                self.planner.send_image(render(scene, t)[0], "rgb8", round((START_S + t) * 1e9))
                k += 1
            tick += 1 / FPS
            time.sleep(max(0.0, tick - time.perf_counter()))

    def close(self) -> None:
        self.running.clear()
        self.thread.join(5)


def command_to_target(queries: int, delay_s: float) -> dict[str, list[float]]:
    """Seconds from GroundingCommand to its first PointedTargets over DDS, and the pointer's own time."""
    config = yaml.safe_load(installed_params_file().read_text())["perception_node"]["ros__parameters"]
    pointer = ColorOraclePointerDouble(OracleOptions(delay_s=delay_s), torch.device("cpu"))
    window = context_window(config)
    option = DOUBLES["pointer_backend"].rpartition(":")[2] + ".delay_s"
    with tempfile.TemporaryDirectory() as name:
        process = NodeProcess(Path(name) / "node.log", {**DOUBLES, option: delay_s})
        rclpy.init()
        planner = TimedPlanner()
        video = None
        try:
            planner.wait_connected(60)
            video = VideoStream(planner)
            time.sleep(config["context_frames"] / config["context_fps"] + 0.5)  # a full context window
            result = {"e2e": [], "pointer": [], "in node": []}
            for k in range(queries):
                command_id = f"latency-{k}"
                start = time.perf_counter()
                planner.send_command(QUERY, id=command_id, mode=GroundingCommand.MODE_POINT)
                with planner.arrived:
                    if not planner.arrived.wait_for(lambda c=command_id: c in planner.first_targets, 30):
                        raise RuntimeError(f"no targets for {command_id} within 30 s:\n{process.log()}")
                result["e2e"].append(planner.first_targets[command_id] - start)
                planner.send_command("", id=command_id, action=GroundingCommand.ACTION_STOP)
                # The pointer alone, here, while the node's next query of the stopped command runs out;
                # the camera pauses meanwhile so this process's own threads stay out of its time.
                video.paused.set()
                start = time.perf_counter()
                pointer.ground(window, QUERY, GroundingMode.POINT)
                result["pointer"].append(time.perf_counter() - start)
                video.paused.clear()
                time.sleep(1.0)  # the context window takes in fresh frames
            result["in node"] = list(planner.ground_s.values())
            return result
        finally:
            if video is not None:
                video.close()
            planner.close()
            rclpy.try_shutdown()
            process.stop()


def print_callback_latency(results: dict, samples: int, fps: float) -> None:
    print(f"image callback (rgb8 message -> RGB -> pipeline.submit_frame), in-process node, {fps:g} Hz;")
    print("the pointer in the node's process, or in a process of its own (pointer_process: true)")
    header = f"{'idle p50 ms':>12} {'p99 ms':>7} {'in flight p50':>14} {'p99 ms':>7} {'p50 x':>6} {'p99 x':>6}"
    print(f"{'frames':>13} {'pointer':>8} {header} {'SAM2 steps/s':>13}")
    for (name, own_process), r in results.items():
        idle, busy = percentiles(r["idle"]), percentiles(r["in flight"])
        print(
            f"{name:>13} {'process' if own_process else 'in node':>8} {idle[0] * 1e3:12.2f} "
            f"{idle[1] * 1e3:7.2f} {busy[0] * 1e3:14.2f} {busy[1] * 1e3:7.2f} {busy[0] / idle[0]:6.2f} "
            f"{busy[1] / idle[1]:6.2f} {r['steps_per_s']:13.1f}"
        )
    print(
        f"{samples} calls each. In flight: Molmo2 with random weights ({MOLMO2_WORK['hidden']} wide, "
        f"{MOLMO2_WORK['layers']} layers, {MOLMO2_WORK['image_size']} px frames) and SAM2 tiny random (steps/s while"
        " queries ran: the tracking worker's rate, camera at most):"
    )
    for (name, own_process), r in results.items():
        frames = ", ".join(f"{n} x {w}x{h}" for n, h, w in r["windows"])
        print(
            f"{name:>13} {'process' if own_process else 'in node':>8} {r['queries']} queries of {frames} "
            f"frames, {r['query_s'][0]:.2f} s p50 {r['query_s'][1]:.2f} s p99; {r['overlap']:.0%} of calls in a query"
        )


def print_gil_or_cpu(results: dict, samples: int) -> None:
    print(
        "\nimage callback while Molmo2 queries run without tracking: in the node's process (a thread, at "
        "Python's 5 ms GIL switch interval and at 1 ms) or in a process of their own; ms"
    )
    conditions = list(next(iter(results.values())))
    print(f"{'size':>10} " + " ".join(f"{name + ' p50':>16} {'p99':>6}" for name in conditions))
    for (width, height), r in results.items():
        cells = []
        for name in conditions:
            p50, p99 = percentiles(r[name])
            cells.append(f"{p50 * 1e3:16.2f} {p99 * 1e3:6.2f}")
        print(f"{width}x{height:<5} " + " ".join(cells))
    print(f"{samples} calls each; the queries ran the whole time (each condition waits for the first to finish)")


def print_command_to_target(times: dict[str, list[float]], queries: int, delay_s: float) -> None:
    print(
        f"command -> first PointedTargets over DDS (node process, doubles: pointer sleeps {delay_s:g} s; "
        f"320x240 at {FPS:g} Hz), {queries} commands"
    )
    # The model's share: each query's ground() as the node timed it, else (no /diagnostics) as timed here.
    model, source = (times["in node"], "pointer in node") if times["in node"] else (times["pointer"], "pointer alone")
    overhead = [e - float(np.median(model)) for e in times["e2e"]]
    rows = [
        ("end to end", times["e2e"], "publish GroundingCommand -> first PointedTargets with its id received"),
        ("pointer in node", times["in node"], "its ground() as the node timed it (/diagnostics), all queries"),
        ("pointer alone", times["pointer"], "its ground() called here on the same video, camera paused"),
        ("node overhead", overhead, f"end to end - {source} p50"),
    ]
    print(f"{'':>16} {'p50 ms':>8} {'p99 ms':>8} {'n':>3}")
    for label, values, note in rows:
        p50, p99 = percentiles(values) if values else (float("nan"), float("nan"))
        print(f"{label:>16} {p50 * 1e3:8.1f} {p99 * 1e3:8.1f} {len(values):3d}  {note}")
    (e50, e99), (m50, m99) = percentiles(times["e2e"]), percentiles(model)
    print(f"{'e2e / pointer':>16} {e50 / m50:8.3f} {e99 / m99:8.3f}       ({source}; p99 / p99)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="image callbacks timed per size and condition")
    parser.add_argument("--fps", type=float, default=30.0, help="camera rate of the image callbacks")
    parser.add_argument("--queries", type=int, default=10, help="commands timed end to end")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the pointer double sleeps per query")
    args = parser.parse_args()
    # DDS stays on this machine, in a domain of its own; one torch thread per process (two take part).
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    in_flight, gil = callback_latency(args.samples, args.fps)
    print_callback_latency(in_flight, args.samples, args.fps)
    print_gil_or_cpu(gil, args.samples)
    print()
    print_command_to_target(command_to_target(args.queries, args.delay), args.queries, args.delay)


if __name__ == "__main__":
    main()
