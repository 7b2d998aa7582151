"""SharedFrames: a block only its maker writes, whose size nothing can change, refused if it could."""

import errno
import fcntl
import mmap
import os

import numpy as np
import pytest

from videomolmo_ros.io.shared_frames import SharedFrames

FRAMES = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)


@pytest.fixture
def made():
    block = SharedFrames.create(FRAMES.nbytes)
    np.copyto(block.array(FRAMES.shape), FRAMES)
    yield block
    block.close()


def test_an_attached_block_reads_what_its_maker_wrote_and_cannot_write_it(made):
    attached = SharedFrames.attach(os.dup(made.fd), made.size)
    np.testing.assert_array_equal(attached.array(FRAMES.shape), FRAMES)
    with pytest.raises(ValueError, match="read-only"):
        attached.array(FRAMES.shape)[0, 0, 0] = 9
    made.array(FRAMES.shape)[0, 0, 0] = 200
    assert attached.array(FRAMES.shape)[0, 0, 0] == 200, "one block: the maker's next frames are seen"


def test_opened_again_through_proc_the_block_cannot_be_resized_or_written(made):
    fd = os.open(f"/proc/self/fd/{made.fd}", os.O_RDWR)  # as another process of the user can
    try:
        for attempt in (
            lambda: os.ftruncate(fd, 0),
            lambda: os.ftruncate(fd, 2 * made.size),
            lambda: os.pwrite(fd, b"\0", 0),
            lambda: mmap.mmap(fd, made.size),
        ):
            with pytest.raises(PermissionError) as refused:
                attempt()
            assert refused.value.errno == errno.EPERM
    finally:
        os.close(fd)
    assert os.fstat(made.fd).st_size == made.size
    np.testing.assert_array_equal(made.array(FRAMES.shape), FRAMES)


def test_a_block_that_could_shrink_or_is_not_the_size_said_is_not_attached(made):
    unsealed = os.memfd_create("unsealed", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(unsealed, made.size)
    fcntl.fcntl(unsealed, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW)  # sealed, but not against shrinking
    with pytest.raises(ValueError, match="not sealed against resizing and writing"):
        SharedFrames.attach(unsealed, made.size)
    with pytest.raises(ValueError, match=f"have {made.size} bytes, not {made.size + 1}"):
        SharedFrames.attach(os.dup(made.fd), made.size + 1)
