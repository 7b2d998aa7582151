"""Another process of the same user at the pointer process's shared frames, as far as it can reach them.

It watches a process's open files (/proc/<pid>/fd) for a block made after it started looking (a
memfd of the name io/shared_frames.py gives it, or a POSIX block in /dev/shm as Python's
SharedMemory names them) and, once one holds frames, truncates, unlinks and/or overwrites it,
noting what each attempt gave. Blocks made before, and other shared memory of the process (Fast
DDS's segments), are left alone.
"""

import json
import subprocess
import sys

from videomolmo_ros.io.shared_frames import NAME

_SCRIPT = r"""
import json, os, sys, time
pid, actions, timeout_s, prefixes = int(sys.argv[1]), sys.argv[2].split(","), float(sys.argv[3]), sys.argv[4:]

def blocks():
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            link, inode = os.readlink(path), os.stat(path).st_ino
        except OSError:
            continue
        if link.startswith(tuple(prefixes)):
            found.setdefault(inode, (link, path))
    return found

def holds_frames(path):
    with open(path, "rb") as block:
        return any(block.read(4096))

def attempt(action, link, path):
    try:
        if action == "unlink":
            os.unlink(link)  # by its name, if it has one
            return "done"
        fd = os.open(path, os.O_RDWR)
        try:
            if action == "truncate":
                os.ftruncate(fd, 0)
            else:
                os.pwrite(fd, bytes(os.fstat(fd).st_size), 0)
        finally:
            os.close(fd)
        return "done"
    except OSError as error:
        return type(error).__name__

known = set(blocks())
print("ready", flush=True)
deadline = time.monotonic() + timeout_s
while True:
    found = [(link, path) for inode, (link, path) in blocks().items() if inode not in known and holds_frames(path)]
    if found or time.monotonic() > deadline:
        break
    time.sleep(0.01)
print(json.dumps([{a: attempt(a, link, path) for a in actions} for link, path in found]), flush=True)
"""


class Tampering:
    """`actions` ("truncate", "unlink", "overwrite") on the next shared frames of process `pid`, from a process of
    its own: it is looking once the constructor returns, and acts as soon as a new block holds frames (within
    `timeout_s`)."""

    def __init__(self, pid: int, actions: tuple[str, ...], timeout_s: float = 60.0):
        prefixes = [f"/memfd:{NAME}", "/dev/shm/psm_"]
        args = [sys.executable, "-c", _SCRIPT, str(pid), ",".join(actions), str(timeout_s), *prefixes]
        self._process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self._timeout_s = timeout_s
        assert self._process.stdout.readline() == "ready\n"

    def outcomes(self) -> list[dict[str, str]]:
        """Per block it found, {action: "done" or the error it met}; empty if it found none."""
        out, _ = self._process.communicate(timeout=self._timeout_s + 30)
        assert self._process.returncode == 0, out
        return json.loads(out.splitlines()[-1])
