"""health: the node's diagnostics, computed from events and counters with an injected clock."""

import threading
import tracemalloc

import numpy as np
import pytest

from videomolmo_ros.pipeline import health
from videomolmo_ros.pipeline.health import HealthMonitor, Level
from videomolmo_ros.pipeline.model_health import ModelHealth

T0 = 1000.0  # the node's clock, seconds


def report(monitor, now_s, counters=None, buffer_fill=(4, 4), grounding_latency_s=None):
    statuses = monitor.report(now_s, counters or {}, buffer_fill, grounding_latency_s)
    return {s.name: s for s in statuses}


def feed_images(monitor, start_s, hz, seconds, delay_s=0.02):
    """Frames at `hz` for `seconds` from `start_s`, each received `delay_s` after its stamp; the last time."""
    now = start_s
    for k in range(round(hz * seconds)):
        now = start_s + k / hz
        monitor.image_received(round((now - delay_s) * 1e9), now)
    return now


def test_levels_match_diagnostic_msgs():
    assert [Level.OK, Level.WARN, Level.ERROR, Level.STALE] == [0, 1, 2, 3]


def test_every_status_is_reported_in_order():
    names = [s.name for s in HealthMonitor().report(T0, {}, (0, 4), None)]
    assert names == ["camera input", "outputs", "grounding", "drops", "time", "identities", "buffers"]


# ----------------------------------------------------------------- camera input


def test_camera_is_stale_before_any_frame():
    status = report(HealthMonitor(), T0)["camera input"]
    assert status.level == Level.STALE
    assert "no image" in status.message


def test_input_rate_frame_age_and_delay():
    monitor = HealthMonitor()
    last = feed_images(monitor, T0, hz=30, seconds=10, delay_s=0.02)
    status = report(monitor, last + 0.01)["camera input"]
    assert status.level == Level.OK
    assert float(status.values["rate_hz"]) == pytest.approx(30, rel=0.02)
    counted = report(monitor, last + 0.01, {"frames_received": 301})["camera input"]
    assert counted.values["frames_received"] == "301"  # includes frames rejected before the rate counts them
    assert float(status.values["last_frame_age_s"]) == pytest.approx(0.01, abs=0.005)
    assert float(status.values["delay_p50_ms"]) == pytest.approx(20, abs=0.5)


def test_rate_follows_a_change_within_the_window():
    monitor = HealthMonitor(window_s=5.0)
    last = feed_images(monitor, T0, hz=30, seconds=10)
    last = feed_images(monitor, last + 0.1, hz=10, seconds=6)
    assert float(report(monitor, last)["camera input"].values["rate_hz"]) == pytest.approx(10, rel=0.02)


def test_stall_warning_then_recovery():
    monitor = HealthMonitor(stall_after_s=2.0)
    last = feed_images(monitor, T0, hz=30, seconds=3)
    assert report(monitor, last + 1.0)["camera input"].level == Level.OK
    stalled = report(monitor, last + 2.5)["camera input"]
    assert stalled.level == Level.WARN
    assert "stalled" in stalled.message and "2.5 s" in stalled.message
    assert report(monitor, last + 60.0)["camera input"].values["rate_hz"] == "0.00"  # not the old rate
    last = feed_images(monitor, last + 60.0, hz=30, seconds=1)
    recovered = report(monitor, last)["camera input"]
    assert recovered.level == Level.OK
    assert float(recovered.values["rate_hz"]) == pytest.approx(30, rel=0.02)


def test_a_clock_jumping_back_restarts_the_window():
    monitor = HealthMonitor()
    feed_images(monitor, T0, hz=30, seconds=5)
    last = feed_images(monitor, T0 - 100.0, hz=10, seconds=3)  # sim time of a looping bag
    status = report(monitor, last)["camera input"]
    assert status.level == Level.OK
    assert float(status.values["rate_hz"]) == pytest.approx(10, rel=0.02)


# ----------------------------------------------------------------- outputs


