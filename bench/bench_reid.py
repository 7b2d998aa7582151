"""Re-identification by appearance on real footage: does a returning object look most like its own LOST track?

    ./bench/run bench_reid [--sam2-checkpoint PATH] [--sam2-config tiny]

On the DAVIS 2016 sequences of ../shared/data (one object each, a ground-truth mask on every
frame): each object's gallery is learnt as the tracker learns it (the descriptor under its true
mask's core, every 3rd frame of the first third of the sequence), and so are galleries of 4 background
regions of the same video (discs of the object's size in the corners, minus the object): false
tracks. On every frame of the last third the object "comes back": its point (the interior point
of the true mask, as a pointer gives one) is described as re-attachment describes it (a disc of
half the object's radius) and compared with every gallery: its own, the other sequences' objects
and its video's background regions. Printed per sequence: how often its own gallery ranks first
(top-1), and what the tracker would do at the default thresholds (reid_min_similarity 0.6,
reid_min_margin 0.1): re-attach to the right track, call it ambiguous (a new id), or take a wrong
id. Then the costs: learning one view per object per frame at 640x480, and one re-attachment
decision (a point against 8 LOST tracks).

Each source is a row block: colour_texture (needs nothing), and propagator_features (SAM2's image
embedding pooled under the same discs: tracker.descriptor) when a real sam2.1 checkpoint is on
this machine (the propagator finds it as loading.py does: a local .pt, or the hub id's file in the
Hugging Face cache); without one its block says what to download. Random weights say nothing
about appearance, so no figure is ever printed from them.
"""

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from videomolmo_ros.backends.sam2.loading import Sam2Options, checkpoint_path
from videomolmo_ros.backends.sam2.propagator import Sam2Propagator
from videomolmo_ros.contracts.frames import Frame, FrameMeta
from videomolmo_ros.contracts.interfaces import BackendError
from videomolmo_ros.io.mask_geometry import interior_point, mask_box
from videomolmo_ros.pipeline.appearance import (
    AppearanceDescriptor,
    ColourTextureDescriptor,
    Gallery,
    PropagatorFeatureDescriptor,
    point_view,
)
from videomolmo_ros.pipeline.track_manager import TrackerConfig

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "davis2016"
SEQUENCES = ("dog", "libby", "car-shadow", "blackswan", "breakdance")
DESCRIPTOR = ColourTextureDescriptor()


def load(sequence: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB frame, true mask) of every frame of a DAVIS 2016 sequence."""
    images = sorted((DAVIS / "JPEGImages" / "480p" / sequence).glob("*.jpg"))
    frames = []
    for path in images:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(DAVIS / "Annotations" / "480p" / sequence / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE)
        frames.append((rgb, truth > 127))
    return frames


def radius_of(mask: np.ndarray) -> float:
    return math.sqrt(np.count_nonzero(mask) / math.pi)


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius**2


def learn(
    frames: list[tuple[np.ndarray, np.ndarray]], descriptor: AppearanceDescriptor, look: Callable, regions: list
) -> list[Gallery]:
    """Galleries from every 3rd frame of the first third, one per region(true mask); each frame looked at once."""
    galleries = [Gallery(descriptor) for _ in regions]
    for k in range(0, len(frames) // 3, 3):
        image, truth = frames[k]
        picture = look(k, image)
        for gallery, region in zip(galleries, regions, strict=True):
            mask = region(truth)
            box = mask_box(mask)
            if box is None:
                continue
            view = point_view(descriptor, picture, interior_point(mask, box), max(2.0, radius_of(mask) / 2), mask)
            if view is not None:
                gallery.add(view)
    return galleries


def corners(frames: list[tuple[np.ndarray, np.ndarray]]) -> list[Callable[[np.ndarray], np.ndarray]]:
    """4 background regions: corner discs of the object's size, minus the object."""
    height, width = frames[0][1].shape
    size = min(radius_of(frames[0][1]), height / 4)
    centres = [(size, size), (width - size, size), (size, height - size), (width - size, height - size)]
    return [lambda truth, c=c: disc(truth.shape, c, size) & ~truth for c in centres]


