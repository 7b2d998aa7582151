"""cameras: per-camera settings checked with the parameter named, and the frame-buffer budget."""

import pytest

from videomolmo_ros.pipeline.cameras import MIB, CameraConfig, buffer_budget, check_budget, check_cameras


def test_the_budget_is_every_cameras_rings_at_their_largest_frame():
    cameras = [
        CameraConfig("head", max_width=640, max_height=480),
        CameraConfig("wrist", "w", max_width=1280, max_height=720),
    ]
    budget = buffer_budget(cameras, stream_frames=4, context_frames=8)
    assert budget.per_camera == {"head": 12 * 640 * 480 * 3, "wrist": 12 * 1280 * 720 * 3}
    assert budget.total == 12 * 3 * (640 * 480 + 1280 * 720)
    assert "head 10.5 MiB" in budget.text() and "wrist 31.6 MiB" in budget.text()
    tracking = buffer_budget(cameras, stream_frames=4, context_frames=8, tracked_frames=61)
    assert tracking.per_camera["head"] == 73 * 640 * 480 * 3, "the tracker's ring: 61 frames more"


def test_a_budget_that_does_not_fit_fails_with_the_numbers():
    budget = buffer_budget([CameraConfig("head")], stream_frames=4, context_frames=8)  # 1920x1080
    check_budget(budget, 0.0, None, "cpu")  # no limit on CPU
    check_budget(budget, 0.0, budget.total, "cuda:0")  # exactly fits the free GPU memory
    with pytest.raises(ValueError) as error:
        check_budget(budget, 0.0, 50 * MIB, "cuda:0")
    message = str(error.value)
    assert "need 71.2 MiB" in message and "only 50.0 MiB is free on cuda:0 after loading the models" in message
    assert "context_frames" in message and "max_width" in message, "says what to change"


def test_the_smaller_of_the_limit_and_the_free_gpu_memory_applies():
    budget = buffer_budget([CameraConfig("head", max_width=640, max_height=480)], 4, 8)  # 10.5 MiB
    with pytest.raises(ValueError, match=r"only 8\.0 MiB allowed \(buffer_memory_limit_mb\)"):
        check_budget(budget, 8.0, 4096 * MIB, "cuda:0")
    with pytest.raises(ValueError, match=r"only 9\.0 MiB is free on cuda:1"):
        check_budget(budget, 100.0, 9 * MIB, "cuda:1")
    with pytest.raises(ValueError, match="allowed"):
        check_budget(budget, 10.0, None, "cpu")
    check_budget(budget, 11.0, None, "cpu")


@pytest.mark.parametrize(
    "camera, parameter",
    [
        (CameraConfig("2cam"), "camera name '2cam'"),
        (CameraConfig("names"), "camera name 'names'"),
        (CameraConfig("head", image_topic=""), "cameras.head.image_topic"),
        (CameraConfig("head", transport="theora"), "cameras.head.transport = 'theora'"),
        (CameraConfig("head", reliability="sometimes"), "cameras.head.reliability = 'sometimes'"),
        (CameraConfig("head", max_width=0), "cameras.head.max_width"),
    ],
)
def test_a_bad_setting_names_its_parameter(camera, parameter):
    with pytest.raises(ValueError, match="^" + parameter.replace(".", r"\.").replace("(", r"\(")):
        check_cameras([camera])


def test_two_cameras_cannot_share_a_name_or_an_image_topic():
    with pytest.raises(ValueError, match="share the name head"):
        check_cameras([CameraConfig("head", "a"), CameraConfig("head", "b")])
    with pytest.raises(ValueError, match="share the image topic image"):
        check_cameras([CameraConfig("head"), CameraConfig("wrist")])
    with pytest.raises(ValueError, match="empty"):
        check_cameras([])


def test_a_frame_larger_than_budgeted_is_refused_saying_which_parameter_to_raise():
    camera = CameraConfig("wrist", max_width=640, max_height=480)
    assert camera.too_large(480, 640) == "" and camera.too_large(240, 320) == ""
    reason = camera.too_large(481, 640)
    assert "640x481 is larger than the 640x480" in reason and "cameras.wrist.max_width" in reason