def test_outputs_before_any_is_ok_and_says_so():
    status = report(HealthMonitor(), T0)["outputs"]
    assert status.level == Level.OK
    assert "no tracked frame" in status.message


def test_output_rate_and_latency_percentiles():
    monitor = HealthMonitor(window_s=5.0)
    now = T0
    for k in range(100):  # 10 Hz for 10 s; latency 50 ms, except one frame in ten at 120 ms
        now = T0 + k / 10
        latency = 0.120 if k % 10 == 0 else 0.050
        stamp_ns = round((now - latency) * 1e9)
        monitor.outputs_published(stamp_ns, now)
        monitor.outputs_published(stamp_ns, now + 0.001)  # a second command's outputs of the same frame
    status = report(monitor, now)["outputs"]
    assert status.level == Level.OK
    assert float(status.values["rate_hz"]) == pytest.approx(10, rel=0.02)
    assert float(status.values["latency_p50_ms"]) == pytest.approx(50, abs=0.5)
    assert float(status.values["latency_p99_ms"]) == pytest.approx(120, abs=0.5)
    idle = report(monitor, now + 10.0)["outputs"]
    assert idle.values["latency_p50_ms"] == "n/a"
    assert idle.values["last_output_age_s"] == "10.00"


# ----------------------------------------------------------------- counters


def test_grounding_failures_warn_once_then_clear():
    monitor = HealthMonitor()
    first = report(monitor, T0, {"groundings": 3}, grounding_latency_s=1.25)["grounding"]
    assert first.level == Level.OK
    assert first.values == {"last_latency_s": "1.250", "groundings": "3", "failures": "0", "failures_new": "0"}
    failed = report(monitor, T0 + 1, {"groundings": 3, "grounding_failures": 2}, grounding_latency_s=0.1)["grounding"]
    assert failed.level == Level.WARN
    assert failed.message.startswith("2 failure")
    quiet = report(monitor, T0 + 2, {"groundings": 4, "grounding_failures": 2}, grounding_latency_s=1.0)["grounding"]
    assert quiet.level == Level.OK
    assert quiet.values["failures"] == "2" and quiet.values["failures_new"] == "0"


def test_drops_warn_when_they_grow_and_clear_on_the_next_quiet_report():
    monitor = HealthMonitor()
    counters = {"frames_received": 100, "frames_rejected_encoding": 2, "frames_skipped_tracking_busy": 10}
    first = report(monitor, T0, counters)["drops"]
    assert first.level == Level.WARN  # since start is since the last report, the first time
    assert "2 frames_rejected_encoding" in first.message
    assert "frames_received" not in first.values
    counters = {**counters, "frames_rejected_encoding": 5, "groundings_dropped_too_old": 1, "commands_rejected": 1}
    grown = report(monitor, T0 + 1, counters)["drops"]
    assert grown.level == Level.WARN
    assert "3 frames_rejected_encoding" in grown.message and "1 groundings_dropped_too_old" in grown.message
    assert grown.values["total"] == "17" and grown.values["total_new"] == "5"
    assert grown.values["frames_rejected_encoding"] == "5" and grown.values["frames_rejected_encoding_new"] == "3"
    quiet = report(monitor, T0 + 2, counters)["drops"]
    assert quiet.level == Level.OK
    assert quiet.values["total_new"] == "0" and quiet.values["total"] == "17"


def test_skipped_and_unfused_frames_are_counted_without_a_warning():
    monitor = HealthMonitor()
    report(monitor, T0, {"frames_skipped_tracking_busy": 10})
    counters = {"frames_skipped_tracking_busy": 30, "fusion_frames_unfused_lag": 2, "fusion_frames_fused": 9}
    status = report(monitor, T0 + 1, counters)["drops"]
    assert status.level == Level.OK
    assert "20 frames_skipped_tracking_busy" in status.message
    assert status.values["fusion_frames_unfused_lag_new"] == "2"
    assert "fusion_frames_fused" not in status.values


