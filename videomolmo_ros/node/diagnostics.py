"""/diagnostics at 1 Hz and the counters in the log: how each camera, and its models, are doing.

As diagnostic_updater publishes them: each status is named "<node>: <task>" ("perception_node:
main: camera input"), says which hardware it is about (`hardware_id`: a camera's statuses its image
topic, a model's and the device's the device), and has a DiagnosticStatus level constant.
"""

from collections.abc import Callable
from dataclasses import replace

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from videomolmo_ros.backends.pointer_process import PointerProcess
from videomolmo_ros.node.camera_inputs import NodeCamera
from videomolmo_ros.node.guarded import guarded
from videomolmo_ros.pipeline.cameras import BufferBudget, MemoryLimit
from videomolmo_ros.pipeline.health import HealthStatus, Level, buffer_memory_status, device_status

LEVELS = {
    Level.OK: DiagnosticStatus.OK,
    Level.WARN: DiagnosticStatus.WARN,
    Level.ERROR: DiagnosticStatus.ERROR,
    Level.STALE: DiagnosticStatus.STALE,
}


class Diagnostics:
    """Each camera's statuses and its models' ("<node>: <camera>: <status>"); the device's and the frame
    buffers' memory (all cameras: held, budget, limit) once."""

    def __init__(
        self,
        node: Node,
        cameras: dict[str, NodeCamera],
        memory: tuple[BufferBudget, MemoryLimit],
        device: torch.device,
    ):
        self._node = node
        self._cameras = cameras
        self._budget, self._limit = memory
        self._device = device
        self._pub = node.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self._last_stats: dict[str, dict[str, int]] = {}

    def timers(self, stats_period_s: float, report: Callable[[str], None]) -> list:
        """The diagnostics timer and, unless `stats_period_s` is 0, the counters log timer.

        A bug in either is reported through `report` and costs that report, never the node.
        """
        timers = [self._node.create_timer(1.0, guarded(self.publish, report))]
        if stats_period_s > 0:
            timers.append(self._node.create_timer(stats_period_s, guarded(self.log_stats, report)))
        return timers

    def publish(self) -> None:
        now_s = self._node.get_clock().now().nanoseconds / 1e9
        array = DiagnosticArray()
        array.header.stamp = self._node.get_clock().now().to_msg()
        for camera in self._cameras.values():
            array.status.extend(self._camera_statuses(camera, now_s))
        gpu = torch.cuda.memory_allocated(self._device) if self._device.type == "cuda" else None
        array.status.append(self._status(device_status(str(self._device), gpu), str(self._device)))
        pipelines = [camera.pipeline for camera in self._cameras.values()]  # each read once: stop_work clears them
        held = sum(pipeline.buffer_bytes for pipeline in pipelines if pipeline is not None)
        memory = buffer_memory_status(held, self._budget.total, self._limit.bytes, self._limit.text())
        array.status.append(self._status(memory, str(self._device)))
        self._pub.publish(array)

    def _camera_statuses(self, camera: NodeCamera, now_s: float) -> list[DiagnosticStatus]:
        """The camera's statuses and its pointer's and propagator's; none while it has no pipeline."""
        pipeline = camera.pipeline
        if pipeline is None:
            return []
        if warning := camera.health.missing_frames_warning():  # once: the camera status keeps counting
            self._node.get_logger().warning(f"camera {camera.name}: {warning}")
        statuses = camera.health.report(
            now_s,
            camera.counts(),
            (len(pipeline.stream), pipeline.stream.capacity),
            pipeline.last_grounding_s,
            (pipeline.buffer_bytes, self._budget.per_camera[camera.name]),
        )
        topic = self._node.resolve_topic_name(camera.config.image_topic)
        result = [self._status(status, topic, camera.name) for status in statuses]
        for model, health in (
            (pipeline.pointer, pipeline.pointer_health),
            (pipeline.propagator, pipeline.propagator_health),
        ):
            if model is not None:
                status = health.status(model.down if isinstance(model, PointerProcess) else None)
                status = replace(status, values={"backend": model.describe(), **status.values})
                result.append(self._status(status, str(self._device), camera.name))
        return result

    def _status(self, status: HealthStatus, hardware_id: str, camera: str = "") -> DiagnosticStatus:
        task = f"{camera}: {status.name}" if camera else status.name
        return DiagnosticStatus(
            level=LEVELS[status.level],
            name=f"{self._node.get_name()}: {task}",
            message=status.message,
            hardware_id=hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in status.values.items()],
        )

    def log_stats(self) -> None:
        """Each camera's counters, when they changed since the last time."""
        for camera in self._cameras.values():
            counts = camera.counts()
            if counts != self._last_stats.get(camera.name, {}):
                self._last_stats[camera.name] = counts
                text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                self._node.get_logger().info(f"counters of camera {camera.name}: {text}")
