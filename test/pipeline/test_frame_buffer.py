"""frame_buffer: the bounded ring of recent camera frames (and device.resolve_device)."""

import gc
import itertools
import weakref

import numpy as np
import pytest
import torch

from videomolmo_ros.pipeline.device import resolve_device
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer, StampOrderError

H, W = 6, 8
NS = 1_000_000_000
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def image(k, height=H, width=W):
    """A frame whose pixels identify it: channel c of frame k holds (k * 3 + c) % 256."""
    frame = np.empty((height, width, 3), np.uint8)
    for channel in range(3):
        frame[..., channel] = (k * 3 + channel) % 256
    return frame


def push_frames(buffer, count, start=0, fps=30.0):
    """Push frames start..start+count-1 at `fps`; return their metas."""
    return [buffer.push(image(k), round(k * NS / fps), f"cam{k}") for k in range(start, start + count)]


class Payload:
    """A weak-referenceable stand-in for a cached encoder output."""


# ----------------------------------------------------------------- ring contents


def test_window_after_wrap_around_holds_newest_frames_in_order():
    buffer = FrameBuffer(capacity=4)
    metas = push_frames(buffer, 4 + 3)
    window = buffer.window(4)
    assert len(window) == 4
    assert [m.seq for m in window.metas] == [m.seq for m in metas[-4:]]
    assert [m.stamp_ns for m in window.metas] == [round(k * NS / 30) for k in range(3, 7)]
    assert [m.frame_id for m in window.metas] == ["cam3", "cam4", "cam5", "cam6"]
    for index, k in enumerate(range(3, 7)):
        assert np.array_equal(window.images[index].numpy(), image(k))
        assert np.array_equal(window.frame(index).image.numpy(), image(k))


def test_seq_numbers_count_pushes_and_never_repeat():
    buffer = FrameBuffer(capacity=3)
    seqs = [m.seq for m in push_frames(buffer, 10)]
    assert seqs == sorted(set(seqs))
    assert buffer.newest().seq == seqs[-1]


def test_window_larger_than_held_returns_all_held_frames():
    buffer = FrameBuffer(capacity=8)
    push_frames(buffer, 3)
    window = buffer.window(20)
    assert [m.frame_id for m in window.metas] == ["cam0", "cam1", "cam2"]
    assert window.images.shape == (3, H, W, 3)
    assert len(buffer) == 3


def test_window_of_empty_buffer_is_none():
    buffer = FrameBuffer(capacity=2)
    assert buffer.window(2) is None
    assert buffer.latest() is None
    push_frames(buffer, 1)
    assert buffer.window(0) is None


def test_window_seconds_since_first_uses_source_stamps():
    buffer = FrameBuffer(capacity=4)
    for k, t in enumerate([10.0, 10.5, 11.25]):
        buffer.push(image(k), round(t * NS), "cam")
    assert buffer.window(3).seconds_since_first() == pytest.approx([0.0, 0.5, 1.25])


def test_get_returns_a_held_frame_and_none_once_overwritten():
    buffer = FrameBuffer(capacity=3)
    metas = push_frames(buffer, 5)
    held = buffer.get(metas[-1].seq)
    assert held.meta == metas[-1]
    assert np.array_equal(held.image.numpy(), image(4))
    assert buffer.get(metas[0].seq) is None  # its slot now holds a newer frame
    assert buffer.get(metas[1].seq) is None
    assert buffer.get(metas[-1].seq + 1) is None  # not pushed yet


def test_latest_is_the_newest_frame():
    buffer = FrameBuffer(capacity=3)
    metas = push_frames(buffer, 5)
    latest = buffer.latest()
    assert latest.meta == metas[-1]
    assert (latest.height, latest.width) == (H, W)


# ----------------------------------------------------------------- stamps and decimation


def test_stamp_going_backwards_raises_and_keeps_the_buffer():
    buffer = FrameBuffer(capacity=4)
    buffer.push(image(0), 2 * NS, "cam")
    with pytest.raises(StampOrderError, match="older than the newest"):
        buffer.push(image(1), 2 * NS - 1, "cam")
    assert isinstance(StampOrderError("x"), ValueError)
    assert len(buffer) == 1
    assert buffer.newest().stamp_ns == 2 * NS


