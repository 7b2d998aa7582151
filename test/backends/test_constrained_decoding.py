"""Grammar-constrained decoding on a tiny random-weight causal LM and an in-code byte tokenizer.

A random model writes noise; under the constraint it must still write one complete answer and
stop. The tokenizer is larger than the model's output layer (like Molmo2's image tokens), and
some of its extra tokens are plain text the grammar would accept, so a mask that is not cut to the
output layer would let the model pick ids it does not have.
"""

import re

import pytest
import torch
from tiny_molmo2 import byte_level_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList, PreTrainedTokenizerFast

from videomolmo_ros.backends.constrained_decoding import (
    grammar_logits_processor,
    molmo2_answer_regex,
    molmo2_max_new_tokens,
    molmo_v1_answer_regex,
)
from videomolmo_ros.backends.point_grammar import parse_molmo2, parse_molmo_v1

CHAT_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 256-258, inside the output layer
IMAGE_TOKENS = ["<im_patch>", "<im_col>", "<im_start>"]  # ids 259-261, beyond it
TEXT_TOKENS = ['<points coords="', "</points>", "000"]  # ids 262-264, beyond it, yet grammatical
HEAD_SIZE = 259
SEEDS = range(5)
# Small bounds keep the random answers short; the grammar is the same at any bound.
GROUPS, POINTS = 3, 3
MAX_NEW_TOKENS = molmo2_max_new_tokens(GROUPS, POINTS)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges (any text round-trips), plus special and extra text tokens."""
    fast = byte_level_tokenizer(CHAT_TOKENS + IMAGE_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_tokens(TEXT_TOKENS)
    assert fast.convert_tokens_to_ids(TEXT_TOKENS) == [262, 263, 264]
    return fast


def tiny_lm(tokenizer: PreTrainedTokenizerFast, head_size: int = HEAD_SIZE) -> LlamaForCausalLM:
    """A 2-layer random causal LM whose output layer has `head_size` ids."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=head_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model(tokenizer) -> LlamaForCausalLM:
    return tiny_lm(tokenizer)


def prompt_ids(tokenizer: PreTrainedTokenizerFast, seed: int) -> torch.Tensor:
    text = f"<|im_start|>user\nPoint to object number {seed}.<|im_end|>\n<|im_start|>assistant\n"
    return tokenizer(text, return_tensors="pt").input_ids


def generate(model, tokenizer, seed: int, regex: str | None, max_new_tokens: int = MAX_NEW_TOKENS) -> list[int]:
    """The new token ids of one generation (sampled with `seed`; greedy for seed 0)."""
    ids = prompt_ids(tokenizer, seed)
    processors = LogitsProcessorList()
    if regex is not None:
        processors.append(grammar_logits_processor(tokenizer, regex, model.config.vocab_size))
    kwargs = {"do_sample": True, "top_k": 0} if seed else {"do_sample": False}
    torch.manual_seed(seed)
    with torch.inference_mode():
        output = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            logits_processor=processors,
            **kwargs,
        )
    return output[0, ids.shape[1] :].tolist()


def answer_text(tokenizer, tokens: list[int]) -> str:
    """The answer before the final EOS, which must be there: the grammar ended the generation."""
    assert tokens[-1] == tokenizer.eos_token_id, "generation ends with EOS, not by running out of tokens"
    assert tokenizer.eos_token_id not in tokens[:-1]
    return tokenizer.decode(tokens[:-1])


# --- the regexes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        ("point", '<points coords="0.5 1 900 400 2 911 800;1.0 3 911 600">label</points>'),
        ("point", '<points coords="12.5 1 000 1000">the red mug</points>'),
        ("point", "There are none."),
        ("track", '<tracks coords="0.0 1 259 340;1.0 1 138 427;2.0 1 248 335">label</tracks>'),
        ("track", '<tracks coords="0.0 1 259 340 2 100 100">two people in green</tracks>'),
        ("track", "No tracks available."),
    ],
)
def test_molmo2_answers_match(mode, text):
    assert re.fullmatch(molmo2_answer_regex(mode), text)