def test_outputs_the_publisher_dropped_warn_and_catch_up_skips_are_reported_without_a_warning():
    monitor = HealthMonitor()
    bounded = report(monitor, T0, {"catch_up_skipped": 12, "catch_up_frames": 8, "fusion_frames_unfused_age": 3})
    assert bounded["drops"].level == Level.OK and bounded["drops"].values["catch_up_skipped"] == "12"
    assert (
        bounded["drops"].values["fusion_frames_unfused_age"] == "3" and "catch_up_frames" not in bounded["drops"].values
    )
    lost = report(monitor, T0 + 1, {"outputs_dropped_publisher_busy": 2})["drops"]
    assert lost.level == Level.WARN and "2 outputs_dropped_publisher_busy" in lost.message


def test_rejected_camera_info_warns_and_weak_points_are_reported_without_a_warning():
    monitor = HealthMonitor()
    weak = report(monitor, T0, {"points_dropped_low_score": 4})["drops"]
    assert weak.level == Level.OK and weak.values["points_dropped_low_score"] == "4"
    lens = report(monitor, T0 + 1, {"points_dropped_low_score": 4, "camera_info_rejected_invalid": 1})["drops"]
    assert lens.level == Level.WARN and "1 camera_info_rejected_invalid" in lens.message


def test_time_jump_warns_naming_the_event_then_clears():
    monitor = HealthMonitor()
    assert report(monitor, T0, {})["time"].level == Level.OK
    jumped = report(monitor, T0 + 1, {"time_jump_resets": 1})["time"]
    assert jumped.level == Level.WARN
    assert "went backwards" in jumped.message and "reset" in jumped.message
    assert report(monitor, T0 + 2, {"time_jump_resets": 1})["time"].level == Level.OK


def test_what_became_of_ids_is_reported_totals_and_since_the_last_report_never_as_a_warning():
    monitor = HealthMonitor()
    assert report(monitor, T0, {"tracks_reattached": 2})["identities"].values["tracks_reattached_new"] == "2"
    status = report(monitor, T0 + 1, {"tracks_reattached": 2, "reid_ambiguous": 3})["identities"]
    assert status.level == Level.OK and "3 reid_ambiguous" in status.message and "reattached" not in status.message
    assert status.values["reid_ambiguous"] == "3" and status.values["tracks_reattached"] == "2"
    assert status.values["tracks_reattached_new"] == "0"


def test_a_bug_is_a_drop_worth_a_warning():
    status = report(HealthMonitor(), T0, {"internal_errors": 1})["drops"]
    assert status.level == Level.WARN and "1 internal_errors" in status.message


def test_buffers_and_device():
    statuses = report(HealthMonitor(), T0, buffer_fill=(3, 8))
    assert statuses["buffers"].values == {"held": "3", "capacity": "8"}
    budgeted = HealthMonitor().report(T0, {}, (3, 8), None, (2 * 2**20, 8 * 2**20))
    buffers = {s.name: s for s in budgeted}["buffers"]
    assert buffers.values["budget_bytes"] == str(8 * 2**20) and "2.0 of 8.0 MiB budgeted" in buffers.message
    gpu = health.device_status("cuda:0", 3 * 2**30)
    assert gpu.message == "cuda:0, 3072 MiB allocated" and gpu.values == {"gpu_memory_bytes": str(3 * 2**30)}
    assert health.device_status("cpu", None) == health.HealthStatus("device", Level.OK, "cpu", {})


def test_buffer_memory_says_what_is_held_the_budget_and_the_limit_with_its_source():
    limit = "9445.0 MiB allowed on cpu: 50% of the 18890.0 MiB available (MemAvailable)"
    status = health.buffer_memory_status(3 * 2**20, 449 * 2**20, 9445 * 2**20, limit)
    assert status.message == f"3.0 MiB held of 449.0 MiB budgeted; limit {limit}"
    assert status.values == {
        "held_bytes": str(3 * 2**20),
        "budget_bytes": str(449 * 2**20),
        "limit_bytes": str(9445 * 2**20),
        "limit": limit,
    }


