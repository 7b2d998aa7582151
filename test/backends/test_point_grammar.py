"""point_grammar: the Molmo2 and Molmo v1 answer grammars, parsed, formatted and fuzzed."""

import math
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videomolmo_ros.backends.point_format import (
    MOLMO2_POINTS_PATTERN,
    MOLMO2_TRACKS_PATTERN,
    MOLMO_V1_PATTERN,
    format_molmo2_points,
    format_molmo2_tracks,
    format_molmo_v1,
)
from videomolmo_ros.backends.point_grammar import (
    ParsedPoint,
    ParseResult,
    PointKind,
    nearest_frame,
    parse,
    parse_molmo2,
    parse_molmo_v1,
)

POINTING = '<points coords="0.5 1 900 400 2 911 800;1.0 3 911 600">label</points>'
TRACKING = '<tracks coords="0.0 1 259 340;1.0 1 138 427;2.0 1 248 335">label</tracks>'
V1_POINT = '<point x="61.5" y="40.6" alt="mug">mug</point>'
V1_POINTS = '<points x1="10.0" y1="20.0" x2="30.5" y2="40.1" alt="mugs">mugs</points>'
GRAMMAR_CHARACTERS = '<>/"= ;:,\t.-0123456789acdeiklnoprstxy'


def _tuples(result: ParseResult) -> list[tuple]:
    """(time, number, x, y, label) of each point, rounded past float noise, for comparisons by value."""
    return [(p.time_s, p.number, round(p.x, 9), round(p.y, 9), p.label) for p in result.points]


def _problems_mention(result: ParseResult, *words: str) -> bool:
    return any(all(word in problem for word in words) for problem in result.problems)


def _assert_sane(result: ParseResult) -> None:
    """What every parse must give, whatever the input: points inside the image, finite times, text problems."""
    for point in result.points:
        assert 0.0 <= point.x <= 1.0 and 0.0 <= point.y <= 1.0
        assert point.time_s is None or (math.isfinite(point.time_s) and point.time_s >= 0)
        assert point.number >= 0
    assert all(isinstance(problem, str) and len(problem) < 400 for problem in result.problems)
    assert result.count is None or result.count >= 0


# --- the documented examples -----------------------------------------------------------------


def test_molmo2_pointing_example_gives_times_running_numbers_and_per_mille_coordinates() -> None:
    result = parse_molmo2(POINTING)
    assert _tuples(result) == (
        [(0.5, 1, 0.9, 0.4, "label"), (0.5, 2, 0.911, 0.8, "label"), (1.0, 3, 0.911, 0.6, "label")]
    )
    assert all(p.kind is PointKind.POINT and p.object_id is None for p in result.points)
    assert result.problems == () and result.count is None and not result.none_found


def test_molmo2_tracks_keep_their_object_ids_across_frames() -> None:
    result = parse_molmo2(TRACKING)
    assert _tuples(result) == (
        [(0.0, 1, 0.259, 0.34, "label"), (1.0, 1, 0.138, 0.427, "label"), (2.0, 1, 0.248, 0.335, "label")]
    )
    assert [p.object_id for p in result.points] == [1, 1, 1]
    assert all(p.kind is PointKind.TRACK for p in result.points)


def test_counting_wrapper_gives_the_count_and_alt_before_coords_is_read_past() -> None:
    text = 'Counting the <points alt="apples" coords="0.5 1 900 400">apples</points> shows a total of 3.'
    result = parse_molmo2(text)
    assert result.count == 3
    assert _tuples(result) == ([(0.5, 1, 0.9, 0.4, "apples")])
    assert result.problems == ()


def test_alt_names_the_points_when_the_tag_is_cut_before_its_label() -> None:
    result = parse_molmo2('<points alt="cup" coords="0.5 1 900 400"')
    assert [p.label for p in result.points] == ["cup"]
    assert _problems_mention(result, "truncated")


@pytest.mark.parametrize("answer", ["There are none.", "No tracks available.", "  there are none. "])
def test_none_answers_say_none_without_problems(answer: str) -> None:
    result = parse(answer)
    assert result == ParseResult(none_found=True)


def test_several_elements_keep_their_own_labels() -> None:
    text = '<points coords="0.5 1 100 200">cup</points> <tracks coords="1.0 2 300 400">bowl</tracks>'
    result = parse_molmo2(text)
    assert [(p.label, p.kind, p.object_id) for p in result.points] == [
        ("cup", PointKind.POINT, None),
        ("bowl", PointKind.TRACK, 2),
    ]
    assert result.problems == ()


