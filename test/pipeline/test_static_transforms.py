"""static_transforms: a fixed camera's extrinsics as text, looked up either way round."""

import math

import numpy as np
import pytest

from videomolmo_ros.pipeline.static_transforms import StaticTransforms

# The camera 1 m above base_link looking straight down: optical z is base -z (half a turn about x).
DOWN = "base_link camera 0.1 0 1.0 1 0 0 0"


def test_a_given_transform_moves_camera_points_into_the_parent():
    moved = StaticTransforms(DOWN).lookup("base_link", "camera").apply(np.array([[0.2, 0.3, 0.8]]))
    assert moved[0] == pytest.approx((0.3, -0.3, 0.2))


def test_the_inverse_is_found_too_and_undoes_it():
    transforms = StaticTransforms(f"{DOWN}; base_link wrist 0 0 0.5 0 0 {math.sin(0.3)} {math.cos(0.3)}")
    point = np.array([[0.2, -0.1, 0.7]])
    there = transforms.lookup("base_link", "wrist").apply(point)
    assert transforms.lookup("wrist", "base_link").apply(there) == pytest.approx(point)
    assert transforms.lookup("camera", "wrist") is None, "chains are not followed"


@pytest.mark.parametrize(
    "text", ["base_link camera 0 0 1", "base_link camera 0 0 1 0 0 0 2", "base_link camera 0 0 nan 0 0 0 1"]
)
def test_a_malformed_entry_is_refused_by_name(text):
    with pytest.raises(ValueError, match="base_link camera"):
        StaticTransforms(text)


def test_empty_text_is_no_transforms():
    assert not StaticTransforms("") and not StaticTransforms(" ; ")
