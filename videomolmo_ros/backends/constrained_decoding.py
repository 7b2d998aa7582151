"""Grammar-constrained decoding: the model can only write answers the parser understands.

A weak, quantised or badly prompted model still returns parseable coordinates, because at every
step the tokens that would leave the answer grammar get a -inf logit, and once an answer is
complete only the end-of-sequence token is left. The masks come from llguidance (a small Rust
library, no GPU code: the mask is computed on the CPU and applied to the logits on their device).

The answer regexes are written in the syntax Python's `re` and llguidance's Rust regex share, so
the same string checks an answer with `re.fullmatch` and drives decoding. They use `[0-9]`, not
`\\d`: both engines let `\\d` match non-ASCII digits, which the parser would not read.

Every regex here is bounded (groups, points, label length), so a constrained answer always ends:
`molmo2_max_new_tokens` gives a `max_new_tokens` that is always enough.
"""

import functools
import json
import re
from collections.abc import Sequence

import llguidance
import numpy as np
import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from videomolmo_ros.backends.point_grammar import MOLMO2_NONE_ANSWERS, MOLMO_V1_NONE_ANSWERS

MAX_GROUPS = 32  # frame groups in one Molmo2 answer (one group per frame that has points)
MAX_POINTS_PER_GROUP = 16  # points (or tracked objects) in one frame group
MAX_LABEL_CHARS = 40

# A label is plain text on one line: no tag or attribute delimiters, no control characters (C0, C1).
_LABEL = rf'[^<>"\x00-\x1f\x7f-\x9f]{{1,{MAX_LABEL_CHARS}}}'
_LABEL_MAX_BYTES = 4 * MAX_LABEL_CHARS  # UTF-8 takes at most 4 bytes a character

# Molmo2: integer coordinates 0-1000 printed with 3 digits (1000 with 4), timestamps in seconds
# with one decimal, then a point counter (point mode) or an object id (track mode). The counter
# runs on across frames, so it gets 3 digits: with 99 a long answer would be forced off its track.
_MOLMO2_COORD = "(?:[0-9]{3}|1000)"
_MOLMO2_INDEX = "[1-9][0-9]{0,2}"
_MOLMO2_TIME = r"[0-9]{1,3}\.[0-9]"
_MOLMO2_LONGEST_TIME, _MOLMO2_LONGEST_POINT = "999.9", " 999 1000 1000"
_MOLMO2_TAGS = {"point": "points", "track": "tracks"}
# Counting answers (point mode), as Molmo2 was trained to write them: the points, then the total.
_COUNT_OPEN, _COUNT_CLOSE = "Counting the ", " shows a total of "
_COUNT = "(?:0|[1-9][0-9]{0,3})"
_LONGEST_COUNT = "9999."

# Molmo v1 (VideoMolmo): percentages 0.0-100.0 with one decimal.
_PERCENT = r"(?:100\.0|[0-9]{1,2}\.[0-9])"


def molmo2_answer_regex(
    mode: str,
    max_groups: int = MAX_GROUPS,
    max_points: int = MAX_POINTS_PER_GROUP,
    frame_times: Sequence[str] | None = None,
    none_answers: Sequence[str] = MOLMO2_NONE_ANSWERS,
) -> str:
    """A regex for one complete Molmo2 answer in `mode` ("point" or "track").

    `<points coords="T I X Y( I X Y)*(;T I X Y...)*">LABEL</points>`, or that element in a
    counting answer (`Counting the <points ...>LABEL</points> shows a total of N.`) in point mode;
    `<tracks coords="...">LABEL</tracks>` in track mode; or one of `none_answers` in either mode
    (Molmo2 learnt "There are none." for an absent object in both modes: forbidding it would push
    the model into inventing points). At most `max_groups` frame groups of at most `max_points`
    points each, so decoding under it always terminates. With `frame_times` (the times exactly as
    the prompt printed them, "0.0", "0.5", ...) a timestamp can only be one of those, so every
    point lands on a frame the model saw.
    """
    if mode not in _MOLMO2_TAGS:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(_MOLMO2_TAGS)}")
    if max_groups < 1 or max_points < 1:
        raise ValueError(f"max_groups ({max_groups}) and max_points ({max_points}) must be at least 1")
    point = f" {_MOLMO2_INDEX} {_MOLMO2_COORD} {_MOLMO2_COORD}"
    group = f"{_timestamp_regex(frame_times)}{point}(?:{point}){{0,{max_points - 1}}}"
    tag = _MOLMO2_TAGS[mode]
    answer = f'<{tag} coords="{group}(?:;{group}){{0,{max_groups - 1}}}">{_LABEL}</{tag}>'
    if mode == "point":  # the element alone, or wrapped as a counting answer
        counted = f"{_literal(_COUNT_OPEN)}{answer}{_literal(_COUNT_CLOSE)}{_COUNT}\\."
        answer = f"{answer}|{counted}"
    return f"(?:{answer}|{_none_regex(none_answers)})"


def _timestamp_regex(frame_times: Sequence[str] | None) -> str:
    """Any one-decimal time, or exactly the times the prompt printed."""
    if frame_times is None:
        return _MOLMO2_TIME
    if not frame_times or not all(re.fullmatch(_MOLMO2_TIME, t) for t in frame_times):
        raise ValueError(f"frame_times must be 1 or more one-decimal times of 0-999.9 s, not {frame_times!r}")
    return "(?:" + "|".join(_literal(t) for t in sorted(set(frame_times))) + ")"


def _none_regex(sentences: Sequence[str]) -> str:
    """Any one of the sentences a model answers with when there is nothing to point at."""
    if not sentences:
        raise ValueError("give at least one sentence for 'nothing found'")
    return "(?:" + "|".join(_literal(s) for s in sentences) + ")"


