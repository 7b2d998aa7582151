"""The ROS-free pipeline with the oracle doubles on synthetic video."""

import itertools
import threading
import time

import numpy as np
import pytest
import torch
from failing_doubles import POINTER_ERROR, PROPAGATOR_ERROR, FailingPointerDouble, FailingPropagatorDouble
from oracle_doubles import (
    ColorOraclePointerDouble,
    ColorOraclePropagatorDouble,
    OracleOptions,
    RecordingPointerDouble,
)
from polling import wait_for
from sink_double import ListSinkDouble
from synthetic_video import MovingDisc, default_scene, render

from videomolmo_ros.contracts.grounding import GroundingMode, GroundingResult
from videomolmo_ros.contracts.interfaces import NoOptions
from videomolmo_ros.pipeline.commands import CommandAction, CommandBook, CommandRequest, CommandState
from videomolmo_ros.pipeline.health import Level
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig, TakeTurns

CPU = torch.device("cpu")


def make(pointer_options=None, propagate=True, pointer=None, propagator=None, **config):
    """A started pipeline with the oracle doubles (or `pointer`, `propagator`) and a list sink."""
    sink = ListSinkDouble()
    pipeline = PerceptionPipeline(
        PipelineConfig(**config),
        CPU,
        pointer or ColorOraclePointerDouble(pointer_options or OracleOptions(), CPU),
        propagator or (ColorOraclePropagatorDouble(NoOptions(), CPU) if propagate else None),
        sink,
    )
    pipeline.start()
    return pipeline, sink


def play(pipeline, seconds, fps=20.0, start_s=100.0, scene=None, pace=True):
    """Feed frames with source stamps start_s + k/fps; return {stamp_ns: true masks}."""
    scene = scene or default_scene()
    truth = {}
    for k in range(int(seconds * fps)):
        t = k / fps
        image, masks = render(scene, t)
        stamp_ns = round((start_s + t) * 1e9)
        truth[stamp_ns] = masks
        pipeline.submit_frame(image, stamp_ns, "cam")
        if pace:
            time.sleep(1.0 / fps)
    return truth


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_tracks_and_masks_follow_the_named_object_with_one_id():
    pipeline, sink = make()
    try:
        [event] = pipeline.submit_command(CommandRequest("", "the red ball", GroundingMode.TRACK))
        assert event.state is CommandState.ACCEPTED and event.id.startswith("cmd-")
        truth = play(pipeline, 3.0)
        assert wait_for(lambda: len(sink.masks) > 20)
    finally:
        pipeline.close()
    assert sink.targets and all(t.command_id == event.id for t in sink.targets)
    for output in sink.targets:
        [target] = output.targets
        mask = truth[output.meta.stamp_ns]["red"]
        assert mask[round(target.y), round(target.x)], "the target point lies on the red disc"
    ids = {track.id for output in sink.tracks for track in output.tracks}
    assert len(ids) == 1, f"one object, one id while it moves and is re-grounded: {ids}"
    with_masks = [m for m in sink.masks if m.ids]
    assert len(with_masks) > 20
    for output in with_masks:
        assert output.ids == tuple(ids)
        assert iou(output.masks[0], truth[output.meta.stamp_ns]["red"]) > 0.95
    assert sink.tracks[-1].tracks[0].state.name == "TRACKED"


def test_two_commands_get_distinct_ids_and_stop_removes_tracks():
    pipeline, sink = make()
    try:
        pipeline.submit_command(CommandRequest("r", "red", GroundingMode.TRACK))
        pipeline.submit_command(CommandRequest("b", "blue", GroundingMode.POINT))
        play(pipeline, 2.0)
        assert wait_for(lambda: {"r", "b"} <= {m.command_id for m in sink.masks if m.ids})
        [stopped] = pipeline.submit_command(CommandRequest("r", "", action=CommandAction.STOP))
        assert stopped.state is CommandState.STOPPED
        sink.masks.clear()
        play(pipeline, 1.0)
        assert wait_for(lambda: len(sink.masks) > 5)
    finally:
        pipeline.close()
    assert {m.command_id for m in sink.masks} == {"b"}
    red_ids = {t.id for o in sink.tracks if o.command_id == "r" for t in o.tracks}
    blue_ids = {t.id for o in sink.tracks if o.command_id == "b" for t in o.tracks}
    assert red_ids and blue_ids and not red_ids & blue_ids


