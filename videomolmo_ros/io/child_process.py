"""Child processes: stopping one (ask, give it time to finish cleanly, then kill it), saying how one ended."""

import signal
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


def exit_cause(returncode: int | None) -> str:
    """How a child ended, in words: "exited with code 1", "was killed by SIGKILL (out of memory?)"."""
    if returncode is None:
        return "is still running"
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    # The kernel's out-of-memory killer sends SIGKILL: the likeliest reason a model process gets one.
    return f"was killed by {name}" + (" (out of memory?)" if returncode == -signal.SIGKILL else "")
