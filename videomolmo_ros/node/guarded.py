"""Callbacks that report their own bugs instead of raising into the executor (which would end the node)."""

import functools
import traceback
from collections.abc import Callable


def guarded(callback: Callable[..., None], report: Callable[[str], None]) -> Callable[..., None]:
    """`callback`, reporting its own bugs through `report` instead of raising into the executor."""
    name = getattr(getattr(callback, "func", callback), "__name__", "callback")  # a partial names its function

    @functools.wraps(callback)
    def run(*args) -> None:
        try:
            callback(*args)
        except Exception as error:
            report(f"{name}: {error!r}\n{traceback.format_exc()}")

    return run