@pytest.mark.parametrize("separator", [";", "\t", ":", ","])
def test_molmo2_accepts_every_frame_separator_of_the_reference_parser(separator: str) -> None:
    result = parse_molmo2(f'<points coords="0.5 1 900 400{separator}1.0 2 911 600">x</points>')
    assert [(p.time_s, p.number) for p in result.points] == [(0.5, 1), (1.0, 2)]
    assert result.problems == ()


def test_molmo_v1_single_point_is_in_percent_without_time() -> None:
    result = parse_molmo_v1(V1_POINT)
    assert _tuples(result) == ([(None, 1, 0.615, 0.406, "mug")])
    assert result.points[0].object_id is None and result.problems == ()


def test_molmo_v1_points_are_numbered_by_their_attribute_index() -> None:
    result = parse_molmo_v1(V1_POINTS)
    assert _tuples(result) == ([(None, 1, 0.1, 0.2, "mugs"), (None, 2, 0.305, 0.401, "mugs")])


def test_each_strict_parser_drops_the_other_grammar_and_says_so() -> None:
    assert parse_molmo2(V1_POINT).points == ()
    assert _problems_mention(parse_molmo2(V1_POINT), "Molmo v1", "dropped")
    assert parse_molmo_v1(POINTING).points == ()
    assert _problems_mention(parse_molmo_v1(POINTING), "Molmo2", "dropped")
    assert len(parse(f"{V1_POINT} {POINTING}").points) == 4


def test_pixels_scale_by_image_size_and_the_far_edge_stays_inside_the_image() -> None:
    assert ParsedPoint(0.9, 0.4).to_pixels(640, 480) == pytest.approx((576.0, 192.0))
    assert ParsedPoint(1.0, 1.0).to_pixels(640, 480) == (639.0, 479.0)
    assert ParsedPoint(0.0, 0.0).to_pixels(640, 480) == (0.0, 0.0)


# --- what is dropped is reported ---------------------------------------------------------------


def test_generation_cut_mid_value_keeps_the_complete_points_before_the_cut() -> None:
    result = parse_molmo2('<points coords="0.5 1 900 400 2 911 800;1.0 3 911 6')
    assert _tuples(result) == ([(0.5, 1, 0.9, 0.4, ""), (0.5, 2, 0.911, 0.8, "")])
    assert _problems_mention(result, "truncated", "'6'")
    assert _problems_mention(result, "incomplete point", "3 911")


def test_cut_in_the_first_group_keeps_nothing_and_reports_it() -> None:
    result = parse_molmo2('<points coords="0.5 1 900 4')
    assert result.points == ()
    assert _problems_mention(result, "truncated")


def test_cut_v1_value_is_dropped_not_guessed() -> None:
    result = parse_molmo_v1('<points x1="10.0" y1="20.0" x2="30.5" y2="4')
    assert _tuples(result) == ([(None, 1, 0.1, 0.2, "")])
    assert _problems_mention(result, "y2", "cut off")
    assert _problems_mention(result, "incomplete point", "x2")


def test_every_prefix_of_an_answer_keeps_only_its_points_and_reports_a_cut_element() -> None:
    answer = f"Counting the {POINTING} shows a total of 3. {TRACKING} {V1_POINTS}"
    whole = {(p.time_s, p.number, p.x, p.y, p.kind) for p in parse(answer).points}
    elements = [m.span() for m in re.finditer(r"<(points|tracks).*?</\1>", answer)]
    inside_elements = {end for start, stop in elements for end in range(start + 1, stop)}
    for end in range(len(answer) + 1):
        prefix = parse(answer[:end])
        assert {(p.time_s, p.number, p.x, p.y, p.kind) for p in prefix.points} <= whole, answer[:end]
        assert prefix.problems or end not in inside_elements, answer[:end]


def test_out_of_range_and_negative_coordinates_are_dropped_and_reported() -> None:
    result = parse_molmo2('<points coords="0.5 1 1200 400 2 -5 300 3 500 500">x</points>')
    assert _tuples(result) == ([(0.5, 3, 0.5, 0.5, "x")])
    assert _problems_mention(result, "out-of-range", "1200")
    assert _problems_mention(result, "out-of-range", "-5")
    v1 = parse_molmo_v1('<points x1="100.1" y1="20.0" x2="30.5" y2="40.1" alt="a">a</points>')
    assert [p.number for p in v1.points] == [2]
    assert _problems_mention(v1, "out-of-range", "100.1")