@pytest.mark.parametrize("mode", ["point", "track"])
@pytest.mark.parametrize("text", ["There are none.", "No tracks available."])
def test_either_none_sentence_answers_in_either_mode(mode, text):
    """Molmo2 learnt "There are none." for an absent object in point and track mode alike."""
    assert re.fullmatch(molmo2_answer_regex(mode), text)
    assert not re.fullmatch(molmo2_answer_regex(mode, none_answers=["There are none."]), "No tracks available.")


def test_counting_answers_match_in_point_mode():
    answer = 'Counting the <points coords="0.5 1 900 400 2 100 200;1.0 3 911 600">mugs</points> shows a total of 3.'
    assert re.fullmatch(molmo2_answer_regex("point"), answer)
    assert parse_molmo2(answer).count == 3 and len(parse_molmo2(answer).points) == 3


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        ("point", '<points coords="0.5 1 900 1001">a</points>'),  # beyond 1000
        ("point", '<points coords="0.5 1 90 400">a</points>'),  # not 3 digits
        ("point", '<points coords="5 1 900 400">a</points>'),  # timestamp without its decimal
        ("point", '<points coords="0.5 0 900 400">a</points>'),  # counters start at 1
        ("point", '<points coords="0.5 1 900 400">a<b</points>'),  # delimiter in the label
        ("point", '<points coords="0.5 1 900 400"></points>'),  # empty label
        ("point", '<points coords="0.5 1 900 400">a\nb</points>'),  # control character in the label
        ("point", '<points coords="0.5 1 900 400">a\x85b</points>'),  # C1 control character (next line)
        ("point", '<points coords="0.5 1 ٩٠٠ 400">a</points>'),  # non-ASCII digits
        ("point", '<points coords="0.5 1 900 400;">a</points>'),  # empty group
        ("point", '<tracks coords="0.5 1 900 400">a</tracks>'),  # the other mode's tag
        ("point", "Nothing here."),
        ("point", 'Counting the <points coords="0.5 1 900 400">a</points> shows a total of 1'),  # no full stop
        ("point", 'Counting the <points coords="0.5 1 900 400">a</points>'),  # no total
        ("track", 'Counting the <tracks coords="0.5 1 900 400">a</tracks> shows a total of 1.'),
        ("track", '<tracks coords="0.5 1 900 400">a</tracks> and more'),
    ],
)
def test_molmo2_malformed_answers_do_not_match(mode, text):
    assert not re.fullmatch(molmo2_answer_regex(mode), text)


def longest_answer(groups: int, points: int) -> str:
    group = "999.9" + " 999 1000 1000" * points
    element = f'<points coords="{";".join([group] * groups)}">{"😀" * 40}</points>'
    return f"Counting the {element} shows a total of 9999."


@pytest.mark.parametrize(("groups", "points"), [(1, 1), (3, 2), (32, 16)])
def test_answers_are_bounded_and_the_token_budget_covers_the_longest(groups, points):
    regex = molmo2_answer_regex("point", groups, points)
    longest = longest_answer(groups, points)
    assert re.fullmatch(regex, longest)
    assert len(longest.encode()) + 1 == molmo2_max_new_tokens(groups, points), "the longest answer, then EOS"
    assert not re.fullmatch(regex, longest_answer(groups + 1, points))
    assert not re.fullmatch(regex, longest_answer(groups, points + 1))
    assert not re.fullmatch(regex, longest.replace(">😀", ">😀a"))


def test_frame_times_restrict_timestamps_to_the_frames_seen():
    regex = molmo2_answer_regex("track", frame_times=["0.0", "0.4", "1.1", "1.5"])
    assert re.fullmatch(regex, '<tracks coords="0.4 1 100 100;1.5 1 200 200">a</tracks>')
    assert not re.fullmatch(regex, '<tracks coords="0.5 1 100 100">a</tracks>')
    with pytest.raises(ValueError, match="frame_times"):
        molmo2_answer_regex("track", frame_times=[])
    with pytest.raises(ValueError, match="frame_times"):
        molmo2_answer_regex("track", frame_times=["0.25"])  # not as a prompt prints it


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mode"):
        molmo2_answer_regex("segment")
    with pytest.raises(ValueError, match="max_groups"):
        molmo2_answer_regex("point", max_groups=0)


