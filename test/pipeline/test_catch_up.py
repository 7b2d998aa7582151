"""Catch-up: an object grounded on an older frame is carried through the frames tracked since, alone."""

import numpy as np
import torch
from failing_doubles import FailingPropagatorDouble
from oracle_doubles import LocalOptions, LocalPropagatorDouble
from sink_double import ListSinkDouble
from synthetic_video import MovingDisc, fast_scene, render

from videomolmo_ros.contracts.frames import Frame, FrameMeta, FrameWindow
from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingResult
from videomolmo_ros.contracts.interfaces import NoOptions
from videomolmo_ros.pipeline.catch_up import CatchUp, CatchUpPlan
from videomolmo_ros.pipeline.commands import CommandBook, CommandRequest
from videomolmo_ros.pipeline.counters import Counters
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer
from videomolmo_ros.pipeline.pipeline import PipelineConfig
from videomolmo_ros.pipeline.track_manager import TrackManager
from videomolmo_ros.pipeline.tracked_frames import TrackedFrames
from videomolmo_ros.pipeline.tracking import Grounded, TrackingStage, frames_kept, make_fuser

CPU = torch.device("cpu")
FPS = 15.0
SCENE = [*fast_scene(), MovingDisc("blue", 40.0, 40.0, 0.0, 1.0, 12.0)]  # red: 3 px a frame; blue stays


def frame(k: int) -> Frame:
    image, _ = render(SCENE, k / FPS)
    return Frame(FrameMeta(k, round(k / FPS * 1e9), "cam"), torch.from_numpy(image))


def truth(k: int, colour: str) -> np.ndarray:
    return render(SCENE, k / FPS)[1][colour]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


class Stage:
    """A tracking stage with the local propagator double and two commands, driven frame by frame."""

    def __init__(self, catch_up_s: float = 2.0, max_frames_per_step: int = 8, fusion: str = "forward", propagator=None):
        self.commands = CommandBook()
        for query in ("red", "blue"):
            self.commands.apply(CommandRequest(query, query))
        self.propagator = propagator or LocalPropagatorDouble(LocalOptions(search_radius=25.0), CPU)
        self.sink, self.counters = ListSinkDouble(), Counters()
        self.stream = FrameBuffer(4)  # the camera's ring, which the tracker takes its copies from
        kept = frames_kept(PipelineConfig(catch_up_s=catch_up_s, fusion=fusion))
        self.stage = TrackingStage(
            "",
            TrackManager(),
            make_fuser(fusion, 30, 0.7, self.propagator),
            self.propagator,
            self.commands,
            self.sink,
            self.counters,
            lambda key, message: self.sink.problem(key, message),
            catch_up=CatchUp(catch_up_s, max_frames_per_step),
            frames=TrackedFrames(kept),
        )

    def ground(self, query: str, k: int) -> None:
        """A grounding of `query` on frame k (its colour's centroid there), applied now."""
        [command] = [c for c in self.commands.running() if c.query == query]
        rows, cols = np.nonzero(truth(k, query))
        f = frame(k)
        window = FrameWindow((f.meta,), f.image[None], ({},))
        result = GroundingResult((GroundedPoint(0, float(cols.mean()), float(rows.mean()), query),))
        self.stage.apply_grounding(Grounded(command, window, result, 0))
        self.stage.catch_up()

    def track(self, ks) -> None:
        """Frames k from the camera, each taken and tracked at once (nothing skipped)."""
        for k in ks:
            f = frame(k)
            self.stream.push(f.image, f.meta.stamp_ns, f.meta.frame_id)
            self.stage.track(self.stage.take(self.stream))

    def mask(self, query: str, k: int) -> np.ndarray:
        """The published mask of `query`'s object on frame k (empty when none)."""
        stamp = frame(k).meta.stamp_ns
        [output] = [m for m in self.sink.masks if m.command_id == query and m.meta.stamp_ns == stamp]
        return output.masks[0] if output.masks else np.zeros((240, 320), bool)

    def ids(self, query: str) -> set[int]:
        """Every id `query`'s tracks had, published or current."""
        published = {t.id for output in self.sink.tracks if output.command_id == query for t in output.tracks}
        return published | {t.id for t in self.stage.tracker.tracks(query)}


def test_a_late_grounding_catches_up_and_its_object_is_on_target_now():
    for catch_up_s, expected in ((2.0, True), (0.0, False)):
        run = Stage(catch_up_s)
        run.ground("blue", 0)
        run.track(range(21))
        run.ground("red", 0)  # answered 20 frames (60 px of motion) after the frame it saw
        run.track([21])
        score = iou(run.mask("red", 21), truth(21, "red"))
        assert (score > 0.9) == expected, f"catch_up_s={catch_up_s}: red on frame 21 IoU {score:.2f}"
    assert iou(run.mask("blue", 21), truth(21, "blue")) > 0.9


