"""cameras: per-camera settings checked with the parameter named, and the frame-buffer budget."""

import pytest

from videomolmo_ros.pipeline.cameras import (
    MIB,
    CameraConfig,
    MemoryLimit,
    available_memory,
    buffer_budget,
    check_budget,
    check_cameras,
    memory_limit,
)


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


def test_a_budget_over_the_free_gpu_memory_fails_with_the_numbers():
    budget = buffer_budget([CameraConfig("head")], stream_frames=4, context_frames=8)  # 1920x1080
    check_budget(budget, memory_limit("cuda:0", 0.0, budget.total, None))  # exactly fits the free GPU memory
    with pytest.raises(ValueError) as error:
        check_budget(budget, memory_limit("cuda:0", 0.0, 50 * MIB, None))
    message = str(error.value)
    assert "need 71.2 MiB" in message and "only 50.0 MiB is free on cuda:0 after loading the models" in message
    assert "context_frames" in message and "max_width" in message, "says what to change"


def test_on_a_cpu_the_limit_is_half_the_available_memory():
    # What a peer could set before sizes were read-only: 256 stream, 384 context, 301 tracked frames at 16384^2.
    huge = buffer_budget([CameraConfig("main", max_width=16384, max_height=16384)], 256, 384, 301)
    limit = memory_limit("cpu", 0.0, None, 16384 * MIB)
    assert limit.bytes == 8192 * MIB
    with pytest.raises(ValueError) as error:
        check_budget(huge, limit)
    message = str(error.value)
    assert "need 722688.0 MiB for 941 frames per camera" in message
    assert "only 8192.0 MiB allowed on cpu: 50% of the 16384.0 MiB available (MemAvailable)" in message
    default = buffer_budget([CameraConfig("main")], 4, 8, 61)  # 433.1 MiB at 1920x1080
    check_budget(default, limit)
    with pytest.raises(ValueError, match=r"only 400\.0 MiB allowed on cpu"):
        check_budget(default, memory_limit("cpu", 0.0, None, 800 * MIB))


def test_buffer_memory_limit_mb_lowers_the_machines_limit_and_never_raises_it():
    budget = buffer_budget([CameraConfig("head", max_width=640, max_height=480)], 4, 8)  # 10.5 MiB
    lowered = memory_limit("cuda:0", 8.0, 4096 * MIB, None)
    assert lowered == MemoryLimit(8 * MIB, "allowed (buffer_memory_limit_mb)")
    with pytest.raises(ValueError, match=r"only 8\.0 MiB allowed \(buffer_memory_limit_mb\)"):
        check_budget(budget, lowered)
    with pytest.raises(ValueError, match=r"only 9\.0 MiB is free on cuda:1"):
        check_budget(budget, memory_limit("cuda:1", 100.0, 9 * MIB, None))
    assert memory_limit("cpu", 1e7, None, 64 * MIB).bytes == 32 * MIB, "a limit above the machine's is not taken"
    with pytest.raises(ValueError, match="allowed"):
        check_budget(budget, memory_limit("cpu", 10.0, None, 1024 * MIB))
    check_budget(budget, memory_limit("cpu", 11.0, None, 1024 * MIB))


def test_the_available_memory_is_the_kernels_memavailable_and_an_unreadable_one_is_an_error(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683900 kB\nMemFree:         6549504 kB\nMemAvailable:   19343360 kB\n")
    assert available_memory(str(meminfo)) == 19343360 * 1024
    meminfo.write_text("MemTotal:       24683900 kB\n")  # a kernel before 3.14
    with pytest.raises(ValueError, match=r"cannot read MemAvailable from .*meminfo"):
        available_memory(str(meminfo))
    with pytest.raises(ValueError, match="cannot read MemAvailable"):
        available_memory(str(tmp_path / "missing"))


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
