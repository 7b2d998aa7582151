"""Identity through absence over DDS: an object taken out of view and put back elsewhere keeps its id."""

import math

from polling import wait_for
from ros_harness import DOUBLES, FPS, NODE_START_S, START_S, DiagnosticsRecorder, play, stamp_ns
from synthetic_video import PlacedDisc
from videomolmo_ros.msg import ObjectTrack

PROPAGATOR = "LocalPropagatorDouble"  # like SAM2 after a long absence: does not find the object elsewhere
LOCAL_TRACKER = {**DOUBLES, "propagator_backend": f"oracle_doubles:{PROPAGATOR}", f"{PROPAGATOR}.search_radius": 25.0}
LEAVES_S, BACK_S = 3.0, 8.0  # out of view for 5 s of source time
CUP = PlacedDisc("red", "red", 18, ((0, 80, 120), (LEAVES_S, None, 0), (BACK_S, 240, 60)))
BOWL = PlacedDisc("blue", "blue", 22, ((0, 250, 180),))
NODE = {**LOCAL_TRACKER, "tracker.max_lost_s": 50.0}  # kept through a 40 s absence, deleted after 60 s


def nanoseconds(time) -> int:
    return time.sec * 1_000_000_000 + time.nanosec


def test_an_object_put_back_elsewhere_after_5_s_keeps_its_id_and_says_when_it_was_last_seen(shared_node, planner):
    process = shared_node(planner, NODE)
    planner.wait_connected()
    planner.send_command("the red cup", id="cup")
    back_ns = round((START_S + BACK_S) * 1e9)

    def tracks(after_ns=0):
        return [
            (stamp_ns(m.header), t)
            for m in planner.get("tracks")
            if m.command_id == "cup" and stamp_ns(m.header) > after_ns
            for t in m.tracks
        ]

    def tracked_back():
        return [t.id for _, t in tracks(back_ns) if t.state == ObjectTrack.STATE_TRACKED]

    play(planner, BACK_S + NODE_START_S, scene=[CUP, BOWL], until=lambda: len(tracked_back()) >= 5)
    assert wait_for(lambda: len(tracked_back()) >= 5, 20), process.log()
    before = {t.id for stamp, t in tracks() if t.state == ObjectTrack.STATE_TRACKED and stamp < back_ns}
    assert len(before) == 1, f"one red cup before it left: {before}"
    assert set(tracked_back()) == before, f"back elsewhere after 5 s: {set(tracked_back())}, was {before}"

    left_ns = round((START_S + LEAVES_S) * 1e9)
    lost = [(stamp, t) for stamp, t in tracks() if t.state == ObjectTrack.STATE_LOST and left_ns < stamp < back_ns]
    assert lost, "the cup is LOST while out of view, not deleted"
    for stamp, track in lost:
        seen = nanoseconds(track.last_seen)
        assert left_ns - 1e9 / FPS * 3 <= seen < left_ns <= stamp, "last seen: a frame just before it left"
    assert all(
        nanoseconds(t.last_seen) == stamp for stamp, t in tracks(back_ns) if t.state == ObjectTrack.STATE_TRACKED
    ), "a TRACKED track was last seen on its own frame"


# ----------------------------------------------------------------- in phases: source time jumps over the absences

OUT = None  # x of a disc out of view


def at(disc: PlacedDisc, x: float | None, y: float = 0.0) -> PlacedDisc:
    """`disc` standing at (x, y) for a whole phase (out of view with x None)."""
    return PlacedDisc(disc.name, disc.colour, disc.radius, ((0, x, y),))


