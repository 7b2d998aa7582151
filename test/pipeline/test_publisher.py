"""The publisher worker: outputs delivered in order from a thread of their own, bounded, drops counted."""

from polling import wait_for
from sink_double import BrokenMasksSinkDouble, GatedSinkDouble

from videomolmo_ros.contracts.frames import FrameMeta
from videomolmo_ros.pipeline.outputs import MasksOutput, TargetsOutput, TracksOutput
from videomolmo_ros.pipeline.publisher import QueuedSink


def frame_outputs(k: int, command: str = "c") -> tuple[TracksOutput, MasksOutput]:
    meta = FrameMeta(k, k * 1000, "cam")
    return TracksOutput(meta, command, "q", ()), MasksOutput(meta, command, (), (), (4, 4))


def stamps(outputs) -> list[int]:
    return [o.meta.stamp_ns // 1000 for o in outputs]


def test_a_slow_publisher_never_holds_up_the_caller_and_gets_every_output_in_order():
    sink, problems = GatedSinkDouble(), []
    queued = QueuedSink(sink, max_pending=100, problem=lambda *p: problems.append(p))
    for k in range(10):
        tracks, masks = frame_outputs(k)
        queued.publish_tracks(tracks)  # returns at once: the sink is blocked
        queued.publish_masks(masks)
    queued.publish_targets(TargetsOutput(FrameMeta(3, 3000, "cam"), "c", "q", ()))
    assert sink.tracks == [] and queued.pending >= 19
    sink.gate.set()
    queued.close()
    assert stamps(sink.tracks) == stamps(sink.masks) == list(range(10)) and len(sink.targets) == 1
    assert problems == [] and queued.pending == 0


def test_when_the_queue_is_full_a_frames_tracks_and_masks_are_dropped_together_targets_never():
    sink, problems = GatedSinkDouble(), []
    queued = QueuedSink(sink, max_pending=4, problem=lambda *p: problems.append(p))
    for k in range(6):
        tracks, masks = frame_outputs(k)
        queued.publish_tracks(tracks)
        queued.publish_masks(masks)
        queued.publish_targets(TargetsOutput(tracks.meta, "c", "q", ()))
    sink.gate.set()
    queued.close()
    assert stamps(sink.tracks) == stamps(sink.masks), "a frame's tracks and masks go out together or not at all"
    assert stamps(sink.targets) == list(range(6)), "targets are never dropped"
    dropped = [message for key, message in problems if key == "outputs_dropped_publisher_busy"]
    assert len(dropped) == 6 - len(sink.tracks) > 0 and "publisher" in dropped[0]


def test_a_failing_output_is_reported_and_the_next_ones_still_go_out():
    sink, problems = BrokenMasksSinkDouble(), []
    queued = QueuedSink(sink, max_pending=10, problem=lambda *p: problems.append(p))
    for k in range(3):
        queued.publish_masks(frame_outputs(k)[1])
    assert wait_for(lambda: len(sink.masks) == 2)
    queued.close()
    assert stamps(sink.masks) == [0, 2]
    assert [key for key, _ in problems] == ["internal_errors"] and "broken message" in problems[0][1]
