"""The point grammars of Molmo2 and Molmo v1 (VideoMolmo): parse them (point_format.py writes them back).

The models answer in XML-like text (Molmo2 model card, VideoMolmo paper). Generation can stop
mid-tag and a model can print nonsense, so the parsers never raise: they keep every point that
parses and describe everything they drop in `problems`, which the node logs and counts.

Everything runs in linear time: elements are cut at the next element start, and every regex
is free of nested ambiguous repetition, so a megabyte of garbage parses in milliseconds. With
`max_points` (the limit the answer grammar sets) the work is bounded by the limit, not by the
answer: text beyond the room that many points take is dropped unread, and so are points beyond
the limit, so an unconstrained answer (a server that refused the grammar) yields no more points
than a constrained one could.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise

from videomolmo_ros.contracts.grounding import GroundedPoint, GroundingResult

MOLMO2_NONE_POINTS = "There are none."
MOLMO2_NONE_TRACKS = "No tracks available."  # upstream: only when tracks were filtered away
MOLMO_V1_NONE = "There are none."
VIDEOMOLMO_NONE = "This isn't in the video."  # VideoMolmo's templates, for an absent object
# What each model may say when it finds nothing (Molmo2 learnt "There are none." in both modes).
MOLMO2_NONE_ANSWERS = (MOLMO2_NONE_POINTS, MOLMO2_NONE_TRACKS)
MOLMO_V1_NONE_ANSWERS = (MOLMO_V1_NONE, VIDEOMOLMO_NONE)

# An answer with at most N points takes at most N x _CHARS_PER_POINT + _CHARS_BESIDES_POINTS characters
# (a point: " 999 1000 1000" or ' x16="100.0" y16="100.0"', well under 64; besides: tags, label, counting words).
_CHARS_PER_POINT = 64
_CHARS_BESIDES_POINTS = 1024

_MOLMO2 = "Molmo2"
_MOLMO_V1 = "Molmo v1"

_ELEMENT_START = re.compile(r"<(points|point|tracks)\b")
# A value stops at a quote or an angle bracket, so an unclosed quote cannot swallow the label.
_ATTRIBUTE = re.compile(r'\s+([A-Za-z_][\w-]*)="([^"<>]*)(")?')
_TAG_CLOSE = re.compile(r"\s*/?>")
_FRAME_SEPARATOR = re.compile(r"[;\t:,]")
# Bounded digit runs: int() refuses strings of more than 4300 digits, and no valid value needs more.
_TIME = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
_INTEGER = re.compile(r"[0-9]{1,9}")
_NUMBER = re.compile(r"-?[0-9]{1,9}(?:\.[0-9]{1,9})?")  # signed, so negatives are reported as out of range
_V1_COORDINATE = re.compile(r"([xy])([0-9]{0,6})")
_COUNT = re.compile(r"\btotal of ([0-9]{1,9})(?![0-9])", re.IGNORECASE)
_NONE_WORDS = r"there are none|no tracks available|this isn't in the video"
_NONE = re.compile(rf"\b(?:{_NONE_WORDS})\b", re.IGNORECASE)
_KNOWN_PROSE = re.compile(
    rf"\b(?:counting the|shows a total of [0-9]{{1,9}}(?![0-9])|{_NONE_WORDS})\b|[\s.,;:!]+",
    re.IGNORECASE,
)


class PointKind(Enum):
    """What a point's `number` means: a running counter (POINT) or an identity across frames (TRACK)."""

    POINT = "point"
    TRACK = "track"


@dataclass(frozen=True)
class ParsedPoint:
    """One point of a model answer, in normalised image coordinates (0..1 of width and height).

    `time_s` is seconds from the first frame the model saw (Molmo2), or None for Molmo v1, whose
    answer is about its single current frame. `number` is 1-based: an object id when `kind` is
    TRACK, otherwise the point's position in the answer, which carries no identity.
    """

    x: float
    y: float
    label: str = ""
    time_s: float | None = None
    number: int = 1
    kind: PointKind = PointKind.POINT

    @property
    def object_id(self) -> int | None:
        """The model's identity for the object (GroundedPoint.object_id): tracks only."""
        return self.number if self.kind is PointKind.TRACK else None

    def to_pixels(self, width: int, height: int) -> tuple[float, float]:
        """Pixel coordinates (value x size), the edge value 1.0 pulled onto the last pixel so it stays in the image."""
        return min(self.x * width, width - 1.0), min(self.y * height, height - 1.0)