def test_non_numeric_tokens_drop_only_their_point_or_group() -> None:
    result = parse_molmo2('<points coords="0.5 1 abc 400 2 500 500;zz 3 100 100;1.0 4 600 600 5">x</points>')
    assert [p.number for p in result.points] == [2, 4]
    assert _problems_mention(result, "malformed point", "abc")
    assert _problems_mention(result, "malformed group", "zz")
    assert _problems_mention(result, "incomplete point", "'5'")


def test_empty_coords_and_elements_without_coordinates_are_reported() -> None:
    assert _problems_mention(parse_molmo2('<points coords="">x</points>'), "empty coords")
    assert _problems_mention(parse_molmo2('<points alt="x">x</points>'), "without coordinates")


def test_missing_closing_tag_keeps_points_and_reports_it() -> None:
    result = parse_molmo2('<points coords="0.5 1 900 400">mug')
    assert _tuples(result) == ([(0.5, 1, 0.9, 0.4, "mug")])
    assert _problems_mention(result, "closing tag", "</points>")


def test_missing_closing_quote_keeps_the_value_up_to_the_tag_end() -> None:
    result = parse_molmo2('<points coords="0.5 1 900 400>mug</points>')
    assert _tuples(result) == ([(0.5, 1, 0.9, 0.4, "mug")])
    assert _problems_mention(result, "closing quote")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ("empty output",)),
        ("I cannot see a mug.", ("unrecognised text", "cannot see")),
        (f"Sure! {POINTING}", ("unrecognised text", "Sure")),
        (f"{POINTING}</points>", ("unrecognised text", "</points>")),
        ('<points coords="0.5 1 900 400" junk>x</points>', ("unexpected text", "junk")),
    ],
)
def test_unknown_text_is_reported(text: str, words: tuple[str, ...]) -> None:
    assert _problems_mention(parse(text), *words)


# --- formatters ---------------------------------------------------------------------------------


def test_formatters_write_the_documented_examples_exactly() -> None:
    pointing = parse_molmo2(POINTING).points
    assert format_molmo2_points(pointing) == POINTING
    assert format_molmo2_tracks(parse_molmo2(TRACKING).points) == TRACKING
    assert format_molmo_v1(parse_molmo_v1(V1_POINT).points) == V1_POINT
    assert format_molmo_v1(reversed(parse_molmo_v1(V1_POINTS).points)) == V1_POINTS  # sorted by x then y
    assert format_molmo2_points(pointing, count=3) == f"Counting the {POINTING} shows a total of 3."


def test_formatters_zero_pad_per_mille_and_answer_none_without_points() -> None:
    assert format_molmo2_points([ParsedPoint(0.054, 0.007, "a", 2.25)]) == '<points coords="2.2 1 054 007">a</points>'
    assert format_molmo2_points([]) == "There are none."
    assert format_molmo2_tracks([]) == "No tracks available."
    assert format_molmo_v1([]) == "There are none."


def test_v1_formatter_sorts_by_x_then_y() -> None:
    points = [ParsedPoint(0.5, 0.9, "a"), ParsedPoint(0.1, 0.3, "a"), ParsedPoint(0.5, 0.2, "a")]
    assert format_molmo_v1(points) == (
        '<points x1="10.0" y1="30.0" x2="50.0" y2="20.0" x3="50.0" y3="90.0" alt="a">a</points>'
    )


# --- properties: round trips and fuzzing -----------------------------------------------------

unit = st.floats(0.0, 1.0)
labels = st.from_regex(r"[a-z]{1,8}( [a-z]{1,8})?", fullmatch=True)
times = st.floats(0.0, 600.0)
video_points = st.lists(st.builds(ParsedPoint, unit, unit, labels, times), max_size=12)
track_points = st.lists(
    st.builds(ParsedPoint, unit, unit, labels, times, st.integers(1, 50), st.just(PointKind.TRACK)), max_size=12
)
frame_points = st.lists(st.builds(ParsedPoint, unit, unit, labels), max_size=12)


def _molmo2_key(point: ParsedPoint) -> tuple:
    """Sort key on the printed values, so originals and parsed points line up one to one."""
    return (point.label, f"{point.time_s:.1f}", round(point.x * 1000), round(point.y * 1000), point.object_id)


def _assert_within(originals: list[ParsedPoint], parsed: tuple[ParsedPoint, ...], xy: float, t: float) -> None:
    assert len(parsed) == len(originals)
    for original, back in zip(sorted(originals, key=_molmo2_key), sorted(parsed, key=_molmo2_key), strict=True):
        assert (back.label, back.object_id) == (original.label, original.object_id)
        assert abs(back.x - original.x) <= xy + 1e-9 and abs(back.y - original.y) <= xy + 1e-9
        assert abs(back.time_s - original.time_s) <= t + 1e-9


