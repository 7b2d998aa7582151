"""Track velocity: a box sliding at 10 cm/s on the table, its position from noisy depth each frame, within 1 cm/s."""

import math

import numpy as np
import pytest
from rgbd_scene import COLOUR, Box, moved, render

from videomolmo_ros.pipeline.object_geometry import object_geometry
from videomolmo_ros.pipeline.velocity import VelocityFilter

FPS = 15


def _world_position(box: Box, seed: int) -> tuple[float, float, float]:
    frame = render(box, seed=seed)
    rows, cols = np.nonzero(frame.mask)
    target = (float(np.median(cols)), float(np.median(rows)), frame.mask)
    geometry = object_geometry([target], (640, 480), COLOUR, frame.depth(), transform=frame.camera_to_world)
    return geometry[0].position


@pytest.mark.parametrize("direction_deg", [0, 90])
def test_an_object_moving_10_cm_per_s_has_its_velocity_within_1_cm_per_s(direction_deg):
    speed = 0.10
    v = (speed * math.cos(math.radians(direction_deg)), speed * math.sin(math.radians(direction_deg)))
    velocities = VelocityFilter(window_s=0.5)
    estimates = []
    for k in range(FPS):  # one second
        position = _world_position(moved(Box(), v, k / FPS), seed=k)
        estimate = velocities.update("box", round(k / FPS * 1e9), position, "world")
        if estimate is not None:
            estimates.append(estimate)
    assert len(estimates) >= FPS // 2, "a velocity once half the window is covered"
    for estimate in estimates:
        assert np.linalg.norm(np.subtract(estimate, (*v, 0.0))) < 0.01


def test_a_still_object_has_no_velocity_until_the_window_is_half_covered_and_then_zero():
    velocities = VelocityFilter(window_s=0.5)
    found = [velocities.update(1, k * 50_000_000, (1.0, 2.0, 0.5), "world") for k in range(10)]
    assert found[:5] == [None] * 5
    assert all(f == pytest.approx((0.0, 0.0, 0.0)) for f in found[5:])


def test_a_change_of_frame_or_time_going_back_restarts_the_history():
    velocities = VelocityFilter(window_s=0.5)
    for k in range(10):
        velocities.update(1, k * 50_000_000, (0.1 * k, 0.0, 0.0), "world")
    assert velocities.update(1, 10 * 50_000_000, (5.0, 0.0, 0.0), "camera_optical") is None
    assert velocities.update(2, 0, (0.0, 0.0, 0.0), "world") is None
    assert velocities.update(2, -1, (0.0, 0.0, 0.0), "world") is None


def test_memory_is_bounded_by_the_capacity_the_longest_unseen_forgotten():
    velocities = VelocityFilter(capacity=3)
    for key in range(10):
        velocities.update(key, 0, (0.0, 0.0, 0.0), "world")
    assert len(velocities) == 3
