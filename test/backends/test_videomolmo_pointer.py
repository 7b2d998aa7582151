"""The VideoMolmo backend on a tiny random-weight checkpoint: real preprocessing, model, cache and parsing."""

import re

import numpy as np
import pytest
import torch
from tiny_videomolmo import write_tiny_videomolmo_with_tokenizer

from videomolmo_ros.backends import registry as backend_registry
from videomolmo_ros.backends.constrained_decoding import molmo_v1_answer_regex
from videomolmo_ros.backends.videomolmo.pointer import VideoMolmoPointer, pointing_prompt
from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.contracts.interfaces import BackendError, Pointer
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_videomolmo_with_tokenizer(tmp_path_factory.mktemp("videomolmo"))


def make(checkpoint, **options) -> VideoMolmoPointer:
    folder = str(checkpoint)
    options = {"model": folder, "tokenizer": folder, "max_new_tokens": 400, "max_points": 3, **options}
    return backend_registry.create("videomolmo", Pointer, CPU, options)


def stream(frames: int, capacity: int = 5, size=(120, 160)):
    """A context buffer fed `frames` random camera frames at 30 fps; yields it after each push."""
    buffer = FrameBuffer(capacity)
    rng = np.random.default_rng(0)
    for k in range(frames):
        buffer.push(rng.integers(0, 255, (*size, 3), dtype=np.uint8), round(k * 1e9 / 30), "cam")
        yield buffer


def test_answers_follow_molmo_v1_grammar_and_land_on_the_newest_frame(checkpoint):
    pointer = make(checkpoint)
    for k, buffer in enumerate(stream(3)):
        window = buffer.window(5)
        result = pointer.ground(window, f"the mug number {k}", GroundingMode.POINT)
        assert re.fullmatch(molmo_v1_answer_regex(3), result.raw_output), result.raw_output
        assert result.problems == ()
        assert result.points, "an answer with a point, to land"
        assert all(p.frame_index == len(window) - 1 and 0 <= p.x < 160 and 0 <= p.y < 120 for p in result.points)


def test_each_frame_is_encoded_once_and_the_cache_changes_nothing(checkpoint):
    # 24 tokens: the answers up to their coordinates (`<point x="57.7" y="54.6"`), not 400 of random alt text.
    cached, uncached = make(checkpoint, max_new_tokens=24), make(checkpoint, feature_cache=False, max_new_tokens=24)
    calls = []
    for buffer in stream(8):
        window = buffer.window(5)
        before = cached.encoder_calls
        answer = cached.ground(window, "the mug", GroundingMode.POINT).raw_output
        calls.append(cached.encoder_calls - before)
        assert answer == uncached.ground(buffer.window(5), "the mug", GroundingMode.POINT).raw_output
    assert calls == [1] * 8, "one new frame per query, encoded once; the previous 4 come from the buffer"
    assert uncached.encoder_calls == sum(min(k + 1, 5) for k in range(8)), "without the cache: every frame every time"


def test_cached_features_equal_freshly_encoded_ones(checkpoint):
    pointer = make(checkpoint)
    buffers = list(stream(6))
    window = buffers[-1].window(5)
    pointer.ground(window, "the mug", GroundingMode.POINT)
    later = buffers[-1].window(5)
    fresh = make(checkpoint, feature_cache=False)
    for index in range(5):
        assert torch.allclose(later.features[index][pointer.FEATURE_KEY], fresh.features(later, index), atol=1e-6)


def test_a_stream_start_pads_with_black_frames(checkpoint):
    pointer = make(checkpoint)
    window = next(stream(1)).window(5)
    assert len(window) == 1
    result = pointer.ground(window, "the mug", GroundingMode.POINT)
    assert pointer.encoder_calls == 1, "black padding is not re-encoded per query"
    assert result.problems == ()


@pytest.mark.parametrize(
    ("query", "prompt"),
    [
        ("the red mug", "Point to the red mug"),
        ("Point to the red mug", "Point to the red mug"),
        ("what is the man holding?", "Point to the answer to this question: what is the man holding?"),
        ("Which cup is nearest", "Point to the answer to this question: Which cup is nearest"),
    ],
)
def test_queries_become_pointing_prompts(query, prompt):
    assert pointing_prompt(query) == prompt


def test_a_missing_checkpoint_says_what_to_download(tmp_path):
    with pytest.raises(BackendError, match="hf download ghazishazan/VideoMolmo"):
        backend_registry.create("videomolmo", Pointer, CPU, {})
    with pytest.raises(BackendError, match=r"config\.json"):
        backend_registry.create("videomolmo", Pointer, CPU, {"model": str(tmp_path)})


def test_quantization_needs_a_gpu(checkpoint):
    with pytest.raises(BackendError, match=r"videomolmo\.quantization 4bit needs a CUDA GPU"):
        make(checkpoint, quantization="4bit")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bitsandbytes 4-bit runs on a CUDA GPU only")
def test_four_bit_weights_still_answer_in_grammar(checkpoint):
    pytest.importorskip("bitsandbytes", reason="4-bit needs bitsandbytes")
    options = {"model": str(checkpoint), "tokenizer": str(checkpoint), "quantization": "4bit", "max_points": 3}
    pointer = backend_registry.create("videomolmo", Pointer, torch.device("cuda"), options)
    result = pointer.ground(next(stream(1)).window(5), "the mug", GroundingMode.POINT)
    assert re.fullmatch(molmo_v1_answer_regex(3), result.raw_output)


def test_it_reads_five_consecutive_camera_frames_not_the_context_window(checkpoint):
    """Its temporal module was trained on consecutive frames: the pipeline feeds it from the camera-rate ring."""
    pointer = make(checkpoint)
    assert pointer.camera_rate_frames == 5
    (note,) = pointer.check_context(8, 2.0)
    assert "5 consecutive camera frames" in note and "context_fps (2 Hz)" in note