def test_a_slow_model_never_holds_up_tracking():
    pipeline, sink = make(OracleOptions(delay_s=1.0))
    started = time.monotonic()
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 3.0)
        assert wait_for(lambda: sink.targets)
        masks_before = len(sink.masks)
        play(pipeline, 1.0)
    finally:
        pipeline.close()
    counts = pipeline.counters.snapshot()
    assert counts["groundings"] <= time.monotonic() - started + 1, "one 1-second query at a time"
    assert len(sink.masks) - masks_before >= 10, "masks kept coming at camera rate while the model ran"
    assert counts["frames_received"] == 80
    tracked, skipped = counts["frames_tracked"], counts.get("frames_skipped_tracking_busy", 0)
    assert tracked + skipped <= 80 and tracked > 40


def test_stale_results_are_dropped_and_counted():
    pipeline, sink = make(OracleOptions(delay_s=0.5), max_result_age_s=0.2)
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 2.0)
        assert wait_for(lambda: pipeline.counters.snapshot().get("groundings_dropped_too_old", 0) > 0)
    finally:
        pipeline.close()
    assert not sink.targets
    assert any("behind the camera" in message for _, message in sink.problems)


def test_a_time_jump_restarts_tracks_but_keeps_commands():
    pipeline, sink = make()
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 1.5, start_s=100.0)
        assert wait_for(lambda: any(m.ids for m in sink.masks))
        first_ids = {t.id for o in sink.tracks for t in o.tracks}
        sink.masks.clear()
        play(pipeline, 1.5, start_s=50.0)  # the bag looped
        assert wait_for(lambda: any(m.ids and m.meta.stamp_ns < 60e9 for m in sink.masks))
    finally:
        pipeline.close()
    assert pipeline.counters.snapshot()["time_jump_resets"] == 1
    assert any("went back" in message for _, message in sink.problems)
    later_ids = {i for m in sink.masks if m.meta.stamp_ns < 60e9 for i in m.ids}
    assert later_ids and not later_ids & first_ids
    stamps = [m.meta.stamp_ns for m in sink.masks]
    assert len(stamps) == len(set(stamps)), "no frame is published twice around the reset"


def test_model_failures_are_reported_and_other_commands_keep_working():
    pipeline, sink = make(OracleOptions(fail_on="broken"))
    try:
        pipeline.submit_command(CommandRequest("x", "broken red"))
        pipeline.submit_command(CommandRequest("b", "blue"))
        play(pipeline, 2.0)
        assert wait_for(lambda: any(t.command_id == "b" for t in sink.targets))
    finally:
        pipeline.close()
    assert pipeline.counters.snapshot()["grounding_failures"] >= 1
    assert any("failed" in message for key, message in sink.problems if key == "grounding_failures")


def test_a_pointer_failing_on_every_query_is_judged_sick_with_its_error():
    pipeline, sink = make(pointer=FailingPointerDouble(NoOptions(), CPU))
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 2.5)  # a new context window every 0.5 s: each one grounded, and failing
        assert wait_for(lambda: pipeline.pointer_health.status().level == Level.WARN, 10), pipeline.counters.snapshot()
    finally:
        pipeline.close()
    status = pipeline.pointer_health.status()
    assert status.message.startswith("the last ") and POINTER_ERROR in status.message
    assert status.values["failures"] == str(pipeline.counters.snapshot()["grounding_failures"])
    assert pipeline.propagator_health.status().level == Level.OK and not sink.targets


