"""counters: thread-safe named counts, and a problem log that does not flood the ROS log."""

import threading

from videomolmo_ros.pipeline.counters import Counters, ProblemLog


class FakeClock:
    """An injectable monotonic clock the test moves by hand."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def problem_log(period_s=5.0, burst=1):
    lines, clock = [], FakeClock()
    return ProblemLog(lines.append, period_s=period_s, clock=clock, burst=burst), lines, clock


# ----------------------------------------------------------------- Counters


def test_counts_add_up():
    counters = Counters()
    counters.add("frames_received")
    counters.add("frames_received")
    counters.add("frames_rejected_encoding", 5)
    assert counters.snapshot() == {"frames_received": 2, "frames_rejected_encoding": 5}


def test_counters_are_exact_under_concurrent_adds():
    counters = Counters()
    threads_n, adds_n = 8, 5000
    start = threading.Barrier(threads_n)

    def worker(k):
        start.wait()
        for _ in range(adds_n):
            counters.add("shared")
            counters.add(f"own-{k}", 2)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = counters.snapshot()
    assert snapshot["shared"] == threads_n * adds_n
    assert all(snapshot[f"own-{k}"] == 2 * adds_n for k in range(threads_n))


def test_snapshot_is_a_copy():
    counters = Counters()
    counters.add("groundings", 3)
    snapshot = counters.snapshot()
    snapshot["groundings"] = 100
    snapshot["invented"] = 1
    counters.add("groundings")
    assert counters.snapshot() == {"groundings": 4}
    assert snapshot == {"groundings": 100, "invented": 1}


# ----------------------------------------------------------------- ProblemLog


def test_first_problem_is_emitted_at_once_unchanged():
    log, lines, _ = problem_log()
    log.report("bad_encoding", "image dropped: yuv422 is not supported")
    assert lines == ["image dropped: yuv422 is not supported"]


def test_repeats_within_the_period_are_suppressed_then_counted():
    log, lines, clock = problem_log(period_s=5.0)
    log.report("bad_encoding", "dropped frame 1")
    for k in range(2, 5):  # 30 Hz would be many more; three are enough
        clock.now += 1.0
        log.report("bad_encoding", f"dropped frame {k}")
    assert len(lines) == 1
    clock.now += 2.5  # 5.5 s after the first line
    log.report("bad_encoding", "dropped frame 5")
    assert len(lines) == 2
    assert lines[1].startswith("dropped frame 5")
    assert "(3 more like this" in lines[1]


def test_suppressed_count_restarts_after_each_summary():
    log, lines, clock = problem_log(period_s=5.0)
    log.report("k", "problem")
    clock.now += 1
    log.report("k", "problem")
    clock.now += 5
    log.report("k", "problem")  # summary: 1 more
    clock.now += 1
    log.report("k", "problem")
    clock.now += 5
    log.report("k", "problem")  # summary: 1 more, not 2
    assert len(lines) == 3
    assert "(1 more like this" in lines[1]
    assert "(1 more like this" in lines[2]


def test_problem_after_a_quiet_period_has_no_summary():
    log, lines, clock = problem_log(period_s=5.0)
    log.report("k", "first")
    clock.now += 60
    log.report("k", "again")
    assert lines == ["first", "again"]


def test_keys_are_independent():
    log, lines, clock = problem_log(period_s=5.0)
    log.report("encoding", "bad encoding")
    log.report("grounding", "model failed")  # another kind: emitted at once
    clock.now += 1
    log.report("encoding", "bad encoding")  # suppressed
    log.report("encoding", "bad encoding")  # suppressed
    clock.now += 5
    log.report("grounding", "model failed")
    log.report("encoding", "bad encoding")
    assert lines[:2] == ["bad encoding", "model failed"]
    assert lines[2] == "model failed"  # no repeats of its own to report
    assert "(2 more like this" in lines[3]
    assert len(lines) == 4


def test_a_burst_allows_that_many_lines_a_period_then_counts_the_rest():
    log, lines, clock = problem_log(period_s=5.0, burst=3)
    for k in range(10):  # ten events in 0.9 s: three lines, seven held back
        log.report("accepted", f"command {k} accepted")
        clock.now += 0.1
    assert lines == ["command 0 accepted", "command 1 accepted", "command 2 accepted"]
    clock.now += 5.0
    log.report("accepted", "command 10 accepted")
    assert lines[3] == "command 10 accepted (7 more like this in the last 6 s)"


def test_a_flood_gives_at_most_a_burst_of_lines_per_period():
    log, lines, clock = problem_log(period_s=5.0, burst=4)
    for k in range(2000):  # 100 a second for 20 s: four periods
        clock.now = 1000.0 + k / 100
        log.report("stopped", "command stopped")
    assert len(lines) == 4 * 4
    summaries = [line for line in lines if "more like this" in line]
    assert len(summaries) == 3 and all("(496 more like this" in line for line in summaries)
