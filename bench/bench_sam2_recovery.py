"""SAM2's own recovery: after an object was out of sight, does its mask come back under its id with no grounding?

    ./bench/run bench_sam2_recovery [--checkpoint HUB_ID_OR_PATH] [--config tiny] [--image-size 0] [--device cpu]

The node keeps a LOST track's object in the propagator and steps it on every frame (it leaves the
propagator only when its track is deleted, `tracker.max_lost_s`), so when SAM2 finds the object
again the track is TRACKED under its id, no grounding needed: the cheap path. This measures how
often that happens.

On the DAVIS 2016 sequences of ../shared/data (one object each, a true mask on every frame, played
as 24 fps): the object is prompted on frame 0 at the interior point of its true mask (as a
grounding gives one) and tracked through the first third; then it is blacked out (its true mask,
grown by 8 px, painted black: the silhouette of a dark occluder stays) for 0.5 / 2 / 10 s of
frames (the sequence played back and forth to last that long); then it is shown again. Printed per
sequence and duration: whether the mask came back (IoU >= 0.5 with the truth on a frame within 1 s
of the return), the frames that took, and the blacked-out frames on which SAM2 still reported the
object (score >= 0.5, a mask of >= 1% of the object's size): a track kept TRACKED on nothing.

It needs Meta's SAM 2.1 checkpoint (sam2.checkpoint's default: the hub's facebook/sam2.1-hiera-tiny).
Without it, it says what to download and where, and prints no figures: the random-weight models
the tests use give meaningless recovery rates. About 2000 frames are stepped in all: on a GPU a
minute or two; on a CPU a 1024 px hiera-t frame takes seconds (hours in all), so there use
--image-size 512 and expect most of an hour.
"""

import argparse
import sys

import cv2
import numpy as np
import torch
from bench_reid import DAVIS, SEQUENCES, load

from videomolmo_ros.backends.sam2.loading import Sam2Options
from videomolmo_ros.backends.sam2.propagator import Sam2Propagator
from videomolmo_ros.contracts.frames import Frame, FrameMeta
from videomolmo_ros.contracts.interfaces import BackendError
from videomolmo_ros.io.mask_geometry import interior_point, mask_box

FPS = 24  # DAVIS's frame rate
ABSENCES_S = (0.5, 2.0, 10.0)
BACK_WITHIN_S = 1.0
OBJECT = 1
GROW = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))  # 8 px around the true mask


def bounce(i: int, n: int) -> int:
    """Frame i of the sequence of n frames played back and forth (0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...)."""
    period = 2 * (n - 1)
    j = i % period
    return j if j < n else period - j


def blacked_out(image: np.ndarray, truth: np.ndarray) -> np.ndarray:
    painted = image.copy()
    painted[cv2.dilate(truth.astype(np.uint8), GROW) > 0] = 0
    return painted


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def recovery(propagator: Sam2Propagator, frames: list, absence_s: float) -> tuple[int | None, int, int]:
    """Track the sequence's object through an absence of `absence_s`; (frames until its mask was back, or None
    if not within BACK_WITHIN_S; blacked-out frames; of those, the frames SAM2 still reported the object on)."""
    propagator.reset()
    before, away, back = len(frames) // 3, round(absence_s * FPS), round(BACK_WITHIN_S * FPS)
    truth0 = frames[0][1]
    point = interior_point(truth0, mask_box(truth0))
    reported = 0
    for k in range(before + away + back):
        image, truth = frames[bounce(k, len(frames))]
        hidden = before <= k < before + away
        frame = Frame(
            FrameMeta(k, k * 10**9 // FPS, "cam"), torch.from_numpy(blacked_out(image, truth) if hidden else image)
        )
        if k == 0:
            propagator.add_prompts(frame, {OBJECT: [point]})
        result = propagator.step(frame)[OBJECT]
        mask = result.mask.cpu().numpy()
        if hidden:
            reported += int(result.score >= 0.5 and np.count_nonzero(mask) >= 0.01 * np.count_nonzero(truth))
        elif k >= before + away and iou(mask, truth) >= 0.5:
            return k - before - away, away, reported
    return None, away, reported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = Sam2Options()
    parser.add_argument("--checkpoint", default=defaults.checkpoint, help="hub id or local .pt (sam2.checkpoint)")
    parser.add_argument("--config", default=defaults.config, help="tiny, small, base_plus, large (sam2.config)")
    parser.add_argument("--image-size", type=int, default=0, help="model input side, px (0: the config's 1024)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if not all((DAVIS / "JPEGImages" / "480p" / s).is_dir() for s in SEQUENCES):
        print(f"no DAVIS 2016 sequences in {DAVIS}: nothing to measure", file=sys.stderr)
        return
    options = Sam2Options(config=args.config, checkpoint=args.checkpoint, image_size=args.image_size)
    try:
        propagator = Sam2Propagator(options, torch.device(args.device))
    except BackendError as error:
        print(f"not measured: needs the SAM 2.1 checkpoint.\n{error}")
        print("Then: ./bench/run bench_sam2_recovery --checkpoint <that hub id or path>")
        return
    print(f"SAM2 {args.config} ({args.checkpoint}), input {propagator.image_size} px, {args.device}, {FPS} fps")
    print(f"{'sequence':<12} {'away s':>6} {'back':>5} {'frames to back':>14} {'reported while away':>19}")
    totals = {absence: [0, 0] for absence in ABSENCES_S}  # returns, back
    for name in SEQUENCES:
        frames = load(name)
        for absence in ABSENCES_S:
            took, away, reported = recovery(propagator, frames, absence)
            totals[absence][0] += 1
            totals[absence][1] += took is not None
            took_text = "-" if took is None else str(took)
            print(
                f"{name:<12} {absence:>6.1f} {took is not None!s:>5} {took_text:>14} {reported:>10} of {away:<5}",
                flush=True,
            )
    for absence, (returns, back) in totals.items():
        print(
            f"away {absence:4.1f} s: back under its id (no grounding) {back} of {returns} ({100 * back / returns:.0f}%)"
        )


if __name__ == "__main__":
    main()
