"""The Molmo2 backend on a tiny random-weight checkpoint: real processor, real generate, real parsing."""

import re

import numpy as np
import pytest
import torch
from tiny_molmo2 import write_tiny_molmo2

from videomolmo_ros.backends import registry as backend_registry
from videomolmo_ros.backends.constrained_decoding import molmo2_answer_regex
from videomolmo_ros.backends.molmo2.pointer import Molmo2Pointer
from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.contracts.interfaces import BackendError, Pointer
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


class Spy:
    """Wraps the pointer's generate: keeps the rendered prompt text, the frame count and the grammar."""

    def __init__(self, pointer: Molmo2Pointer, answer: str | None = None):
        self.pointer, self.answer, self._generate = pointer, answer, pointer.generate
        self.prompt, self.frames, self.regex = "", 0, None
        pointer.generate = self

    def __call__(self, inputs, regex):
        self.prompt = self.pointer.processor.tokenizer.decode(inputs["input_ids"][0])
        self.frames, self.regex = int(inputs["video_grids"][0, 0]), regex
        return self.answer if self.answer is not None else self._generate(inputs, regex)

    def shown_times(self) -> list[str]:
        return re.findall(r"(\d+\.\d) <frame_start>", self.prompt)


def test_frames_reach_the_model_with_their_real_timestamps(checkpoint):
    spy = Spy(make(checkpoint))
    spy.pointer.ground(window(), "the mug", GroundingMode.POINT)
    assert spy.shown_times() == ["0.0", "0.4", "1.1", "1.5"]
    assert spy.frames == 4, "every buffered frame is sent, none resampled"


def test_the_prompt_is_laid_out_as_the_released_template_lays_it_out(checkpoint):
    """Video first, then the user turn holding only the text, then the assistant turn."""
    spy = Spy(make(checkpoint))
    spy.pointer.ground(window(), "the mug", GroundingMode.TRACK)
    assert re.fullmatch(
        r"<\|im_end\|>0\.0 <frame_start>.*<frame_end>"
        r"<\|im_start\|>user\nTrack the mug\.<\|im_end\|>\n<\|im_start\|>assistant\n",
        spy.prompt,
        re.DOTALL,
    ), spy.prompt[-120:]


ALL_ONE_DECIMAL_TIMES = [f"{k / 10:.1f}" for k in range(30)]


@pytest.mark.parametrize("stamps", [[10.0, 10.2502, 10.5, 10.7502], [10.0, 10.533, 11.049999, 11.55]])
def test_the_grammar_allows_exactly_the_times_the_prompt_printed(checkpoint, stamps):
    """Stamps whose one-decimal rounding is ambiguous: the model can write every time it was shown, no other."""
    spy = Spy(make(checkpoint), answer="There are none.")
    spy.pointer.ground(window(stamps=stamps), "the mug", GroundingMode.POINT)
    shown = spy.shown_times()
    assert len(shown) == len(stamps)
    answers = {t: f'<points coords="{t} 1 500 500">a</points>' for t in ALL_ONE_DECIMAL_TIMES}
    allowed = [t for t, answer in answers.items() if re.fullmatch(spy.regex, answer)]
    assert allowed == shown


def test_answers_land_on_the_frame_shown_at_that_time(checkpoint):
    stamps = [10.0, 10.533, 11.049999, 11.55]
    spy = Spy(make(checkpoint), answer="")
    spy.pointer.ground(window(stamps=stamps), "the mug", GroundingMode.POINT)
    shown = spy.shown_times()
    spy.answer = '<points coords="' + ";".join(f"{t} {k + 1} 500 500" for k, t in enumerate(shown)) + '">mug</points>'
    result = spy.pointer.ground(window(stamps=stamps), "the mug", GroundingMode.POINT)
    assert [p.frame_index for p in result.points] == [0, 1, 2, 3]


def test_frames_printed_at_the_same_time_are_sent_once_and_counted(checkpoint):
    """A 30 Hz window would print 0.0 0.0 0.1 0.1 0.1: only the first frame of each time is sent."""
    stamps = [10.0, 10.033, 10.067, 10.1, 10.133]
    spy = Spy(make(checkpoint), answer='<points coords="0.1 1 500 500">mug</points>')
    result = spy.pointer.ground(window(stamps=stamps), "the mug", GroundingMode.POINT)
    assert spy.shown_times() == ["0.0", "0.1"] and spy.frames == 2
    assert result.skipped_frames == 3
    assert [p.frame_index for p in result.points] == [2], "the first frame printed at 0.1 s"


def test_context_rates_molmo2_was_not_trained_on_are_warned_about_or_refused(checkpoint):
    pointer = make(checkpoint)
    assert pointer.check_context(8, 2.0) == []
    (warning,) = pointer.check_context(8, 5.0)
    assert "5 Hz" in warning and "2 Hz" in warning and "1.4 s" in warning and "3.5 s" in warning
    with pytest.raises(BackendError, match="12 Hz"):
        pointer.check_context(8, 12.0)


