"""stop_child: a child is asked to stop, and killed if it does not within the time given."""

import signal
import subprocess
import sys

from videomolmo_ros.io.child_process import exit_cause, stop_child


def _child(on_sigint: str) -> subprocess.Popen:
    """A Python child whose SIGINT handler is `on_sigint`, sleeping a minute once it says it is ready."""
    code = f"import signal, sys, time\nsignal.signal(signal.SIGINT, {on_sigint})\nprint('ready', flush=True)\n"
    code += "time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"ready\n"  # its handlers are in place
    return process


def test_a_child_that_stops_when_asked_gives_its_own_exit_code():
    process = _child("lambda *_: sys.exit(3)")
    asked = []
    assert stop_child(process, lambda: (asked.append(1), process.send_signal(signal.SIGINT)), 10) == 3
    assert asked == [1]


def test_a_child_ignoring_the_request_is_killed_after_the_timeout():
    process = _child("signal.SIG_IGN")
    assert stop_child(process, lambda: process.send_signal(signal.SIGINT), 0.5) == -signal.SIGKILL


def test_a_child_that_already_exited_is_not_asked():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(5)"])
    process.wait()
    assert stop_child(process, lambda: (_ for _ in ()).throw(AssertionError("asked")), 1) == 5


def test_how_a_child_ended_is_said_in_words():
    assert exit_cause(3) == "exited with code 3"
    assert exit_cause(-signal.SIGKILL) == "was killed by SIGKILL (out of memory?)"
    assert exit_cause(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert exit_cause(-200) == "was killed by signal 200"
    assert exit_cause(None) == "is still running"