def _elements_match(pattern: str, answer: str) -> bool:
    return re.fullmatch(rf"(?:{pattern})(?: (?:{pattern}))*", answer) is not None


@settings(max_examples=150, deadline=None)
@given(video_points, st.none() | st.integers(0, 99))
def test_molmo2_points_round_trip_within_a_thousandth(points: list[ParsedPoint], count: int | None) -> None:
    answer = format_molmo2_points(points, count)
    result = parse_molmo2(answer)
    assert result.problems == ()
    _assert_within(points, result.points, xy=0.0005, t=0.05)
    assert result.none_found is not bool(points)
    assert result.count == (count if points else None)
    element_numbers = [[p.number for p in result.points if p.label == label] for label in {p.label for p in points}]
    assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in element_numbers)  # a running counter
    if points:
        assert _elements_match(MOLMO2_POINTS_PATTERN, re.sub(r"^Counting the | shows a total of \d+\.$", "", answer))


@settings(max_examples=150, deadline=None)
@given(track_points)
def test_molmo2_tracks_round_trip_with_their_ids(points: list[ParsedPoint]) -> None:
    answer = format_molmo2_tracks(points)
    result = parse_molmo2(answer)
    assert result.problems == ()
    _assert_within(points, result.points, xy=0.0005, t=0.05)
    assert not points or _elements_match(MOLMO2_TRACKS_PATTERN, answer)


@settings(max_examples=150, deadline=None)
@given(frame_points)
def test_molmo_v1_round_trips_within_a_tenth_of_a_percent(points: list[ParsedPoint]) -> None:
    answer = format_molmo_v1(points)
    result = parse_molmo_v1(answer)
    assert result.problems == ()
    by_value = sorted((p.label, round(p.x * 1000), round(p.y * 1000), p.x, p.y) for p in points)
    back = sorted((p.label, round(p.x * 1000), round(p.y * 1000), p.x, p.y) for p in result.points)
    assert len(back) == len(by_value)
    for (label, *_, x, y), (label_back, *_, x_back, y_back) in zip(by_value, back, strict=True):
        assert label_back == label and abs(x_back - x) <= 0.0005 + 1e-9 and abs(y_back - y) <= 0.0005 + 1e-9
    assert not points or _elements_match(MOLMO_V1_PATTERN, answer)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.text(GRAMMAR_CHARACTERS, max_size=300))
def test_parse_never_raises_on_arbitrary_text(text: str) -> None:
    for parser in (parse, parse_molmo2, parse_molmo_v1):
        _assert_sane(parser(text))


@st.composite
def mutated_answers(draw: st.DrawFn) -> str:
    """A valid answer of either grammar with a few characters inserted, deleted or replaced."""
    answer = draw(
        st.sampled_from([POINTING, TRACKING, V1_POINT, V1_POINTS])
        | video_points.map(format_molmo2_points)
        | track_points.map(format_molmo2_tracks)
        | frame_points.map(format_molmo_v1)
    )
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(answer)))
        character = draw(st.sampled_from(GRAMMAR_CHARACTERS) | st.characters())
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        if edit == "insert":
            answer = answer[:at] + character + answer[at:]
        else:
            answer = answer[:at] + (character if edit == "replace" else "") + answer[at + 1 :]
    return answer


@settings(max_examples=300, deadline=None)
@given(mutated_answers())
def test_parse_never_raises_on_mutated_answers(answer: str) -> None:
    for parser in (parse, parse_molmo2, parse_molmo_v1):
        _assert_sane(parser(answer))


# --- time to frame -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "index"),
    [(-3.0, 0), (0.0, 0), (0.1, 0), (0.3, 1), (0.7, 1), (0.8, 2), (1.2, 2), (1.4, 3), (1.5, 3), (99.0, 3)],
)
def test_nearest_frame_on_irregular_stamps(t: float, index: int) -> None:
    assert nearest_frame(t, [0.0, 0.4, 1.1, 1.5]) == index


def test_nearest_frame_ties_go_to_the_earlier_frame() -> None:
    assert nearest_frame(0.25, [0.0, 0.5, 1.0]) == 0
    assert nearest_frame(0.75, [0.0, 0.5, 1.0]) == 1


def test_nearest_frame_needs_frames() -> None:
    with pytest.raises(ValueError, match="at least one"):
        nearest_frame(0.0, [])