@pytest.mark.parametrize(
    "text",
    [
        '<point x="61.5" y="40.6" alt="mug">mug</point>',
        '<points x1="10.0" y1="20.0" x2="30.5" y2="40.1" alt="mugs">mugs</points>',
        '<point x="100.0" y="0.0" alt="a">a</point>',
        "There are none.",
    ],
)
def test_molmo_v1_answers_match(text):
    assert re.fullmatch(molmo_v1_answer_regex(), text)


def test_videomolmos_none_sentence_is_an_answer_and_parses_as_none():
    """VideoMolmo's templates say "This isn't in the video." for an absent object."""
    assert re.fullmatch(molmo_v1_answer_regex(), "This isn't in the video.")
    assert not re.fullmatch(molmo_v1_answer_regex(none_answers=["There are none."]), "This isn't in the video.")
    parsed = parse_molmo_v1("This isn't in the video.")
    assert parsed.none_found and parsed.points == () and parsed.problems == ()


@pytest.mark.parametrize(
    "text",
    [
        '<point x="100.1" y="40.6" alt="mug">mug</point>',
        '<point x="61" y="40.6" alt="mug">mug</point>',
        '<points x1="10.0" y1="20.0" x3="30.5" y3="40.1" alt="mugs">mugs</points>',
        '<points x2="10.0" y2="20.0" alt="mugs">mugs</points>',
    ],
)
def test_molmo_v1_malformed_answers_do_not_match(text):
    assert not re.fullmatch(molmo_v1_answer_regex(), text)


# --- constrained generation ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["point", "track"])
def test_every_constrained_random_generation_is_one_complete_answer(model, tokenizer, mode):
    regex = molmo2_answer_regex(mode, GROUPS, POINTS)
    for seed in SEEDS:
        tokens = generate(model, tokenizer, seed, regex)
        assert re.fullmatch(regex, answer_text(tokenizer, tokens)), tokenizer.decode(tokens)


def test_constrained_timestamps_are_the_frames_seen(model, tokenizer):
    regex = molmo2_answer_regex("track", GROUPS, POINTS, frame_times=["0.0", "0.4", "1.1", "1.5"])
    for seed in SEEDS:
        text = answer_text(tokenizer, generate(model, tokenizer, seed, regex))
        assert re.fullmatch(regex, text)
        assert set(re.findall(r'(?:"|;)([0-9.]+) ', text)) <= {"0.0", "0.4", "1.1", "1.5"}


def test_constrained_answers_parse(model, tokenizer):
    point_grammar = pytest.importorskip("videomolmo_ros.backends.point_grammar")
    for mode in ("point", "track"):
        for seed in SEEDS:
            text = answer_text(tokenizer, generate(model, tokenizer, seed, molmo2_answer_regex(mode, GROUPS, POINTS)))
            assert not point_grammar.parse_molmo2(text).problems, text


def test_molmo_v1_constrained_generation(model, tokenizer):
    regex = molmo_v1_answer_regex(max_points=3)
    for seed in range(2):
        assert re.fullmatch(regex, answer_text(tokenizer, generate(model, tokenizer, seed, regex)))


def test_molmo_v1_constrained_answers_parse(model, tokenizer):
    point_grammar = pytest.importorskip("videomolmo_ros.backends.point_grammar")
    regex = molmo_v1_answer_regex(max_points=3)
    for seed in SEEDS:
        text = answer_text(tokenizer, generate(model, tokenizer, seed, regex))
        assert not point_grammar.parse_molmo_v1(text).problems, text


def test_without_the_constraint_the_random_model_writes_no_answer(model, tokenizer):
    regex = molmo2_answer_regex("point")
    for seed in SEEDS:
        text = tokenizer.decode(generate(model, tokenizer, seed, None, max_new_tokens=48), skip_special_tokens=True)
        assert not re.fullmatch(regex, text), text


# --- output layer smaller or larger than the tokenizer ------------------------------------


def byte_ids(tokenizer, text: str) -> list[int]:
    """`text` as byte tokens, as the model writes it (the extra text tokens are beyond its output layer)."""
    return [token for char in text for token in tokenizer.encode(char, add_special_tokens=False)]


