"""Objects bounded over DDS: a pointer answering 1000 points a grounding, and tracker thresholds any peer can set.

The node tracks no more objects than its caps allow, says what it dropped, and keeps tracking the real
objects at camera rate; hostile thresholds pile up no tracks, and once restored no object has two.
"""

import math
from collections import Counter
from dataclasses import replace

from polling import wait_for
from ros_harness import DOUBLES, FPS, NODE_START_S, RELIABLE_CAMERA, START_S, play, set_parameter, stamp_ns
from synthetic_video import MovingDisc, default_scene, render
from test_node_robustness import counters_once
from videomolmo_ros.msg import ObjectTrack

from videomolmo_ros.io.mask_codec import decode_masks

QUERY = "red green blue yellow"
FOUR = [
    MovingDisc("red", 80, 65, 15, 8.0, 18),
    MovingDisc("green", 240, 65, 15, 7.0, 18, phase=1.0),
    MovingDisc("blue", 80, 175, 15, 6.0, 18, phase=2.0),
    MovingDisc("yellow", 240, 175, 15, 9.0, 18, phase=3.0),
]
FLOOD = {
    **DOUBLES,
    "pointer_backend": "oracle_doubles:FloodPointerDouble",  # the 4 discs, then a grid: 1000 points an answer
    "max_objects_per_command": 6,
    "max_tracks": 10,
    "stats_period_s": 0.5,
    **RELIABLE_CAMERA,
}
RUN = 5  # consecutive camera frames with every disc's mask: tracking at camera rate, not now and then


def frame_number(header) -> int:
    return round((stamp_ns(header) / 1e9 - START_S) * FPS)


class DiscMasks:
    """Which camera frames of a command carry the mask of every disc of the scene (decoded once per message)."""

    def __init__(self, planner, command_id: str, scene):
        self._planner, self._command_id, self._scene = planner, command_id, scene
        self._read = 0
        self.frames: set[int] = set()

    def longest_run(self) -> int:
        """The most consecutive camera frames with every disc's mask, among the messages received so far."""
        messages = self._planner.get("masks")
        for msg in messages[self._read :]:
            if msg.command_id == self._command_id and self._every_disc(msg):
                self.frames.add(frame_number(msg.header))
        self._read = len(messages)
        runs = [k for k in self.frames if k - 1 not in self.frames]
        return max((next(n for n in range(k, k + 10**6) if n not in self.frames) - k for k in runs), default=0)

    def _every_disc(self, msg) -> bool:
        masks = decode_masks(bytes(msg.data), msg.height, msg.width, len(msg.ids))
        _, truth = render(self._scene, frame_number(msg.header) / FPS)
        return all(any((m & true).sum() / (m | true).sum() > 0.8 for m in masks) for true in truth.values())


def test_thousand_point_groundings_track_no_more_than_the_caps_and_keep_the_real_objects(node, reliable_planner):
    planner = reliable_planner
    process = node(FLOOD)
    planner.wait_connected()
    for command_id in ("one", "two"):
        planner.send_command(QUERY, id=command_id)
    seen = {command_id: DiscMasks(planner, command_id, FOUR) for command_id in ("one", "two")}
    tracking = lambda: all(masks.longest_run() >= RUN for masks in seen.values())  # noqa: E731
    over_cap = lambda: [len(m.tracks) for m in planner.get("tracks") if len(m.tracks) > 6]  # noqa: E731
    play(planner, NODE_START_S, scene=FOUR, until=lambda: over_cap() or tracking())
    assert not over_cap(), f"tracks of one command over the cap of 6: {over_cap()[:5]}"
    assert tracking(), f"runs of frames with all 4 discs: {[m.longest_run() for m in seen.values()]}\n{process.log()}"

    per_frame = Counter()
    for msg in planner.get("tracks"):
        per_frame[stamp_ns(msg.header)] += len(msg.tracks)
    assert max(per_frame.values()) <= 10, "max_tracks: 10 of both commands on the camera"
    dropped = counters_once(process, lambda counts: counts.get("points_dropped_over_cap", 0) >= 2 * 994)
    assert dropped.get("points_dropped_over_cap", 0) >= 2 * 994, dropped
    assert "dropped: over the caps of 6 per command (max_objects_per_command)" in process.log()
    # A grid point on the background starts a track whose mask is the background: refused as a region.
    regions = counters_once(process, lambda counts: counts.get("tracks_rejected_region", 0) >= 1)
    assert regions.get("tracks_rejected_region", 0) >= 1, regions
    final = [m for m in planner.get("tracks") if m.command_id == "one"][-1]
    assert len(final.tracks) == 4, f"the 4 discs and no background: {[(t.id, t.x, t.y) for t in final.tracks]}"
    assert process.process.poll() is None


