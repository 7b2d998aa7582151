"""Regions between objects: what a stray point of a many-point answer segments is not an object.

A model asked for "all the grains of rice" may answer 1000 points, one on the table; SAM2 segments
the table under it. That mask holds most of the answer's points (those the model put on the grains
and the rest of the table), where a real object holds its own point, or the few of a dense answer
that fall on it. Such a track is deleted on its first mask, and its region is remembered for
REGION_KEPT_S of source time, so the command's later points there start nothing.
"""

from collections import deque

import numpy as np

from videomolmo_ros.io.mask_geometry import Box, box_crop, points_in_mask

REGION_KEPT_S = 5.0  # source time a refused region holds back its command's new points
REGIONS_KEPT = 4  # refused regions remembered per command at most (each a mask crop)


def holds_most(mask: np.ndarray, answer: np.ndarray, max_objects: int) -> bool:
    """Whether `mask` holds most of the answer's (x, y) points and more than a command may track objects."""
    held = np.count_nonzero(points_in_mask(mask, answer))
    return held > max(max_objects, len(answer) / 2)


class RefusedRegions:
    """Per command, the last REGIONS_KEPT refused regions (their stamp, box and mask crop)."""

    def __init__(self) -> None:
        self._regions: dict[str, deque[tuple[int, Box, np.ndarray]]] = {}

    def add(self, command_id: str, stamp_ns: int, box: Box, mask: np.ndarray) -> None:
        crop = np.array(box_crop(mask, box))  # a copy: the frame's mask is not kept
        self._regions.setdefault(command_id, deque(maxlen=REGIONS_KEPT)).append((stamp_ns, box, crop))

    def holding(self, command_id: str, xy: np.ndarray, indices: list[int], stamp_ns: int) -> set[int]:
        """Those of `indices` whose points lie in a region of the command refused within REGION_KEPT_S."""
        inside: set[int] = set()
        for refused_ns, box, crop in self._regions.get(command_id, ()):
            if abs(stamp_ns - refused_ns) <= REGION_KEPT_S * 1e9:
                hits = points_in_mask(crop, xy[indices] - (int(box[0]), int(box[1])))
                inside |= {i for i, hit in zip(indices, hits, strict=True) if hit}
        return inside

    def forget(self, command_id: str) -> None:
        self._regions.pop(command_id, None)

    def clear(self) -> None:
        self._regions.clear()
