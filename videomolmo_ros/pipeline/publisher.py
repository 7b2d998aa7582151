"""The publisher worker: outputs go out from a thread of their own, so tracking steps the next frame at once. No ROS.

Turning outputs into messages costs the node as much as a GPU model step at high resolution:
mask encoding, 3D positions, debug drawing. `QueuedSink` sits between a pipeline and the real
sink (the node's publishers): the tracking worker only queues, and one worker thread per
pipeline delivers in order, so each camera's outputs keep their order.

Bounded: when `max_pending` outputs wait, a frame's tracks and masks are dropped together
(`outputs_dropped_publisher_busy`, reported); targets are never dropped (one per grounding, and
planners wait for them). Problems go to the sink at once (a log line). `close` delivers what is
queued, then stops the thread.
"""

import threading
import traceback
from collections import deque
from collections.abc import Callable

from videomolmo_ros.pipeline.outputs import MasksOutput, OutputSink, TargetsOutput, TracksOutput


class QueuedSink:
    """An OutputSink that delivers to `sink` from its own thread, in order, with a bounded queue."""

    def __init__(
        self, sink: OutputSink, max_pending: int, problem: Callable[[str, str], None], name: str = "publisher"
    ):
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._sink = sink
        self._max_pending = max_pending
        self._problem = problem  # problem(key, message): counted and reported (the pipeline's)
        self._queue: deque[Callable[[], None]] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._dropping: tuple | None = None  # (command, stamp) whose masks follow its dropped tracks
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def publish_targets(self, output: TargetsOutput) -> None:
        self._put(lambda: self._sink.publish_targets(output))

    def publish_tracks(self, output: TracksOutput) -> None:
        frame = (output.command_id, output.meta.stamp_ns)
        with self._wake:
            full = len(self._queue) >= self._max_pending
            self._dropping = frame if full else None
        if full:
            self._problem(
                "outputs_dropped_publisher_busy",
                f"tracks and masks of {output.command_id} on the frame stamped {output.meta.stamp_ns / 1e9:.3f} s "
                f"dropped: {self._max_pending} outputs wait for the publisher (publishing is slower than tracking)",
            )
            return
        self._put(lambda: self._sink.publish_tracks(output))

    def publish_masks(self, output: MasksOutput) -> None:
        with self._wake:
            if self._dropping == (output.command_id, output.meta.stamp_ns):
                return
        self._put(lambda: self._sink.publish_masks(output))

    def problem(self, key: str, message: str) -> None:
        self._sink.problem(key, message)

    @property
    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (waiting up to `timeout_s`), then stop the thread."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._thread.join(timeout_s)

    def _put(self, deliver: Callable[[], None]) -> None:
        with self._wake:
            self._queue.append(deliver)
            self._wake.notify_all()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                deliver = self._queue.popleft()
            try:
                deliver()
            except Exception as error:  # a bug in one message: reported, never the end of publishing
                self._problem("internal_errors", f"publisher worker: {error!r}\n{traceback.format_exc()}")
