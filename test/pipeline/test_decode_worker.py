"""decode_worker: work moved off a callback thread, in order, bounded, every drop counted."""

import threading

from polling import wait_for

from videomolmo_ros.pipeline.decode_worker import DecodeWorker


def test_items_are_handled_in_order_on_another_thread():
    handled, threads = [], set()
    worker = DecodeWorker(lambda item: (handled.append(item), threads.add(threading.get_ident())), lambda: None, 8, "t")
    for item in range(5):
        worker.put(item)
    assert wait_for(lambda: len(handled) == 5, 5)
    worker.close()
    assert handled == [0, 1, 2, 3, 4] and threading.get_ident() not in threads


def test_a_slow_handler_drops_the_oldest_waiting_items_and_counts_them():
    release, handled, drops = threading.Event(), [], []
    worker = DecodeWorker(lambda item: (release.wait(5), handled.append(item)), lambda: drops.append(1), 2, "t")
    worker.put(0)
    assert wait_for(lambda: not worker._queue, 5)  # 0 is being handled
    for item in range(1, 6):
        worker.put(item)
    assert handled == [], "put never waits for the handler (still holding 0)"
    release.set()
    assert wait_for(lambda: len(handled) == 3, 5)
    worker.close()
    assert handled == [0, 4, 5], "the newest frames are kept"
    assert len(drops) == 3 == 6 - len(handled), "every item is handled or counted"


def test_close_counts_the_items_still_waiting():
    release, drops = threading.Event(), []
    worker = DecodeWorker(lambda item: release.wait(5), lambda: drops.append(1), 4, "t")
    for item in range(3):
        worker.put(item)
    assert wait_for(lambda: len(worker._queue) == 2, 5)
    release.set()
    worker.close()
    assert len(drops) == 2
