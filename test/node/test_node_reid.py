"""Identity through absence over DDS: an object taken out of view and put back elsewhere keeps its id."""

from polling import wait_for
from ros_harness import DOUBLES, FPS, NODE_START_S, START_S, play, stamp_ns
from synthetic_video import PlacedDisc
from videomolmo_ros.msg import ObjectTrack

PROPAGATOR = "LocalPropagatorDouble"  # like SAM2 after a long absence: does not find the object elsewhere
LOCAL_TRACKER = {**DOUBLES, "propagator_backend": f"oracle_doubles:{PROPAGATOR}", f"{PROPAGATOR}.search_radius": 25.0}
LEAVES_S, BACK_S = 3.0, 8.0  # out of view for 5 s of source time
CUP = PlacedDisc("red", "red", 18, ((0, 80, 120), (LEAVES_S, None, 0), (BACK_S, 240, 60)))
BOWL = PlacedDisc("blue", "blue", 22, ((0, 250, 180),))


def nanoseconds(time) -> int:
    return time.sec * 1_000_000_000 + time.nanosec


def test_an_object_put_back_elsewhere_after_5_s_keeps_its_id_and_says_when_it_was_last_seen(node, planner):
    process = node(LOCAL_TRACKER)
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
