"""The seams between the pipeline and the models: a pointer and a mask propagator.

A *pointer* is a video grounding model: given a window of recent frames and a query, it
places points on the objects the query names. A *mask propagator* turns points into masks
and carries them from frame to frame at camera rate. Both are plain Python + torch, so a
backend can be written, tested and benchmarked without ROS.

To add your own backend, subclass one of these, give it an `Options` dataclass (each field
becomes a ROS parameter `<ClassName>.<field>`), and name it in the node's
parameters as `package.module:ClassName`. Declare a field that selects code, files or endpoints
(a path, a model id, an URL, trust_remote_code) with `startup_only(default)`: its parameter is
read-only, set from the params file or launch only, never by a peer on the network.
"""

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import Field, dataclass, field

import torch

from videomolmo_ros.contracts.frames import Frame, FrameWindow
from videomolmo_ros.contracts.grounding import GroundingMode, GroundingResult, ObjectMask


class BackendError(RuntimeError):
    """A backend that cannot be found, built or configured; the message says what to change."""


# Field metadata key: the option's parameter is read-only (see startup_only).
READ_ONLY = "read_only"


def startup_only(default) -> Field:
    """An Options field that selects code, files or endpoints: a read-only ROS parameter.

    Anyone on the DDS network can set a node's parameters; a path, model id, URL or code switch
    set that way would let them choose what the node loads or where it sends its frames.
    """
    return field(default=default, metadata={READ_ONLY: True})


@dataclass(frozen=True)
class NoOptions:
    """For backends that take no options."""


class Backend:
    """What every backend shares: its parsed `Options` and the device it runs on."""

    Options: type = NoOptions

    def __init__(self, options: object, device: torch.device):
        self.options = options
        self.device = device

    def describe(self) -> str:
        """What the start-up log says the node runs (a remote backend names its server; never a secret)."""
        return type(self).__name__

    def close(self) -> None:
        """Release what the backend holds besides memory (a process, a connection); called at cleanup."""


class Pointer(Backend, ABC):
    """A video grounding model: frames + query -> points per frame.

    `camera_rate_frames`: 0 to read the context window (context_frames sampled at context_fps);
    N to read the last N consecutive camera frames instead (a temporal module trained on
    consecutive frames), whatever context_frames and context_fps say.
    """

    camera_rate_frames: int = 0

    def check_context(self, context_frames: int, context_fps: float) -> list[str]:
        """Warnings about how the context window will feed this model, logged once at configure.

        Raise BackendError for a window the model cannot work with.
        """
        return []

    @abstractmethod
    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        """Find what `query` names in `window` (oldest frame first, real timestamps in metas).

        Called from the grounding worker thread, one query at a time; may take seconds. It may
        cache per-frame features with FrameBuffer.put_feature (they arrive in window.features).
        Raise on a model failure: the pipeline logs it, counts it and keeps serving.
        """


class MaskPropagator(Backend, ABC):
    """Points -> masks, carried through frames. Object ids are the pipeline's track ids."""

    @abstractmethod
    def add_prompts(self, frame: Frame, prompts: Mapping[int, Sequence[tuple[float, float]]]) -> None:
        """Start or refresh objects from positive clicks (pixels) on `frame`.

        `frame` is where the pointer placed the points; it may be older than the last frame
        passed to `step`, since grounding runs slower than the camera.
        """

    @abstractmethod
    def step(self, frame: Frame, object_ids: Collection[int] | None = None) -> dict[int, ObjectMask]:
        """Masks on `frame` for every live object (None), or for `object_ids` only (an empty mask when not visible).

        Live steps come in time order, every object on each new frame. Catch-up is the exception:
        after a prompt on an older frame, the pipeline carries the prompted objects (`object_ids`)
        through frames it already stepped for the others, oldest first, before their next live
        step; the other objects must stay exactly as they were. Unknown ids are ignored.
        """

    @abstractmethod
    def remove(self, object_ids: Iterable[int]) -> None:
        """Forget these objects and everything kept for them."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every object and all temporal state (a time jump, a restart)."""

    def retain_frames(self, count: int) -> None:
        """The pipeline may step the last `count` stepped frames again (catch-up); optional.

        A backend that caches per-frame work (SAM2's image features) keeps it for that many frames,
        so catch-up costs the per-object step only.
        """

    def image_features(self, frame: Frame) -> torch.Tensor | None:
        """The propagator's own image features of `frame`, C x h x w over the whole frame; optional.

        Tracks can tell objects apart by them (tracker.descriptor: propagator_features) at no cost
        when the propagator computes them anyway, once per frame, for its steps and prompts (SAM2's
        image encoder): the pipeline asks for the frames it tracked and the frames grounded points
        are on (prompted next). The default exposes none.
        """
        return None

    def for_another_camera(self) -> "MaskPropagator":
        """A propagator for one more camera, with its own temporal state.

        The default builds another one from the same options (weights loaded again); a backend
        with large weights overrides this to share them between cameras.
        """
        return type(self)(self.options, self.device)

    def propagate(
        self, frames: Sequence[Frame], prompts: Mapping[int, Sequence[tuple[float, float]]], reverse: bool
    ) -> list[dict[int, ObjectMask]]:
        """Masks over a span of frames from prompts on its last (reverse) or first frame; optional.

        A separate pass that leaves the live state untouched: the backward pass of bidirectional
        mask fusion. Returns one dict per frame, in the order of `frames`.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot propagate over a span of frames")
