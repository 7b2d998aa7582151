"""perception_node: the ROS 2 shell around the perception pipeline, as a managed (lifecycle) node.

It converts messages, hands them to the ROS-free pipeline and publishes what the pipeline
produces, stamped with the source image's header. This file holds the lifecycle and the wiring;
each role has its own module: parameters, camera_inputs, planner_api, outputs, diagnostics.

- configure: reads and validates the parameters, loads the models;
- activate: subscribes, starts the workers, offers the Ground action and the command services;
- deactivate: stops work and frees the GPU memory the buffers held (models stay loaded);
- cleanup / shutdown: releases the models too.

By default it drives itself to active (`autostart`), so `ros2 run` and launch just work;
`autostart: false` waits for a lifecycle manager.

Several cameras (`cameras.names`) each get their own subscriptions, frame buffers, propagator
state and health; they share the models, the running commands and the track id counter.

    perception_node --ros-args --params-file config/perception.yaml
"""

import gc
import itertools
import sys
from dataclasses import replace

import rclpy
import torch
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image

from videomolmo_ros.backends.interfaces import MaskPropagator, Pointer
from videomolmo_ros.backends.registry import BackendError
from videomolmo_ros.io.depth_projection import DepthSync
from videomolmo_ros.msg import CommandStatus
from videomolmo_ros.node.camera_inputs import CameraInputs, NodeCamera
from videomolmo_ros.node.diagnostics import Diagnostics
from videomolmo_ros.node.outputs import Outputs
from videomolmo_ros.node.parameters import ConfigError, NodeSettings, Parameters
from videomolmo_ros.node.planner_api import PlannerApi
from videomolmo_ros.pipeline.cameras import BufferBudget, CameraConfig, buffer_budget, check_budget
from videomolmo_ros.pipeline.commands import CommandBook
from videomolmo_ros.pipeline.counters import ProblemLog
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, TakeTurns, tracked_frames


def _free_memory() -> None:
    """Return what dropped tensors held to the GPU, so other processes (and nvidia-smi) see it free."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_buffer_memory(settings: NodeSettings) -> BufferBudget:
    """Budget every camera's frame rings now (models loaded), failing with the numbers if they cannot fit."""
    config, device = settings.pipeline, settings.device
    budget = buffer_budget(settings.cameras, config.stream_frames, config.context_frames, tracked_frames(config))
    gpu_free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    try:
        check_budget(budget, settings.buffer_memory_limit_mb, gpu_free, str(device))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return budget


def _debug_topic(camera: CameraConfig, cameras: tuple[CameraConfig, ...]) -> str:
    return "debug_image" if camera is cameras[0] else f"{camera.name}/debug_image"


class PerceptionNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("perception_node")
        self._params = Parameters(self)
        self._cameras: dict[str, NodeCamera] = {}  # made at configure; the first is the default camera
        self._backends: tuple = (None, None)
        self._live: list = []  # subscriptions, services, action server, timers: made at activate
        self._planner: PlannerApi | None = None  # the parts: made at configure (_wire)
        self._problems = ProblemLog(self.get_logger().warning)
        self.autostart = self._params.declare("autostart", True, "configure and activate at start-up")
        self.add_on_set_parameters_callback(lambda params: self._params.on_set(params, self._pipelines()))

    # ------------------------------------------------------------------ lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.settings = self._params.read()
            device = self.settings.device
            pointer = self._params.backend("pointer", Pointer, device, self.settings.pointer_process)
            self._backends = (pointer, None)
            self._backends = (pointer, self._params.backend("propagator", MaskPropagator, device))
            budget = check_buffer_memory(self.settings)
        except (ConfigError, BackendError, ValueError) as error:
            self.get_logger().fatal(f"cannot configure: {error}")
            self._close_backends()
            _free_memory()
            return TransitionCallbackReturn.FAILURE
        self._wire(budget)
        self._params.warn_unknown()
        names = ", ".join(type(b).__name__ if b else "none" for b in self._backends)
        self.get_logger().info(
            f"configured on {device}: pointer, propagator = {names}; cameras {', '.join(self._cameras)}; "
            f"frame buffers {budget.text()}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _wire(self, budget: BufferBudget) -> None:
        """The node's parts for these settings: cameras, planner API, outputs, inputs, diagnostics."""
        settings = self.settings
        self._cameras = {
            c.name: NodeCamera(
                c,
                self.create_lifecycle_publisher(Image, _debug_topic(c, settings.cameras), 2),
                DepthSync(settings.depth_sync_tolerance_s),
            )
            for c in settings.cameras
        }
        status_pub = self.create_lifecycle_publisher(CommandStatus, "command_status", 20)
        self._planner = PlannerApi(self, status_pub, self._pipelines, self.internal_error)
        self._outputs = Outputs(self, settings, self._cameras, self._planner, self.problem)
        self._inputs = CameraInputs(self, settings)
        self._diagnostics = Diagnostics(self, self._cameras, budget, settings.device)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        pointer, propagator = self._backends
        try:
            commands = self._start_pipelines(pointer, propagator)
        except ValueError as error:
            self.get_logger().fatal(f"cannot activate: {error}")
            self._stop_work()
            return TransitionCallbackReturn.FAILURE
        self._live = self._planner.start(commands) + self._diagnostics.timers(self.settings.stats_period_s)
        for camera in self._cameras.values():
            self._live += self._inputs.subscribe(camera)
        inputs = ", ".join(f"{c.name} <- {c.config.image_topic} ({c.config.transport})" for c in self._cameras.values())
        self.get_logger().info(
            f"ready on {self.settings.device}: pointer {type(pointer).__name__ if pointer else 'none'}, "
            f"propagator {type(propagator).__name__ if propagator else 'none'}; cameras {inputs}; "
            f"commands on {self._planner.command_topic}"
        )
        if pointer is None:
            self.get_logger().warning("no pointer_backend set: commands will be rejected")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_work()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def _start_pipelines(self, pointer: Pointer | None, propagator: MaskPropagator | None) -> CommandBook:
        """A pipeline per camera: shared commands, track ids and pointer turns; own propagator state."""
        config = self.settings.pipeline
        commands = CommandBook(config.max_query_chars, config.max_commands, tuple(self._cameras))
        track_ids, turns = itertools.count(1), TakeTurns()
        for index, camera in enumerate(self._cameras.values()):
            own = propagator.for_another_camera() if propagator is not None and index > 0 else propagator
            camera.pipeline = PerceptionPipeline(
                replace(config, camera=camera.name),
                self.settings.device,
                pointer,
                own,
                self._outputs,
                commands,
                track_ids,
                turns,
            )
            camera.pipeline.start()
        return commands

    def _pipelines(self) -> list[PerceptionPipeline]:
        return [c.pipeline for c in self._cameras.values() if c.pipeline is not None]

    def _stop_work(self) -> None:
        """Stop subscriptions, services and workers; free what the buffers held on the GPU."""
        for entity in self._live:
            entity.destroy() if isinstance(entity, ActionServer) else self._destroy(entity)
        self._live = []
        for camera in self._cameras.values():
            if camera.decoder is not None:
                camera.decoder.close()
                camera.decoder = None
            if camera.pipeline is not None:
                camera.pipeline.close()
                camera.pipeline = None
        if self._planner is not None:
            self._planner.stop()
        _free_memory()

    def release(self) -> None:
        """Everything the node holds, models included (cleanup, shutdown, exit)."""
        self._stop_work()
        self._close_backends()
        _free_memory()

    def _close_backends(self) -> None:
        for backend in self._backends:
            if backend is not None:
                backend.close()
        self._backends = (None, None)

    def _destroy(self, entity) -> None:
        for destroy in (self.destroy_subscription, self.destroy_service, self.destroy_timer):
            if destroy(entity):
                return

    # ------------------------------------------------------------------ problems

    def problem(self, key: str, message: str) -> None:
        self._problems.report(key, message)

    def internal_error(self, text: str) -> None:
        """A bug in a callback that belongs to no camera: counted on the default camera and logged."""
        pipelines = self._pipelines()
        pipelines[0].problem("internal_errors", text) if pipelines else self.problem("internal_errors", text)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = PerceptionNode()
    if node.autostart:
        configured = node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        if not configured or node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            node.destroy_node()
            rclpy.try_shutdown()
            return 1
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.release()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
