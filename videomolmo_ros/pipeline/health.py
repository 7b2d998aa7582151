"""The node's health as a few named statuses, ready to publish as diagnostic_msgs/DiagnosticArray.

An operator (rqt_robot_monitor, a fleet dashboard) should see at a glance whether the camera is
arriving, outputs are going out and how late, the models are answering (model_health.py), and
whether anything was dropped or reset recently, without reading logs. The node feeds
`HealthMonitor` one event per image and per published frame (any thread) and asks for `report`
on a timer; this module knows nothing of ROS (the node converts `HealthStatus` to DiagnosticStatus).

Memory is bounded on an endless stream: rates and latencies come from a sliding window of the
last `window_s` seconds holding at most `max_events` events.
"""

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

# Counters (see pipeline.py) that say something was dropped, skipped or rejected.
DROP_COUNTERS = (
    "frames_rejected_",
    "frames_skipped_",
    "groundings_dropped_",
    "fusion_frames_unfused_",
    "catch_up_skipped",
    "outputs_dropped_",
    "commands_rejected",
    "camera_info_rejected",
    "points_dropped_low_score",
    "points_dropped_over_cap",
    "goals_rejected",
    "internal_errors",
    "frames_lost",  # the middleware's count of messages lost before they reached the node
    "depth_lost",
    "camera_info_lost",
    "commands_lost",
    "commands_ignored_inactive",
    "debug_images_skipped",
)
# Of those, the ones worth a warning when they grow: lost data, refused requests, bugs. Skipped
# frames (tracking slower than the camera, catch-up over its bound), frames released unfused,
# points below the configured score or over the object caps and debug images not drawn are the
# designed degradation, reported but not warned about.
WARN_COUNTERS = (
    "frames_rejected_",
    "groundings_dropped_",
    "outputs_dropped_",
    "commands_rejected",
    "goals_rejected",
    "camera_info_rejected",
    "internal_errors",
    "frames_lost",
    "depth_lost",
    "camera_info_lost",
    "commands_lost",
    "commands_ignored_inactive",
)
NOT_AVAILABLE = "n/a"
# A clock going back further than this is a jump (a looping bag under sim time) and empties the
# windows; less is two threads' events arriving slightly out of order, which is harmless.
CLOCK_JUMP_S = 1.0
# Where the docs tell how to stop large frames being lost before they reach the node.
LOSS_HELP = "see docs/large-images.md"


