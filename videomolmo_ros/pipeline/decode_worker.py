"""Work taken off a subscription callback: a bounded queue drained by one thread, in order.

Compressed camera frames are decoded here, so the image callback only queues bytes and the
executor is never held up by JPEG decoding. When the decoder falls behind, the oldest waiting
item is dropped (a newer frame supersedes it) and counted through `on_drop`.
"""

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class DecodeWorker(Generic[Item]):
    """Runs `handle(item)` for queued items on a thread of its own; at most `depth` wait.

    `handle` reports its own errors: one that escapes ends the thread.
    """

    def __init__(self, handle: Callable[[Item], None], on_drop: Callable[[], None], depth: int, name: str):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._handle = handle
        self._on_drop = on_drop
        self._queue: deque[Item] = deque()
        self._depth = depth
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: Item) -> None:
        """Queue an item (cheap: called from the callback); drops the oldest waiting one when full."""
        with self._wake:
            dropped = len(self._queue) >= self._depth
            if dropped:
                self._queue.popleft()
            self._queue.append(item)
            self._wake.notify()
        if dropped:
            self._on_drop()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the item being handled; items still waiting are dropped and counted."""
        with self._wake:
            self._closed = True
            waiting = len(self._queue)
            self._queue.clear()
            self._wake.notify()
        for _ in range(waiting):
            self._on_drop()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closed or self._queue)
                if self._closed:
                    return
                item = self._queue.popleft()
            self._handle(item)