def processor_mask(tokenizer, regex: str, head_size: int, answer_so_far: str) -> set[int]:
    """The ids the processor leaves selectable after `answer_so_far`, for an output layer of `head_size`."""
    processor = grammar_logits_processor(tokenizer, regex, head_size)
    prompt = prompt_ids(tokenizer, 0)
    processor(prompt, torch.zeros(1, head_size))  # the first call records the prompt
    answer = torch.tensor([byte_ids(tokenizer, answer_so_far)], dtype=torch.long)
    scores = processor(torch.cat([prompt, answer], dim=1), torch.zeros(1, head_size))
    assert scores.shape == (1, head_size)
    return set(torch.isfinite(scores[0]).nonzero().flatten().tolist())


def test_ids_beyond_the_output_layer_are_never_offered(tokenizer):
    regex = molmo2_answer_regex("point")
    whole_vocabulary = processor_mask(tokenizer, regex, len(tokenizer), "")
    assert tokenizer.convert_tokens_to_ids('<points coords="') in whole_vocabulary, "the grammar would take it"
    first = set(tokenizer.convert_tokens_to_ids(["<", "C", "T", "N"]))  # points, Counting, There / No ...
    assert processor_mask(tokenizer, regex, HEAD_SIZE, "") == first


def test_generation_with_an_output_layer_smaller_than_the_tokenizer(model, tokenizer):
    assert model.config.vocab_size < len(tokenizer)
    regex = molmo2_answer_regex("track", GROUPS, POINTS)
    for seed in SEEDS:
        tokens = generate(model, tokenizer, seed, regex)
        assert max(tokens) < HEAD_SIZE
        assert re.fullmatch(regex, answer_text(tokenizer, tokens))


def test_generation_with_an_output_layer_larger_than_the_tokenizer(tokenizer):
    padded = tiny_lm(tokenizer, head_size=320)
    regex = molmo2_answer_regex("point", GROUPS, POINTS)
    for seed in range(2):
        tokens = generate(padded, tokenizer, seed, regex)
        assert max(tokens) < len(tokenizer), "padding ids have no text"
        assert re.fullmatch(regex, answer_text(tokenizer, tokens))


# --- stopping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "answer"),
    [
        ("point", '<points coords="0.5 1 900 400">mug</points>'),
        ("point", "There are none."),
        ("track", "No tracks available."),
    ],
)
def test_a_complete_answer_leaves_only_eos(tokenizer, mode, answer):
    assert processor_mask(tokenizer, molmo2_answer_regex(mode), HEAD_SIZE, answer) == {tokenizer.eos_token_id}


def test_generation_stops_right_after_the_answer_within_the_budget(model, tokenizer):
    regex = molmo2_answer_regex("point", GROUPS, POINTS)
    for seed in SEEDS:
        tokens = generate(model, tokenizer, seed, regex, max_new_tokens=MAX_NEW_TOKENS)
        assert re.fullmatch(regex, answer_text(tokenizer, tokens)), "EOS came right after a complete answer"
        assert len(tokens) <= MAX_NEW_TOKENS


# --- misuse --------------------------------------------------------------------------------


def test_misuse_is_refused(tokenizer):
    with pytest.raises(ValueError, match="regex"):
        grammar_logits_processor(tokenizer, "<points (", HEAD_SIZE)
    with pytest.raises(ValueError, match="EOS"):
        grammar_logits_processor(tokenizer, "a", tokenizer.eos_token_id)
    processor = grammar_logits_processor(tokenizer, "a", HEAD_SIZE)
    with pytest.raises(ValueError, match="batch size 1"):
        processor(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, HEAD_SIZE))


def test_a_token_outside_the_grammar_is_an_error(tokenizer):
    processor = grammar_logits_processor(tokenizer, "a", HEAD_SIZE)
    processor(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, HEAD_SIZE))
    off_grammar = tokenizer.convert_tokens_to_ids("b")
    with pytest.raises(RuntimeError, match="left the grammar"):
        processor(torch.tensor([[0, 0, 0, off_grammar]]), torch.zeros(1, HEAD_SIZE))