class Level(IntEnum):
    """Values match diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True)
class HealthStatus:
    name: str
    level: Level
    message: str
    values: dict[str, str]


class _Window:
    """Event times, each with a value, of the last `span_s` seconds, at most `max_events` of them."""

    def __init__(self, span_s: float, max_events: int):
        self._span_s = span_s
        self._events: deque[tuple[float, float]] = deque(maxlen=max_events)

    def add(self, now_s: float, value: float) -> None:
        self.prune(now_s)
        self._events.append((now_s, value))

    def prune(self, now_s: float) -> None:
        """Forget events older than the window; all of them if the clock jumped back."""
        if self._events and self._events[-1][0] > now_s + CLOCK_JUMP_S:
            self._events.clear()
        while self._events and self._events[0][0] < now_s - self._span_s:
            self._events.popleft()

    def rate_hz(self, now_s: float) -> float:
        """Events per second since the oldest one in the window: falls towards 0 as soon as events stop."""
        self.prune(now_s)
        elapsed = now_s - self._events[0][0] if self._events else 0.0
        return (len(self._events) - 1) / elapsed if elapsed > 0 else 0.0

    def percentiles(self, now_s: float, qs: tuple[float, ...]) -> tuple[float, ...] | None:
        self.prune(now_s)
        if not self._events:
            return None
        return tuple(float(v) for v in np.percentile([value for _, value in self._events], qs))


_PERIOD_ITERATIONS = 4  # enough for interval jitter of half a period to settle
_PERIOD_REFRESH = 15  # intervals between re-measurements of the period while no gap shows


class FrameGaps:
    """Frames the camera sent that never arrived, suspected from gaps in the source stamps.

    Frames lost in transport (raw images too large for the DDS settings, a saturated link) never
    reach the node, so no callback can count them; their absence shows in the stamps of the frames
    that did arrive. The camera's period is measured from the stamps of the last `span_s` seconds:
    the median p of the intervals up to 1.5 p (consecutive frames; found by iterating from their 5th
    percentile, so jittered stamps settle on the true period), once at least `min_evidence`
    consecutive intervals were seen. An interval of n periods then hides
    n - 1 frames. Gaps longer than `max_gap_s` are a paused camera or a cut in a bag, not losses,
    and count nothing; stamps going back (a restarted bag) start the measurement again.

    Measuring takes about 0.5 ms over 10 s of a 30 Hz camera, on the image callback's thread: it is
    done every _PERIOD_REFRESH intervals, and at once for an interval that may be a gap, which is
    then judged by the period as measured with that interval in.
    """

    def __init__(self, span_s: float = 10.0, min_evidence: int = 3, max_gap_s: float = 10.0, max_intervals: int = 1024):
        self._intervals: deque[tuple[int, float]] = deque(maxlen=max_intervals)  # (stamp ns, interval s)
        self._span_ns = round(span_s * 1e9)
        self._min_evidence = min_evidence
        self._max_gap_s = max_gap_s
        self._last_stamp_ns: int | None = None
        self._period: float | None = None  # the last measurement
        self._since_measured = 0  # intervals added since
        self.missing = 0

    def add(self, stamp_ns: int) -> int:
        """Note a received frame's stamp; the frames suspected missing just before it."""
        last, self._last_stamp_ns = self._last_stamp_ns, stamp_ns
        if last is not None and stamp_ns < last:
            self._intervals.clear()  # a new stream: its rate is measured anew
            self._period = None
        if last is None or stamp_ns <= last:
            return 0
        interval = (stamp_ns - last) / 1e9
        self._intervals.append((stamp_ns, interval))
        while self._intervals[0][0] < stamp_ns - self._span_ns:
            self._intervals.popleft()
        period = self._current_period(interval)
        if period is None or interval > self._max_gap_s:
            return 0
        hidden = max(round(interval / period) - 1, 0)
        self.missing += hidden
        return hidden

    def _current_period(self, interval: float) -> float | None:
        """The period to judge `interval` (just added) by: measured again if due or if it may be a gap."""
        self._since_measured += 1
        due = self._period is None or self._since_measured >= _PERIOD_REFRESH
        if due or interval > 1.5 * self._period:
            self._period, self._since_measured = self.period_s(), 0
        return self._period

    def period_s(self) -> float | None:
        """The camera's measured frame period, or None before enough consecutive frames were seen."""
        if not self._intervals:
            return None
        intervals = np.array([interval for _, interval in self._intervals])
        period = float(np.percentile(intervals, 5))
        for _ in range(_PERIOD_ITERATIONS):
            consecutive = intervals[intervals <= 1.5 * period]
            period = float(np.median(consecutive))
        return period if len(consecutive) >= self._min_evidence else None


