"""A pointer in a process of its own, frames shared through shared memory (`pointer_process: true`).

In the node's process, a grounding model's Python work (generate's token loop, preprocessing)
holds the GIL for most of a query: the image callback waits for it (p99 of several ms) and the
tracking worker's many short torch calls wait at every one of them, so tracking slows down
while a query runs (bench/bench_latency.py measures both). In a child process only the CPU is
shared. The window's frames go through a shared block (one copy per query, no pickling), sealed
so that no other process can resize, write or unlink it (io/shared_frames.py); its descriptor,
the query, mode and the answer through a socket pair. A block that cannot be made or mapped is
a failed grounding (counted), and the next query makes a new one.

The child builds the same backend from the same spec and options, on the same device, and tells
what the node asks of a pointer at configure (the frames it reads, what it says about the
context window, its description). Per-frame features a temporal model caches (VideoMolmo) are
kept in the child, by frame, as the frame buffer keeps them in-process. A model error in the
child is raised here as a RuntimeError with its message (the pipeline counts it); a child that
died is started again at the next query. While it cannot be (the model no longer loads), `down`
says how the child ended and why it does not start again, for the diagnostics.
"""

import contextlib
import multiprocessing.connection
import subprocess
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from multiprocessing.reduction import recv_handle, send_handle

import numpy as np
import torch

from videomolmo_ros.backends.registry import create
from videomolmo_ros.contracts.frames import FrameMeta, FrameWindow
from videomolmo_ros.contracts.grounding import GroundingMode, GroundingResult
from videomolmo_ros.contracts.interfaces import BackendError, Pointer
from videomolmo_ros.io.child_process import exit_cause, stop_child
from videomolmo_ros.io.shared_frames import SharedFrames

_FEATURE_FRAMES = 64  # frames whose cached features the child keeps (a few context windows)
_START_TIMEOUT_S = 600.0  # loading a large model from disk
_EXIT_STATUS_WAIT_S = 2.0  # for the exit status of a child whose connection broke
# The child: a fresh interpreter running this module (not multiprocessing's spawn, which runs the
# parent's main script again: the node's console script has no __main__ guard).
_CHILD = "import sys; from videomolmo_ros.backends.pointer_process import child_main; child_main(int(sys.argv[1]))"


