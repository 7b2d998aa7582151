"""A double of the pipeline's OutputSink: it keeps every output, as the node would publish them."""

import threading


class ListSinkDouble:
    """Collects targets, tracks, masks and problems in lists (guarded: worker threads call it)."""

    def __init__(self):
        self.targets, self.tracks, self.masks, self.problems = [], [], [], []
        self.lock = threading.Lock()

    def publish_targets(self, output):
        with self.lock:
            self.targets.append(output)

    def publish_tracks(self, output):
        with self.lock:
            self.tracks.append(output)

    def publish_masks(self, output):
        with self.lock:
            self.masks.append(output)

    def problem(self, key, message):
        with self.lock:
            self.problems.append((key, message))


class GatedSinkDouble(ListSinkDouble):
    """A sink that takes its time: each tracks or masks output waits until `gate` is set (a slow publisher)."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def publish_tracks(self, output):
        self.gate.wait()
        super().publish_tracks(output)

    def publish_masks(self, output):
        self.gate.wait()
        super().publish_masks(output)


class BrokenMasksSinkDouble(ListSinkDouble):
    """A sink whose masks message of frame `broken_seq` fails (a bug in one conversion)."""

    broken_seq = 1

    def publish_masks(self, output):
        if output.meta.seq == self.broken_seq:
            raise RuntimeError("broken message")
        super().publish_masks(output)
