"""Waiting for something another thread or process does, with a deadline."""

import time


def wait_for(predicate, timeout_s: float = 30.0) -> bool:
    """Poll `predicate` until it is true (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
