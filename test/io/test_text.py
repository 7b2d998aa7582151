"""Untrusted text: invisible characters never reach a query or a log line; echoes are clipped."""

from videomolmo_ros.io.text import clean, clip
from videomolmo_ros.pipeline.commands import Verdict, sanitize_query


def test_invisible_characters_are_removed_and_controls_become_spaces():
    assert clean("re\u200bd\u202e mug\u2066\u00ad") == "red mug"
    assert clean("red\x85mug\x1b[31m") == "red mug [31m"  # C1 and C0 controls separate words


def test_a_query_of_invisible_characters_only_is_empty():
    assert sanitize_query("\u200b\u200f\u202e\u2066\ufeff\x85\x9f", 512) == ("", Verdict.EMPTY)


def test_echoes_are_clipped_with_an_ellipsis():
    assert clip("x" * 1_000_000) == "x" * 80 + "..."
    assert clip("short") == "short"