HOSTILE = {
    "tracker.match_distance": 0.0,
    "tracker.min_mask_score": 1.0,
    "tracker.confirm_frames": 1000,
    "tracker.max_lost_s": 3600.0,
    "tracker.reid_min_similarity": 0.0,
}
DEFAULTS = {
    "tracker.match_distance": 0.15,
    "tracker.min_mask_score": 0.0,
    "tracker.confirm_frames": 3,
    "tracker.max_lost_s": 60.0,
    "tracker.reid_min_similarity": 0.6,
}


def scene_from(t0: float) -> list[MovingDisc]:
    """The default scene as it is `t0` seconds in: a later segment of play() carries on where the last one ended."""
    return [replace(d, phase=d.phase + 2 * math.pi * t0 / d.period_s) for d in default_scene()]


def play_on(planner, seconds: float, after_ns: int, until=None) -> int:
    """Play the default scene on from the frame after the one stamped `after_ns`; the last stamp sent."""
    start_s = after_ns / 1e9 + 1 / FPS
    return max(play(planner, seconds, start_s=start_s, scene=scene_from(start_s - START_S), until=until))


def tracked_per_disc(msg) -> Counter:
    """How many TRACKED tracks of a tracks message stand on each disc of the default scene."""
    _, truth = render(default_scene(), stamp_ns(msg.header) / 1e9 - START_S)
    on = Counter()
    for track in msg.tracks:
        if track.state == ObjectTrack.STATE_TRACKED:
            on.update(name for name, mask in truth.items() if mask[round(track.y), round(track.x)])
    return on


def test_hostile_tracker_thresholds_pile_up_no_tracks_and_leave_no_duplicates_once_restored(node, reliable_planner):
    planner = reliable_planner
    process = node({**DOUBLES, **RELIABLE_CAMERA})
    planner.wait_connected()
    planner.send_command("red blue", id="rb")
    confirmed = lambda: any(sum(tracked_per_disc(m).values()) == 2 for m in planner.get("tracks"))  # noqa: E731
    last = max(play(planner, NODE_START_S, until=confirmed))
    assert confirmed(), process.log()

    for name, value in HOSTILE.items():
        assert set_parameter(planner, name, value).successful, name
    hostile_from = last + 1
    last = play_on(planner, 8.0, last)  # 16 context windows, grounded at 2 Hz
    assert wait_for(lambda: any(stamp_ns(m.header) == last for m in planner.get("tracks")), 30), process.log()
    during = [m for m in planner.get("tracks") if stamp_ns(m.header) >= hostile_from]
    assert max(len(m.tracks) for m in during) <= 8, "the cap (max_objects_per_command) holds whatever the thresholds"

    for name, value in DEFAULTS.items():
        assert set_parameter(planner, name, value).successful, name
    settled = last + 10**9  # a second after the restore
    later = lambda: [m for m in planner.get("tracks") if stamp_ns(m.header) >= settled]  # noqa: E731
    play_on(planner, NODE_START_S, last, until=lambda: len(later()) >= 15)
    assert len(later()) >= 15, process.log()
    duplicates = [dict(on) for m in later() if max((on := tracked_per_disc(m)).values(), default=0) > 1]
    assert duplicates == [], f"TRACKED tracks per disc after the restore: {duplicates[:3]}"
    assert all(sum(tracked_per_disc(m).values()) == 2 for m in later()[-5:]), "both discs tracked again"
    assert process.process.poll() is None
