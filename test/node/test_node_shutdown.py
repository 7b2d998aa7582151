"""SIGINT and SIGTERM end the node cleanly (exit 0, no traceback) before ros2 launch would kill it, even
under a flood or mid model call. How long the exit takes is printed, not asserted."""

import signal
import threading
import time

import numpy as np
from polling import wait_for
from ros_harness import DOUBLES, play

# ros2 launch escalates to SIGKILL 10 s after SIGINT: a node still running then is killed, not shut down.
LAUNCH_KILL_S = 10.0


def stop_with(process, signum: int) -> float:
    """Send `signum`; the seconds until the process exited (it must, before launch would kill it)."""
    start = time.monotonic()
    process.process.send_signal(signum)
    exited = wait_for(lambda: process.process.poll() is not None, LAUNCH_KILL_S)
    assert exited, f"the node still ran {LAUNCH_KILL_S:.0f} s after the signal: ros2 launch would have killed it"
    return time.monotonic() - start


def assert_clean(process) -> None:
    log = process.log()
    assert process.process.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "terminate called" not in log, log[-3000:]


def test_sigint_with_a_model_call_in_flight_exits_cleanly_without_waiting_for_the_call(node, planner):
    process = node({**DOUBLES, "ColorOraclePointerDouble.delay_s": 60.0})  # waited for, it would take 60 s
    planner.wait_connected()
    planner.send_command("red", id="slow")
    play(planner, 1.0)
    assert wait_for(lambda: "accepted" in process.log(), 10)
    took = stop_with(process, signal.SIGINT)
    print(f"SIGINT with a grounding in flight: exited in {took:.2f} s")
    assert_clean(process)


def flood(planner, stamp_s: float, stop: threading.Event) -> None:
    """Small frames at 200 Hz until `stop` is set."""
    frame, k = np.zeros((48, 64, 3), np.uint8), 0
    while not stop.is_set():
        planner.send_image(frame, "rgb8", round((stamp_s + k / 200) * 1e9))
        k += 1
        time.sleep(1 / 200)


def test_sigterm_under_a_200_hz_flood_exits_cleanly(node, planner):
    for run in range(3):
        process = node(DOUBLES)
        planner.wait_connected()
        planner.send_command("red", id=f"flood-{run}")
        stop = threading.Event()
        sender = threading.Thread(target=flood, args=(planner, 1000.0 * (run + 1), stop), daemon=True)
        sender.start()
        command_id = f"flood-{run}"
        assert wait_for(lambda: any(m.command_id == command_id for m in planner.get("tracks")), 20), (  # noqa: B023
            process.log()[-3000:]
        )
        took = stop_with(process, signal.SIGTERM)
        stop.set()
        sender.join()
        print(f"SIGTERM under a 200 Hz flood, run {run}: exited in {took:.2f} s")
        assert_clean(process)