class HealthMonitor:
    """Thread-safe: fed from the node's callbacks and workers, read by the diagnostics timer.

    `now_s` must be the clock the image stamps are in (the node's ROS clock, sim time under
    `use_sim_time`), so that stamp -> receipt and stamp -> publish latencies mean something.
    "Since the last report" means since the previous `report` call.
    """

    def __init__(self, stall_after_s: float = 2.0, window_s: float = 5.0, max_events: int = 2048):
        if stall_after_s <= 0 or window_s <= 0 or max_events < 2:
            raise ValueError("stall_after_s and window_s must be > 0 and max_events >= 2")
        self.stall_after_s = stall_after_s
        self._lock = threading.Lock()
        self._images = _Window(window_s, max_events)  # value: stamp -> receipt delay, s
        self._outputs = _Window(window_s, max_events)  # value: stamp -> publish latency, s
        self._last_image_s: float | None = None
        self._last_output_s: float | None = None
        self._last_output_stamp_ns: int | None = None
        self._reported: dict[str, int] = {}
        self._gaps = FrameGaps()
        self._missing_reported = 0
        self._missing_warned = False

    def image_received(self, stamp_ns: int, now_s: float) -> None:
        with self._lock:
            self._images.add(now_s, now_s - stamp_ns / 1e9)
            self._last_image_s = now_s
            self._gaps.add(stamp_ns)

    @property
    def frames_missing_suspected(self) -> int:
        with self._lock:
            return self._gaps.missing

    def missing_frames_warning(self) -> str | None:
        """The first time frames were suspected missing, a warning saying what to do; then None."""
        with self._lock:
            period = self._gaps.period_s()  # None for a moment after the stamps went back (a new stream)
            if self._missing_warned or not self._gaps.missing or period is None:
                return None
            self._missing_warned = True
            rate = 1.0 / period
            return (
                f"{self._gaps.missing} frame(s) never arrived: the source stamps show gaps at the camera's measured "
                f"{rate:.1f} Hz. Frames lost in transport are not counted anywhere else; raw images larger than "
                f"512 KB need a DDS profile in the publishing process ({LOSS_HELP})"
            )

    def outputs_published(self, stamp_ns: int, now_s: float) -> None:
        """One tracked frame's outputs went out. Repeats for the same frame (one per command) count once."""
        with self._lock:
            if stamp_ns == self._last_output_stamp_ns:
                return
            self._last_output_stamp_ns = stamp_ns
            self._outputs.add(now_s, now_s - stamp_ns / 1e9)
            self._last_output_s = now_s

    def report(
        self,
        now_s: float,
        counters: Mapping[str, int],
        buffer_fill: tuple[int, int],
        grounding_latency_s: float | None,
        buffer_memory: tuple[int, int] | None = None,
    ) -> list[HealthStatus]:
        """The statuses now; `counters` is the pipeline's counter snapshot (PerceptionPipeline.counters).

        `buffer_memory` is (bytes the frame rings hold now, bytes budgeted for them at configure).
        """
        with self._lock:
            new = {name: max(count - self._reported.get(name, 0), 0) for name, count in counters.items()}
            self._reported = dict(counters)
            return [
                self._camera(now_s, counters),
                self._output_status(now_s),
                _grounding(counters, new, grounding_latency_s),
                _drops(counters, new),
                _time(counters, new),
                _identities(counters, new),
                _buffers(buffer_fill, buffer_memory),
            ]

    def _camera(self, now_s: float, counters: Mapping[str, int]) -> HealthStatus:
        name = "camera input"
        missing, period = self._gaps.missing, self._gaps.period_s()
        missing_new, self._missing_reported = missing - self._missing_reported, missing
        values = {
            "frames_received": str(counters.get("frames_received", 0)),
            "frames_missing_suspected": str(missing),
            "frames_missing_suspected_new": str(missing_new),
            "camera_rate_hz": NOT_AVAILABLE if period is None else f"{1.0 / period:.2f}",
        }
        if self._last_image_s is None:
            return HealthStatus(name, Level.STALE, "no image received yet", values)
        age_s = max(now_s - self._last_image_s, 0.0)
        rate = self._images.rate_hz(now_s)
        values |= {"rate_hz": f"{rate:.2f}", "last_frame_age_s": f"{age_s:.2f}"}
        values.update(_latency_values("delay", self._images, now_s))
        if age_s > self.stall_after_s:
            return HealthStatus(name, Level.WARN, f"no image for {age_s:.1f} s: the camera stalled", values)
        if missing_new:
            message = (
                f"{rate:.1f} Hz; {missing_new} frame(s) sent but never received since the last report "
                f"(gaps in the stamps at the camera's {1.0 / period:.1f} Hz; {LOSS_HELP})"
            )
            return HealthStatus(name, Level.WARN, message, values)
        return HealthStatus(name, Level.OK, f"{rate:.1f} Hz", values)

    def _output_status(self, now_s: float) -> HealthStatus:
        name = "outputs"
        if self._last_output_s is None:
            return HealthStatus(name, Level.OK, "no tracked frame published yet (no track command running?)", {})
        rate = self._outputs.rate_hz(now_s)
        values = {"rate_hz": f"{rate:.2f}", "last_output_age_s": f"{max(now_s - self._last_output_s, 0.0):.2f}"}
        values.update(_latency_values("latency", self._outputs, now_s))
        message = f"{rate:.1f} Hz, stamp to publish p50 {values['latency_p50_ms']} ms p99 {values['latency_p99_ms']} ms"
        return HealthStatus(name, Level.OK, message, values)


def _latency_values(prefix: str, window: _Window, now_s: float) -> dict[str, str]:
    """p50 and p99 in ms over the window, "n/a" when it is empty."""
    quantiles = window.percentiles(now_s, (50, 99))
    p50, p99 = (NOT_AVAILABLE, NOT_AVAILABLE) if quantiles is None else (f"{q * 1e3:.1f}" for q in quantiles)
    return {f"{prefix}_p50_ms": p50, f"{prefix}_p99_ms": p99}


def _grounding(counters: Mapping[str, int], new: Mapping[str, int], latency_s: float | None) -> HealthStatus:
    failures_new = new.get("grounding_failures", 0)
    values = {
        "last_latency_s": NOT_AVAILABLE if latency_s is None else f"{latency_s:.3f}",
        "groundings": str(counters.get("groundings", 0)),
        "failures": str(counters.get("grounding_failures", 0)),
        "failures_new": str(failures_new),
    }
    if failures_new:
        return HealthStatus("grounding", Level.WARN, f"{failures_new} failure(s) since the last report", values)
    if latency_s is None:
        return HealthStatus("grounding", Level.OK, "no grounding yet", values)
    return HealthStatus("grounding", Level.OK, f"last query took {latency_s:.2f} s", values)