def test_catch_up_steps_only_the_grounded_object_within_the_bound_and_counts_what_it_skipped():
    run = Stage(max_frames_per_step=8)
    run.ground("blue", 0)
    run.track(range(21))
    live = len(run.propagator.steps)
    run.ground("red", 0)
    catch_up = run.propagator.steps[live:]
    [red] = run.ids("red")
    assert [ids for _, ids in catch_up] == [(red,)] * 8, "only the grounded object, at most 8 frames"
    stamps = [stamp for stamp, _ in catch_up]
    assert stamps == sorted(stamps) and stamps[-1] == frame(20).meta.stamp_ns, "oldest first, up to the newest"
    assert set(stamps) <= {frame(k).meta.stamp_ns for k in range(1, 21)}, "frames after the prompted one"
    assert run.counters.snapshot() == {"frames_tracked": 21, "catch_up_frames": 8, "catch_up_skipped": 12}
    run.track([21])
    assert run.propagator.steps[-1] == (frame(21).meta.stamp_ns, tuple(sorted(run.ids("blue") | {red})))


def test_a_failed_catch_up_step_counts_the_steps_it_stopped_as_skipped():
    run = Stage(max_frames_per_step=8, propagator=FailingPropagatorDouble(NoOptions(), CPU))
    run.track(range(21))  # the live steps fail too; their frames are kept for catch-up all the same
    run.sink.problems.clear()
    run.ground("red", 0)  # 20 frames to carry it through: 8 planned, 12 over the bound
    assert [key for key, _ in run.sink.problems] == ["propagation_failures"], "stopped at the first failure"
    assert run.counters.snapshot() == {"catch_up_skipped": 20}, "every frame of the span stepped or counted"


def test_a_refreshed_fast_object_keeps_its_id_and_is_carried_again():
    run = Stage()
    run.ground("red", 0)
    run.track(range(41))
    first = run.ids("red")
    run.ground("red", 10)  # 30 frames old: the disc moved 80 px since, beyond match_distance of where it is now
    run.track([41])
    assert run.ids("red") == first, "one object, one id"
    assert iou(run.mask("red", 41), truth(41, "red")) > 0.9


def test_a_grounding_of_a_frame_the_object_was_only_carried_through_keeps_its_id():
    run = Stage()
    run.track(range(21))
    run.ground("red", 0)  # carried through frames 1-20 by catch-up, first seen live on frame 21
    run.track(range(21, 36))
    first = run.ids("red")
    run.ground("red", 8)  # a frame the object was only carried through: 81 px behind where it is now
    run.track([36])
    assert run.ids("red") == first, "one object, one id"
    assert iou(run.mask("red", 36), truth(36, "red")) > 0.9


def test_frames_older_than_catch_up_s_are_not_stepped_again():
    catch_up = CatchUp(seconds=1.0, max_frames_per_step=100)
    tracked = [Frame(FrameMeta(k, k * 100_000_000, "cam"), torch.zeros(1, 1, 3, dtype=torch.uint8)) for k in range(30)]
    catch_up.prompted([7], 5 * 100_000_000)  # older than 1 s: carried from the oldest frame of the last second on
    plan = catch_up.plan(tracked)
    assert [f.meta.seq for f, _ in plan.steps] == list(range(19, 30)) and plan.skipped == 0
    assert catch_up.plan(tracked) == CatchUpPlan((), 0), "nothing waits once planned"


def test_the_tracked_frames_ring_copies_without_allocating_and_keeps_the_last_ones():
    stream, ring = FrameBuffer(4), TrackedFrames(3)
    taken = []
    for k in range(5):
        stream.push(frame(k).image, frame(k).meta.stamp_ns, "cam")
        taken.append(ring.take(stream))
    assert [f.meta.seq for f in ring.recent()] == [2, 3, 4]
    assert all(torch.equal(f.image, frame(f.meta.seq).image) for f in ring.recent()), "the kept ones intact"
    assert len({f.image.data_ptr() for f in taken}) == 3, "three slots, reused"
    assert ring.nbytes == 3 * 240 * 320 * 3


def test_frames_held_for_fusion_get_the_caught_up_object_before_release():
    run = Stage(max_frames_per_step=8, fusion="bidirectional")
    run.ground("blue", 0)
    run.track(range(21))  # held: no keyframe of these frames yet
    run.ground("red", 10)  # a keyframe: frames up to 10 go out fused; 11-20 stay held
    run.track([21])
    run.stage.release_held()  # the stream ends: what is held goes out as it is
    released = [k for k in range(11, 21) if iou(run.mask("red", k), truth(k, "red")) > 0.9]
    assert len(released) == 8, f"the 8 caught-up frames of 11-20 carry the red disc: {released}"
