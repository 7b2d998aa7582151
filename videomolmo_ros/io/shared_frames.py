"""A block of memory shared with a child process that no other process can resize, write or unlink.

A named POSIX block (/dev/shm) is open to every process of the same user: truncated, the next write
into it faults (SIGBUS, the process ends without a log line); unlinked, a child can no longer attach
it. This one has no name: an anonymous memfd, sized once and mapped writable where it is made, then
sealed against shrinking, growing, writing by any other descriptor or mapping, and further seals.
Its descriptor reaches the child over their socket (SCM_RIGHTS); the child maps it read-only.
There is no name to unlink; opened through /proc/<pid>/fd/<n>, ftruncate, write, fallocate and a
writable mapping fail with EPERM. Its size cannot change under either process, so the seals and the
size are checked once, where it is made and where it is attached, not at each use. (A process
allowed to ptrace the node can change anything in it; the block adds nothing to that.)
"""

import fcntl
import mmap
import os

import numpy as np

NAME = "videomolmo_ros-frames"  # as /proc/<pid>/fd shows it: "/memfd:videomolmo_ros-frames (deleted)"
F_SEAL_FUTURE_WRITE = 0x0010  # Linux 5.1 (include/uapi/linux/fcntl.h); Python's fcntl does not name it
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | F_SEAL_FUTURE_WRITE | fcntl.F_SEAL_SEAL


class SharedFrames:
    """`size` bytes: writable in the process that made it (`create`), read-only where attached (`attach`).

    An attached block is unmapped when the last array on it is gone (a model may keep a view of its
    frames); the block that was made is closed with `close`.
    """

    def __init__(self, fd: int | None, size: int, memory: mmap.mmap):
        self.fd = fd  # the maker's descriptor, to hand to a child; None where attached (the mapping holds its own)
        self.size = size
        self._memory = memory

    @classmethod
    def create(cls, size: int) -> "SharedFrames":
        """A new sealed block of `size` bytes, mapped writable here (the only writable mapping it will have)."""
        fd = os.memfd_create(NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        memory = None
        try:
            os.ftruncate(fd, size)
            memory = mmap.mmap(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
            _check(fd, size)
            return cls(fd, size, memory)
        except BaseException:
            if memory is not None:
                memory.close()
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd: int, size: int) -> "SharedFrames":
        """The block behind `fd` (taken over and closed), mapped read-only, if it is sealed and of `size` bytes."""
        try:
            _check(fd, size)
            return cls(None, size, mmap.mmap(fd, size, prot=mmap.PROT_READ))
        finally:
            os.close(fd)

    def array(self, shape: tuple[int, ...]) -> np.ndarray:
        """Its first bytes as a uint8 array of `shape`, on the block (no copy)."""
        return np.ndarray(shape, np.uint8, self._memory)

    def close(self) -> None:
        """Unmap it and close its descriptor (the maker's: no array on it may be left)."""
        self._memory.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _check(fd: int, size: int) -> None:
    """Refuse a block not sealed as `create` seals it, or not of `size` bytes: it could shrink under a reader."""
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    if seals & SEALS != SEALS:
        raise ValueError(f"the shared frames are not sealed against resizing and writing (seals {seals:#x})")
    actual = os.fstat(fd).st_size
    if actual != size:
        raise ValueError(f"the shared frames have {actual} bytes, not {size}")