def test_equal_stamps_are_accepted():
    buffer = FrameBuffer(capacity=4)
    first = buffer.push(image(0), 5 * NS, "left")
    second = buffer.push(image(1), 5 * NS, "right")
    assert first is not None and second is not None
    assert [m.frame_id for m in buffer.window(4).metas] == ["left", "right"]


def test_older_stamp_accepted_after_clear():
    """A looping bag: the pipeline clears the buffer, then the old stamps must be accepted."""
    buffer = FrameBuffer(capacity=4)
    push_frames(buffer, 3, start=100)
    buffer.clear()
    assert buffer.push(image(0), 0, "cam") is not None


def test_decimation_keeps_every_15th_frame_of_30fps_at_2hz():
    buffer = FrameBuffer(capacity=64, sample_period_s=0.5)
    kept = [k for k, meta in enumerate(push_frames(buffer, 90, fps=30.0)) if meta is not None]
    assert kept == list(range(0, 90, 15))
    stamps = [m.stamp_ns for m in buffer.window(64).metas]
    assert all(b - a >= NS // 2 for a, b in itertools.pairwise(stamps))
    assert [m.frame_id for m in buffer.window(64).metas] == [f"cam{k}" for k in kept]


@pytest.mark.parametrize("context_fps", [2.0, 15.0])
def test_decimation_keeps_the_configured_rate_with_integer_nanosecond_stamps(context_fps):
    buffer = FrameBuffer(capacity=512, sample_period_s=1.0 / context_fps)
    period_ns = NS // 30  # what a 30 fps driver stamps: 33_333_333 ns
    for k in range(300):  # 10 s of video
        buffer.push(image(k), k * period_ns, "cam")
    stamps = [m.stamp_ns for m in buffer.window(512).metas]
    mean_interval_s = (stamps[-1] - stamps[0]) / (len(stamps) - 1) / NS
    assert mean_interval_s == pytest.approx(1.0 / context_fps, rel=0.03)


# ----------------------------------------------------------------- resolution and clear


def test_resolution_change_reallocates_and_forgets_older_frames():
    buffer = FrameBuffer(capacity=4)
    old = push_frames(buffer, 3)
    new = buffer.push(image(9, height=10, width=12), 1 * NS, "cam9")
    assert buffer.frame_shape == (10, 12, 3)
    assert buffer.nbytes == 4 * 10 * 12 * 3
    window = buffer.window(4)
    assert window.metas == (new,)
    assert np.array_equal(window.images[0].numpy(), image(9, height=10, width=12))
    assert all(buffer.get(meta.seq) is None for meta in old)
    assert buffer.put_feature(old[-1], "enc", 1) is False


def test_clear_forgets_every_frame_and_seq_keeps_counting():
    buffer = FrameBuffer(capacity=4)
    metas = push_frames(buffer, 3)
    buffer.clear()
    assert len(buffer) == 0
    assert buffer.window(4) is None
    assert buffer.newest() is None
    assert buffer.get(metas[-1].seq) is None
    assert buffer.put_feature(metas[-1], "enc", 1) is False
    after = buffer.push(image(7), 10 * NS, "cam7")
    assert after.seq > metas[-1].seq
    assert buffer.window(4).metas == (after,)


# ----------------------------------------------------------------- feature cache


def test_feature_is_stored_with_its_frame():
    buffer = FrameBuffer(capacity=4)
    metas = push_frames(buffer, 3)
    assert buffer.put_feature(metas[1], "encoder", "features-of-1") is True
    window = buffer.window(3)
    assert window.features[1] == {"encoder": "features-of-1"}
    assert window.features[0] == {} and window.features[2] == {}


def test_feature_refused_once_its_slot_was_overwritten():
    buffer = FrameBuffer(capacity=2)
    metas = push_frames(buffer, 3)
    assert buffer.put_feature(metas[0], "encoder", 0) is False
    assert all("encoder" not in features for features in buffer.window(2).features)


def test_features_die_with_their_slot():
    buffer = FrameBuffer(capacity=3)
    first = push_frames(buffer, 1)[0]
    payload = Payload()
    dead = weakref.ref(payload)
    assert buffer.put_feature(first, "encoder", payload)
    del payload
    push_frames(buffer, 3, start=1)  # overwrites the slot of frame 0
    gc.collect()
    assert dead() is None
    assert all(features == {} for features in buffer.window(3).features)


# ----------------------------------------------------------------- memory and copies


def test_memory_stays_bounded_over_thousands_of_pushes():
    buffer = FrameBuffer(capacity=5)
    push_frames(buffer, 1)
    assert buffer.nbytes == 5 * H * W * 3
    for k in range(1, 3000):
        meta = buffer.push(image(k), k * NS, "cam")
        buffer.put_feature(meta, "encoder", np.zeros(16))
    assert buffer.nbytes == 5 * H * W * 3
    assert len(buffer) == 5
    assert len(buffer.window(10_000)) == 5


def test_window_is_a_copy_unaffected_by_mutation_or_later_pushes():
    buffer = FrameBuffer(capacity=3)
    push_frames(buffer, 3)
    window = buffer.window(3)
    window.images[0].fill_(255)  # mutating the returned tensor ...
    assert np.array_equal(buffer.window(3).images[0].numpy(), image(0))  # ... does not touch the ring
    before = buffer.window(3)
    push_frames(buffer, 3, start=3)  # the camera overwrites every slot
    assert [m.frame_id for m in before.metas] == ["cam0", "cam1", "cam2"]
    for index in range(3):
        assert np.array_equal(before.images[index].numpy(), image(index))


def test_get_and_features_are_copies():
    buffer = FrameBuffer(capacity=2)
    meta = push_frames(buffer, 1)[0]
    buffer.get(meta.seq).image.fill_(255)
    assert np.array_equal(buffer.get(meta.seq).image.numpy(), image(0))
    buffer.window(1).features[0]["intruder"] = 1
    assert buffer.window(1).features[0] == {}


def test_pushed_source_array_can_be_reused_by_the_caller():
    buffer = FrameBuffer(capacity=2)
    frame = image(1)
    buffer.push(frame, 0, "cam")
    frame[:] = 0  # a driver reusing its buffer
    assert np.array_equal(buffer.latest().image.numpy(), image(1))


# ----------------------------------------------------------------- device and validation


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_frames_live_on_the_buffer_device(device):
    buffer = FrameBuffer(capacity=3, device=device)
    buffer.push(image(0), 0, "cam")
    buffer.push(torch.from_numpy(image(1)), 1, "cam")
    assert buffer.device.type == device
    window = buffer.window(2)
    assert window.images.device.type == device
    assert buffer.latest().image.device.type == device
    assert np.array_equal(window.images[1].cpu().numpy(), image(1))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((H, W), np.uint8),
        np.zeros((H, W, 4), np.uint8),
        np.zeros((H, W, 1), np.uint8),
        np.zeros((H, W, 3), np.float32),
        np.zeros((H, W, 3), np.uint16),
        torch.zeros((H, W, 3), dtype=torch.float32),
        torch.zeros((3, H, W), dtype=torch.uint8),
    ],
    ids=["gray", "rgba", "one-channel", "float32", "uint16", "torch-float", "torch-chw"],
)
def test_wrong_image_shape_or_dtype_raises_value_error(bad):
    buffer = FrameBuffer(capacity=2)
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        buffer.push(bad, 0, "cam")
    assert len(buffer) == 0


def test_capacity_below_one_is_refused():
    with pytest.raises(ValueError, match="capacity"):
        FrameBuffer(capacity=0)


def test_resolve_device_auto_picks_gpu_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("").type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_resolve_device_cuda_without_gpu_is_a_helpful_value_error(spec):
    with pytest.raises(ValueError, match="no CUDA GPU") as error:
        resolve_device(spec)
    assert "cpu" in str(error.value)


@pytest.mark.parametrize("spec", ["garbage", "gpu", "cuda:x"])
def test_resolve_device_garbage_is_a_value_error(spec):
    with pytest.raises(ValueError, match=spec):
        resolve_device(spec)


def test_a_feature_put_through_a_window_reaches_later_windows():
    buffer = FrameBuffer(capacity=3)
    push_frames(buffer, 3)
    first = buffer.window(3)
    assert first.put_feature(2, "vit", "features of frame 2")
    push_frames(buffer, 1, start=3)
    later = buffer.window(3)
    assert later.features[1] == {"vit": "features of frame 2"}, "the same frame, one slot older"
    assert not first.put_feature(0, "vit", "x"), "frame 0 has left the buffer"