class PointerProcess(Pointer):
    """The pointer `spec` with `options`, run in a child process; `ground` blocks until it answers."""

    def __init__(self, spec: str, options: Mapping[str, object], device: torch.device):
        super().__init__(dict(options), device)
        self.spec = spec
        self._lock = threading.Lock()  # one query at a time (cameras take turns anyway)
        self._frames: SharedFrames | None = None
        self._frames_handed_over = False  # to the running child
        self._process = None
        self._death: str | None = None  # how the last serving child ended, until another one starts
        self._restart_error: str | None = None  # why the last attempt to start another one failed
        self._start()

    def describe(self) -> str:
        return f"{self._description} in a process of its own"

    def check_context(self, context_frames: int, context_fps: float) -> list[str]:
        with self._lock:
            self._conn.send(("check", context_frames, context_fps))
            kind, value = self._conn.recv()
        if kind != "answered":
            raise BackendError(value)
        return value

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def down(self) -> str | None:
        """Why no child can answer: how the last one ended and why another did not start; None while one can."""
        if self._restart_error is None:
            return None
        return f"the pointer process {self._death} and could not be started again: {self._restart_error}"

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        with self._lock:
            if not self.alive:
                self._restart()  # it died (out of memory, a crash): the next query gets a new one
            images = window.images.cpu().numpy()
            np.copyto(self._shared(images.nbytes).array(images.shape), images)
            try:
                if not self._frames_handed_over:
                    self._hand_over(self._frames)
                self._conn.send(("ground", images.shape, window.metas, query, int(mode)))
                kind, value = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as error:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(_EXIT_STATUS_WAIT_S)
                ended = exit_cause(self._process.returncode)
                raise RuntimeError(
                    f"the pointer process {ended} during a query; it starts again at the next one"
                ) from error
        if kind == "failed":
            raise RuntimeError(f"pointer process: {value}")
        return value

    def close(self) -> None:
        """Stop the child and free the shared frames (the node's cleanup and shutdown)."""
        with self._lock:
            if self.alive:
                stop_child(self._process, self._ask_to_stop, 10)
            self._drop_frames()

    def _ask_to_stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("stop",))

    def _restart(self) -> None:
        """Another child for the one that died; if it does not start, `down` says why until one does."""
        self._death = self._death or exit_cause(self._process.returncode)  # the serving child's end, not a retry's
        try:
            self._start()
        except Exception as error:
            self._restart_error = str(error) or repr(error)
            raise
        self._death = self._restart_error = None

    def _start(self) -> None:
        """A new child on one end of a socket pair (no fork of a process with threads and CUDA); wait until ready."""
        self._conn, child = multiprocessing.Pipe()
        self._frames_handed_over = False
        self._process = subprocess.Popen([sys.executable, "-c", _CHILD, str(child.fileno())], pass_fds=[child.fileno()])
        child.close()
        self._conn.send((self.spec, self.options, str(self.device), sys.path))
        if not self._conn.poll(_START_TIMEOUT_S):
            self._process.kill()
            raise BackendError(f"pointer process for {self.spec!r} did not start within {_START_TIMEOUT_S:.0f} s")
        try:
            kind, value = self._conn.recv()
        except EOFError as error:
            raise BackendError(f"pointer process for {self.spec!r} exited while loading the model") from error
        if kind != "ready":
            self._process.wait(10)
            raise BackendError(value)
        self.camera_rate_frames, self._description = value

    def _shared(self, nbytes: int) -> SharedFrames:
        """The shared frames, made anew to hold `nbytes` (the largest window so far) and handed over at this query."""
        if self._frames is None or self._frames.size < nbytes:
            self._drop_frames()
            try:
                self._frames = SharedFrames.create(nbytes)
            except (OSError, ValueError) as error:
                message = f"pointer process: could not make shared frames of {nbytes} bytes: {error}"
                raise BackendError(message) from error
        return self._frames

    def _hand_over(self, frames: SharedFrames) -> None:
        """Give the child the block's descriptor (SCM_RIGHTS on their socket); it maps it or says why not."""
        self._conn.send(("frames", frames.size))
        send_handle(self._conn, frames.fd, self._process.pid)
        kind, value = self._conn.recv()
        if kind != "attached":
            self._drop_frames()  # the next query tries a new block
            raise BackendError(f"pointer process: could not map the shared frames: {value}")
        self._frames_handed_over = True

    def _drop_frames(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        self._frames_handed_over = False


def child_main(fd: int) -> None:
    """The child process: the parent's module path, then serve on the socket `fd`."""
    conn = multiprocessing.connection.Connection(fd)
    spec, options, device, path = conn.recv()
    sys.path[:0] = [entry for entry in path if entry not in sys.path]  # where the parent finds backends
    _serve(conn, spec, options, device)


def _serve(conn, spec: str, options: dict, device: str) -> None:
    """Build the pointer, then answer queries until told to stop (or the parent goes away)."""
    try:
        pointer = create(spec, Pointer, torch.device(device), options)
    except Exception as error:  # the parent raises it as the configure error it is
        conn.send(("error", str(error) if isinstance(error, BackendError) else f"{spec}: {error!r}"))
        return
    conn.send(("ready", (pointer.camera_rate_frames, pointer.describe())))
    features: OrderedDict[FrameMeta, dict] = OrderedDict()
    frames: SharedFrames | None = None
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request[0] == "stop":
            return
        if request[0] == "check":
            try:
                conn.send(("answered", pointer.check_context(*request[1:])))
            except BackendError as error:
                conn.send(("error", str(error)))
            continue
        if request[0] == "frames":
            frames = None  # the parent's new block replaces it (unmapped once no array is left on it)
            try:
                frames = SharedFrames.attach(recv_handle(conn), request[1])
                conn.send(("attached", None))
            except Exception as error:
                conn.send(("refused", str(error) or repr(error)))
            continue
        _, shape, metas, query, mode = request
        try:
            window = _window(metas, _images(frames, shape).to(pointer.device), features)
            conn.send(("answered", pointer.ground(window, query, GroundingMode(mode))))
        except Exception as error:
            conn.send(("failed", repr(error)))


def _images(frames: SharedFrames, shape: tuple[int, ...]) -> torch.Tensor:
    """The window's frames on the block, read-only: a model writing to them would fault here, not in the node."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        return torch.from_numpy(frames.array(shape))


def _window(metas: tuple[FrameMeta, ...], images: torch.Tensor, features: OrderedDict) -> FrameWindow:
    """The window as the pointer sees it in-process, with the features cached for its frames here."""

    def store(meta: FrameMeta, key: str, value: object) -> bool:
        features.setdefault(meta, {})[key] = value
        features.move_to_end(meta)
        while len(features) > _FEATURE_FRAMES:
            features.popitem(last=False)
        return True

    return FrameWindow(metas, images, tuple(dict(features.get(m, {})) for m in metas), store=store)
