"""Which params file gave a parameter, so a bad value's error sends the user to the right file."""

import sys
from collections.abc import Iterator, Sequence

import yaml


def params_files(argv: Sequence[str]) -> list[str]:
    """The files of every `--params-file FILE` in a command line, in order (a later one wins)."""
    return [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == "--params-file"]


def _names(tree: dict, prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _names(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def names_in(path: str) -> set[str]:
    """The parameter names a params file sets (for any node it names); empty if it cannot be read."""
    try:
        with open(path) as file:
            document = yaml.safe_load(file)
    except (OSError, yaml.YAMLError):
        return set()
    names: set[str] = set()
    for section in document.values() if isinstance(document, dict) else ():
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            names.update(_names(section["ros__parameters"]))
    return names


def where_given(name: str, argv: Sequence[str] | None = None) -> str:
    """`in FILE` for the last params file that sets `name`, else where else it can have come from."""
    files = [path for path in params_files(sys.argv if argv is None else argv) if name in names_in(path)]
    return f"in {files[-1]}" if files else "(not in a params file: given with -p or by launch)"
