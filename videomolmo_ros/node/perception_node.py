"""perception_node: the ROS 2 shell around the perception pipeline, as a managed (lifecycle) node.

It converts messages, hands them to the ROS-free pipeline and publishes what the pipeline
produces, stamped with the source image's header. This file holds the lifecycle and the wiring;
each role has its own module: parameters, camera_inputs, planner_api, outputs, diagnostics.

- configure: reads and validates the parameters, loads the models, subscribes and offers the
  Ground action and the command services (they answer "not active" until activate);
- activate: starts the workers: frames and commands are served;
- deactivate: ends every goal with a result, stops work and frees the GPU memory the buffers held
  (models, subscriptions and services stay);
- cleanup / shutdown: releases the models, subscriptions and services too.

SIGINT and SIGTERM end goals, stop the workers (a model call in flight is abandoned on its daemon
thread), shut the executor down and exit 0 within a few seconds.

By default it drives itself to active (`autostart`), so `ros2 run` and launch just work, and offers
no lifecycle services: no peer can deactivate or shut it down. `autostart: false` offers them and
waits for a lifecycle manager; reaching `finalized` then (a manager's shutdown, an error in a
transition) ends the process with EXIT_FINALIZED, so launch's `respawn` or a supervisor restarts it.
With autostart, a node that cannot configure or activate exits 1.

Several cameras (`cameras.names`) each get their own subscriptions, frame buffers, propagator
state and health; they share the models, the running commands and the track id counter.

    perception_node --ros-args --params-file config/perception.yaml
"""

import contextlib
import ctypes
import functools
import gc
import itertools
import signal
import sys
import threading
import traceback
from dataclasses import replace

import rclpy
import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidHandle
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image

from videomolmo_ros.contracts.interfaces import BackendError, MaskPropagator, Pointer
from videomolmo_ros.io.dds_profile import use_large_data_profile
from videomolmo_ros.io.depth_projection import DepthSync
from videomolmo_ros.msg import CommandStatus
from videomolmo_ros.node.camera_inputs import CameraInputs, NodeCamera
from videomolmo_ros.node.diagnostics import Diagnostics
from videomolmo_ros.node.grasp_topics import camera_topic
from videomolmo_ros.node.outputs import Outputs
from videomolmo_ros.node.parameters import ConfigError, NodeSettings, Parameters, runtime_change
from videomolmo_ros.node.planner_api import STATUS_QOS, PlannerApi
from videomolmo_ros.pipeline.appearance import descriptor_for
from videomolmo_ros.pipeline.cameras import (
    BufferBudget,
    MemoryLimit,
    available_memory,
    buffer_budget,
    check_budget,
    memory_limit,
)
from videomolmo_ros.pipeline.commands import CommandBook
from videomolmo_ros.pipeline.counters import ProblemLog
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, TakeTurns, ring_sizes
from videomolmo_ros.pipeline.tracking import frames_kept

# A model call in flight when the process is told to stop is waited for this long, then abandoned
# (the workers are daemon threads): ros2 launch sends SIGKILL 10 s after SIGINT.
EXIT_WAIT_S = 0.5
# The exit code once the node reached `finalized` (a lifecycle manager's shutdown, or an error in a
# transition): not 0, so a supervisor that restarts on failure does; launch's respawn restarts on any.
EXIT_FINALIZED = 3
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def _free_memory() -> None:
    """Return what dropped tensors held to the GPU, so other processes (and nvidia-smi) see it free."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def return_large_blocks_to_the_os() -> None:
    """Have glibc map every block over 256 KiB on its own, so freeing it returns it to the OS.

    By default glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB):
    after the first deactivate, frame rings and image messages came from the heap, and RSS grew
    with every deactivate / activate cycle (bench/bench_lifecycle_memory.py). A no-op off glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 256 * 1024)


def check_buffer_memory(settings: NodeSettings, pointer: Pointer | None) -> tuple[BufferBudget, MemoryLimit]:
    """Budget every camera's frame rings now (models loaded) against the machine's limit (free GPU memory, or
    a share of the available memory on a CPU), failing with the numbers if they cannot fit."""
    device = settings.device
    budget = buffer_budget(settings.cameras, *ring_sizes(settings.pipeline, pointer), frames_kept(settings.pipeline))
    try:
        gpu_free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
        cpu_available = available_memory() if gpu_free is None else None
        limit = memory_limit(str(device), settings.buffer_memory_limit_mb, gpu_free, cpu_available)
        check_budget(budget, limit)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return budget, limit


