"""A Molmo2 pointer that does all of the shipped backend's work on a random checkpoint, for benchmarks.

Importable by module path (molmo2_work_double:Molmo2WorkPointerDouble), so a pointer process
builds it too.
"""

import numpy as np
from oracle_doubles import colour_components
from synthetic_video import COLOURS

from videomolmo_ros.backends.molmo2.pointer import Molmo2Pointer
from videomolmo_ros.contracts.frames import FrameWindow
from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingMode, GroundingResult


class Molmo2WorkPointerDouble(Molmo2Pointer):
    """The shipped Molmo2 backend doing all its work on a random checkpoint; its meaningless answer
    is replaced by the red disc's centroid on the newest frame, so the tracker has an object to step."""

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        super().ground(window, query, mode)
        newest = len(window) - 1
        regions = colour_components(window.images[newest].cpu().numpy(), COLOURS["red"])
        points = tuple(GroundedPoint(newest, *np.argwhere(m).mean(axis=0)[::-1], "red") for m in regions[:1])
        return GroundingResult(points)
