"""The types every layer speaks, at the bottom of the package: frames, grounding results, the two backend seams.

The pipeline calls a Pointer and a MaskPropagator; the backends implement them; both import
from here and never from each other. A backend of your own needs only this package:

    from videomolmo_ros.contracts import FrameWindow, GroundingMode, GroundingResult, Pointer
"""

from videomolmo_ros.contracts.frames import Frame, FrameMeta, FrameWindow
from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingMode, GroundingResult, ObjectMask
from videomolmo_ros.contracts.interfaces import (
    BackendError,
    MaskPropagator,
    NoOptions,
    Pointer,
    startup_only,
)

__all__ = [
    "BackendError",
    "Frame",
    "FrameMeta",
    "FrameWindow",
    "GroundedPoint",
    "GroundingMode",
    "GroundingResult",
    "MaskPropagator",
    "NoOptions",
    "ObjectMask",
    "Pointer",
    "startup_only",
]
