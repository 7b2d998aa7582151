"""The Molmo2 backend on a tiny random-weight checkpoint: real processor, real generate, real parsing."""

import re

import numpy as np
import pytest
import torch
from tiny_molmo2 import write_tiny_molmo2

from videomolmo_ros.backends import registry as backend_registry
from videomolmo_ros.backends.constrained_decoding import molmo2_answer_regex
from videomolmo_ros.backends.interfaces import Pointer
from videomolmo_ros.backends.molmo2.pointer import Molmo2Pointer
from videomolmo_ros.backends.registry import BackendError
from videomolmo_ros.pipeline.commands import GroundingMode
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer

CPU = torch.device("cpu")
STAMPS_S = [10.0, 10.4, 11.1, 11.5]  # irregular, as a real camera's 2 Hz samples are


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_molmo2(tmp_path_factory.mktemp("molmo2"))


def window(seed=0, stamps=STAMPS_S, size=(120, 160)):
    buffer = FrameBuffer(len(stamps))
    rng = np.random.default_rng(seed)
    for stamp in stamps:
        buffer.push(rng.integers(0, 255, (*size, 3), dtype=np.uint8), round(stamp * 1e9), "cam")
    return buffer.window(len(stamps))


def make(checkpoint, **options) -> Molmo2Pointer:
    return backend_registry.create(
        "molmo2", Pointer, CPU, {"model": str(checkpoint), "max_points_per_frame": 3, **options}
    )


def test_molmo2_is_a_registered_backend_loaded_natively_without_remote_code(checkpoint):
    from transformers import Molmo2ForConditionalGeneration

    pointer = make(checkpoint)
    assert type(pointer.model) is Molmo2ForConditionalGeneration
    assert pointer.options.trust_remote_code is False
    assert pointer.model.dtype == torch.float32, "float32 on CPU"


def test_frames_reach_the_model_with_their_real_timestamps(checkpoint):
    pointer = make(checkpoint)
    inputs = pointer.prepare(window(), "Point to the mug.")
    prompt = pointer.processor.tokenizer.decode(inputs["input_ids"][0])
    assert re.findall(r"(\d+\.\d) <frame_start>", prompt) == ["0.0", "0.4", "1.1", "1.5"]
    assert "Point to the mug." in prompt
    assert int(inputs["video_grids"][0, 0]) == 4, "every buffered frame is sent, none resampled"


@pytest.mark.parametrize("mode", [GroundingMode.POINT, GroundingMode.TRACK])
def test_constrained_answers_always_parse(checkpoint, mode):
    pointer = make(checkpoint)
    for seed in range(4):
        frames = window(seed)
        result = pointer.ground(frames, f"the object number {seed}", mode)
        assert re.fullmatch(molmo2_answer_regex(mode.name.lower(), max_points=3), result.raw_output), result.raw_output
        assert result.problems == (), result.problems
        for point in result.points:
            assert 0 <= point.frame_index < len(frames)
            assert 0 <= point.x <= 160 and 0 <= point.y <= 120
            assert (point.object_id is not None) == (mode is GroundingMode.TRACK)


def test_unconstrained_random_output_is_reported_not_raised(checkpoint):
    pointer = make(checkpoint, constrained=False, max_new_tokens=24)
    result = pointer.ground(window(), "the mug", GroundingMode.POINT)
    assert result.points == ()
    assert result.problems, "text that is not the grammar is reported"


def test_generation_runs_without_autograd(checkpoint, monkeypatch):
    pointer = make(checkpoint)
    seen = []
    generate = pointer.model.generate
    monkeypatch.setattr(
        pointer.model, "generate", lambda **kw: seen.append(torch.is_inference_mode_enabled()) or generate(**kw)
    )
    pointer.ground(window(), "the mug", GroundingMode.POINT)
    assert seen == [True]


def test_a_missing_checkpoint_says_what_to_download_and_where(tmp_path):
    with pytest.raises(BackendError) as error:
        backend_registry.create("molmo2", Pointer, CPU, {"model": "allenai/Molmo2-4B"})
    message = str(error.value)
    assert "allenai/Molmo2-4B" in message and "hf download allenai/Molmo2-4B" in message
    assert "molmo2.model" in message and "cache" in message
    with pytest.raises(BackendError, match=r"no config\.json"):
        backend_registry.create("molmo2", Pointer, CPU, {"model": str(tmp_path)})  # an empty folder


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"quantization": "4bit"}, "CUDA GPU"),
        ({"quantization": "3bit"}, "none, 4bit or 8bit"),
        ({"dtype": "int3"}, "auto"),
    ],
)
def test_bad_options_are_clear_errors(checkpoint, options, words):
    with pytest.raises(BackendError, match=words):
        make(checkpoint, **options)


def test_remote_serving_maps_the_servers_answer_back_to_buffered_frames():
    from openai_server_double import OpenAIServerDouble
    from synthetic_video import default_scene, render

    buffer = FrameBuffer(4)
    truth = []
    for k, stamp in enumerate([5.0, 5.5, 6.0, 6.5]):
        image, masks = render(default_scene(), k * 0.5)
        buffer.push(image, round(stamp * 1e9), "cam")
        truth.append(masks["red"])
    with OpenAIServerDouble() as server:
        pointer = backend_registry.create("molmo2", Pointer, CPU, {"server_url": server.url, "model": server.model})
        result = pointer.ground(buffer.window(4), "the red ball", GroundingMode.TRACK)
    assert sorted({p.frame_index for p in result.points}) == [0, 1, 2, 3]
    for point in result.points:
        assert truth[point.frame_index][round(point.y), round(point.x)], "each point lies on its frame's red disc"
    assert {p.object_id for p in result.points} == {1}


def test_an_unreachable_server_fails_at_start_up_naming_the_url():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}"):
        backend_registry.create("molmo2", Pointer, CPU, {"server_url": f"http://127.0.0.1:{port}/v1"})