def _drops(counters: Mapping[str, int], new: Mapping[str, int]) -> HealthStatus:
    """Totals since start and since the last report, per reason; "<name>_new" is since the last report."""
    names = sorted(name for name in counters if name.startswith(DROP_COUNTERS))
    values = {"total": str(sum(counters[n] for n in names)), "total_new": str(sum(new[n] for n in names))}
    values |= _counter_values(names, counters, new)
    warned = [f"{new[n]} {n}" for n in names if new[n] and n.startswith(WARN_COUNTERS)]
    if warned:
        return HealthStatus("drops", Level.WARN, "since the last report: " + ", ".join(warned), values)
    others = [f"{new[n]} {n}" for n in names if new[n]]
    message = "nothing rejected or dropped since the last report" + (f" ({', '.join(others)})" if others else "")
    return HealthStatus("drops", Level.OK, message, values)


def _time(counters: Mapping[str, int], new: Mapping[str, int]) -> HealthStatus:
    jumps, gaps = new.get("time_jump_resets", 0), new.get("time_gap_context_restarts", 0)
    values = _counter_values(("time_jump_resets", "time_gap_context_restarts"), counters, new)
    if jumps:
        message = (
            f"image stamps went backwards {jumps} time(s) since the last report (a looping or restarted bag?): "
            "buffers, tracks and masks were reset"
        )
        return HealthStatus("time", Level.WARN, message, values)
    if gaps:
        message = f"image stamps jumped forward {gaps} time(s) since the last report: the grounding context restarted"
        return HealthStatus("time", Level.WARN, message, values)
    return HealthStatus("time", Level.OK, "stamps moving forward", values)


# Counters (see pipeline.py) of what became of ids: objects found again, too alike to tell apart,
# duplicates merged, LOST tracks evicted for room. The designed behaviour, so never a warning.
IDENTITY_COUNTERS = ("tracks_reattached", "reid_ambiguous", "tracks_merged_duplicate", "tracks_evicted_lost")


def _identities(counters: Mapping[str, int], new: Mapping[str, int]) -> HealthStatus:
    """What happened to track ids: a planner holding an id sees here why an object came back under a new one."""
    values = _counter_values(IDENTITY_COUNTERS, counters, new)
    recent = [f"{new[n]} {n}" for n in IDENTITY_COUNTERS if new.get(n)]
    message = "since the last report: " + ", ".join(recent) if recent else "no id changes since the last report"
    return HealthStatus("identities", Level.OK, message, values)


def _counter_values(names: Iterable[str], counters: Mapping[str, int], new: Mapping[str, int]) -> dict[str, str]:
    """Each counter's total since start ("<name>") and since the last report ("<name>_new"), as diagnostics values."""
    values = {}
    for name in names:
        values[name], values[f"{name}_new"] = str(counters.get(name, 0)), str(new.get(name, 0))
    return values


def _buffers(fill: tuple[int, int], memory: tuple[int, int] | None) -> HealthStatus:
    held, capacity = fill
    values, message = {"held": str(held), "capacity": str(capacity)}, f"{held}/{capacity} frames"
    if memory is not None:
        values |= {"memory_bytes": str(memory[0]), "budget_bytes": str(memory[1])}
        message += f", {memory[0] / 2**20:.1f} of {memory[1] / 2**20:.1f} MiB budgeted"
    return HealthStatus("buffers", Level.OK, message, values)


def device_status(device: str, gpu_memory_bytes: int | None) -> HealthStatus:
    """The device the models and buffers are on, and the GPU memory allocated there (None on a CPU)."""
    if gpu_memory_bytes is None:
        return HealthStatus("device", Level.OK, device, {})
    message = f"{device}, {gpu_memory_bytes / 2**20:.0f} MiB allocated"
    return HealthStatus("device", Level.OK, message, {"gpu_memory_bytes": str(gpu_memory_bytes)})


def buffer_memory_status(held_bytes: int, budget_bytes: int, limit_bytes: int, limit: str) -> HealthStatus:
    """All cameras' frame rings: the bytes they hold now, their budget and the limit it was checked against
    at configure (`limit`: that limit in words, where it came from)."""
    message = f"{held_bytes / 2**20:.1f} MiB held of {budget_bytes / 2**20:.1f} MiB budgeted; limit {limit}"
    values = {
        "held_bytes": str(held_bytes),
        "budget_bytes": str(budget_bytes),
        "limit_bytes": str(limit_bytes),
        "limit": limit,
    }
    return HealthStatus("buffer memory", Level.OK, message, values)