@dataclass(frozen=True)
class ParseResult:
    """What a model answer says: its points, the count of a counting answer, a "none" answer, and what was dropped.

    `problems` is a tuple like GroundingResult.problems, so it passes through unchanged.
    """

    points: tuple[ParsedPoint, ...] = ()
    count: int | None = None
    none_found: bool = False
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Element:
    """An element as read from the text: `cut_attribute` names an attribute whose value ran into the end."""

    name: str
    attributes: dict[str, str]
    cut_attribute: str | None
    label: str
    end: int


def nearest_frame(t_seconds: float, frame_times_seconds: Sequence[float]) -> int:
    """Index of the frame whose time is nearest `t_seconds`; ties go to the earlier frame.

    Frame times are real stamps relative to the first frame the model saw (the times it was
    shown), so irregular sampling maps correctly, unlike round(t * fps).
    """
    if not frame_times_seconds:
        raise ValueError("nearest_frame needs at least one frame time")
    times = frame_times_seconds
    return min(range(len(times)), key=lambda i: (abs(times[i] - t_seconds), times[i]))


def parse_molmo2(text: str, max_points: int | None = None) -> ParseResult:
    """Parse a Molmo2 answer (its first `max_points` points at most); Molmo v1 elements are dropped (they
    carry no time to place them on a frame)."""
    return _parse(text, (_MOLMO2,), max_points)


def parse_molmo_v1(text: str, max_points: int | None = None) -> ParseResult:
    """Parse a Molmo v1 answer (its first `max_points` points at most); Molmo2 elements are dropped (their
    times mean nothing for one frame)."""
    return _parse(text, (_MOLMO_V1,), max_points)


def parse(text: str, max_points: int | None = None) -> ParseResult:
    """Parse an answer in either grammar (its first `max_points` points at most), telling them apart per
    element by its attributes."""
    return _parse(text, (_MOLMO2, _MOLMO_V1), max_points)