def test_a_propagator_failing_on_every_step_is_judged_sick_and_the_pointer_well():
    pipeline, sink = make(propagator=FailingPropagatorDouble(NoOptions(), CPU))
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 2.0)
        assert wait_for(lambda: pipeline.propagator_health.status().level == Level.WARN, 10)
    finally:
        pipeline.close()
    status = pipeline.propagator_health.status()
    assert PROPAGATOR_ERROR in status.values["last_error"] and "propagation steps failed" in status.message
    assert status.values["failures"] == str(pipeline.counters.snapshot()["propagation_failures"])
    assert pipeline.pointer_health.status().level == Level.OK and sink.targets
    assert not any(m.ids for m in sink.masks)


def test_without_a_propagator_tracks_come_from_groundings():
    pipeline, sink = make(propagate=False)
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 3.0)
        assert wait_for(lambda: len(sink.tracks) >= 3)
    finally:
        pipeline.close()
    assert not sink.masks
    stamps = {o.meta.stamp_ns for o in sink.targets}
    assert {o.meta.stamp_ns for o in sink.tracks} <= stamps, "tracks carry the stamp of the grounded frame"
    assert len({t.id for o in sink.tracks for t in o.tracks}) == 1


def test_commands_without_a_pointer_are_rejected_with_the_reason():
    pipeline = PerceptionPipeline(PipelineConfig(), CPU, None, None, ListSinkDouble())
    [event] = pipeline.submit_command(CommandRequest("", "red"))
    assert event.state is CommandState.REJECTED and "pointer_backend" in event.reason


@pytest.mark.parametrize("shape", [(240, 320, 3), (120, 160, 3)])
def test_frames_are_buffered_as_given(shape):
    pipeline = PerceptionPipeline(PipelineConfig(), CPU, None, None, ListSinkDouble())
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    pipeline.submit_frame(image, 5, "cam")
    assert np.array_equal(pipeline.stream.latest().image.numpy(), image)


class GatedBookDouble(CommandBook):
    """Holds the tracking worker where it asks which commands run (before it takes a frame), till the test
    lets it go: the test then knows which frames the worker has looked at, with no sleep."""

    def __init__(self):
        super().__init__()
        self.asked = threading.Semaphore(0)
        self.go_on = threading.Semaphore(0)

    def running(self, camera=None):
        if threading.current_thread().name == "tracking":
            self.asked.release()
            self.go_on.acquire(timeout=30)
        return super().running(camera)


def test_no_model_step_and_no_skips_counted_while_no_command_runs():
    book, sink = GatedBookDouble(), ListSinkDouble()
    propagator = ColorOraclePropagatorDouble(NoOptions(), CPU)
    pipeline = PerceptionPipeline(
        PipelineConfig(), CPU, ColorOraclePointerDouble(OracleOptions(), CPU), propagator, sink, book
    )
    scene = default_scene()

    def submit(k):
        pipeline.submit_frame(render(scene, k / 20)[0], 10**9 + k * 50_000_000, "cam")

    submit(0)
    pipeline.start()
    try:
        assert book.asked.acquire(timeout=30), "the tracking worker looks at frame 0"
        for k in range(1, 20):  # frames 1-18 are superseded while the worker is busy with frame 0
            submit(k)
        book.go_on.release()
        assert book.asked.acquire(timeout=30), "then at the newest frame, 19"
    finally:
        book.go_on.release()
        pipeline.close()  # waits for the worker to end its turn on frame 19
    counts = pipeline.counters.snapshot()
    assert counts["frames_received"] == 20
    assert "frames_tracked" not in counts and "frames_skipped_tracking_busy" not in counts
    assert not propagator.steps and not sink.tracks and not sink.masks


