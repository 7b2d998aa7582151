"""Test doubles of sick models: a pointer and a propagator that raise on every call, a pointer process that dies.

They show what the node reports when a model keeps failing (the diagnostics of a sick model).
They never ship as backends.
"""

import os
import signal
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from oracle_doubles import ColorOraclePointerDouble, ColorOraclePropagatorDouble, OracleOptions

from videomolmo_ros.contracts.frames import Frame, FrameWindow
from videomolmo_ros.contracts.grounding import GroundingMode, GroundingResult, ObjectMask
from videomolmo_ros.contracts.interfaces import BackendError, Pointer

POINTER_ERROR = "CUDA error: an illegal memory access was encountered"
PROPAGATOR_ERROR = "CUDA out of memory. Tried to allocate 20.00 MiB"


class FailingPointerDouble(Pointer):
    """Raises on every query, as a model whose GPU state is broken does."""

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        raise RuntimeError(POINTER_ERROR)


class FailingPropagatorDouble(ColorOraclePropagatorDouble):
    """Takes prompts, then raises on every step, as a propagator out of GPU memory does."""

    def step(self, frame: Frame, object_ids: Collection[int] | None = None) -> dict[int, ObjectMask]:
        raise RuntimeError(PROPAGATOR_ERROR)


@dataclass(frozen=True)
class DyingOptions(OracleOptions):
    answers: int = 0  # queries answered (as the colour oracle) before the process is killed
    loaded_file: str = ""  # created at the first load: a second load (the restart) fails


class DyingPointerDouble(ColorOraclePointerDouble):
    """The colour oracle, for PointerProcess only: after `answers` queries its process is killed (SIGKILL, as
    the kernel's out-of-memory killer does), and it cannot be loaded again once `loaded_file` exists."""

    Options = DyingOptions

    def __init__(self, options: DyingOptions, device):
        super().__init__(options, device)
        loaded = Path(options.loaded_file)
        if loaded.exists():
            raise BackendError("not enough memory to load the model again")
        loaded.touch()
        self._answered = 0

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        if self._answered >= self.options.answers:
            os.kill(os.getpid(), signal.SIGKILL)
        self._answered += 1
        return super().ground(window, query, mode)


LOAD_ERROR = "a bug while loading the model"


class UnloadablePointerDouble(ColorOraclePointerDouble):
    """Raises an unexpected error (not a BackendError) while loading, as a bug in a backend does."""

    def __init__(self, options: OracleOptions, device):
        raise RuntimeError(LOAD_ERROR)
