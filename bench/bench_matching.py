"""Matching a grounding's points to tracks: the cost against the number of tracks, old and new side by side.

    ./bench/run bench_matching [--repeat 3]

Tracks of one command on a 640x480 frame, each a disc with a mask and 5 s of sightings at 15 Hz (as
the node keeps them for late groundings); every object is grounded again a few pixels away, on a
frame 1 s old. "old" is the matching as it was before the caps (a Python cost per point and track,
each scanning the track's sightings), kept here only; "new" is TrackManager.associate (one numpy
cost matrix, the points that cannot match left out of the Hungarian step). Both give the same ids.
Then the cost of one grounding of 1000 points at the default caps (8 objects per command): what a
model answering "all the grains of rice" costs the tracking worker now, against the old matching
of 1000 points to the 1000 tracks such groundings made before the caps.
"""

import argparse
import math
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from videomolmo_ros.pipeline.track_manager import TrackerConfig, TrackManager

SIZE = (480, 640)
FPS = 15
SIGHTINGS = 5 * FPS  # the node keeps sightings for max_result_age_s (5 s)
NS = 10**9 // FPS


def grid(count: int, spacing: float) -> list[tuple[float, float]]:
    columns = math.ceil(math.sqrt(count * SIZE[1] / SIZE[0]))
    return [(spacing / 2 + spacing * (k % columns), spacing / 2 + spacing * (k // columns)) for k in range(count)]


def disc(centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: SIZE[0], : SIZE[1]]
    return (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius**2


def tracked(count: int, masks: bool = True) -> tuple[TrackManager, list[tuple[float, float, str]]]:
    """A manager with `count` tracks of command "c", 5 s of sightings each; points grounding them again.

    Without `masks` the sightings are points only (1000 masks of 640x480 would take 300 MB).
    """
    spacing = min(SIZE[1] / math.ceil(math.sqrt(count * SIZE[1] / SIZE[0])), 40.0)
    centres = grid(count, spacing)
    manager = TrackManager(TrackerConfig(confirm_frames=1), max_objects_per_command=count, max_tracks=count)
    ids = manager.associate("c", [(x, y, "obj") for x, y in centres], SIZE, 0).ids
    discs = {i: (disc(centre, spacing / 3), 1.0) for i, centre in zip(ids, centres, strict=True)} if masks else {}
    for k in range(SIGHTINGS):
        if masks:
            manager.update_from_masks("c", discs, stamp_ns=k * NS)
        else:
            for track_id, (x, y) in zip(ids, centres, strict=True):
                manager.sighted(track_id, k * NS, x, y)
    return manager, [(x + 2.0, y - 1.0, "obj") for x, y in centres]


def old_associate(manager: TrackManager, points, stamp_ns: int) -> list[int | None]:
    """The matching before the caps: a Python cost per (point, track), each scanning the track's sightings."""
    candidates = manager.tracks("c")
    diagonal = math.hypot(SIZE[1], SIZE[0])
    cost = np.full((len(points), len(candidates)), np.inf)
    for i, (x, y, _) in enumerate(points):
        for j, track in enumerate(candidates):
            now = old_cost(manager, x, y, track.x, track.y, old_inside(track.mask, x, y), diagonal)
            before = [s for s in track.sightings if s[0] <= stamp_ns]
            if before:
                tx, ty, box = before[-1][1:]
                inside = box is not None and box[0] <= x <= box[2] and box[1] <= y <= box[3]
                now = min(now, old_cost(manager, x, y, tx, ty, inside, diagonal))
            cost[i, j] = now
    ids: list[int | None] = [None] * len(points)
    if candidates and points:
        rows, cols = linear_sum_assignment(np.where(np.isinf(cost), 1e9, cost))
        for i, j in zip(rows, cols, strict=True):
            if np.isfinite(cost[i, j]):
                ids[i] = candidates[j].id
    return ids


def old_cost(manager, x, y, track_x, track_y, inside, diagonal) -> float:
    distance = math.hypot(x - track_x, y - track_y) / diagonal
    if inside:
        return distance * 1e-3
    return distance if distance <= manager.config.match_distance else math.inf


def old_inside(mask, x, y) -> bool:
    row, col = round(y), round(x)
    return mask is not None and 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and bool(mask[row, col])


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stamp = (SIGHTINGS - FPS) * NS  # the grounded frame: 1 s before the newest
    print(f"{'tracks':>7} {'old ms':>9} {'new ms':>8} {'old/new':>8} {'same ids':>9}")
    for count in (16, 64, 256):
        manager, points = tracked(count)
        old = best_of(args.repeat, lambda m=manager, p=points: old_associate(m, p, stamp))
        new = best_of(args.repeat, lambda m=manager, p=points: m.associate("c", p, SIZE, stamp))
        same = old_associate(manager, points, stamp) == manager.associate("c", points, SIZE, stamp).ids
        print(f"{count:7d} {old * 1e3:9.2f} {new * 1e3:8.2f} {old / new:8.1f} {'yes' if same else 'NO':>9}")

    flood = [(x, y, "grain") for x, y in grid(1000, 16.0)]
    capped = TrackManager(TrackerConfig(confirm_frames=1))  # the default caps: 8 per command, 32 per camera
    capped.associate("c", flood, SIZE, 0)
    per_grounding = best_of(args.repeat, lambda: capped.associate("c", flood, SIZE, 0))
    uncapped, _ = tracked(1000, masks=False)  # what 1000-point groundings made before the caps
    before = best_of(1, lambda: old_associate(uncapped, flood, stamp))
    print(
        f"one grounding of 1000 points: {per_grounding * 1e3:.2f} ms against the {len(capped.tracks('c'))} capped "
        f"tracks, {before * 1e3:.0f} ms (old) against 1000 tracks: {before / per_grounding:.0f}x"
    )


if __name__ == "__main__":
    main()