def test_track_answers_prompt_each_object_at_its_latest_sighting():
    from videomolmo_ros.contracts.grounding import GroundedPoint
    from videomolmo_ros.pipeline.tracking import latest_sightings

    ball = [GroundedPoint(k, 10.0 + k, 20.0, "ball", 1) for k in range(4)]
    cup = [GroundedPoint(k, 50.0, 60.0 + k, "cup", 2) for k in range(2)]  # hidden after frame 1
    chosen = latest_sightings(cup + ball)
    assert [(p.object_id, p.frame_index) for p in chosen] == [(2, 1), (1, 3)]


def test_point_answers_prompt_the_latest_frame_with_points():
    from videomolmo_ros.contracts.grounding import GroundedPoint
    from videomolmo_ros.pipeline.tracking import latest_sightings

    points = [GroundedPoint(0, 1.0, 1.0), GroundedPoint(2, 5.0, 5.0), GroundedPoint(2, 9.0, 9.0)]
    assert latest_sightings(points) == points[1:]


def test_an_object_seen_only_early_in_the_window_still_gets_a_track_and_a_target():
    from oracle_doubles import ScriptedPointerDouble

    from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingResult

    answer = GroundingResult(
        (GroundedPoint(0, 40.0, 40.0, "cup", 2), GroundedPoint(1, 200.0, 100.0, "ball", 1)), "scripted"
    )
    sink = ListSinkDouble()
    pipeline = PerceptionPipeline(
        PipelineConfig(context_frames=2, context_fps=20.0), CPU, ScriptedPointerDouble(answer), None, sink
    )
    pipeline.start()
    try:
        play(pipeline, 0.3)  # the 2-frame window is full before the first query
        pipeline.submit_command(CommandRequest("t", "things", GroundingMode.TRACK))
        play(pipeline, 0.5, start_s=101.0)
        assert wait_for(lambda: len(sink.targets) >= 2)
    finally:
        pipeline.close()
    first, second = sink.targets[:2]
    assert first.meta.stamp_ns < second.meta.stamp_ns, "one targets message per source frame, in time order"
    assert [t.label for t in first.targets] == ["cup"] and [t.label for t in second.targets] == ["ball"]
    assert len({t.id for o in sink.tracks for t in o.tracks}) == 2


def test_bidirectional_fusion_publishes_every_frame_once_late_and_on_the_object():
    pipeline, sink = make(fusion="bidirectional", fusion_max_lag_frames=200, fusion_max_lag_s=600.0, context_fps=4.0)
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        truth = play(pipeline, 3.0)
        assert wait_for(lambda: pipeline.counters.snapshot().get("fusion_frames_fused", 0) > 5)
        held = pipeline.counters.snapshot()["frames_tracked"] - len(sink.masks)
    finally:
        pipeline.close()
    assert held > 0, "frames after the last keyframe wait for the next one"
    assert all_tracked_frames_published(pipeline, sink), "each frame once, in order (the held ones at close)"
    counts = pipeline.counters.snapshot()
    assert counts["fusion_frames_fused"] + counts.get("fusion_frames_unfused", 0) == len(sink.masks)
    with_ids = [output for output in sink.masks if output.ids]
    assert with_ids, "fused frames carry the object"
    for output in with_ids:
        assert iou(output.masks[0], truth[output.meta.stamp_ns]["red"]) > 0.95


def test_without_keyframes_fusion_releases_frames_at_the_lag_bound_and_counts_them():
    pipeline, sink = make(OracleOptions(delay_s=60.0), fusion="bidirectional", fusion_max_lag_frames=5)
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 1.0)
        assert wait_for(lambda: pipeline.counters.snapshot().get("fusion_frames_unfused_lag", 0) > 3)
    finally:
        pipeline.close(timeout_s=0.1)
    assert sink.masks, "frames are not held forever"


