"""Bad input files made cheaply (a header claiming a huge image, a truncated file) and a memory ceiling
under which a missing size check fails the test with MemoryError instead of filling the machine."""

import resource
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path


def png_claiming(width: int, height: int) -> bytes:
    """A PNG file of a few dozen bytes whose header claims `width` x `height` RGB pixels (it holds none)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut `path` to the first `keep` of its bytes, as a copy interrupted half-way leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


@contextmanager
def memory_ceiling(extra_bytes: int = 1 << 30):
    """This process may map at most `extra_bytes` more while the block runs (RLIMIT_AS)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
