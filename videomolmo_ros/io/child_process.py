"""Stopping a child process: ask it to stop, give it time to finish cleanly, then kill it."""

import subprocess
from collections.abc import Callable


def stop_child(process: subprocess.Popen, ask: Callable[[], None], timeout_s: float) -> int:
    """Its exit code: `ask` (a signal, a message) if it still runs, then at most `timeout_s` before SIGKILL.

    A child that ignores the request must not hold its parent's shutdown (or a test) forever.
    """
    if process.poll() is None:
        ask()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