def all_tracked_frames_published(pipeline, sink) -> bool:
    tracked = pipeline.counters.snapshot().get("frames_tracked", 0)
    stamps = [m.meta.stamp_ns for m in sink.masks]
    return tracked > 0 and len(stamps) == tracked and stamps == sorted(set(stamps))


def test_fusion_releases_the_last_frames_after_its_time_bound_when_the_stream_ends():
    pipeline, sink = make(fusion="bidirectional", fusion_max_lag_frames=200, fusion_max_lag_s=0.5)
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 2.0)  # then nothing: no newer frame, no keyframe for the frames after the last one
        assert wait_for(lambda: all_tracked_frames_published(pipeline, sink), 10), pipeline.counters.snapshot()
    finally:
        pipeline.close()
    assert pipeline.counters.snapshot()["fusion_frames_unfused_age"] >= 1


@pytest.mark.parametrize("how", ["stop", "close"])
def test_frames_held_for_fusion_go_out_when_their_command_stops_or_the_pipeline_closes(how):
    pipeline, sink = make(fusion="bidirectional", fusion_max_lag_frames=200, fusion_max_lag_s=600.0)
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 2.0)
        assert wait_for(lambda: pipeline.counters.snapshot().get("fusion_frames_fused", 0) > 5)
        if how == "stop":
            pipeline.submit_command(CommandRequest("r", "", action=CommandAction.STOP))
            assert wait_for(lambda: all_tracked_frames_published(pipeline, sink), 10)
    finally:
        pipeline.close()
    assert all_tracked_frames_published(pipeline, sink), "no tracked frame is left unpublished"
    assert all(m.command_id == "r" for m in sink.masks)


def test_bidirectional_fusion_needs_a_propagator_with_a_backward_pass():
    from videomolmo_ros.contracts.interfaces import MaskPropagator

    class ForwardOnly(MaskPropagator):
        add_prompts = step = remove = reset = lambda *args: {}

    with pytest.raises(ValueError, match="backward pass"):
        PerceptionPipeline(PipelineConfig(fusion="bidirectional"), CPU, None, ForwardOnly(None, CPU), ListSinkDouble())


def test_a_frame_with_the_previous_frames_stamp_is_dropped_and_counted():
    sink = ListSinkDouble()
    pipeline = PerceptionPipeline(PipelineConfig(), CPU, None, None, sink)
    image, _ = render(default_scene(), 0.0)
    for _ in range(3):
        pipeline.submit_frame(image, 7, "cam")
    assert len(pipeline.stream) == 1
    assert pipeline.counters.snapshot()["frames_rejected_duplicate_stamp"] == 2
    assert "same stamp" in sink.problems[0][1]


