"""Memory stays flat over deactivate / activate cycles while a peer streams large frames at the node."""

from lifecycle_soak import Stream, cycle
from ros_harness import DOUBLES, activate

CYCLES, BASELINE = 12, 4  # RSS after the last cycle is compared with RSS after cycle BASELINE


def test_rss_stays_within_5_percent_over_lifecycle_cycles_with_960x720_frames_streaming(node, planner):
    process = node({**DOUBLES, "cameras.main.max_width": 960, "cameras.main.max_height": 720, "autostart": False})
    activate(planner, process)
    planner.wait_connected()
    stream = Stream(planner, 960, 720)
    try:
        rss = cycle(planner, process, CYCLES)
    finally:
        stream.close()
    print(f"RSS over {CYCLES} cycles (MB): {[round(r) for r in rss]}")
    assert rss[-1] <= 1.05 * rss[BASELINE - 1], f"RSS grew from {rss[BASELINE - 1]:.0f} to {rss[-1]:.0f} MB"
