"""The parameters docs/parameters.md names, for the tests that hold it against the node and the params file."""

import re
from pathlib import Path

from videomolmo_ros.node import parameter_docs

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "parameters.md"


def documented_parameters(camera: str) -> set[str]:
    """Every parameter the reference has a row for, with `camera` for its `cameras.<name>.` rows."""
    names = re.findall(r"^\| `([^`]+)` \|", REFERENCE.read_text(), flags=re.MULTILINE)
    return {name.replace(f"cameras.{parameter_docs.CAMERA}.", f"cameras.{camera}.") for name in names}