def test_two_cameras_share_commands_and_track_ids_but_not_frames():
    """One pipeline per camera, as the node runs them: each tracks its own scene, ids never collide."""
    book = CommandBook(cameras=("head", "wrist"))
    ids, turns = itertools.count(1), TakeTurns()
    sinks = {name: ListSinkDouble() for name in ("head", "wrist")}
    pipelines = {
        name: PerceptionPipeline(
            PipelineConfig(camera=name),
            CPU,
            ColorOraclePointerDouble(OracleOptions(), CPU),
            ColorOraclePropagatorDouble(NoOptions(), CPU),
            sinks[name],
            book,
            ids,
            turns,
        )
        for name in ("head", "wrist")
    }
    wrist_scene = [MovingDisc("red", 100, 120, 30, 5.0, 20), MovingDisc("green", 220, 120, 30, 7.0, 25)]
    for pipeline in pipelines.values():
        pipeline.start()
    try:
        pipelines["head"].submit_command(CommandRequest("both", "red", GroundingMode.TRACK, camera="*"))
        events = pipelines["head"].submit_command(CommandRequest("g", "green", GroundingMode.TRACK, camera="wrist"))
        pipelines["wrist"].commands_changed(events)
        threads = [
            threading.Thread(target=play, args=(pipelines["head"], 2.0)),
            threading.Thread(target=play, args=(pipelines["wrist"], 2.0), kwargs={"scene": wrist_scene}),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert wait_for(lambda: all(any(m.ids for m in sink.masks) for sink in sinks.values()))
    finally:
        for pipeline in pipelines.values():
            pipeline.close()
    track_ids = {name: {(o.command_id, t.id) for o in sink.tracks for t in o.tracks} for name, sink in sinks.items()}
    assert {c for c, _ in track_ids["head"]} == {"both"}, "green runs on the wrist only"
    assert {c for c, _ in track_ids["wrist"]} == {"both", "g"}
    head_ids, wrist_ids = ({i for _, i in pairs} for pairs in track_ids.values())
    assert len(head_ids) == 1 and len(wrist_ids) == 2 and not head_ids & wrist_ids, "ids unique across cameras"
    for name, sink in sinks.items():
        assert {o.meta.camera for o in [*sink.targets, *sink.tracks, *sink.masks]} == {name}


def test_cameras_take_turns_on_a_shared_model_in_arrival_order():
    turns, order = TakeTurns(), []

    def camera(name):
        for _ in range(5):
            with turns.turn():
                order.append(name)
                time.sleep(0.01)

    threads = [threading.Thread(target=camera, args=(name,)) for name in ("head", "wrist")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(order) == ["head"] * 5 + ["wrist"] * 5
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 7, f"neither camera holds the model for several turns in a row: {order}"


def test_a_forward_gap_restarts_the_grounding_context_but_keeps_tracks():
    pipeline, sink = make(max_result_age_s=2.0)
    try:
        pipeline.submit_command(CommandRequest("r", "red"))
        play(pipeline, 1.5, start_s=100.0)
        assert wait_for(lambda: any(m.ids for m in sink.masks))
        first_ids = {t.id for o in sink.tracks for t in o.tracks}
        play(pipeline, 0.2, start_s=500.0, pace=False)  # the camera stalled for 400 s
        window = pipeline.context.window(8)
        play(pipeline, 1.0, start_s=500.25)
        assert wait_for(lambda: any(m.ids and m.meta.stamp_ns > 500.5e9 for m in sink.masks))
    finally:
        pipeline.close()
    assert all(meta.stamp_ns >= 500e9 for meta in window.metas), "no pre-gap frame in the model's window"
    assert pipeline.counters.snapshot()["time_gap_context_restarts"] == 1
    assert any("jumped forward 398." in message for _, message in sink.problems)
    assert {i for m in sink.masks if m.meta.stamp_ns > 500.5e9 for i in m.ids} == first_ids, "tracks keep their ids"


@pytest.mark.parametrize(("camera_rate_frames", "frames", "gap_ms"), [(5, 5, 33), (0, 3, 450)])
def test_a_pointer_trained_on_consecutive_frames_reads_them_at_camera_rate(camera_rate_frames, frames, gap_ms):
    """VideoMolmo's previous frames are the camera's previous frames, whatever context_fps says."""
    pointer = RecordingPointerDouble(GroundingResult(()), camera_rate_frames)
    config = PipelineConfig(stream_frames=2, context_frames=3, context_fps=2.0)
    pipeline = PerceptionPipeline(config, CPU, pointer, None, ListSinkDouble())
    pipeline.start()
    try:
        pipeline.submit_command(CommandRequest("", "the red ball", GroundingMode.POINT))
        image = np.zeros((24, 32, 3), np.uint8)
        for k in range(60):  # 2 s at 30 fps
            pipeline.submit_frame(image, 10**9 + k * 33_000_000, "cam")
        assert wait_for(lambda: any(len(w) == frames for w in pointer.windows))
    finally:
        pipeline.close()
    assert pipeline.buffer_bytes == (5 if camera_rate_frames else 2 + 3) * 24 * 32 * 3, (
        "one ring when it reads the stream"
    )
    for window in pointer.windows:
        assert len(window) <= frames
        gaps = np.diff([meta.stamp_ns for meta in window.metas]) // 1_000_000
        assert all(gap == gap_ms for gap in gaps) if camera_rate_frames else all(gap >= gap_ms for gap in gaps)


def test_frames_a_pointer_did_not_show_its_model_are_counted():
    pointer = RecordingPointerDouble(GroundingResult((), skipped_frames=2))
    pipeline = PerceptionPipeline(PipelineConfig(), CPU, pointer, None, ListSinkDouble())
    pipeline.start()
    try:
        pipeline.submit_command(CommandRequest("", "the red ball", GroundingMode.POINT))
        pipeline.submit_frame(np.zeros((24, 32, 3), np.uint8), 10**9, "cam")
        assert wait_for(lambda: pipeline.counters.snapshot().get("grounding_frames_not_shown_same_time") == 2)
    finally:
        pipeline.close()


def test_points_scored_below_min_point_score_are_dropped_and_counted():
    from oracle_doubles import ScriptedPointerDouble

    from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingResult
    from videomolmo_ros.pipeline.track_manager import TrackerConfig

    points = (GroundedPoint(0, 60.0, 60.0, "a", score=0.9), GroundedPoint(0, 200.0, 150.0, "b", score=0.2))
    points += (GroundedPoint(0, 250.0, 60.0, "c"),)  # no score: never dropped
    sink = ListSinkDouble()
    config = PipelineConfig(context_frames=1, tracker=TrackerConfig(min_point_score=0.5))
    pipeline = PerceptionPipeline(config, CPU, ScriptedPointerDouble(GroundingResult(points)), None, sink)
    pipeline.start()
    try:
        pipeline.submit_command(CommandRequest("p", "things", GroundingMode.POINT))
        play(pipeline, 0.5)
        assert wait_for(lambda: sink.targets, 10)
        labels = {t.label for output in sink.targets for t in output.targets}
        assert labels == {"a", "c"}
        assert pipeline.counters.snapshot()["points_dropped_low_score"] >= 1
        pipeline.reconfigure(**{"tracker.min_point_score": 0.1})  # at run time, as ros2 param set does
        seen = len(sink.targets)
        play(pipeline, 0.5, start_s=100.5)
        assert wait_for(lambda: any(t.label == "b" for o in sink.targets[seen:] for t in o.targets), 10)
    finally:
        pipeline.close()


def test_a_thousand_point_answer_tracks_no_more_objects_than_the_caps_and_says_so():
    """All the grains of rice: 1000 points a grounding, on a 40 x 25 grid over the frame."""
    from oracle_doubles import ScriptedPointerDouble

    from videomolmo_ros.contracts.grounding import GroundedPoint

    points = tuple(GroundedPoint(0, 4.0 + 8 * (k % 40), 4.0 + 8 * (k // 40), "grain") for k in range(1000))
    propagator = ColorOraclePropagatorDouble(NoOptions(), CPU)
    pointer = ScriptedPointerDouble(GroundingResult(points))
    pipeline, sink = make(pointer=pointer, propagator=propagator, context_frames=1)
    try:
        pipeline.submit_command(CommandRequest("g", "grains", GroundingMode.POINT))
        play(pipeline, 1.5)
        assert wait_for(lambda: pipeline.counters.snapshot().get("points_dropped_over_cap", 0) >= 992, 20)
        assert wait_for(lambda: pipeline.counters.snapshot().get("frames_tracked", 0) >= 3)
    finally:
        pipeline.close()
    assert sink.tracks and max(len(output.tracks) for output in sink.tracks) <= 8, "max_objects_per_command: 8"
    assert max(len(ids) for _, ids in propagator.steps) <= 8, "the propagator steps no more objects"
    reported = [message for key, message in sink.problems if key == "points_dropped_over_cap"]
    assert reported and "max_objects_per_command" in reported[0]