# ----------------------------------------------------------------- endless streams, threads


def test_memory_is_bounded_on_an_endless_stream():
    """Every store is full after 10k events at 1 kHz (the 5 s windows hold max_events = 2048, the frame
    gaps 1024 intervals); the 20k events after it would grow anything kept per event by 160 KB at least
    (8 bytes each), the 10k-event burst an unbounded window by far more than 50 KB."""
    monitor = HealthMonitor(max_events=2048)

    def feed(start, count):
        for k in range(count):
            now = T0 + (start + k) / 1000  # 1 kHz: 5000 events in a 5 s window, more than max_events
            monitor.image_received(round(now * 1e9), now)
            monitor.outputs_published(round(now * 1e9), now)

    tracemalloc.start()
    try:
        feed(0, 10_000)
        full = tracemalloc.get_traced_memory()[0]
        feed(10_000, 20_000)
        later = tracemalloc.get_traced_memory()[0]
        for _ in range(10_000):  # a burst with one timestamp is bounded by max_events, not by time
            monitor.image_received(0, T0 + 500)
        after_burst = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert full < 2_000_000
    assert later - full < 50_000
    assert after_burst - full < 50_000
    assert float(report(monitor, T0 + 500)["camera input"].values["rate_hz"]) == 0.0  # a burst has no rate


class SharedClock:
    """One clock for every thread, as the node's clock is: each event moves it by 0.25 ms."""

    def __init__(self):
        self.now = T0
        self._lock = threading.Lock()
        self.ordered = threading.Lock()

    def tick(self):
        with self._lock:
            self.now += 0.00025
            return self.now


