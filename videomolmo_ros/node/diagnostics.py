"""/diagnostics at 1 Hz and the counters in the log: how each camera, and the model, are doing."""

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from videomolmo_ros.node.camera_inputs import NodeCamera
from videomolmo_ros.pipeline.cameras import BufferBudget


class Diagnostics:
    """Each camera's statuses, named "<node>: <camera>: <status>"; the model's once."""

    def __init__(self, node: Node, cameras: dict[str, NodeCamera], budget: BufferBudget, device: torch.device):
        self._node = node
        self._cameras = cameras
        self._budget = budget
        self._device = device
        self._pub = node.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self._last_stats: dict[str, dict[str, int]] = {}

    def timers(self, stats_period_s: float) -> list:
        """The diagnostics timer and, unless `stats_period_s` is 0, the counters log timer."""
        timers = [self._node.create_timer(1.0, self.publish)]
        if stats_period_s > 0:
            timers.append(self._node.create_timer(stats_period_s, self.log_stats))
        return timers

    def publish(self) -> None:
        gpu = torch.cuda.memory_allocated(self._device) if self._device.type == "cuda" else None
        now_s = self._node.get_clock().now().nanoseconds / 1e9
        array = DiagnosticArray()
        array.header.stamp = self._node.get_clock().now().to_msg()
        for index, camera in enumerate(self._cameras.values()):
            pipeline = camera.pipeline
            if pipeline is None:
                continue
            if warning := camera.health.missing_frames_warning():  # once: the camera status keeps counting
                self._node.get_logger().warning(f"camera {camera.name}: {warning}")
            statuses = camera.health.report(
                now_s,
                camera.counts(),
                (len(pipeline.stream), pipeline.stream.capacity),
                pipeline.last_grounding_s,
                "active",
                gpu,
                (pipeline.buffer_bytes, self._budget.per_camera[camera.name]),
            )
            for status in statuses:
                if status.name == "model" and index > 0:
                    continue
                name = status.name if status.name == "model" else f"{camera.name}: {status.name}"
                array.status.append(self._status(name, status))
        self._pub.publish(array)

    def _status(self, name: str, status) -> DiagnosticStatus:
        return DiagnosticStatus(
            level=bytes([int(status.level)]),
            name=f"{self._node.get_name()}: {name}",
            message=status.message,
            hardware_id=self._node.get_fully_qualified_name(),
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