class Phases:
    """Plays scenes one after another, each until a condition holds (or for `seconds`). A phase's stamps follow
    on from the last one's, or jump forward by `gap_s` of source time: over max_result_age_s the node restarts
    its grounding context and its tracks keep running, so 40 s of absence take no 40 s to play."""

    def __init__(self, planner, command_id: str):
        self.planner, self.command_id = planner, command_id
        self.phases: list[tuple[int, list[PlacedDisc]]] = []  # first stamp, scene
        self._last_ns = round(START_S * 1e9)

    def play(self, scene: list[PlacedDisc], until=None, gap_s: float = 1 / FPS, seconds: float = NODE_START_S):
        start_ns = self._last_ns + round(gap_s * 1e9)
        self.phases.append((start_ns, scene))
        truth = play(self.planner, seconds, start_s=start_ns / 1e9, scene=scene, until=until)
        self._last_ns = max(truth, default=self._last_ns)

    def messages(self, phase: int = -1) -> list:
        """The command's tracks messages on frames of `phase` (by default the one playing)."""
        phase %= len(self.phases)
        start_ns = self.phases[phase][0]
        end_ns = self.phases[phase + 1][0] if phase + 1 < len(self.phases) else math.inf
        tracks = self.planner.get("tracks")
        return [m for m in tracks if m.command_id == self.command_id and start_ns <= stamp_ns(m.header) < end_ns]

    def ids(self, phase: int = -1) -> set[int]:
        return {t.id for m in self.messages(phase) for t in m.tracks}

    def ids_on(self, name: str, phase: int = -1) -> list[int]:
        """The id TRACKED on disc `name`, on each frame of `phase` it was (the track's point on the disc)."""
        disc = next(d for d in self.phases[phase][1] if d.name == name)
        x, y = disc.centre(0)
        return [
            t.id
            for m in self.messages(phase)
            for t in m.tracks
            if t.state == ObjectTrack.STATE_TRACKED and math.hypot(t.x - x, t.y - y) <= disc.radius
        ]

    def tracked(self, *names: str, frames: int = 5):
        """A condition: each disc named has been TRACKED on `frames` frames of the phase playing."""
        return lambda: all(len(self.ids_on(name)) >= frames for name in names)

    def lost(self, frames: int = 3):
        """A condition: on `frames` frames of the phase playing, the command had tracks and all were LOST."""
        lost = lambda m: m.tracks and all(t.state == ObjectTrack.STATE_LOST for t in m.tracks)  # noqa: E731
        return lambda: sum(1 for m in self.messages() if lost(m)) >= frames


def leave_and_return(shared_node, planner, query: str, before, after, gap_s: float = 1 / FPS, names=None):
    """The node tracks `query` on the scene `before` until each disc it names (`names`, by default all) is
    TRACKED; those discs leave the view until their tracks are LOST; the scene `after` shows them again
    `gap_s` of source time later. Phases 0, 1, 2."""
    process = shared_node(planner, NODE)
    planner.wait_connected()
    planner.send_command(query, id="c")
    video = Phases(planner, "c")
    names = names or [d.name for d in before]
    video.play(before, video.tracked(*names))
    assert video.tracked(*names)(), process.log()[-3000:]
    video.play([at(d, OUT) if d.name in names else d for d in before], video.lost())
    assert video.lost()(), process.log()[-3000:]
    video.play(after, video.tracked(*names), gap_s=gap_s)
    assert video.tracked(*names)(), process.log()[-3000:]
    return process, video


def test_an_object_put_back_elsewhere_after_40_s_keeps_its_one_id(shared_node, planner):
    cup, bowl = at(CUP, 80, 120), at(BOWL, 250, 180)
    _, video = leave_and_return(
        shared_node, planner, "the red cup", [cup, bowl], [at(CUP, 240, 60), bowl], 40.0, ["red"]
    )
    before = set(video.ids_on("red", 0))
    assert len(before) == 1, f"one red cup before it left: {before}"
    assert set(video.ids_on("red", 2)) == before, f"back elsewhere 40 s later: {set(video.ids_on('red', 2))}"


