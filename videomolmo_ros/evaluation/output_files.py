"""Output files and folders that appear whole or not at all. No ROS.

A tool stopped half-way (bad input further on, Ctrl-C, a full disk) must not leave a half-written
bag or report under the name a reader looks for. Each output is written under its own name inside a
hidden folder beside it (`.<name>.partial-<pid>/<name>`, so savers that go by the suffix and bags
that name their storage file after their folder work unchanged) and renamed into place at the end;
on failure the folder is removed and the error carries a note saying so.
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def output_path(path: Path) -> Iterator[Path]:
    """Where to write `path` (a file or a folder); renamed to `path` when the body ends without error.

    On any exception, Ctrl-C included, the partial output is removed and the exception is noted
    "<path> not written": the one error line a tool prints says it.
    """
    staging = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)  # a run of this pid that was killed before it could clean up
    staging.mkdir(parents=True)
    try:
        yield staging / path.name
        os.replace(staging / path.name, path)
    except BaseException as error:
        error.add_note(f"{path} not written (its partial output was removed)")
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """`path` holds `text` whole, or keeps what it held."""
    with output_path(path) as partial:
        partial.write_text(text)


def write_bytes(path: Path, data: bytes) -> None:
    """`path` holds `data` whole, or keeps what it held."""
    with output_path(path) as partial:
        partial.write_bytes(data)
