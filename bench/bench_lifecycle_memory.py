"""RSS of perception_node over deactivate / activate cycles with DDS peers connected, side by side.

    ./bench/run bench_lifecycle_memory [--cycles 40] [--width 960] [--height 720]

perception_node runs as its own process with the test doubles (ros_harness.DOUBLES) and a camera
budgeted for the frame size. A peer in this process streams frames of that size at 15 Hz and
subscribes to its outputs the whole time; each cycle deactivates and activates the node over its
lifecycle services, sends a command and lets it serve for a second. Printed: RSS after cycle 5
and after the last cycle, and their ratio (the target: within 5%), next to the same run with no
frames streamed (peers connected, nothing sent).
"""

import argparse
import os
import random
import tempfile
from pathlib import Path

import rclpy
from support import DOUBLES, NodeProcess, Planner, Stream, activate, cycle


def run(cycles: int, width: int, height: int, stream: bool) -> tuple[float, float]:
    """RSS (MB) after cycle 5 and after the last one."""
    with tempfile.TemporaryDirectory() as folder:
        sizes = {"cameras.main.max_width": width, "cameras.main.max_height": height}
        process = NodeProcess(Path(folder) / "node.log", {**DOUBLES, **sizes, "autostart": False})
        planner = Planner()
        try:
            activate(planner, process)
            planner.wait_connected()
            streaming = Stream(planner, width, height) if stream else None
            rss = cycle(planner, process, cycles)
            if streaming is not None:
                streaming.close()
        finally:
            planner.close()
            process.stop()
    return rss[4], rss[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    rclpy.init()
    try:
        print(f"RSS over {args.cycles} deactivate/activate cycles, {args.width}x{args.height} frames at 15 Hz")
        for label, stream in (("frames streamed", True), ("peers idle", False)):
            after_5, after_last = run(args.cycles, args.width, args.height, stream)
            print(
                f"  {label:16s} after 5: {after_5:7.1f} MB  after {args.cycles}: {after_last:7.1f} MB  "
                f"ratio {after_last / after_5:.3f}"
            )
    finally:
        rclpy.shutdown()


if __name__ == "__main__":
    main()