def test_two_objects_back_in_each_others_places_keep_their_own_ids(shared_node, planner):
    red, blue = PlacedDisc("red", "red", 18, ()), PlacedDisc("blue", "blue", 18, ())
    before, swapped = [at(red, 80, 120), at(blue, 240, 120)], [at(red, 240, 120), at(blue, 80, 120)]
    _, video = leave_and_return(shared_node, planner, "the red and the blue disc", before, swapped)
    ids = {name: (set(video.ids_on(name, 0)), set(video.ids_on(name, 2))) for name in ("red", "blue")}
    assert all(len(old) == 1 for old, _ in ids.values()) and ids["red"][0] != ids["blue"][0], ids
    assert all(new == old for old, new in ids.values()), f"(before, after) per disc: {ids}"


def test_identical_objects_that_come_back_get_new_ids_never_each_others_and_it_is_counted(shared_node, planner):
    """Both return far from where they left (no tracker would re-find them in place): appearance cannot tell
    which is which, so neither takes an old id; /diagnostics says how many returns were too alike."""
    diagnostics = DiagnosticsRecorder(planner.node)
    a, b = PlacedDisc("a", "red", 18, ()), PlacedDisc("b", "red", 18, ())
    before, after = [at(a, 80, 120), at(b, 240, 120)], [at(a, 160, 50), at(b, 160, 190)]
    process, video = leave_and_return(shared_node, planner, "the red cups", before, after)
    old = set(video.ids_on("a", 0)) | set(video.ids_on("b", 0))
    new = set(video.ids_on("a", 2)) | set(video.ids_on("b", 2))
    assert len(old) == 2 and len(new) == 2 and not old & new, f"ids before {old}, after {new}"
    ambiguous = lambda: int(diagnostics.values("identities").get("reid_ambiguous", 0))  # noqa: E731
    assert wait_for(lambda: ambiguous() >= 2, 30), (diagnostics.values("identities"), process.log()[-3000:])


def test_a_camera_pan_out_and_back_in_keeps_every_id(shared_node, planner):
    """The robot turns away (every object slides out to the left) and back: all return 50 px from where they were."""
    start = {"red": (60, 80), "blue": (160, 120), "green": (250, 170)}
    discs = {name: PlacedDisc(name, name, 16, ()) for name in start}
    before = [at(discs[name], x, y) for name, (x, y) in start.items()]
    process = shared_node(planner, NODE)
    planner.wait_connected()
    planner.send_command("the red, the blue and the green disc", id="c")
    video = Phases(planner, "c")
    video.play(before, video.tracked(*start))
    assert video.tracked(*start)(), process.log()[-3000:]
    panning = [
        PlacedDisc(n, n, 16, (*((k * 0.1, x - 30 * k, y) for k in range(10)), (1.0, OUT, 0)))
        for n, (x, y) in start.items()
    ]
    video.play(panning, seconds=1.0)
    video.play([at(discs[name], OUT) for name in start], video.lost())
    assert video.lost()(), process.log()[-3000:]
    video.play([at(discs[name], x + 40, y + 30) for name, (x, y) in start.items()], video.tracked(*start))
    assert video.tracked(*start)(), process.log()[-3000:]
    ids = {name: (set(video.ids_on(name, 0)), set(video.ids_on(name, 3))) for name in start}
    assert len({frozenset(old) for old, _ in ids.values()}) == 3, ids
    assert all(len(old) == 1 and new == old for old, new in ids.values()), f"(before, after) per disc: {ids}"


def test_a_lost_track_past_max_lost_s_is_deleted_and_the_object_back_later_gets_a_new_id(shared_node, planner):
    """60 s out of view, over tracker.max_lost_s (50 s here): the track is gone on the first frame after."""
    cup, bowl = at(CUP, 80, 120), at(BOWL, 250, 180)
    _, video = leave_and_return(
        shared_node, planner, "the red cup", [cup, bowl], [at(CUP, 240, 60), bowl], 60.0, ["red"]
    )
    [old] = set(video.ids_on("red", 0))
    assert old in video.ids(1), "LOST, not deleted, while out of view"
    assert old not in video.ids(2), "deleted once max_lost_s passed"
    assert len(set(video.ids_on("red", 2)) - {old}) == 1, "back: a new id"
