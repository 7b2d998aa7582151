"""Synthetic datasets in the layouts evaluate_dataset reads (discs rendered by synthetic_video), and
an evaluator double that raises on chosen videos."""

import json

import numpy as np
from PIL import Image
from synthetic_video import default_scene, render

from videomolmo_ros.evaluation.video_dataset import rle_encode

FPS = 10.0
FRAMES = 10

EXPRESSIONS = {"0": ("the red ball", ["red"]), "1": ("the blue ball", ["blue"])}
MEVIS_EXPRESSIONS = {**EXPRESSIONS, "2": ("the red and the blue ball", ["red", "blue"])}
OBJECT_IDS = {"red": 1, "blue": 2}


def rendered():
    return [render(default_scene(), k / FPS) for k in range(FRAMES)]


def write_frames(root, video="discs"):
    frames = [f"{k:05d}" for k in range(FRAMES)]
    folder = root / "JPEGImages" / video
    folder.mkdir(parents=True)
    for name, (image, _) in zip(frames, rendered(), strict=True):
        Image.fromarray(image).save(folder / f"{name}.jpg", quality=100, subsampling=0)
    return frames


def make_davis_layout(root, videos=("discs",)):
    """Ref-DAVIS17 / Ref-YouTube-VOS: palette PNGs whose pixel value is the object id; the same
    frames and expressions under each video name."""
    expressions = {i: {"exp": text, "obj_id": str(OBJECT_IDS[c[0]])} for i, (text, c) in EXPRESSIONS.items()}
    meta = {"videos": {}}
    for video in videos:
        frames = write_frames(root, video)
        folder = root / "Annotations" / video
        folder.mkdir(parents=True)
        for name, (image, masks) in zip(frames, rendered(), strict=True):
            labels = np.zeros(image.shape[:2], np.uint8)
            for colour, object_id in OBJECT_IDS.items():
                labels[masks[colour]] = object_id
            png = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
            png.putpalette([0, 0, 0, 220, 30, 30, 30, 60, 220])
            png.save(folder / f"{name}.png")
        meta["videos"][video] = {"expressions": expressions, "frames": frames}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    return root


def make_mevis_layout(root):
    """MeViS: RLE masks per annotation id in mask_dict.json, expressions naming lists of objects."""
    frames = write_frames(root)
    anno = {"red": 10, "blue": 11}
    mask_dict = {str(anno[c]): [rle_encode(masks[c]) for _, masks in rendered()] for c in anno}
    mask_dict["11"][-1] = None  # "not in this frame"
    expressions = {
        i: {"exp": text, "obj_id": [OBJECT_IDS[c] for c in cs], "anno_id": [anno[c] for c in cs]}
        for i, (text, cs) in MEVIS_EXPRESSIONS.items()
    }
    meta = {"videos": {"discs": {"expressions": expressions, "frames": frames}}}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "mask_dict.json").write_text(json.dumps(mask_dict))
    return root


class RaisingEvaluatorDouble:
    """An evaluator that raises MemoryError on the first `failures[video]` expressions it is given of a
    video (as a worker out of memory would), and otherwise evaluates as `evaluator` does."""

    def __init__(self, evaluator, failures):
        self._evaluate, self._left = evaluator, dict(failures)
        self.calls = []

    def __call__(self, ref):
        self.calls.append(ref.name)
        if self._left.get(ref.video, 0) > 0:
            self._left[ref.video] -= 1
            raise MemoryError(f"out of memory on {ref.name}")
        return self._evaluate(ref)
