"""Counting what the node does and drops, and reporting problems without flooding the log."""

import threading
import time
from collections import Counter
from collections.abc import Callable


class Counters:
    """Thread-safe named counts: frames received, skipped, rejected and why, ..."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class ProblemLog:
    """Emits the first problem of each kind at once, then at most once per `period_s`.

    A camera sending a bad encoding at 30 Hz gives one clear line and then one line every few
    seconds saying how many more frames had the same problem, not 30 lines a second.
    """

    def __init__(self, emit: Callable[[str], None], period_s: float = 5.0, clock=time.monotonic):
        self._emit = emit
        self._period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def report(self, key: str, message: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period_s:
                self._suppressed[key] += 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        more = f" ({suppressed} more like this in the last {now - last:.0f} s)" if suppressed else ""
        self._emit(f"{message}{more}")