def _preview(text: str, limit: int = 40) -> str:
    """A short repr of untrusted text, so a megabyte of garbage makes a one-line problem."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _parse(text: str, grammars: tuple[str, ...], max_points: int | None = None) -> ParseResult:
    """Read every element (each one ends at the next element start, keeping the scan linear), then the prose.

    With `max_points`, only the room that many points take is read, and the points beyond are dropped.
    """
    points: list[ParsedPoint] = []
    problems: list[str] = []
    prose: list[str] = []
    room = None if max_points is None else max_points * _CHARS_PER_POINT + _CHARS_BESIDES_POINTS
    if room is not None and len(text) > room:
        problems.append(
            f"answer of {len(text)} characters cut at {room}, the room of {max_points} points: the rest dropped unread"
        )
        text = text[:room]
    starts = [match.start() for match in _ELEMENT_START.finditer(text)]
    position = 0
    for start, limit in pairwise([*starts, len(text)]):
        prose.append(text[position:start])
        element, element_problems = _read_element(text, start, limit)
        found, found_problems = _element_points(element, grammars)
        points += found
        problems += element_problems + found_problems
        position = element.end
    prose.append(text[position:])
    outside = " ".join(prose)
    count = _COUNT.search(outside)
    leftover = _KNOWN_PROSE.sub(" ", outside).strip()
    if not text.strip():
        problems.append("empty output")
    elif leftover:
        problems.append(f"unrecognised text dropped: {_preview(leftover)}")
    if max_points is not None and len(points) > max_points:
        problems.append(f"{len(points) - max_points} point(s) beyond the limit of {max_points} dropped")
        points = points[:max_points]
    return ParseResult(
        tuple(points),
        int(count.group(1)) if count else None,
        _NONE.search(outside) is not None,
        tuple(problems),
    )


def _read_element(text: str, start: int, limit: int) -> tuple[_Element, list[str]]:
    """Read the element at `start` without looking past `limit`, noting a cut-off or malformed tag."""
    opening = _ELEMENT_START.match(text, start)
    name, position = opening.group(1), opening.end()
    attributes: dict[str, str] = {}
    cut_attribute = None
    problems = []
    while attribute := _ATTRIBUTE.match(text, position, limit):
        attributes[attribute.group(1)] = attribute.group(2)
        position = attribute.end()
        if attribute.group(3) is None and position == limit:
            cut_attribute = attribute.group(1)
            break
        if attribute.group(3) is None:
            problems.append(f"<{name}> attribute {_preview(attribute.group(1))} lacks its closing quote")
    close = _TAG_CLOSE.match(text, position, limit)
    if close is None:
        tag_end = text.find(">", position, limit)
        if tag_end < 0:
            problems.append(f"truncated <{name}> element: its tag is cut off")
            return _Element(name, attributes, cut_attribute, "", limit), problems
        problems.append(f"unexpected text in <{name}> tag dropped: {_preview(text[position:tag_end])}")
        body = tag_end + 1
    else:
        body = close.end()
    if text[body - 2 : body] == "/>":
        return _Element(name, attributes, cut_attribute, "", body), problems
    closing = f"</{name}>"
    label_end = text.find(closing, body, limit)
    if label_end >= 0:
        label = text[body:label_end].strip()
        return _Element(name, attributes, cut_attribute, label, label_end + len(closing)), problems
    label_end = text.find("<", body, limit)
    label_end = limit if label_end < 0 else label_end
    problems.append(f"<{name}> element lacks its closing tag {closing} (its label may be cut)")
    return _Element(name, attributes, cut_attribute, text[body:label_end].strip(), label_end), problems


def _element_points(element: _Element, grammars: tuple[str, ...]) -> tuple[list[ParsedPoint], list[str]]:
    """The points of one element, in whichever grammar its attributes show."""
    label = element.label or element.attributes.get("alt", "")
    if "coords" in element.attributes:
        grammar, reader = _MOLMO2, _molmo2_points
    elif any(_V1_COORDINATE.fullmatch(name) for name in element.attributes):
        grammar, reader = _MOLMO_V1, _v1_points
    else:
        return [], [f"<{element.name}> element without coordinates dropped"]
    if grammar not in grammars:
        return [], [f"{grammar} <{element.name}> element dropped: expected {' or '.join(grammars)} output"]
    return reader(element, label)


def _molmo2_points(element: _Element, label: str) -> tuple[list[ParsedPoint], list[str]]:
    """Points of a `coords` attribute; when it is cut off, its last token may be incomplete and is dropped."""
    value = element.attributes["coords"]
    kind = PointKind.TRACK if element.name == "tracks" else PointKind.POINT
    frames = [group.split() for group in _FRAME_SEPARATOR.split(value)]
    problems = []
    if element.cut_attribute == "coords" and value and not value[-1].isspace() and value[-1] not in ";:,":
        problems.append(f"truncated <{element.name}> element: coords cut off at {_preview(frames[-1].pop())}")
    if not value.strip():
        problems.append(f"<{element.name}> element with empty coords")
    points = []
    for tokens in frames:
        found, found_problems = _molmo2_frame(tokens, element.name, kind, label)
        points += found
        problems += found_problems
    return points, problems


def _molmo2_frame(tokens: list[str], name: str, kind: PointKind, label: str) -> tuple[list[ParsedPoint], list[str]]:
    """One frame group `t i x y [i x y ...]`: whole triples are kept, each bad one reported."""
    if not tokens:
        return [], []
    group = _preview(" ".join(tokens))
    if not _TIME.fullmatch(tokens[0]):
        return [], [f"malformed group {group} in <{name}> dropped: timestamp {_preview(tokens[0])} is not a number"]
    time_s, rest = float(tokens[0]), tokens[1:]
    whole = len(rest) - len(rest) % 3
    points, problems = [], []
    for i in range(0, whole, 3):
        point, problem = _molmo2_point(rest[i : i + 3], time_s, kind, label)
        if point is None:
            problems.append(f"{problem} (<{name}> group {group})")
        else:
            points.append(point)
    if not rest:
        problems.append(f"malformed group {group} in <{name}> dropped: no points")
    elif whole < len(rest):
        problems.append(f"incomplete point {_preview(' '.join(rest[whole:]))} dropped (<{name}> group {group})")
    return points, problems


def _molmo2_point(
    tokens: list[str], time_s: float, kind: PointKind, label: str
) -> tuple[ParsedPoint | None, str | None]:
    """A point from `i x y` (x, y per mille), or None and why not."""
    number, x, y = tokens
    text = _preview(" ".join(tokens))
    if not (_INTEGER.fullmatch(number) and _NUMBER.fullmatch(x) and _NUMBER.fullmatch(y)):
        return None, f"malformed point {text} dropped: not a number"
    x_value, y_value = float(x), float(y)
    if not (0 <= x_value <= 1000 and 0 <= y_value <= 1000):
        return None, f"out-of-range point {text} dropped: coordinates must be 0-1000"
    return ParsedPoint(x_value / 1000, y_value / 1000, label, time_s, int(number), kind), None


def _v1_points(element: _Element, label: str) -> tuple[list[ParsedPoint], list[str]]:
    """Points of `x="61.5" y="40.6"` or `x1=.. y1=.. x2=..` (percent); a cut-off value is dropped, never guessed."""
    pairs: dict[str, dict[str, str]] = {}
    problems = []
    for name, value in element.attributes.items():
        coordinate = _V1_COORDINATE.fullmatch(name)
        if coordinate is None:
            continue
        if name == element.cut_attribute:
            problems.append(f"truncated <{element.name}> element: {name} cut off at {_preview(value)}")
            continue
        axis, suffix = coordinate.groups()
        pairs.setdefault(suffix, {})[axis] = value
    points = []
    for suffix in sorted(pairs, key=lambda s: int(s or 0)):
        point, problem = _v1_point(pairs[suffix], suffix, label)
        if point is None:
            problems.append(f"{problem} (<{element.name}>)")
        else:
            points.append(point)
    return points, problems


def _v1_point(pair: dict[str, str], suffix: str, label: str) -> tuple[ParsedPoint | None, str | None]:
    """A point from one x/y pair (percent), or None and why not."""
    if len(pair) < 2:
        ((axis, value),) = pair.items()
        return None, f"incomplete point {axis}{suffix}={_preview(value)} dropped: its other coordinate is missing"
    x, y = pair["x"], pair["y"]
    text = f"x{suffix}={_preview(x)} y{suffix}={_preview(y)}"
    if not (_NUMBER.fullmatch(x) and _NUMBER.fullmatch(y)):
        return None, f"malformed point {text} dropped: not a number"
    x_value, y_value = float(x), float(y)
    if not (0 <= x_value <= 100 and 0 <= y_value <= 100):
        return None, f"out-of-range point {text} dropped: coordinates must be 0-100"
    return ParsedPoint(x_value / 100, y_value / 100, label, None, int(suffix or 1), PointKind.POINT), None


def to_grounding_result(
    parsed: ParseResult,
    frame_times_s: Sequence[float],
    width: int,
    height: int,
    raw: str,
    frame_indices: Sequence[int] | None = None,
) -> GroundingResult:
    """Parsed points -> points on a window's frames (nearest frame time; single-frame Molmo v1
    answers: the last frame), in pixels, with what could not be parsed.

    `frame_times_s` are the times of the frames the model saw; `frame_indices` their indices in
    the window when the model saw only some of its frames (default: all, in order).
    """
    indices = range(len(frame_times_s)) if frame_indices is None else frame_indices
    last = len(frame_times_s) - 1
    points = tuple(
        GroundedPoint(
            indices[last if p.time_s is None else nearest_frame(p.time_s, frame_times_s)],
            *p.to_pixels(width, height),
            p.label,
            p.object_id,
        )
        for p in parsed.points
    )
    return GroundingResult(points, raw, parsed.problems)
