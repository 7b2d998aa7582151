"""What the params files on the command line say about a parameter: which file, and the value as written.

rcl merges several params files before the node sees them and drops a later file's value whose
type differs from an earlier one's (a string for a number): the node reads the files itself to
say which file gave a bad value, or one that was dropped.
"""

import sys
from collections.abc import Iterator, Sequence

import yaml


def params_files(argv: Sequence[str]) -> list[str]:
    """The files of every `--params-file FILE` in a command line, in order (a later one wins)."""
    return [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == "--params-file"]


def _values(tree: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _values(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def values_in(path: str) -> dict[str, object]:
    """The parameters a params file sets (for any node it names), as written; empty if it cannot be read."""
    try:
        with open(path) as file:
            document = yaml.safe_load(file)
    except (OSError, yaml.YAMLError):
        return {}
    values: dict[str, object] = {}
    for section in document.values() if isinstance(document, dict) else ():
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            values.update(_values(section["ros__parameters"]))
    return values


def last_given(name: str, argv: Sequence[str] | None = None) -> tuple[str, object] | None:
    """(file, value as written) of the last params file that sets `name`; None if none does."""
    given = None
    for path in params_files(sys.argv if argv is None else argv):
        values = values_in(path)
        if name in values:
            given = (path, values[name])
    return given


def where_given(name: str, argv: Sequence[str] | None = None) -> str:
    """`in FILE` for the last params file that sets `name`, else where else it can have come from."""
    given = last_given(name, argv)
    return f"in {given[0]}" if given else "(not in a params file: given with -p or by launch)"