# --- long inputs: a regex that backtracks would hang here, and the suite timeout would fail it ----


_ADVERSARIAL_INPUTS = {
    "random grammar characters": lambda n: "".join(random.Random(0).choices(GRAMMAR_CHARACTERS, k=n)),
    "element starts": lambda n: "<points" * (n // 7),
    "one huge coords value": lambda n: '<points coords="' + "1 " * (n // 2),
    "unclosed v1 attributes": lambda n: '<points x1="' * (n // 12),
    "whitespace in a tag": lambda n: "<points" + " " * n,
    "digits without separators": lambda n: '<points coords="' + "9" * n,
    "attribute name without value": lambda n: "<points " + "a" * n,
    "count with endless digits": lambda n: "shows a total of " + "9" * n,
    "unclosed elements": lambda n: '<points coords="0.5 1 900 400;' * (n // 30),
}


@pytest.mark.parametrize("name", list(_ADVERSARIAL_INPUTS))
def test_long_garbage_parses_in_linear_time(name: str) -> None:
    result = parse(_ADVERSARIAL_INPUTS[name](600_000))
    _assert_sane(result)
    assert result.problems
    if name == "unclosed elements":
        assert len(result.points) == 600_000 // 30


def test_answers_land_on_the_buffered_frame_with_the_nearest_real_timestamp():
    from videomolmo_ros.backends.point_grammar import to_grounding_result

    text = '<tracks coords="0.4 1 500 250;1.1 1 100 900">mug</tracks>'
    result = to_grounding_result(parse_molmo2(text), [0.0, 0.37, 1.12, 1.5], 640, 480, text)
    landed = [(p.frame_index, p.x, p.y, p.object_id) for p in result.points]
    assert landed == [(1, 320.0, 120.0, 1), (2, 64.0, 432.0, 1)]
    v1 = to_grounding_result(parse_molmo_v1('<point x="50.0" y="25.0" alt="mug">mug</point>'), [0.0, 0.5], 200, 100, "")
    assert [(p.frame_index, p.x, p.y) for p in v1.points] == [(1, 100.0, 25.0)], "v1 answers are about the last frame"


# --- the grammar's point limit, kept on answers decoded without the grammar ----


def _flood(points: int, time_s: float = 0.0) -> str:
    """A Molmo2 answer of `points` points on one frame (as a server that refused the grammar may send)."""
    coords = " ".join(f"{i} {i % 1000:03d} {i // 1000 % 1000:03d}" for i in range(1, points + 1))
    return f'<points coords="{time_s:.1f} {coords}">grains of rice</points>'


def test_an_answer_beyond_the_limit_yields_the_limit_and_the_rest_is_not_read() -> None:
    text = _flood(531_441) + ' <points coords="zzz">junk</points>'  # 8 MB, then an element never read
    result = parse_molmo2(text, max_points=128)
    assert len(result.points) == 128
    assert [p.number for p in result.points] == list(range(1, 129)), "the first points of the answer"
    assert _problems_mention(result, "characters cut at", "128 points")
    assert not _problems_mention(result, "zzz"), "nothing past the cut was read"
    assert len(parse_molmo2(_flood(200)).points) == 200, "without a limit every point is read"


def test_compact_points_beyond_the_limit_within_the_room_are_dropped_and_reported() -> None:
    text = '<points coords="0.0 ' + " ".join(f"{i} 5 5" for i in range(1, 41)) + '">dots</points>'
    result = parse_molmo2(text, max_points=16)
    assert [p.number for p in result.points] == list(range(1, 17))
    assert _problems_mention(result, "24 point(s) beyond the limit of 16")


def test_the_longest_answers_the_grammars_allow_are_read_whole_under_their_limit() -> None:
    label = "x" * 40  # the longest label the constrained grammar allows
    groups, per_group = 32, 16  # constrained_decoding's MAX_GROUPS and MAX_POINTS_PER_GROUP
    points = [ParsedPoint(1.0, 1.0, label, 999.9 - g, 1) for g in range(groups) for _ in range(per_group)]
    molmo2 = parse_molmo2(format_molmo2_points(points, count=9999), max_points=groups * per_group)
    assert len(molmo2.points) == groups * per_group and molmo2.problems == ()
    v1 = [ParsedPoint(1.0, 1.0, label, None, 1) for _ in range(per_group)]
    parsed = parse_molmo_v1(format_molmo_v1(v1), max_points=per_group)
    assert len(parsed.points) == per_group and parsed.problems == ()