@pytest.mark.parametrize("mode", [GroundingMode.POINT, GroundingMode.TRACK])
def test_constrained_answers_always_parse(checkpoint, mode):
    """Where points land and which carry object ids is checked on given answers (the tests around, the
    remote ones, test_point_grammar): this random model answers every track query "There are none."."""
    pointer = make(checkpoint)
    for seed in range(4):
        result = pointer.ground(window(seed), f"the object number {seed}", mode)
        assert re.fullmatch(molmo2_answer_regex(mode.name.lower(), max_points=3), result.raw_output), result.raw_output
        assert result.problems == (), result.problems


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


def test_without_a_network_only_the_cache_is_looked_in(offline_hub):
    """One refused connection to the hub endpoint (a closed local port), then the message at once."""
    with pytest.raises(BackendError, match=r"no network: .*127\.0\.0\.1.*hf download allenai/Molmo2-4B"):
        backend_registry.create("molmo2", Pointer, CPU, {})
    assert offline_hub.asked_for("allenai/Molmo2-4B") == [], "only the cache was looked in"


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


def test_remote_serving_sends_real_timestamps_and_the_grammar_where_the_server_takes_them():
    from openai_server_double import OpenAIServerDouble
    from synthetic_video import default_scene, render

    buffer, truth, stamps = FrameBuffer(4), [], [5.0, 5.4, 6.1, 6.5]  # irregular
    for stamp in stamps:
        image, masks = render(default_scene(), stamp - 5.0)
        buffer.push(image, round(stamp * 1e9), "cam")
        truth.append(masks["red"])
    with OpenAIServerDouble() as server:
        server.version = "0.21.0"
        pointer = backend_registry.create("molmo2", Pointer, CPU, {"server_url": server.url, "model": server.model})
        assert pointer.check_context(8, 2.0) == []
        result = pointer.ground(buffer.window(4), "the red ball", GroundingMode.TRACK)
        request = server.last_request
    assert request["media_io_kwargs"]["video"] == {
        "fps": 10,
        "num_frames": 4,
        "frames_indices": [0, 4, 11, 15],
        "total_num_frames": 16,
        "duration": pytest.approx(1.5),
    }
    assert re.fullmatch(request["structured_outputs"]["regex"], result.raw_output)
    assert sorted({p.frame_index for p in result.points}) == [0, 1, 2, 3]
    for point in result.points:
        assert truth[point.frame_index][round(point.y), round(point.x)], "each point lies on its frame's red disc"


def test_an_older_server_is_named_at_start_up():
    from openai_server_double import OpenAIServerDouble

    with OpenAIServerDouble() as server:
        server.version = "0.20.0"
        pointer = backend_registry.create("molmo2", Pointer, CPU, {"server_url": server.url, "model": server.model})
        (note,) = pointer.check_context(8, 2.0)
    assert "vLLM 0.20.0" in note and "evenly spaced" in note


def test_an_unreachable_server_fails_at_start_up_naming_the_url():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}"):
        backend_registry.create("molmo2", Pointer, CPU, {"server_url": f"http://127.0.0.1:{port}/v1"})


def flood(points: int) -> str:
    """An answer of `points` points on the first frame: what an unconstrained model can write for "all the grains"."""
    from videomolmo_ros.backends.point_format import format_molmo2_points
    from videomolmo_ros.backends.point_grammar import ParsedPoint

    return format_molmo2_points(ParsedPoint((k % 97) / 97, (k % 89) / 89, "rice", 0.0) for k in range(points))


def test_a_server_refusing_the_grammar_gets_no_more_points_through_than_the_grammar_allows():
    from openai_server_double import OpenAIServerDouble

    with OpenAIServerDouble() as server:
        server.refuse_structured_outputs = True
        server.answer = flood(5000)
        options = {"server_url": server.url, "model": server.model, "max_points_per_frame": 4}
        pointer = backend_registry.create("molmo2", Pointer, CPU, options)
        result = pointer.ground(window(), "all the grains of rice", GroundingMode.POINT)
    assert len(result.points) == 4 * len(STAMPS_S), "max_points_per_frame x the frames shown, as the grammar allows"
    assert any("refused the answer grammar" in problem for problem in result.problems)
    assert any("cut at" in problem for problem in result.problems), result.problems


def test_an_unconstrained_local_answer_is_held_to_the_grammars_limit(checkpoint, monkeypatch):
    pointer = make(checkpoint, constrained=False)
    monkeypatch.setattr(pointer, "generate", lambda inputs, regex: flood(5000))
    result = pointer.ground(window(), "all the grains of rice", GroundingMode.POINT)
    assert len(result.points) == 3 * len(STAMPS_S)
