"""Deactivate / activate cycles of a perception_node process with a peer streaming frames at it; its RSS."""

import re
import threading
import time
from pathlib import Path

import numpy as np
from lifecycle_msgs.msg import Transition
from polling import wait_for
from ros_harness import change_state

FRAME_RATE = 15.0


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak so far (VmHWM), MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


class Stream:
    """A peer publishing (width x height) rgb8 frames at FRAME_RATE on a thread, with rising stamps."""

    def __init__(self, planner, width: int, height: int):
        self._planner = planner
        self._frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            self._planner.send_image(self._frame, "rgb8", round((1000.0 + k / FRAME_RATE) * 1e9))
            k += 1
            time.sleep(1 / FRAME_RATE)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def cycle(planner, process, cycles: int, settle_s: float = 1.0) -> list[float]:
    """RSS (MB) after each of `cycles` deactivate / activate cycles, each followed by `settle_s` of serving."""
    rss = []
    for _ in range(cycles):
        assert change_state(planner, Transition.TRANSITION_DEACTIVATE), process.log()[-3000:]
        assert change_state(planner, Transition.TRANSITION_ACTIVATE), process.log()[-3000:]
        planner.send_command("red", id="cycling")
        assert wait_for(lambda: process.process.poll() is not None, settle_s) is False, process.log()[-3000:]
        rss.append(rss_mb(process.process.pid))
    return rss
