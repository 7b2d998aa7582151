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
