"""mask_fusion: VideoMolmo's bidirectional mask fusion rule and the fixed-lag live fuser."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from videomolmo_ros.contracts.frames import FrameMeta
from videomolmo_ros.pipeline.mask_fusion import FixedLagFuser, fuse_frame, fuse_masks, mask_iou

WIDTH = 10


def span(start: int, stop: int, width: int = WIDTH) -> np.ndarray:
    """A 1 x width mask with pixels start..stop-1 set: overlaps are easy to count by hand."""
    mask = np.zeros((1, width), bool)
    mask[0, start:stop] = True
    return mask


EMPTY = span(0, 0)


def meta(k: int, seq_offset: int = 0) -> FrameMeta:
    """Frame k of a 10 Hz stream; `seq_offset` gives the same frame as another buffer numbers it."""
    return FrameMeta(seq=k + seq_offset, stamp_ns=k * 100_000_000, frame_id="cam")


def numbers(metas) -> list[int]:
    """Frame numbers k of metas made by `meta(k)`."""
    return [m.stamp_ns // 100_000_000 for m in metas]


def stamps(released) -> list[int]:
    """Frame numbers of released frames, in the order released."""
    return numbers(r.meta for r in released)


# ----------------------------------------------------------------- fuse_masks


def test_agreeing_masks_give_their_intersection() -> None:
    # forward 0..9, backward 2..9: IoU 8 / 10 = 0.8 >= 0.7
    assert np.array_equal(fuse_masks(span(0, 10), span(2, 10)), span(2, 10))


def test_disagreeing_masks_give_their_union() -> None:
    # forward 0..4, backward 3..7: IoU 2 / 8 = 0.25 < 0.7
    assert np.array_equal(fuse_masks(span(0, 5), span(3, 8)), span(0, 8))


def test_tau_boundary_is_inclusive() -> None:
    # forward 0..9, backward 3..9: IoU 7 / 10, exactly 0.7 -> intersection
    assert mask_iou(span(0, 10), span(3, 10)) == 0.7
    assert np.array_equal(fuse_masks(span(0, 10), span(3, 10), tau=0.7), span(3, 10))
    # 69 / 100 just below -> union (here the forward mask)
    forward, backward = span(0, 100, width=100), span(31, 100, width=100)
    assert mask_iou(forward, backward) == 0.69
    assert np.array_equal(fuse_masks(forward, backward), forward)


def test_empty_forward_takes_backward() -> None:
    assert np.array_equal(fuse_masks(EMPTY, span(4, 6)), span(4, 6))
    assert np.array_equal(fuse_masks(None, span(4, 6)), span(4, 6))


def test_missing_or_empty_backward_keeps_forward() -> None:
    assert np.array_equal(fuse_masks(span(1, 3), None), span(1, 3))
    assert np.array_equal(fuse_masks(span(1, 3), EMPTY), span(1, 3))  # IoU 0 -> union


def test_both_empty_is_none_only_when_both_are_none() -> None:
    assert fuse_masks(None, None) is None
    assert not fuse_masks(EMPTY, None).any()
    assert not fuse_masks(None, EMPTY).any()
    assert not fuse_masks(EMPTY, EMPTY).any()


def test_iou_of_two_empty_masks_is_one() -> None:
    assert mask_iou(EMPTY, EMPTY) == 1.0


def test_masks_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        fuse_masks(span(0, 3), span(0, 3, width=12))


@settings(max_examples=200, deadline=None)
@given(
    pair=hnp.arrays(bool, st.tuples(st.just(2), st.integers(1, 6), st.integers(1, 6))),
    tau=st.floats(0.0, 1.0),
)
def test_fused_mask_lies_between_intersection_and_union_and_is_one_of_them(pair, tau) -> None:
    forward, backward = pair
    fused = fuse_masks(forward, backward, tau)
    intersection, union = forward & backward, forward | backward
    assert not (intersection & ~fused).any()
    assert not (fused & ~union).any()
    assert np.array_equal(fused, intersection) or np.array_equal(fused, union)


# ----------------------------------------------------------------- fuse_frame


def test_fuse_frame_keeps_one_sided_ids_and_fuses_shared_ones() -> None:
    forward = {1: span(0, 10), 2: span(0, 2)}
    backward = {1: span(2, 10), 3: span(5, 7)}
    fused = fuse_frame(forward, backward)
    assert list(fused) == [1, 2, 3]
    assert np.array_equal(fused[1], span(2, 10))  # IoU 0.8: intersection
    assert np.array_equal(fused[2], span(0, 2))  # forward only
    assert np.array_equal(fused[3], span(5, 7))  # backward only


# ----------------------------------------------------------------- FixedLagFuser


def test_frames_are_held_until_a_keyframe_then_released_in_order_and_fused() -> None:
    fuser = FixedLagFuser(max_lag_frames=10)
    forward = {
        0: {1: EMPTY},  # object 1 not grounded yet
        1: {1: span(0, 10), 2: span(0, 2)},
        2: {1: span(0, 5)},
        3: {1: span(6, 9)},  # the keyframe
        4: {1: span(6, 9)},
    }
    for k, masks in forward.items():
        assert fuser.push(meta(k), masks) == []
    assert len(fuser) == 5

    keyframe = meta(3, seq_offset=-3)  # numbered by the context buffer: matched by stamp
    assert numbers(fuser.frames_needing_backward(keyframe)) == [0, 1, 2]
    backward = {
        meta(0).stamp_ns: {1: span(4, 6)},  # forward empty -> backward
        meta(1).stamp_ns: {1: span(2, 10), 3: span(7, 8)},  # IoU 0.8 -> intersection
        meta(2).stamp_ns: {1: span(3, 8)},  # IoU 0.25 -> union
    }
    released = fuser.keyframe(keyframe, backward)

    assert stamps(released) == [0, 1, 2, 3]
    assert [r.fused for r in released] == [True, True, True, False]
    assert np.array_equal(released[0].masks[1], span(4, 6))
    assert np.array_equal(released[1].masks[1], span(2, 10))
    assert np.array_equal(released[1].masks[2], span(0, 2))  # forward-only id
    assert np.array_equal(released[1].masks[3], span(7, 8))  # backward-only id
    assert np.array_equal(released[2].masks[1], span(0, 8))
    assert released[3].masks.keys() == {1}
    assert np.array_equal(released[3].masks[1], span(6, 9))  # the keyframe keeps its forward masks
    assert released[3].meta == meta(3)  # the caller's meta from push, not the keyframe's
    assert len(fuser) == 1  # frame 4 stays held


def test_next_keyframe_covers_only_frames_after_the_previous_one() -> None:
    fuser = FixedLagFuser(max_lag_frames=10)
    for k in range(4):
        fuser.push(meta(k), {1: span(0, 4)})
    fuser.keyframe(meta(1), {meta(0).stamp_ns: {1: span(0, 4)}})
    assert numbers(fuser.frames_needing_backward(meta(3))) == [2]
    released = fuser.keyframe(meta(3), {meta(2).stamp_ns: {1: span(0, 3)}})
    assert stamps(released) == [2, 3]
    assert np.array_equal(released[0].masks[1], span(0, 3))  # IoU 0.75: intersection
    assert len(fuser) == 0


def test_frame_without_backward_masks_is_released_forward_only() -> None:
    fuser = FixedLagFuser(max_lag_frames=10)
    for k in range(3):
        fuser.push(meta(k), {1: span(k, k + 1)})
    released = fuser.keyframe(meta(2), {meta(1).stamp_ns: {1: span(5, 6)}})
    assert [r.fused for r in released] == [False, True, False]
    assert np.array_equal(released[0].masks[1], span(0, 1))
    assert np.array_equal(released[1].masks[1], span(1, 2) | span(5, 6))


def test_frames_beyond_the_lag_bound_are_released_forward_only_and_counted() -> None:
    fuser = FixedLagFuser(max_lag_frames=2)
    assert [fuser.push(meta(k), {1: span(k, k + 1)}) for k in range(3)] == [[], [], []]
    released = fuser.push(meta(3), {1: span(3, 4)})
    assert stamps(released) == [0]
    assert not released[0].fused
    assert np.array_equal(released[0].masks[1], span(0, 1))
    assert stamps(fuser.push(meta(4), {})) == [1]
    assert fuser.timeouts == 2
    assert len(fuser) == 3


def test_frames_held_longer_than_the_time_bound_are_released_forward_only_and_counted() -> None:
    now = [0.0]
    fuser = FixedLagFuser(max_lag_frames=100, max_lag_s=2.0, clock=lambda: now[0])
    assert fuser.due_in() is None, "nothing held, nothing due"
    for k in range(3):
        now[0] = k * 0.5
        fuser.push(meta(k), {1: span(k, k + 1)})
    now[0] = 1.9
    assert fuser.expire() == [] and fuser.due_in() == pytest.approx(0.1)
    now[0] = 2.6  # the stream ended at 1.0 s: no frame, no keyframe since
    released = fuser.expire()
    assert stamps(released) == [0, 1] and not any(r.fused for r in released)
    assert np.array_equal(released[1].masks[1], span(1, 2))
    assert fuser.expired == 2 and fuser.timeouts == 0 and len(fuser) == 1
    assert fuser.due_in() == pytest.approx(0.4)


def test_amend_adds_objects_to_a_held_frame_only() -> None:
    fuser = FixedLagFuser(max_lag_frames=10)
    for k in range(2):
        fuser.push(meta(k), {1: span(0, 3)})
    assert fuser.amend(meta(1), {2: span(5, 8)})
    assert not fuser.amend(meta(7), {2: span(5, 8)}), "not held"
    assert [sorted(r.masks) for r in fuser.peek()] == [[1], [1, 2]]
    assert len(fuser) == 2, "peek leaves them held"
    assert np.array_equal(fuser.flush()[1].masks[2], span(5, 8))


def test_keyframe_for_a_frame_not_held_is_counted_and_changes_nothing() -> None:
    fuser = FixedLagFuser(max_lag_frames=2)
    for k in range(5):
        fuser.push(meta(k), {1: span(k, k + 1)})  # frames 0 and 1 time out
    for gone in (meta(0), meta(99)):  # too old, unknown
        assert fuser.frames_needing_backward(gone) == []
        assert fuser.keyframe(gone, {meta(2).stamp_ns: {1: span(0, 10)}}) == []
    assert fuser.missed_keyframes == 2
    assert stamps(fuser.flush()) == [2, 3, 4]


def test_backward_masks_for_frames_released_meanwhile_are_ignored() -> None:
    fuser = FixedLagFuser(max_lag_frames=2)
    for k in range(3):
        fuser.push(meta(k), {1: span(k, k + 1)})
    needed = fuser.frames_needing_backward(meta(2))
    fuser.push(meta(3), {})  # the backward pass was slow: frame 0 times out
    released = fuser.keyframe(meta(2), {m.stamp_ns: {1: span(0, 10)} for m in needed})
    assert stamps(released) == [1, 2]
    assert fuser.timeouts == 1


def test_flush_releases_everything_forward_only() -> None:
    fuser = FixedLagFuser(max_lag_frames=10)
    for k in range(3):
        fuser.push(meta(k), {1: span(k, k + 1)})
    released = fuser.flush()
    assert stamps(released) == [0, 1, 2]
    assert not any(r.fused for r in released)
    assert np.array_equal(released[2].masks[1], span(2, 3))
    assert len(fuser) == 0
    assert fuser.flush() == []


def test_reset_drops_held_frames_and_keeps_counters() -> None:
    fuser = FixedLagFuser(max_lag_frames=1)
    for k in range(3):
        fuser.push(meta(k), {})
    fuser.keyframe(meta(0), {})
    assert fuser.reset() == 2
    assert len(fuser) == 0
    assert (fuser.timeouts, fuser.missed_keyframes) == (1, 1)
    assert fuser.push(meta(0), {}) == []  # a restarted stream may reuse stamps after a reset


def test_a_held_key_pushed_again_is_refused() -> None:
    fuser = FixedLagFuser(max_lag_frames=4)
    fuser.push(meta(0), {})
    with pytest.raises(ValueError, match="already held"):
        fuser.push(meta(0, seq_offset=7), {})


def test_zero_lag_is_refused() -> None:
    with pytest.raises(ValueError, match="max_lag_frames"):
        FixedLagFuser(max_lag_frames=0)


def test_custom_key_matches_frames() -> None:
    fuser = FixedLagFuser(max_lag_frames=4, key=lambda name: name)
    fuser.push("a", {1: span(0, 2)})
    fuser.push("b", {1: span(0, 2)})
    released = fuser.keyframe("b", {"a": {1: span(1, 2)}})
    assert [(r.meta, r.fused) for r in released] == [("a", True), ("b", False)]
    assert np.array_equal(released[0].masks[1], span(0, 2))  # IoU 0.5: union
