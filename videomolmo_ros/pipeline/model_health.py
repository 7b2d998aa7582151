"""Whether a model is answering: a judgement per model (pointer, propagator) from its recent calls. No ROS.

A grounding model that raises on every query, or a mask propagator that raises on every frame,
leaves the node running but blind, and counters alone do not say so. The pipeline tells a
`ModelHealth` how each call of its model went (`call`); the diagnostics ask it for a status:

- OK while calls succeed; failures now and then are in the values (those of the last `window_s`);
- WARN once `failures_to_warn` calls in a row failed, with the last error: the model is sick, not
  unlucky. One call that succeeds is the model working again: OK at once;
- ERROR when the model cannot answer at all (a pointer process that died and could not be
  started again: `down`), with the cause.

Memory is bounded: the failure times of the last `window_s` seconds, at most `max_events`.
"""

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from videomolmo_ros.io.text import clip
from videomolmo_ros.pipeline.health import HealthStatus, Level

FAILURES_TO_WARN = 3  # a failing model in ~1.5 s of grounding at 2 Hz, ~0.1 s of tracking at 30 Hz
WINDOW_S = 10.0
ERROR_CHARS = 200  # of the last error, in the values
MESSAGE_ERROR_CHARS = 80  # of the last error, in the message


class ModelHealth:
    """One model's calls, judged. Thread-safe: fed by a pipeline worker, read by the diagnostics timer."""

    def __init__(
        self,
        name: str,
        calls: str,
        failures_to_warn: int = FAILURES_TO_WARN,
        window_s: float = WINDOW_S,
        max_events: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`name` is the status's ("pointer"); `calls` names one call in a message ("grounding", "propagation step")."""
        if failures_to_warn < 1 or window_s <= 0:
            raise ValueError("failures_to_warn must be >= 1 and window_s > 0")
        self.name = name
        self._calls_name = calls
        self._failures_to_warn = failures_to_warn
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=max_events)  # failure times of the window
        self._calls = self._failures = self._in_a_row = 0
        self._last_error: str | None = None
        self._last_error_s: float | None = None

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Judge the model call made in the block: it failed if it raised (the error goes on up)."""
        try:
            yield
        except Exception as error:
            self.failed(error)
            raise
        self.succeeded()

    def succeeded(self) -> None:
        with self._lock:
            self._calls += 1
            self._in_a_row = 0

    def failed(self, error: BaseException | str) -> None:
        now = self._clock()
        with self._lock:
            self._calls += 1
            self._failures += 1
            self._in_a_row += 1
            self._recent.append(now)
            self._last_error = clip(error if isinstance(error, str) else repr(error), ERROR_CHARS)
            self._last_error_s = now

    def status(self, down: str | None = None) -> HealthStatus:
        """The judgement now; `down`: why the model cannot answer at all (ERROR), or None."""
        now = self._clock()
        with self._lock:
            while self._recent and self._recent[0] < now - self._window_s:
                self._recent.popleft()
            values = self._values(now)
            if down is not None:
                values["cause"] = clip(down, 1000)
                return HealthStatus(self.name, Level.ERROR, clip(down, ERROR_CHARS), values)
            if self._in_a_row >= self._failures_to_warn:
                error = clip(self._last_error, MESSAGE_ERROR_CHARS)
                message = f"the last {self._in_a_row} {self._calls_name}s failed: {error}"
                return HealthStatus(self.name, Level.WARN, message, values)
            return HealthStatus(self.name, Level.OK, self._ok_message(), values)

    def _ok_message(self) -> str:
        if not self._calls:
            return f"no {self._calls_name} yet"
        if self._recent:
            return f"answering; {len(self._recent)} {self._calls_name}(s) failed in the last {self._window_s:.0f} s"
        return "answering"

    def _values(self, now: float) -> dict[str, str]:
        values = {
            "calls": str(self._calls),
            "failures": str(self._failures),
            "failures_in_a_row": str(self._in_a_row),
            f"failures_last_{self._window_s:.0f}s": str(len(self._recent)),
        }
        if self._last_error is not None:
            values |= {"last_error": self._last_error, "last_error_age_s": f"{now - self._last_error_s:.1f}"}
        return values
