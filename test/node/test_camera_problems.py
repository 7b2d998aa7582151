"""A camera's problems are counted and logged, also while it has no pipeline (inactive, or deactivating
under a callback still running): nothing vanishes, and the next activation's diagnostics show them."""

import numpy as np
import torch
from rclpy.clock import Clock
from ros_harness import image_msg
from sink_double import ListSinkDouble

from videomolmo_ros.io.depth_projection import DepthSync
from videomolmo_ros.node.camera_inputs import CameraInputs, NodeCamera
from videomolmo_ros.node.guarded import guarded
from videomolmo_ros.node.outputs import Outputs
from videomolmo_ros.pipeline.cameras import CameraConfig
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig


def camera_without_pipeline() -> tuple[NodeCamera, list[tuple[str, str]]]:
    """A camera as the node makes it at configure (no pipeline until activate), and what it logged."""
    logged = []
    camera = NodeCamera(CameraConfig("main"), None, DepthSync(), lambda key, message: logged.append((key, message)))
    return camera, logged


def test_a_bug_in_a_callback_while_the_camera_has_no_pipeline_is_counted_and_logged():
    camera, logged = camera_without_pipeline()
    callback = guarded(lambda msg: msg.header, CameraInputs._reporter(camera))
    callback(object())  # a message without the field the callback reads: a bug, reported
    assert camera.counts() == {"internal_errors": 1}
    [(key, message)] = logged
    assert key == "internal_errors" and message.startswith("camera main: ") and "AttributeError" in message


def test_an_extra_failing_while_the_camera_has_no_pipeline_is_counted_and_logged():
    camera, logged = camera_without_pipeline()
    Outputs._extra(camera, "markers", lambda: 1 / 0)  # an output of an abandoned worker, after deactivate
    assert camera.counts() == {"extras_failed_markers": 1}
    [(key, message)] = logged
    assert key == "extras_failed_markers" and "markers left out: ZeroDivisionError" in message


def test_with_a_pipeline_problems_count_there_and_add_to_those_counted_without_one():
    camera, logged = camera_without_pipeline()
    camera.problem("internal_errors", "a callback still running at deactivate")
    sink = ListSinkDouble()
    camera.pipeline = PerceptionPipeline(PipelineConfig(camera="main"), torch.device("cpu"), None, None, sink)
    Outputs._extra(camera, "markers", lambda: 1 / 0)
    camera.problem("internal_errors", "a bug while active")
    assert camera.counts() == {"internal_errors": 2, "extras_failed_markers": 1}
    assert camera.pipeline.counters.snapshot() == {"internal_errors": 1, "extras_failed_markers": 1}
    assert [key for key, _ in sink.problems] == ["extras_failed_markers", "internal_errors"]
    assert len(logged) == 1, "the pipeline reports its own problems"


def test_a_frame_whose_camera_was_deactivated_under_its_callback_is_counted_not_a_bug():
    """The image callback passed its 'active' check, then deactivate (another executor thread) took the pipeline."""
    camera, logged = camera_without_pipeline()
    inputs = CameraInputs(_ClockOnlyNodeDouble(), None)
    inputs._on_image(camera, image_msg(np.zeros((4, 6, 3), np.uint8), "rgb8", 1_000_000_000))
    assert camera.counts() == {"frames_skipped_inactive": 1}
    assert logged == []


class _ClockOnlyNodeDouble:
    """What the image callback asks of the node: its clock."""

    def get_clock(self) -> Clock:
        return Clock()
