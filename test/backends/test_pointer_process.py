"""A pointer in a process of its own (pointer_process: true): same answers, frames through shared memory."""

import mmap
import os
import signal

import pytest
import torch
from block_tampering import Tampering
from polling import wait_for
from synthetic_video import default_scene, render

from videomolmo_ros.backends.pointer_process import PointerProcess
from videomolmo_ros.backends.registry import create
from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.contracts.interfaces import BackendError, Pointer
from videomolmo_ros.io.shared_frames import SharedFrames
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer

CPU = torch.device("cpu")
ORACLE = "oracle_doubles:ColorOraclePointerDouble"


def window(first: int, count: int = 4, size=(320, 240)):
    buffer = FrameBuffer(count)
    for k in range(first, first + count):
        buffer.push(render(default_scene(*size), k / 2, *size)[0], k * 500_000_000, "cam")
    return buffer.window(count)


@pytest.fixture(scope="module")
def oracle():
    pointer = PointerProcess(ORACLE, {"fail_on": "broken"}, CPU)
    yield pointer
    pointer.close()


def test_answers_as_in_process_from_another_process(oracle):
    here = create(ORACLE, Pointer, CPU, {})
    assert oracle.pid is not None and oracle.pid != os.getpid()
    for size in ((320, 240), (640, 480), (160, 120)):  # the shared block grows with the window
        frames = window(3, size=size)
        assert oracle.ground(frames, "the red ball", GroundingMode.POINT) == here.ground(frames, "the red ball", 1)


def test_a_model_error_in_the_process_is_raised_here_and_the_next_query_is_answered(oracle):
    with pytest.raises(RuntimeError, match="double told to fail on 'broken'"):
        oracle.ground(window(0), "broken red", GroundingMode.POINT)
    assert oracle.ground(window(0), "blue", GroundingMode.POINT).points


def test_a_process_that_died_is_started_again_at_the_next_query(oracle):
    first = oracle.pid
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: not oracle.alive, 10)
    assert oracle.ground(window(1), "red", GroundingMode.POINT).points
    assert oracle.pid != first


def test_frames_the_process_will_not_map_fail_that_grounding_and_the_next_one_shares_them_anew(oracle, monkeypatch):
    def unsealed(size: int) -> SharedFrames:  # what a kernel without sealing would give: it could shrink
        fd = os.memfd_create("unsealed", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, size)
        return SharedFrames(fd, size, mmap.mmap(fd, size))

    large = window(0, size=(800, 600))  # larger than any window before: a new block
    with monkeypatch.context() as patch:
        patch.setattr(SharedFrames, "create", unsealed)
        with pytest.raises(BackendError, match=r"could not map the shared frames: .* not sealed against resizing"):
            oracle.ground(large, "red", GroundingMode.POINT)
    assert oracle.ground(large, "red", GroundingMode.POINT).points


def test_a_backend_that_cannot_be_built_fails_here_with_its_message():
    with pytest.raises(BackendError, match=r"bad options.*it takes: delay_s, fail_on"):
        PointerProcess(ORACLE, {"no_such_option": 1}, CPU)


def test_per_frame_features_are_cached_in_the_process_across_queries():
    pointer = PointerProcess("oracle_doubles:FeatureCachingPointerDouble", {}, CPU)
    buffer = FrameBuffer(4)  # the camera's context buffer: windows of it overlap
    for k in range(6):
        buffer.push(render(default_scene(), k / 2)[0], k * 500_000_000, "cam")
        if k in (3, 5):
            answer = pointer.ground(buffer.window(4), "red", GroundingMode.POINT).raw_output
            assert answer == ("computed 4 of 4" if k == 3 else "computed 2 of 4"), "frames 2, 3 were cached"
    pointer.close()


def test_what_the_node_asks_of_a_pointer_at_configure_comes_from_the_process():
    pointer = PointerProcess("oracle_doubles:ConsecutiveFramesPointerDouble", {}, CPU)
    try:
        assert pointer.camera_rate_frames == 3, "the pipeline sizes its rings by it"
        assert pointer.check_context(8, 2.0) == ["reads 3 camera frames, not 8 at 2 Hz"]
        with pytest.raises(BackendError, match=r"context_fps 500\.0: too fast"):
            pointer.check_context(8, 500.0)
        assert pointer.describe() == "ConsecutiveFramesPointerDouble in a process of its own"
        assert pointer.ground(window(0), "red", GroundingMode.POINT).points, "still answers after a refusal"
    finally:
        pointer.close()


def test_a_process_that_died_and_cannot_start_again_says_how_it_ended_and_why(tmp_path):
    pointer = PointerProcess("failing_doubles:DyingPointerDouble", {"loaded_file": str(tmp_path / "loaded")}, CPU)
    try:
        assert pointer.down is None
        with pytest.raises(RuntimeError, match=r"was killed by SIGKILL \(out of memory\?\) during a query"):
            pointer.ground(window(0), "red", GroundingMode.POINT)
        assert pointer.down is None, "it starts again at the next query"
        for _ in range(2):  # every query tries again, and says why it cannot
            with pytest.raises(BackendError, match="not enough memory to load the model again"):
                pointer.ground(window(0), "red", GroundingMode.POINT)
            assert pointer.down == (
                "the pointer process was killed by SIGKILL (out of memory?) and could not be started again: "
                "not enough memory to load the model again"
            )
    finally:
        pointer.close()


@pytest.mark.parametrize(
    ("attack", "refused"),
    [("truncate", "PermissionError"), ("unlink", "FileNotFoundError"), ("overwrite", "PermissionError")],
)
def test_another_process_tampering_with_the_shared_frames_changes_no_answer(attack, refused):
    """Sealed against resizing and writing, without a name: truncated, a block would fault (SIGBUS) at the
    next write here; unlinked, the process could not map it; overwritten, the model would read other frames."""
    here = create(ORACLE, Pointer, CPU, {})
    pointer = PointerProcess(ORACLE, {"delay_s": 1.0}, CPU)  # reads the frames a second after they were shared
    try:
        answers_right = lambda frames: (  # noqa: E731
            pointer.ground(frames, "the red ball", GroundingMode.POINT) == here.ground(frames, "the red ball", 1)
        )
        tampering = Tampering(os.getpid(), (attack,))  # acts once the block made at the first query holds frames
        assert answers_right(window(2))
        assert tampering.outcomes() == [{attack: refused}], "found and attacked, in vain"
        assert answers_right(window(2)) and answers_right(window(5)), "the same window again, and new frames"
    finally:
        pointer.close()
