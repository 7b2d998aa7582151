"""The point grammars of Molmo2 and Molmo v1 written back: formatters and the patterns of their output.

The formatters write the exact grammar the models answer in (test doubles, round-trip tests of
point_grammar's parsers), and the `*_PATTERN` regexes describe that same output.
"""

from collections.abc import Iterable

from videomolmo_ros.backends.point_grammar import MOLMO2_NONE_POINTS, MOLMO2_NONE_TRACKS, MOLMO_V1_NONE, ParsedPoint

_LABEL = r'[^<>"]*'
_PER_MILLE = r"(?:[0-9]{3}|1000)"
_PERCENT = r"(?:100\.0|[0-9]{1,2}\.[0-9])"
_MOLMO2_FRAME = rf"[0-9]+\.[0-9](?: [0-9]+ {_PER_MILLE} {_PER_MILLE})+"
_MOLMO2_COORDS = rf"{_MOLMO2_FRAME}(?:;{_MOLMO2_FRAME})*"
MOLMO2_POINTS_PATTERN = rf'<points coords="{_MOLMO2_COORDS}">{_LABEL}</points>'
"""One `<points>` element exactly as the formatter writes it (no backreferences, for grammar engines)."""
MOLMO2_TRACKS_PATTERN = rf'<tracks coords="{_MOLMO2_COORDS}">{_LABEL}</tracks>'
"""One `<tracks>` element exactly as the formatter writes it."""
MOLMO_V1_PATTERN = (
    rf'<point x="{_PERCENT}" y="{_PERCENT}" alt="{_LABEL}">{_LABEL}</point>'
    rf'|<points(?: x[0-9]+="{_PERCENT}" y[0-9]+="{_PERCENT}")+ alt="{_LABEL}">{_LABEL}</points>'
)
"""One Molmo v1 `<point>` or `<points>` element exactly as the formatter writes it."""


def format_molmo2_points(points: Iterable[ParsedPoint], count: int | None = None) -> str:
    """Molmo2's pointing answer: per label a `<points>` numbered 1.. in time order; `count` adds the counting wrapper.

    Points need `time_s`; times print with one decimal, so points 0.05 s apart can share a frame group.
    """
    answer = _format_molmo2("points", points)
    if not answer:
        return MOLMO2_NONE_POINTS
    return answer if count is None else f"Counting the {answer} shows a total of {count}."


def format_molmo2_tracks(points: Iterable[ParsedPoint]) -> str:
    """Molmo2's tracking answer: one `<tracks>` per label, each point's `number` written as its object id."""
    return _format_molmo2("tracks", points) or MOLMO2_NONE_TRACKS


def format_molmo_v1(points: Iterable[ParsedPoint]) -> str:
    """Molmo v1's answer: per label a `<point>` or a `<points>` sorted by x then y, as the model writes it.

    `time_s` is ignored: a v1 answer is about one frame.
    """
    elements = []
    for label, group in _by_label(points).items():
        coordinates = sorted((_quantise(p.x, 1000) / 10, _quantise(p.y, 1000) / 10) for p in group)
        if len(coordinates) == 1:
            ((x, y),) = coordinates
            elements.append(f'<point x="{x:.1f}" y="{y:.1f}" alt="{label}">{label}</point>')
        else:
            pairs = " ".join(f'x{i}="{x:.1f}" y{i}="{y:.1f}"' for i, (x, y) in enumerate(coordinates, start=1))
            elements.append(f'<points {pairs} alt="{label}">{label}</points>')
    return " ".join(elements) or MOLMO_V1_NONE


def _format_molmo2(tag: str, points: Iterable[ParsedPoint]) -> str:
    """The elements of a Molmo2 answer, or "" when there are no points."""
    elements = []
    for label, group in _by_label(points).items():
        frames: dict[str, list[str]] = {}
        for counter, point in enumerate(sorted(group, key=lambda p: p.time_s), start=1):
            number = point.number if tag == "tracks" else counter
            x, y = _quantise(point.x, 1000), _quantise(point.y, 1000)
            frames.setdefault(f"{point.time_s:.1f}", []).append(f"{number} {x:03d} {y:03d}")
        coords = ";".join(f"{time} {' '.join(entries)}" for time, entries in frames.items())
        elements.append(f'<{tag} coords="{coords}">{label}</{tag}>')
    return " ".join(elements)


def _by_label(points: Iterable[ParsedPoint]) -> dict[str, list[ParsedPoint]]:
    """Points grouped by label, labels in order of first appearance: one element per label."""
    groups: dict[str, list[ParsedPoint]] = {}
    for point in points:
        groups.setdefault(point.label, []).append(point)
    return groups


def _quantise(value: float, scale: int) -> int:
    """`value` (0..1) as an integer 0..scale, clamped so the output is always valid grammar."""
    return round(min(max(value, 0.0), 1.0) * scale)