def _literal(text: str) -> str:
    """`text` as a regex both engines read literally (re.escape also escapes spaces, which Rust's regex refuses)."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


def molmo2_max_new_tokens(max_groups: int = MAX_GROUPS, max_points: int = MAX_POINTS_PER_GROUP) -> int:
    """A `max_new_tokens` with which a constrained Molmo2 answer always completes, EOS included.

    The bound is the longest answer in bytes plus one: every token the grammar admits carries at
    least one byte (special tokens never match it), whatever the tokenizer. Defaults: 7583.
    """
    group = len(_MOLMO2_LONGEST_TIME) + max_points * len(_MOLMO2_LONGEST_POINT)
    coords = max_groups * group + max_groups - 1
    counting = len(_COUNT_OPEN) + len(_COUNT_CLOSE) + len(_LONGEST_COUNT)
    return counting + len('<points coords="">') + coords + _LABEL_MAX_BYTES + len("</points>") + 1


def molmo_v1_answer_regex(
    max_points: int = MAX_POINTS_PER_GROUP, none_answers: Sequence[str] = MOLMO_V1_NONE_ANSWERS
) -> str:
    """A regex for one complete Molmo v1 (VideoMolmo) answer, at most `max_points` points.

    `<point x="61.5" y="40.6" alt="LABEL">LABEL</point>`,
    `<points x1="10.0" y1="20.0" x2="30.5" y2="40.1" alt="LABEL">LABEL</points>` (numbered from 1,
    in order) or one of `none_answers` (VideoMolmo's templates answer "This isn't in the video."
    for an absent object, Molmo's "There are none."); coordinates are percentages 0.0-100.0 with
    one decimal.
    """
    if max_points < 1:
        raise ValueError(f"max_points ({max_points}) must be at least 1")
    single = f'<point x="{_PERCENT}" y="{_PERCENT}" alt="{_LABEL}">{_LABEL}</point>'
    numbered = ""
    for k in range(max_points, 0, -1):  # innermost first: point k is optional after point k-1
        numbered = f' x{k}="{_PERCENT}" y{k}="{_PERCENT}"' + (f"(?:{numbered})?" if numbered else "")
    several = f'<points{numbered} alt="{_LABEL}">{_LABEL}</points>'
    return f"(?:{single}|{several}|{_none_regex(none_answers)})"


@functools.lru_cache(maxsize=4)
def _llguidance_tokenizer(tokenizer: PreTrainedTokenizerBase, head_size: int) -> llguidance.LLTokenizer:
    """The tokenizer as llguidance sees it: only the tokens the output layer can produce.

    Added tokens beyond the layer (Molmo2's image tokens, or text tokens) are left out: where the
    grammar forces some text, llguidance allows only that text's canonical tokens, and those must
    be ones the model has. Cached: building it takes about a second for a 150k vocabulary.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec["added_tokens"] = [token for token in spec["added_tokens"] if token["id"] < head_size]
    spec["padding"] = spec["truncation"] = None
    vocab_size = max(len(tokenizer), head_size)
    return llguidance.LLTokenizer(json.dumps(spec), n_vocab=vocab_size, eos_token=tokenizer.eos_token_id)


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks every token that would leave `regex`; once the answer is complete only EOS remains.

    It keeps the state of one sequence (the tokens generated so far), so use a fresh one per
    `generate` call, with batch size 1 and no beam search. The prompt is whatever `input_ids`
    holds at the first call. Generation must stop on the tokenizer's EOS token.
    """

    def __init__(self, matcher: llguidance.LLMatcher, head_size: int):
        self._matcher = matcher
        self._head_size = head_size
        self._prompt_length: int | None = None
        self._consumed = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != 1:
            raise ValueError(f"grammar-constrained decoding handles batch size 1, not {input_ids.shape[0]}")
        if self._prompt_length is None:
            self._prompt_length = input_ids.shape[1]
        self._consume(input_ids[0, self._prompt_length + self._consumed :].tolist())
        allowed = self._allowed_tokens().to(scores.device, non_blocking=True)
        return scores.masked_fill(~allowed, float("-inf"))

    def _consume(self, tokens: list[int]) -> None:
        """Advance the grammar over the tokens generated since the last call."""
        if not self._matcher.consume_tokens(tokens):
            raise RuntimeError(f"generated tokens left the grammar: {self._matcher.get_error()}")
        self._consumed += len(tokens)

    def _allowed_tokens(self) -> torch.Tensor:
        """The grammar's token mask over the model's output layer (ids beyond it cannot be chosen)."""
        words = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        return torch.from_numpy(np.unpackbits(words, count=self._head_size, bitorder="little")).bool()


def grammar_logits_processor(tokenizer: PreTrainedTokenizerBase, regex: str, head_size: int) -> GrammarLogitsProcessor:
    """A fresh processor forcing `generate` to write one full match of `regex`, then EOS.

    `head_size` is the model's output layer size (`model.get_output_embeddings().weight.shape[0]`).
    It may be smaller than the tokenizer (Molmo2's image tokens lie beyond it: they are never
    allowed) or larger (a padded head: the extra ids have no text and are never allowed).
    """
    eos = tokenizer.eos_token_id
    if eos is None or eos >= head_size:
        raise ValueError(f"the tokenizer's EOS token ({eos}) must be inside the output layer ({head_size})")
    grammar = llguidance.LLMatcher.grammar_from_regex(regex)
    # log_level 0: llguidance would also print its errors; each one is raised here instead.
    matcher = llguidance.LLMatcher(_llguidance_tokenizer(tokenizer, head_size), grammar, log_level=0)
    if matcher.is_error():
        raise ValueError(f"bad regex for constrained decoding: {matcher.get_error()}")
    return GrammarLogitsProcessor(matcher, head_size)