def test_events_from_several_threads_while_reporting():
    monitor, clock = HealthMonitor(), SharedClock()
    start = threading.Barrier(5)
    errors = []

    def feeder(offset):
        start.wait()
        for k in range(2000):
            # Read the clock and report under one lock, as a real clock's readings reach the monitor
            # in order (a per-tick test clock would otherwise run ahead while a thread waits for the GIL).
            with clock.ordered:
                now = clock.tick()
                monitor.image_received(round(now * 1e9), now)
                monitor.outputs_published(k * 10 + offset, now)

    def reporter():
        start.wait()
        try:
            for k in range(200):
                report(monitor, clock.now, {"frames_rejected_x": k})
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=feeder, args=(i,)) for i in range(4)] + [threading.Thread(target=reporter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    statuses = report(monitor, clock.now)
    assert float(statuses["camera input"].values["rate_hz"]) == pytest.approx(4000, rel=0.05)
    assert float(statuses["outputs"].values["rate_hz"]) == pytest.approx(4000, rel=0.05)


# ----------------------------------------------------------------- frames lost before they arrive


def feed_stamps(monitor, indices, hz=30.0, start_s=T0):
    """Frames of a `hz` camera numbered `indices` arrive (the others were lost on the way)."""
    for k in indices:
        monitor.image_received(round((start_s + k / hz) * 1e9), start_s + k / hz + 0.01)


def test_frames_missing_between_received_stamps_are_counted_at_the_measured_rate():
    monitor = HealthMonitor()
    arrived = [k for k in range(300) if k < 30 or k % 3 == 0]  # after a second, two frames of three lost
    feed_stamps(monitor, arrived)
    assert monitor.frames_missing_suspected == 300 - len(arrived) - 2  # the last two never had a successor
    status = report(monitor, T0 + 10.0)["camera input"]
    assert status.level == Level.WARN
    assert status.values["frames_missing_suspected"] == str(monitor.frames_missing_suspected)
    assert float(status.values["camera_rate_hz"]) == pytest.approx(30.0, rel=0.01)
    assert "never received" in status.message and "see docs/large-images.md" in status.message
    again = report(monitor, T0 + 10.5)["camera input"]
    assert again.values["frames_missing_suspected_new"] == "0" and again.level == Level.OK


def test_a_steady_camera_misses_nothing_whatever_its_rate():
    for hz in (5.0, 30.0, 60.0):
        monitor = HealthMonitor()
        feed_stamps(monitor, range(200), hz=hz)
        assert monitor.frames_missing_suspected == 0
        assert float(report(monitor, T0 + 1.0)["camera input"].values["camera_rate_hz"]) == pytest.approx(hz)


def test_jittered_stamps_are_not_losses():
    monitor = HealthMonitor()
    jitter = np.random.default_rng(0).uniform(-0.006, 0.006, 300)  # +-6 ms on a 33 ms period
    for k in range(300):
        stamp = T0 + k / 30 + jitter[k]
        monitor.image_received(round(stamp * 1e9), stamp + 0.01)
    assert monitor.frames_missing_suspected == 0


def test_nothing_is_counted_before_consecutive_frames_show_the_rate():
    monitor = HealthMonitor()
    feed_stamps(monitor, [0, 5])
    assert report(monitor, T0 + 1.0)["camera input"].values["camera_rate_hz"] == "n/a"
    feed_stamps(monitor, [6, 7, 8, 10])
    assert monitor.frames_missing_suspected == 1, "the gap before the rate was known is not guessed at"


def test_a_paused_camera_or_a_stamp_jump_back_is_not_a_loss():
    monitor = HealthMonitor()
    feed_stamps(monitor, range(60))
    feed_stamps(monitor, range(60, 120), start_s=T0 + 30.0)  # paused 30 s
    feed_stamps(monitor, range(60), start_s=T0 - 100.0)  # a restarted bag
    assert monitor.frames_missing_suspected == 0


def test_the_warning_is_given_once_and_names_the_readme_section():
    monitor = HealthMonitor()
    assert monitor.missing_frames_warning() is None
    feed_stamps(monitor, [*range(10), 12, 13])
    warning = monitor.missing_frames_warning()
    assert "2 frame(s) never arrived" in warning and "30.0 Hz" in warning
    assert "see docs/large-images.md" in warning
    feed_stamps(monitor, [20])
    assert monitor.missing_frames_warning() is None, "once"
    assert monitor.frames_missing_suspected == 8


def test_frames_lost_before_the_stamps_went_back_are_warned_about_once_the_new_stream_has_a_rate():
    """A loss, then a restarted bag before the report: no rate is measured for a moment, and no crash."""
    monitor = HealthMonitor()
    feed_stamps(monitor, [*range(10), 12, 13])
    feed_stamps(monitor, [0], start_s=T0 - 100.0)  # the stamps go back: the rate is measured anew
    assert monitor.missing_frames_warning() is None, "no rate to name yet"
    feed_stamps(monitor, range(1, 6), start_s=T0 - 100.0)
    warning = monitor.missing_frames_warning()
    assert "2 frame(s) never arrived" in warning and "30.0 Hz" in warning


def _lossy_jittered_camera(monitor, seed: int, hz: float = 30.0, frames: int = 900) -> int:
    """A jittered camera losing a tenth of its frames at random; the number it lost between received frames."""
    rng = np.random.default_rng(seed)
    kept = [k for k in range(frames) if k < 10 or rng.random() > 0.1]
    jitter = rng.uniform(-0.15 / hz, 0.15 / hz, frames)
    for k in kept:
        stamp = T0 + k / hz + jitter[k]
        monitor.image_received(round(stamp * 1e9), stamp + 0.01)
    return kept[-1] + 1 - len(kept)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_period_measured_now_and_then_counts_every_loss_measuring_it_per_frame_would(seed, monkeypatch):
    """The period is re-measured every few intervals (it costs the image callback ~0.5 ms): the losses
    counted equal the true ones, and those counted when it is measured at every frame."""
    now_and_then = HealthMonitor()
    lost = _lossy_jittered_camera(now_and_then, seed)
    monkeypatch.setattr(health, "_PERIOD_REFRESH", 1)
    every_frame = HealthMonitor()
    _lossy_jittered_camera(every_frame, seed)
    assert now_and_then.frames_missing_suspected == every_frame.frames_missing_suspected == lost


def test_losses_after_the_camera_speeds_up_are_counted_at_the_new_rate():
    monitor = HealthMonitor()
    feed_stamps(monitor, range(300))  # 10 s at 30 Hz
    feed_stamps(monitor, [k for k in range(601) if k < 120 or k % 2 == 0], hz=60.0, start_s=T0 + 10.0)
    assert monitor.frames_missing_suspected == 240  # from 2 s after the change on, every other frame lost


# ----------------------------------------------------------------- models


class Clock:
    """A model health's clock, moved by hand."""

    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def test_a_model_is_ok_before_its_first_call_and_while_it_answers():
    model = ModelHealth("pointer", "grounding", clock=Clock())
    assert (model.status().level, model.status().message) == (Level.OK, "no grounding yet")
    model.succeeded()
    status = model.status()
    assert (status.name, status.level, status.message) == ("pointer", Level.OK, "answering")
    assert status.values == {"calls": "1", "failures": "0", "failures_in_a_row": "0", "failures_last_10s": "0"}


def test_failures_in_a_row_warn_with_the_last_error_and_one_success_clears_the_warning():
    clock = Clock()
    model = ModelHealth("propagator", "propagation step", failures_to_warn=3, clock=clock)
    model.succeeded()
    for _ in range(2):
        model.failed(RuntimeError("CUDA out of memory"))
        clock.now += 0.1
    assert model.status().level == Level.OK, "two failures: unlucky, not sick"
    model.failed(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    clock.now += 0.5
    sick = model.status()
    assert sick.level == Level.WARN
    error = "RuntimeError('CUDA out of memory. Tried to allocate 20.00 MiB')"
    assert sick.message == f"the last 3 propagation steps failed: {error}"
    assert sick.values["last_error"] == error and sick.values["last_error_age_s"] == "0.5"
    assert sick.values["failures_in_a_row"] == "3" and sick.values["calls"] == "4"
    model.succeeded()
    well = model.status()
    assert well.level == Level.OK and well.message == "answering; 3 propagation step(s) failed in the last 10 s"
    assert well.values["failures"] == "3" and well.values["failures_in_a_row"] == "0"
    clock.now += 10.0
    assert model.status().message == "answering" and model.status().values["failures_last_10s"] == "0"
    assert model.status().values["last_error"] == error, "the last error stays for whoever looks later"


def test_occasional_failures_are_counted_without_a_warning():
    model = ModelHealth("pointer", "grounding", failures_to_warn=3, clock=Clock())
    for k in range(90):
        model.failed("timeout") if k % 3 == 2 else model.succeeded()
    status = model.status()
    assert status.level == Level.OK and status.values["failures_last_10s"] == "30"


def test_a_model_that_cannot_answer_at_all_is_an_error_saying_why():
    model = ModelHealth("pointer", "grounding", clock=Clock())
    model.failed("BackendError('not enough memory to load the model again')")
    down = (
        "the pointer process was killed by SIGKILL (out of memory?) and could not be started again: "
        "not enough memory to load the model again"
    )
    status = model.status(down)
    assert (status.level, status.message) == (Level.ERROR, down)
    assert status.values["cause"] == down and status.values["failures"] == "1"
    assert model.status(None).level == Level.OK, "once a child starts again, the failures judge it"


def test_the_last_error_is_clipped_and_memory_stays_bounded():
    clock = Clock()
    model = ModelHealth("pointer", "grounding", clock=clock)
    tracemalloc.start()
    try:
        model.failed("x" * 10_000)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5000):
            clock.now += 0.001  # all within the 10 s window, more than max_events
            model.failed("boom " * 1000)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 100_000
    status = model.status()
    assert len(status.values["last_error"]) <= 203 and len(status.message) < 150
    assert status.values["failures"] == "5001" and status.values["failures_last_10s"] == "1024"
