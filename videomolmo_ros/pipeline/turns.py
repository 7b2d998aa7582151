"""Turns on a shared model: cameras sharing one pointer take turns in arrival order. No ROS."""

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class TakeTurns:
    """A lock handed over in arrival order: cameras sharing one model take turns, none starves.

    (threading.Lock lets the thread that just released it take it straight back.)
    """

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._queue: deque[object] = deque()

    @contextmanager
    def turn(self) -> Iterator[None]:
        me = object()
        with self._wake:
            self._queue.append(me)
            self._wake.wait_for(lambda: self._queue[0] is me)
        try:
            yield
        finally:
            with self._wake:
                self._queue.popleft()
                self._wake.notify_all()