def _logs_errors(transition):
    """A transition callback that logs an unexpected exception before rclpy turns it into ERROR without a word."""

    @functools.wraps(transition)
    def logged(node: "PerceptionNode", state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return transition(node, state)
        except Exception:
            node.get_logger().fatal(f"{transition.__name__} failed:\n{traceback.format_exc()}")
            raise

    return logged


class PerceptionNode(LifecycleNode):
    def __init__(self) -> None:
        # LifecycleNode.__init__ is Node.__init__, then LifecycleNodeMixin.__init__: run apart, so that
        # `autostart` (params files, -p, launch: rcl's own overrides) is read before choosing whether
        # peers get the lifecycle services (change_state, get_state, ...).
        Node.__init__(self, "perception_node")
        self._params = Parameters(self)
        self.autostart = self._params.autostart()
        LifecycleNodeMixin.__init__(self, enable_communication_interface=not self.autostart)
        self.finalized = ""  # why the node reached `finalized`; main() then exits with EXIT_FINALIZED
        self.settings: NodeSettings | None = None  # read at configure, None while unconfigured
        self._cameras: dict[str, NodeCamera] = {}  # made at configure; the first is the default camera
        self._backends: tuple = (None, None)
        self._track_ids = itertools.count(1)  # track ids are unique for the node's lifetime, across activations
        self._diagnostic_timers: list = []  # diagnostics: made at activate
        self._planner: PlannerApi | None = None  # the parts: made at configure (_wire)
        self._problems = ProblemLog(self.get_logger().warning)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ------------------------------------------------------------------ lifecycle

    @_logs_errors
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            settings = self._params.read()
            device = settings.device
            self._backends = self._params.backends(device, settings.pointer_process)
            pointer, config = self._backends[0], settings.pipeline
            notes = pointer.check_context(config.context_frames, config.context_fps) if pointer else []
            memory = check_buffer_memory(settings, pointer)
            descriptor_for(config.tracker.descriptor, self._backends[1])  # refused now, not at activate
        except (ConfigError, BackendError, ValueError) as error:
            self.get_logger().fatal(f"cannot configure: {error}")
            self._close_backends()
            _free_memory()
            return TransitionCallbackReturn.FAILURE
        self.settings = settings
        self._wire(memory)
        self._params.warn_unknown()
        for note in notes:
            self.get_logger().warning(f"{type(pointer).__name__}: {note}")
        names = ", ".join(b.describe() if b else "none" for b in self._backends)
        self.get_logger().info(
            f"configured on {device}: pointer, propagator = {names}; cameras {', '.join(self._cameras)}; "
            f"frame buffers {memory[0].text()}, limit {memory[1].text()}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _wire(self, memory: tuple[BufferBudget, MemoryLimit]) -> None:
        """The node's parts for these settings: cameras, planner API, outputs, inputs, diagnostics."""
        settings = self.settings
        self._cameras = {
            c.name: NodeCamera(
                c,
                self.create_lifecycle_publisher(Image, camera_topic(c, settings.cameras, "debug_image"), 2),
                DepthSync(settings.depth_sync_tolerance_s),
                self.problem,
            )
            for c in settings.cameras
        }
        status_pub = self.create_lifecycle_publisher(CommandStatus, "command_status", STATUS_QOS)
        self._planner = PlannerApi(
            self, status_pub, self._pipelines, self.counted_problem, self.problem, settings.max_concurrent_goals
        )
        self._outputs = Outputs(self, settings, self._cameras, self._planner, self.problem)
        self._inputs = CameraInputs(self, settings)
        self._diagnostics = Diagnostics(self, self._cameras, memory, settings.device)

    @_logs_errors
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        pointer, propagator = self._backends
        try:
            commands = self._start_pipelines(pointer, propagator)
        except ValueError as error:
            self.get_logger().fatal(f"cannot activate: {error}")
            self.stop_work()
            return TransitionCallbackReturn.FAILURE
        self._planner.start(commands)
        self._diagnostic_timers = self._diagnostics.timers(self.settings.stats_period_s, self.internal_error)
        inputs = ", ".join(f"{c.name} <- {c.config.image_topic} ({c.config.transport})" for c in self._cameras.values())
        self.get_logger().info(
            f"ready on {self.settings.device}: pointer {type(pointer).__name__ if pointer else 'none'}, "
            f"propagator {type(propagator).__name__ if propagator else 'none'}; cameras {inputs}; "
            f"commands on {self._planner.command_topic}"
        )
        if pointer is None:
            self.get_logger().warning("no pointer_backend set: commands will be rejected")
        return super().on_activate(state)

    @_logs_errors
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_work()
        return super().on_deactivate(state)

    @_logs_errors
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    @_logs_errors
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self.finalized = f"a shutdown transition (from {state.label}) finalized the node"
        return TransitionCallbackReturn.SUCCESS

    @_logs_errors
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition failed with an error (logged by _logs_errors): release everything and finalize, so the
        process exits and is started afresh rather than left half-configured."""
        try:
            self.release()
        finally:  # finalized even if releasing fails too
            self.finalized = f"an error in a transition from {state.label} finalized the node"
        return TransitionCallbackReturn.FAILURE

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Runtime thresholds apply at once (settings and pipelines); others only while unconfigured."""
        settings, reason = runtime_change(params, self.settings)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if settings is not None:
            self.settings = settings
            for pipeline in self._pipelines():
                pipeline.reconfigure(**{p.name: p.value for p in params})
        return SetParametersResult(successful=True)

    def _start_pipelines(self, pointer: Pointer | None, propagator: MaskPropagator | None) -> CommandBook:
        """A pipeline per camera: shared commands, track ids and pointer turns; own propagator state.

        The propagator starts empty: the objects of the last activation are not this one's tracks.
        """
        config = self.settings.pipeline
        commands = CommandBook(config.max_query_chars, config.max_commands, tuple(self._cameras))
        turns = TakeTurns()
        if propagator is not None:
            propagator.reset()
        for index, camera in enumerate(self._cameras.values()):
            own = propagator.for_another_camera() if propagator is not None and index > 0 else propagator
            camera.pipeline = PerceptionPipeline(
                replace(config, camera=camera.name),
                self.settings.device,
                pointer,
                own,
                self._outputs,
                commands,
                self._track_ids,
                turns,
            )
            self._inputs.start(camera)
            camera.pipeline.start()
        return commands

    def _pipelines(self) -> list[PerceptionPipeline]:
        return [c.pipeline for c in self._cameras.values() if c.pipeline is not None]

    def stop_work(self, wait_s: float = 10.0, reason: str = "the node was deactivated", free: bool = True) -> None:
        """End goals (`reason`), stop timers and workers (waiting `wait_s` for a model call); free GPU buffers."""
        if self._planner is not None:
            self._planner.stop(reason)
        for timer in self._diagnostic_timers:
            self.destroy_timer(timer)
        self._diagnostic_timers = []
        for camera in self._cameras.values():
            self._inputs.stop(camera)
            if camera.pipeline is not None:
                camera.pipeline.close(wait_s)
                camera.pipeline = None
        if free:
            _free_memory()

    def release(self, wait_s: float = 10.0, free: bool = True) -> None:
        """Everything the node holds, models and services included (cleanup, shutdown, exit).

        `free`: collect garbage and empty the GPU cache, for other processes (pointless at exit).
        """
        self.stop_work(wait_s, "the node is shutting down", free=False)
        if self._planner is not None:
            self._planner.close()
            self._planner = None
        self._close_backends()
        self.settings = None
        if free:
            _free_memory()

    def _close_backends(self) -> None:
        for backend in self._backends:
            if backend is not None:
                backend.close()
        self._backends = (None, None)

    # ------------------------------------------------------------------ problems

    def problem(self, key: str, message: str) -> None:
        self._problems.report(key, message)

    def internal_error(self, text: str) -> None:
        """A bug in a callback that belongs to no camera: counted on the default camera and logged."""
        self.counted_problem("internal_errors", text)

    def counted_problem(self, key: str, message: str, amount: int = 1) -> None:
        """A problem that belongs to no camera (a bug, commands lost): counted on the default camera and logged."""
        cameras = list(self._cameras.values())
        cameras[0].problem(key, message, amount) if cameras else self.problem(key, message)


def _spin(executor: MultiThreadedExecutor, stopping: threading.Event) -> None:
    """Spin until shut down. At exit the node releases its subscriptions while this still spins (goals
    get their results), and rclpy can then fail building its wait set on an entity being destroyed
    (InvalidHandle on a QoS event handler): that ends the spin quietly at exit, and only then."""
    try:
        executor.spin()
    except InvalidHandle:
        if not stopping.is_set():
            raise


def main(args: list[str] | None = None) -> int:
    # Signals are ours: rclpy's handler shuts the context down under running callbacks and workers
    # (RCLError, tracebacks, exit 1); here they end the spin, then everything stops in order.
    return_large_blocks_to_the_os()
    use_large_data_profile()  # before the participant exists: frame-sized messages over Fast DDS
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = PerceptionNode()
    if node.autostart:
        configured = node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        if not configured or node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            node.release()
            node.destroy_node()
            rclpy.try_shutdown()
            return 1
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    spinner = threading.Thread(target=_spin, args=(executor, stop), name="executor", daemon=True)
    spinner.start()
    while not stop.wait(0.5) and spinner.is_alive() and not node.finalized:
        pass
    if node.finalized:
        node.get_logger().error(f"{node.finalized}: exiting with code {EXIT_FINALIZED}, for respawn to start it again")
    node.release(EXIT_WAIT_S, free=False)  # the executor still runs: ended goals get their results
    executor.shutdown(timeout_sec=EXIT_WAIT_S)  # and the transition's answer is sent
    spinner.join(EXIT_WAIT_S)
    node.destroy_node()
    rclpy.try_shutdown()
    return EXIT_FINALIZED if node.finalized else 0


if __name__ == "__main__":
    sys.exit(main())
