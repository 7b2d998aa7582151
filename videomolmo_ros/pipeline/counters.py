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
    """Emits the first `burst` problems of each kind at once, then none until `period_s` has passed.

    A camera sending a bad encoding at 30 Hz gives one clear line and then one line every few
    seconds saying how many more frames had the same problem, not 30 lines a second. A `burst`
    above 1 suits routine events (commands accepted): a few in a row are all logged, a flood is not.
    """

    def __init__(self, emit: Callable[[str], None], period_s: float = 5.0, clock=time.monotonic, burst: int = 1):
        self._emit = emit
        self._period_s = period_s
        self._burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._periods: dict[str, tuple[float, int]] = {}  # per key: when its period began, lines emitted in it
        self._last: dict[str, float] = {}  # per key: when its last line was emitted
        self._suppressed: Counter[str] = Counter()

    def report(self, key: str, message: str) -> None:
        now = self._clock()
        with self._lock:
            began, emitted = self._periods.get(key, (now, 0))
            if now - began >= self._period_s:
                began, emitted = now, 0
            if emitted >= self._burst:
                self._suppressed[key] += 1
                return
            self._periods[key] = (began, emitted + 1)
            last, self._last[key] = self._last.get(key, now), now
            suppressed = self._suppressed.pop(key, 0)
        more = f" ({suppressed} more like this in the last {now - last:.0f} s)" if suppressed else ""
        self._emit(f"{message}{more}")