def rank(
    sequences: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    descriptor: AppearanceDescriptor,
    look: Callable[[str], Callable[[int, np.ndarray], Any]],
) -> None:
    """The ranking table of one descriptor; look(sequence)(k, image): what it reads of that sequence's frame k."""
    config = TrackerConfig()
    galleries = {
        name: learn(frames, descriptor, look(name), [lambda t: t, *corners(frames)])
        for name, frames in sequences.items()
    }
    objects = {name: g[0] for name, g in galleries.items()}
    totals = np.zeros(5, int)
    print(f"{'sequence':<12} {'queries':>7} {'top-1':>6} {'right':>6} {'ambiguous':>9} {'new id':>6} {'wrong':>6}")
    for name, frames in sequences.items():
        candidates = [objects[name], *(g for other, g in objects.items() if other != name), *galleries[name][1:]]
        counts = np.zeros(5, int)  # queries, top-1, re-attached right, ambiguous, wrong; a new id: the rest
        for k in range(2 * len(frames) // 3, len(frames)):
            image, truth = frames[k]
            if np.count_nonzero(truth) < 100:
                continue
            point = interior_point(truth, mask_box(truth))
            view = point_view(descriptor, look(name)(k, image), point, max(2.0, radius_of(truth) / 2))
            if view is None:
                continue
            similar = np.array([g.similarity(view) for g in candidates])
            best, runner_up = np.argsort(similar)[::-1][:2]
            alike_enough = similar[best] >= config.reid_min_similarity
            clear = similar[best] - similar[runner_up] >= config.reid_min_margin
            attached = alike_enough and clear
            counts += [1, best == 0, attached and best == 0, alike_enough and not clear, attached and best != 0]
        totals += counts
        print(_row(name, counts))
    print(_row("all", totals))


def sam2_features(checkpoint: str, config: str) -> tuple[PropagatorFeatureDescriptor, Callable] | str:
    """The feature descriptor on the real sam2.1 checkpoint, and its look per sequence; or why it cannot run."""
    options = Sam2Options(config=config, checkpoint=checkpoint)
    try:
        checkpoint_path(options)  # before loading: a missing checkpoint says what to download
        propagator = Sam2Propagator(options, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    except BackendError as error:
        return str(error)
    descriptor = PropagatorFeatureDescriptor(propagator)
    stamps: dict[str, int] = {}

    def look(sequence: str) -> Callable[[int, np.ndarray], Any]:
        first = stamps.setdefault(sequence, len(stamps) * 10**12)  # one stamp per frame of every sequence
        return lambda k, image: descriptor.look(Frame(FrameMeta(k, first + k, sequence), torch.from_numpy(image)))

    return descriptor, look


def _row(name: str, counts: np.ndarray) -> str:
    queries, top1, right, ambiguous, wrong = counts
    new = queries - right - ambiguous - wrong  # below reid_min_similarity: a new id
    share = lambda n: f"{100 * n / max(queries, 1):5.0f}%"  # noqa: E731
    cells = f"{share(top1):>6} {share(right):>6} {share(ambiguous):>9} {share(new):>6} {share(wrong):>6}"
    return f"{name:<12} {queries:>7} {cells}"


def costs() -> None:
    """Per object per frame: learning one view (a 120 px disc object at 640x480: its core, 30 px around its
    interior point); one re-attachment decision."""
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    mask = disc((480, 640), (320, 240), 60)
    box = mask_box(mask)
    repeats = 200
    centre = interior_point(mask, box)  # the tracker has it already (the track's point)
    start = time.perf_counter()
    for _ in range(repeats):
        point_view(DESCRIPTOR, image, centre, 30.0, mask)
    learn_ms = (time.perf_counter() - start) / repeats * 1e3
    galleries = [Gallery(DESCRIPTOR) for _ in range(8)]
    for k, gallery in enumerate(galleries):
        for view in range(4):
            gallery.views.append(DESCRIPTOR.describe(np.roll(image, 7 * k + view, axis=1), mask, box))
    start = time.perf_counter()
    for _ in range(repeats):
        view = point_view(DESCRIPTOR, image, (320.0, 240.0), 30.0)
        [g.similarity(view) for g in galleries]
    decide_ms = (time.perf_counter() - start) / repeats * 1e3
    print(f"learn one view (60 px radius object, 640x480): {learn_ms:.2f} ms (goal <= 0.5 ms per object per frame;")
    print("  the tracker learns at most every 0.2 s per object, so at 15 Hz that is 1 frame in 3)")
    print(f"one re-attachment decision (a point against 8 LOST tracks of 4 views): {decide_ms:.2f} ms (goal <= 1 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sam2-checkpoint", default=Sam2Options.checkpoint, help="a .pt or a hub id (cached)")
    parser.add_argument("--sam2-config", default=Sam2Options.config, help="tiny, small, base_plus, large")
    args = parser.parse_args()
    if not all((DAVIS / "JPEGImages" / "480p" / s).is_dir() for s in SEQUENCES):
        print(f"(no DAVIS 2016 sequences in {DAVIS}: the ranking is left out)", file=sys.stderr)
    else:
        sequences = {name: load(name) for name in SEQUENCES}
        print("descriptor colour_texture")
        rank(sequences, DESCRIPTOR, lambda _: lambda k, image: image)
        features = sam2_features(args.sam2_checkpoint, args.sam2_config)
        if isinstance(features, str):
            print(
                "descriptor propagator_features: needs the real sam2.1 checkpoint (no row from random weights). "
                + features
            )
        else:
            print(f"descriptor propagator_features (sam2 {args.sam2_config}, {args.sam2_checkpoint})")
            rank(sequences, *features)
    costs()


if __name__ == "__main__":
    main()
